#!/usr/bin/env bash
# Kills the current Raft leader with SIGKILL, reports the new leader, and
# optionally restarts the killed node: 'troupe-chaos inject kill-leader'
# with settings from the environment. Run with --help for the details.
set -euo pipefail
# shellcheck source=chaos/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG [--addr host:port,...] [--restart-after SECONDS] [troupe-chaos inject flags...]

Kill the leader of a Troupe cluster with SIGKILL (a crash: no shutdown, no
flush), report the new leader and how long the election took, and with
RESTART_AFTER start the killed node again that many seconds after the kill
(0: on Ctrl-C). Without it the node stays down and the command to start it
by hand is printed. This is bin/troupe-chaos inject kill-leader (built when
missing or stale); its --help tells how a local node is found and
restarted, and other flags are passed on to it.

Settings (environment, or the flags shown):
  ADDR=h:p,h:p     --addr      the cluster's HTTP addresses (default:
                               \$TROUPE_ADDR, else 127.0.0.1:8500.. for
                               NODES nodes from HTTP_BASE: 'make run')
  RESTART_AFTER=S  --restart-after
                               restart the node S seconds after the kill
  KILL_CMD='...'               kill with this shell command instead of a
                               signal, for remote or containerised nodes
  START_CMD='...'              and start it again with this one
  LEADER_WAIT=S                how long to wait for a new leader (default 15)
In KILL_CMD and START_CMD, {id} is the node id, {host} the host of its HTTP
address, {http} its HTTP host:port, {raft} its Raft host:port.

Examples:
  $PROG
  RESTART_AFTER=10 $PROG
  KILL_CMD='docker kill troupe-{id}' START_CMD='docker start troupe-{id}' RESTART_AFTER=10 $PROG

Exit status: 0 done; 1 no leader known (nothing done); 2 error.
EOF
}

pass=()
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --addr) need_value "$1" "${2-}"; ADDR=$2; shift 2 ;;
    --addr=*) ADDR=${1#*=}; shift ;;
    --restart-after) need_value "$1" "${2-}"; RESTART_AFTER=$2; shift 2 ;;
    --restart-after=*) RESTART_AFTER=${1#*=}; shift ;;
    *) pass+=("$1"); shift ;;
  esac
done
RESTART_AFTER=${RESTART_AFTER:-}
[ -z "$RESTART_AFTER" ] || is_uint "$RESTART_AFTER" || usage_error "RESTART_AFTER must be whole seconds, not '$RESTART_AFTER'"
resolve_addr

args=(inject kill-leader --endpoints "$ADDR" --leader-wait "${LEADER_WAIT:-15}s")
if [ -n "$RESTART_AFTER" ]; then args+=(--hold "${RESTART_AFTER}s"); else args+=(--keep); fi
[ -z "${KILL_CMD:-}" ] || args+=(--kill-cmd "$KILL_CMD")
[ -z "${START_CMD:-}" ] || args+=(--start-cmd "$START_CMD")
ensure_built troupe-chaos
exec "$ROOT/bin/troupe-chaos" "${args[@]}" "${pass[@]}"
