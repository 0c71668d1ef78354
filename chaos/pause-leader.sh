#!/usr/bin/env bash
# Freezes the current Raft leader with SIGSTOP for a while, then lets it go
# on with SIGCONT (a VM freeze or a long GC pause): 'troupe-chaos inject
# pause-leader' with settings from the environment. Run with --help for the
# details.
set -euo pipefail
# shellcheck source=chaos/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG [--addr host:port,...] [--seconds N] [troupe-chaos inject flags...]

Stop the leader of a Troupe cluster with SIGSTOP, report the leader the
others elect meanwhile, and after SECONDS resume it with SIGCONT. The frozen
node keeps its sockets open: to its peers and clients it is silent, not
gone. When it wakes up it still believes it leads until its first contact
with the others. Ctrl-C resumes it at once. This is bin/troupe-chaos inject
pause-leader (built when missing or stale); its --help tells how a local
node is found, and other flags are passed on to it.

Settings (environment, or the flags shown):
  ADDR=h:p,h:p   --addr      the cluster's HTTP addresses (default:
                             \$TROUPE_ADDR, else 127.0.0.1:8500.. for NODES
                             nodes from HTTP_BASE: 'make run')
  SECONDS=N      --seconds   how long the leader stays frozen (default 10;
                             0: until Ctrl-C)
  PAUSE_CMD='...'            pause with this shell command instead of a
                             signal, for remote or containerised nodes
  RESUME_CMD='...'           and resume with this one (both or neither)
  LEADER_WAIT=S              how long to watch for a new leader (default 15,
                             at most SECONDS)
In PAUSE_CMD and RESUME_CMD, {id} is the node id, {host} the host of its
HTTP address, {http} its HTTP host:port, {raft} its Raft host:port.

Examples:
  $PROG
  SECONDS=30 $PROG
  PAUSE_CMD='docker pause troupe-{id}' RESUME_CMD='docker unpause troupe-{id}' $PROG

Exit status: 0 done; 1 no leader known (nothing done); 2 error.
EOF
}

OPT_SECONDS= pass=()
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --addr) need_value "$1" "${2-}"; ADDR=$2; shift 2 ;;
    --addr=*) ADDR=${1#*=}; shift ;;
    --seconds | -s) need_value "$1" "${2-}"; OPT_SECONDS=$2; shift 2 ;;
    --seconds=*) OPT_SECONDS=${1#*=}; shift ;;
    *) pass+=("$1"); shift ;;
  esac
done
hold_setting "$OPT_SECONDS" 10
resolve_addr

args=(inject pause-leader --endpoints "$ADDR" --hold "${HOLD}s" --leader-wait "${LEADER_WAIT:-15}s")
[ -z "${PAUSE_CMD:-}" ] || args+=(--pause-cmd "$PAUSE_CMD")
[ -z "${RESUME_CMD:-}" ] || args+=(--resume-cmd "$RESUME_CMD")
ensure_built troupe-chaos
exec "$ROOT/bin/troupe-chaos" "${args[@]}" "${pass[@]}"
