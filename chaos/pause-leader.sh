#!/usr/bin/env bash
# Freezes the current Raft leader with SIGSTOP for a while, then lets it go
# on with SIGCONT: a VM freeze or a long GC pause. Run with --help for the
# details.
set -euo pipefail
# shellcheck source=chaos/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG [--addr host:port,...] [--seconds N]

Find the leader of a Troupe cluster (kvctl leader), stop its kvnode process
with SIGSTOP, report the leader the others elect meanwhile, and after
SECONDS resume it with SIGCONT. The frozen node keeps its sockets open:
to its peers and clients it is silent, not gone. When it wakes up it still
believes it leads until its first contact with the others.

Which process: the leader's HTTP address must be on this machine; the
script stops the kvnode listening there (found with ss, checked by its
--node-id), never a process found by name. For a remote or containerised
node give PAUSE_CMD and RESUME_CMD.

Ctrl-C (or SIGTERM) resumes the node before the script exits. If the
script itself is killed with SIGKILL, resume the node by hand: the script
prints the command when it pauses.

Settings (environment, or the flags shown):
  ADDR=h:p,h:p   --addr      the cluster's HTTP addresses (default:
                             \$TROUPE_ADDR, else 127.0.0.1:8500.. for NODES
                             nodes from HTTP_BASE: 'make run')
  SECONDS=N      --seconds   how long the leader stays frozen (default 10;
                             0: until Ctrl-C)
  PAUSE_CMD='...'            pause with this shell command instead
  RESUME_CMD='...'           and resume with this one (both or neither)
  LEADER_WAIT=S              how long to watch for a new leader (default 15,
                             at most SECONDS)
  KVCTL=path                 kvctl to use (default bin/kvctl, built if
                             missing or stale)
In PAUSE_CMD and RESUME_CMD, {id} is the node id, {host} the host of its
HTTP address, {http} its HTTP host:port, {raft} its Raft host:port.

Examples:
  $PROG
  SECONDS=30 $PROG
  PAUSE_CMD='docker pause troupe-{id}' RESUME_CMD='docker unpause troupe-{id}' $PROG
  ADDR=10.0.0.1:8500 PAUSE_CMD='ssh {host} sudo systemctl kill -s STOP troupe' \\
    RESUME_CMD='ssh {host} sudo systemctl kill -s CONT troupe' $PROG

Exit status: 0 done; 1 no leader known (nothing done); 2 error.
EOF
}

OPT_SECONDS=
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --addr) need_value "$1" "${2-}"; ADDR=$2; shift 2 ;;
    --addr=*) ADDR=${1#*=}; shift ;;
    --seconds | -s) need_value "$1" "${2-}"; OPT_SECONDS=$2; shift 2 ;;
    --seconds=*) OPT_SECONDS=${1#*=}; shift ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done
hold_setting "$OPT_SECONDS" 10
LEADER_WAIT=${LEADER_WAIT:-15}
is_uint "$LEADER_WAIT" || usage_error "LEADER_WAIT must be whole seconds, not '$LEADER_WAIT'"
PAUSE_CMD=${PAUSE_CMD:-}
RESUME_CMD=${RESUME_CMD:-}
if { [ -n "$PAUSE_CMD" ] && [ -z "$RESUME_CMD" ]; } || { [ -z "$PAUSE_CMD" ] && [ -n "$RESUME_CMD" ]; }; then
  usage_error "PAUSE_CMD and RESUME_CMD go together"
fi

resolve_addr
ensure_kvctl
require_leader
ID=$LEADER_ID HTTP=$LEADER_HTTP RAFT=$LEADER_RAFT
log "leader is $ID (http $HTTP, raft $RAFT)"
# While it is frozen, ask the others: kvctl would wait on the frozen node.
WATCH_ADDR=$(addrs_without "$ID")

MODE=local
if [ -n "$PAUSE_CMD" ]; then
  MODE="command"
elif ! is_local_host "$(host_of "$HTTP")"; then
  die "$ID runs on $(host_of "$HTTP"), not on this machine: pausing it needs access to that machine. Give commands, e.g.
  PAUSE_CMD='ssh {host} sudo systemctl kill -s STOP troupe' RESUME_CMD='ssh {host} sudo systemctl kill -s CONT troupe' $PROG
({id}, {host}, {http} and {raft} are filled in: here {id}=$ID, {host}=$(host_of "$HTTP"))"
else
  s=0
  find_node_pid "$ID" "$HTTP" || s=$?
  [ "$s" -eq 0 ] || die "cannot find the kvnode process of $ID here: $NODE_WHY. Give PAUSE_CMD and RESUME_CMD, e.g. PAUSE_CMD='docker pause troupe-{id}' RESUME_CMD='docker unpause troupe-{id}'"
  PID=$NODE_PID
fi

PAUSED=0
resume() {
  [ "$PAUSED" = 1 ] || return 0
  if [ "$MODE" = command ]; then
    run_template "resume $ID" "$(fill_template "$RESUME_CMD" "$ID" "$HTTP" "$RAFT")"
  else
    kill -CONT "$PID" || die "kill -CONT $PID ($ID) failed: resume it by hand"
    log "sent SIGCONT to $ID (PID $PID) after $((($(now_ms) - MARK_MS) / 1000))s frozen"
  fi
  PAUSED=0
}
on_exit() {
  local status=$?
  set +e
  # A second Ctrl-C must not cut the cleanup short (nor kill the commands
  # it runs, which inherit the ignored signals), nor a closed output.
  trap '' INT TERM PIPE
  stop_hold
  if [ "$PAUSED" = 1 ]; then
    log "interrupted: resuming $ID"
    resume
  fi
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE # output cut off (| head): still clean up

MARK_MS=$(now_ms)
PAUSED=1
if [ "$MODE" = command ]; then
  run_template "pause $ID" "$(fill_template "$PAUSE_CMD" "$ID" "$HTTP" "$RAFT")"
else
  kill -STOP "$PID" || die "kill -STOP $PID ($ID) failed"
  log "sent SIGSTOP to $ID (PID $PID); should this script die, resume it with: kill -CONT $PID"
fi
if [ "$HOLD" -eq 0 ]; then
  log "$ID stays frozen until Ctrl-C"
else
  log "$ID stays frozen for ${HOLD}s"
fi
hold_fault "$ID"
resume
WATCH_ADDR=
report_leader 10 || true
