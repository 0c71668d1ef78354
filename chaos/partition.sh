#!/usr/bin/env bash
# Cuts the network between nodes with kvctl chaos (isolate, partition,
# oneway), holds the cut for a while, then heals it. kvctl works out the
# rules; this script only holds and heals, for netem.sh too. Run with
# --help for the details.
set -euo pipefail
# shellcheck source=chaos/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG [--addr host:port,...] [--seconds N] [leader]
       $PROG [--addr ...] [--seconds N] isolate <id>...
       $PROG [--addr ...] [--seconds N] [partition] <id,id,...> <id,id,...>
       $PROG [--addr ...] [--seconds N] oneway <from-id> <to-id>

Cut the network of a Troupe cluster with 'kvctl chaos', hold the cut for
SECONDS, then heal it with 'kvctl chaos heal':

  leader (the default)   isolate the current leader and watch for the next
  isolate <id>...        cut each named node off from every peer
  <ids> <ids>            two sides that cannot talk to each other; nodes on
                         neither side still reach both
  oneway <from> <to>     lose every message from one node to another, not
                         the other way
  netem [flags]          degrade links instead (what netem.sh runs)

'kvctl help chaos <isolate|partition|oneway>' says which rules each node
gets. They act on node-to-node traffic only, so every node can still be
asked and healed. The nodes must run with chaos enabled: kvnode --chaos,
or TROUPE_CHAOS=true in their environment (for a local cluster:
TROUPE_CHAOS=true make run). Ctrl-C (or SIGTERM) heals before the script
exits; so does any failure after rules were installed.

Settings (environment, or the flags shown):
  ADDR=h:p,h:p   --addr      the cluster's HTTP addresses (default:
                             \$TROUPE_ADDR, else 127.0.0.1:8500.. for NODES
                             nodes from HTTP_BASE: 'make run')
  SECONDS=N      --seconds   how long the cut lasts (default 10; 0: until
                             Ctrl-C)
  LEADER_WAIT=S              how long to watch for a new leader when the
                             leader is isolated (default 15, at most SECONDS)
  KVCTL=path                 kvctl to use (default bin/kvctl, built if
                             missing or stale)

Examples:
  $PROG                         # the leader alone for 10s
  SECONDS=30 $PROG isolate n3
  $PROG n1 n2,n3
  $PROG --seconds 20 n1,n2 n3,n4,n5
  $PROG oneway n1 n2

Exit status: 0 done; 1 no leader known (leader mode; nothing done);
2 error.
EOF
}

OPT_SECONDS=
ARGS=()
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --addr) need_value "$1" "${2-}"; ADDR=$2; shift 2 ;;
    --addr=*) ADDR=${1#*=}; shift ;;
    --seconds | -s) need_value "$1" "${2-}"; OPT_SECONDS=$2; shift 2 ;;
    --seconds=*) OPT_SECONDS=${1#*=}; shift ;;
    --) shift; ARGS+=("$@"); break ;;
    -*) usage_error "unknown flag '$1'" ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
hold_setting "$OPT_SECONDS" 10
LEADER_WAIT=${LEADER_WAIT:-15}
is_uint "$LEADER_WAIT" || usage_error "LEADER_WAIT must be whole seconds, not '$LEADER_WAIT'"
# kvctl judges the rest of the arguments.
CMD=()
case ${ARGS[0]:-leader} in
  leader) [ "${#ARGS[@]}" -le 1 ] || usage_error "leader takes no arguments" ;;
  isolate | partition | oneway | netem) CMD=("${ARGS[@]}") ;;
  *) CMD=(partition "${ARGS[@]}") ;;
esac

resolve_addr
ensure_kvctl
if [ "${#CMD[@]}" -eq 0 ]; then
  require_leader
  CMD=(isolate "$LEADER_ID")
else
  s=0
  find_leader || s=$?
  [ "$s" -ne 2 ] || die "the cluster at $ADDR ($ADDR_SOURCE) did not answer: $LEADER_ERR"
fi
[ -z "$LEADER_ID" ] || log "leader is $LEADER_ID"
# An isolated leader is replaced: watch for the next one, asking the
# nodes that are not cut off.
OLD_LEADER=''
if [ "${CMD[0]}" = isolate ] && [ -n "$LEADER_ID" ] && [[ " ${CMD[*]:1} " == *" $LEADER_ID "* ]]; then
  OLD_LEADER=$LEADER_ID
  WATCH_ADDR=$(addrs_without "${CMD[@]:1}")
fi

on_exit() {
  local status=$?
  set +e
  # A second Ctrl-C must not cut the cleanup short (nor kill the commands
  # it runs, which inherit the ignored signals), nor a closed output.
  trap '' INT TERM PIPE
  stop_hold
  if [ "$FAULT" = 1 ]; then
    [ "$status" -eq 0 ] || log "healing before exit"
    chaos_heal || status=2
  fi
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE # output cut off (| head): still clean up

log "kvctl chaos ${CMD[*]}"
MARK_MS=$(now_ms)
chaos_apply "${CMD[@]}"
if [ "$HOLD" -eq 0 ]; then
  log "holding until Ctrl-C"
else
  log "holding for ${HOLD}s"
fi
hold_fault "$OLD_LEADER"
log "held $((($(now_ms) - MARK_MS) / 1000))s; healing"
chaos_heal || exit 2
WATCH_ADDR=
report_leader 10 || true
