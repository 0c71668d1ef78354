#!/usr/bin/env bash
# Cuts the network between nodes (through each node's fault layer, with
# kvctl chaos), holds the cut for a while, then heals it. Run with --help
# for the details.
set -euo pipefail
# shellcheck source=chaos/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG [--addr host:port,...] [--seconds N] [leader]
       $PROG [--addr ...] [--seconds N] isolate <id>...
       $PROG [--addr ...] [--seconds N] <id,id,...> <id,id,...>
       $PROG [--addr ...] [--seconds N] oneway <from-id> <to-id>

Partition a Troupe cluster, hold the partition for SECONDS, then heal it
with 'kvctl chaos heal':

  leader (the default)   cut the current leader off from every peer
  isolate <id>...        cut each named node off from every peer
                         (kvctl chaos isolate)
  <ids> <ids>            two sides that cannot talk to each other; nodes on
                         neither side still reach both (kvctl chaos
                         partition n1 n2,n3)
  oneway <from> <to>     lose every message from one node to another, not
                         the other way (kvctl chaos oneway)

The cuts are made by the nodes' own fault layer (rules installed over
HTTP), so they work on any cluster kvctl reaches, local or remote, and
never touch client traffic: every node can still be asked and healed. The
nodes must run with chaos enabled: kvnode --chaos, or TROUPE_CHAOS=true in
their environment (for a local cluster: TROUPE_CHAOS=true make run).
Installing rules on a node replaces the rules it had.

Ctrl-C (or SIGTERM) heals before the script exits; so does any failure
after rules were installed.

Settings (environment, or the flags shown):
  ADDR=h:p,h:p   --addr      the cluster's HTTP addresses (default:
                             \$TROUPE_ADDR, else 127.0.0.1:8500.. for NODES
                             nodes from HTTP_BASE: 'make run')
  SECONDS=N      --seconds   how long the partition lasts (default 10; 0:
                             until Ctrl-C)
  LEADER_WAIT=S              how long to watch for a new leader when the
                             leader is cut off (default 15, at most SECONDS)
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

# What to cut: the kvctl chaos command, and which nodes lose the others.
case ${ARGS[0]:-leader} in
  leader)
    [ "${#ARGS[@]}" -le 1 ] || usage_error "leader takes no arguments"
    MODE=leader
    ;;
  isolate)
    [ "${#ARGS[@]}" -ge 2 ] || usage_error "isolate needs node ids"
    MODE=isolate
    ;;
  oneway)
    [ "${#ARGS[@]}" -eq 3 ] || usage_error "oneway needs two node ids: oneway <from> <to>"
    MODE=oneway
    ;;
  *)
    [ "${#ARGS[@]}" -eq 2 ] || usage_error "a partition needs two sides, e.g. n1 n2,n3 (or: leader, isolate, oneway)"
    MODE=partition
    ;;
esac

resolve_addr
ensure_kvctl
OLD_LEADER=''
CUT=()
case $MODE in
  leader)
    require_leader
    OLD_LEADER=$LEADER_ID
    CMD=(isolate "$LEADER_ID")
    WHAT="leader $LEADER_ID cut off from every peer"
    CUT=("$LEADER_ID")
    ;;
  *)
    s=0
    find_leader || s=$?
    [ "$s" -ne 2 ] || die "the cluster at $ADDR ($ADDR_SOURCE) did not answer: $LEADER_ERR"
    case $MODE in
      isolate)
        CMD=("${ARGS[@]}")
        WHAT="${ARGS[*]:1} cut off from every peer"
        CUT=("${ARGS[@]:1}")
        for id in "${ARGS[@]:1}"; do
          if [ "$id" = "$LEADER_ID" ]; then OLD_LEADER=$LEADER_ID; fi
        done
        ;;
      oneway)
        CMD=("${ARGS[@]}")
        WHAT="messages from ${ARGS[1]} to ${ARGS[2]} lost"
        ;;
      partition)
        CMD=(partition "${ARGS[0]}" "${ARGS[1]}")
        WHAT="${ARGS[0]} | ${ARGS[1]}"
        # Watch for a new leader when the leader is on the smaller side.
        IFS=, read -ra A <<<"${ARGS[0]}"
        IFS=, read -ra B <<<"${ARGS[1]}"
        if [ "${#A[@]}" -le "${#B[@]}" ]; then CUT=("${A[@]}"); else CUT=("${B[@]}"); fi
        for id in "${A[@]}"; do
          if [ "$id" = "$LEADER_ID" ] && [ "${#A[@]}" -lt "${#B[@]}" ]; then OLD_LEADER=$LEADER_ID; fi
        done
        for id in "${B[@]}"; do
          if [ "$id" = "$LEADER_ID" ] && [ "${#B[@]}" -lt "${#A[@]}" ]; then OLD_LEADER=$LEADER_ID; fi
        done
        ;;
    esac
    [ -z "$LEADER_ID" ] || log "leader is $LEADER_ID"
    ;;
esac

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

# While the cut lasts, ask the nodes on the other side about the leader.
[ "${#CUT[@]}" -eq 0 ] || WATCH_ADDR=$(addrs_without "${CUT[@]}")
log "partition: $WHAT (kvctl chaos ${CMD[*]})"
MARK_MS=$(now_ms)
chaos_apply "${CMD[@]}"
if [ "$HOLD" -eq 0 ]; then
  log "holding the partition until Ctrl-C"
else
  log "holding the partition for ${HOLD}s"
fi
hold_fault "$OLD_LEADER"
log "partition held $((($(now_ms) - MARK_MS) / 1000))s; healing"
chaos_heal || exit 2
WATCH_ADDR=
report_leader 10 || true
