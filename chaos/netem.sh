#!/usr/bin/env bash
# Degrades the links between nodes (delay, jitter, loss, bandwidth) through
# each node's fault layer with kvctl chaos netem, holds it for a while,
# then heals. Run with --help for the details.
set -euo pipefail
# shellcheck source=chaos/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG [--addr host:port,...] [--seconds N] [--delay D] [--jitter D]
             [--drop P] [--bandwidth B] [--node ids] [--seed N]

Degrade the links of a Troupe cluster's nodes with 'kvctl chaos netem',
hold it for SECONDS, then heal with 'kvctl chaos heal'. Every message a
degraded node sends (and every message it receives from a node that is not
degraded) is held back DELAY ± JITTER, lost with probability DROP (its
connection then breaks, as on a bad network), and paced to BANDWIDTH bytes
per second. Without DELAY, DROP and BANDWIDTH the script applies what the
chaos runner's netem nemesis does: 50ms ± 50ms and 20% loss on every link.

The faults are made by the nodes' own fault layer (rules installed over
HTTP): they act on node-to-node traffic only, never on clients, and work on
any cluster kvctl reaches. The nodes must run with chaos enabled: kvnode
--chaos, or TROUPE_CHAOS=true in their environment (for a local cluster:
TROUPE_CHAOS=true make run). Installing rules on a node replaces the rules
it had.

Ctrl-C (or SIGTERM) heals before the script exits; so does any failure
after rules were installed.

Settings (environment, or the flags shown):
  ADDR=h:p,h:p   --addr       the cluster's HTTP addresses (default:
                              \$TROUPE_ADDR, else 127.0.0.1:8500.. for NODES
                              nodes from HTTP_BASE: 'make run')
  SECONDS=N      --seconds    how long the links stay degraded (default 10;
                              0: until Ctrl-C)
  DELAY=D        --delay      hold each message back this long (e.g. 100ms;
                              at most 1m)
  JITTER=D       --jitter     vary the delay by up to this much either way
                              (at most DELAY)
  DROP=P         --drop       probability from 0 to 1 that a message is lost
  BANDWIDTH=B    --bandwidth  bytes per second per link (at least 1024)
  NODE=ids       --node       degrade only these nodes (comma-separated ids;
                              default: every member)
  SEED=N         --seed       seed of loss and jitter, to replay a run
  KVCTL=path                  kvctl to use (default bin/kvctl, built if
                              missing or stale)

Examples:
  $PROG                                     # 50ms±50ms, 20% loss, 10s
  DELAY=200ms JITTER=50ms SECONDS=30 $PROG
  $PROG --node n3 --drop 0.3 --seed 7
  BANDWIDTH=65536 NODE=n2 $PROG

Exit status: 0 done; 2 error.
EOF
}

OPT_SECONDS=
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --addr) need_value "$1" "${2-}"; ADDR=$2; shift 2 ;;
    --seconds | -s) need_value "$1" "${2-}"; OPT_SECONDS=$2; shift 2 ;;
    --delay) need_value "$1" "${2-}"; DELAY=$2; shift 2 ;;
    --jitter) need_value "$1" "${2-}"; JITTER=$2; shift 2 ;;
    --drop) need_value "$1" "${2-}"; DROP=$2; shift 2 ;;
    --bandwidth) need_value "$1" "${2-}"; BANDWIDTH=$2; shift 2 ;;
    --node) need_value "$1" "${2-}"; NODE=$2; shift 2 ;;
    --seed) need_value "$1" "${2-}"; SEED=$2; shift 2 ;;
    --addr=* | --seconds=* | --delay=* | --jitter=* | --drop=* | --bandwidth=* | --node=* | --seed=*)
      name=${1%%=*}
      set -- "$name" "${1#*=}" "${@:2}"
      ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done
hold_setting "$OPT_SECONDS" 10
DELAY=${DELAY:-} JITTER=${JITTER:-} DROP=${DROP:-} BANDWIDTH=${BANDWIDTH:-} NODE=${NODE:-} SEED=${SEED:-}
if [ -z "$DELAY" ] && [ -z "$DROP" ] && [ -z "$BANDWIDTH" ]; then
  [ -z "$JITTER" ] || usage_error "JITTER needs a DELAY"
  DELAY=50ms JITTER=50ms DROP=0.2
fi

CMD=(netem)
[ -z "$DELAY" ] || CMD+=(--delay "$DELAY")
[ -z "$JITTER" ] || CMD+=(--jitter "$JITTER")
[ -z "$DROP" ] || CMD+=(--drop "$DROP")
[ -z "$BANDWIDTH" ] || CMD+=(--bandwidth "$BANDWIDTH")
[ -z "$NODE" ] || CMD+=(--node "$NODE")
[ -z "$SEED" ] || CMD+=(--seed "$SEED")

resolve_addr
ensure_kvctl
s=0
find_leader || s=$?
[ "$s" -ne 2 ] || die "the cluster at $ADDR ($ADDR_SOURCE) did not answer: $LEADER_ERR"
[ -z "$LEADER_ID" ] || log "leader is $LEADER_ID"

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

parts=()
[ -z "$DELAY" ] || parts+=("delay $DELAY${JITTER:+±$JITTER}")
[ -z "$DROP" ] || parts+=("loss $DROP")
[ -z "$BANDWIDTH" ] || parts+=("$BANDWIDTH B/s")
[ -z "$SEED" ] || parts+=("seed $SEED")
desc=${parts[0]}
for p in "${parts[@]:1}"; do desc+=", $p"; done
log "netem on ${NODE:-every node}: $desc (kvctl chaos ${CMD[*]})"
MARK_MS=$(now_ms)
chaos_apply "${CMD[@]}"
if [ "$HOLD" -eq 0 ]; then
  log "holding until Ctrl-C"
else
  log "holding for ${HOLD}s"
fi
hold_fault ""
log "links degraded $((($(now_ms) - MARK_MS) / 1000))s; healing"
chaos_heal || exit 2
report_leader 10 || true
