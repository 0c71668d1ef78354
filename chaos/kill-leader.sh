#!/usr/bin/env bash
# Kills the current Raft leader with SIGKILL (a crash: no shutdown, no
# flush), reports the new leader, and optionally restarts the killed node.
# Run with --help for the details.
set -euo pipefail
# shellcheck source=chaos/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG [--addr host:port,...] [--restart-after SECONDS]

Find the leader of a Troupe cluster (kvctl leader), kill its kvnode process
with SIGKILL, wait for the survivors to elect a new leader and say how long
it took. With RESTART_AFTER, start the killed node again that many seconds
later.

Which process: the leader's HTTP address must be on this machine. The script
kills the kvnode that listens on that address (found with ss, checked by its
--node-id); it never kills by name, so other clusters on this machine are
safe. On a remote cluster (or in containers) give KILL_CMD instead.

Restarting a local node: before the kill the script saves the process's
command line, working directory, environment and where its output went
(/proc/<pid>/{cmdline,cwd,environ,fd/1,fd/2}), and relaunches it from
those with setsid, appending to the same log file. Output that went to a
pipe (a supervisor, systemd) cannot be reattached: it goes to
\${TMPDIR:-/tmp}/troupe-<id>-restart.log instead. The relaunched node is not
a child of 'make run' any more: Ctrl-C there does not stop it; the script
prints its PID to kill. Ctrl-C while waiting to restart restarts at once.

Settings (environment, or the flags shown):
  ADDR=h:p,h:p     --addr     the cluster's HTTP addresses (default:
                              \$TROUPE_ADDR, else 127.0.0.1:8500.. for
                              NODES nodes from HTTP_BASE: 'make run')
  RESTART_AFTER=S  --restart-after
                              restart the node S seconds after the kill
                              (default: leave it dead)
  KILL_CMD='...'              kill with this shell command instead, for
                              remote or containerised nodes
  START_CMD='...'             with KILL_CMD and RESTART_AFTER: how to start
                              the node again
  LEADER_WAIT=S               how long to wait for a new leader (default 15)
  KVCTL=path                  kvctl to use (default bin/kvctl, built if
                              missing or stale)
In KILL_CMD and START_CMD, {id} is the node id, {host} the host of its HTTP
address, {http} its HTTP host:port, {raft} its Raft host:port.

Examples:
  $PROG
  RESTART_AFTER=10 $PROG
  ADDR=10.0.0.1:8500,10.0.0.2:8500 KILL_CMD='ssh {host} sudo systemctl kill -s KILL troupe' \\
    START_CMD='ssh {host} sudo systemctl start troupe' RESTART_AFTER=20 $PROG
  KILL_CMD='docker kill troupe-{id}' START_CMD='docker start troupe-{id}' RESTART_AFTER=10 $PROG

Exit status: 0 done; 1 no leader known (nothing done); 2 error.
EOF
}

while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --addr) need_value "$1" "${2-}"; ADDR=$2; shift 2 ;;
    --addr=*) ADDR=${1#*=}; shift ;;
    --restart-after) need_value "$1" "${2-}"; RESTART_AFTER=$2; shift 2 ;;
    --restart-after=*) RESTART_AFTER=${1#*=}; shift ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done
RESTART_AFTER=${RESTART_AFTER:-}
LEADER_WAIT=${LEADER_WAIT:-15}
KILL_CMD=${KILL_CMD:-}
START_CMD=${START_CMD:-}
[ -z "$RESTART_AFTER" ] || is_uint "$RESTART_AFTER" || usage_error "RESTART_AFTER must be whole seconds, not '$RESTART_AFTER'"
is_uint "$LEADER_WAIT" || usage_error "LEADER_WAIT must be whole seconds, not '$LEADER_WAIT'"
if [ -n "$KILL_CMD" ] && [ -n "$RESTART_AFTER" ] && [ -z "$START_CMD" ]; then
  usage_error "RESTART_AFTER with KILL_CMD needs START_CMD: how to start the node again"
fi

resolve_addr
ensure_kvctl
require_leader
ID=$LEADER_ID HTTP=$LEADER_HTTP RAFT=$LEADER_RAFT
log "leader is $ID (http $HTTP, raft $RAFT)"
# Ask the others about the new leader.
WATCH_ADDR=$(addrs_without "$ID")

# ---- how to kill it ----------------------------------------------------------

MODE=local
if [ -n "$KILL_CMD" ]; then
  MODE="command"
elif ! is_local_host "$(host_of "$HTTP")"; then
  die "$ID runs on $(host_of "$HTTP"), not on this machine: killing it needs access to that machine. Give a command, e.g.
  KILL_CMD='ssh {host} sudo systemctl kill -s KILL troupe' START_CMD='ssh {host} sudo systemctl start troupe' RESTART_AFTER=10 $PROG
({id}, {host}, {http} and {raft} are filled in: here {id}=$ID, {host}=$(host_of "$HTTP"))"
else
  s=0
  find_node_pid "$ID" "$HTTP" || s=$?
  if [ "$s" -ne 0 ]; then
    die "cannot find the kvnode process of $ID here: $NODE_WHY. Give KILL_CMD (and START_CMD to restart), e.g. KILL_CMD='docker kill troupe-{id}'"
  fi
fi

# ---- what a restart needs, read before the kill ------------------------------

R_ARGV=() R_ENV=() R_CWD='' R_OUT='' R_ERR='' R_NOTE=''
save_for_restart() {
  local pid=$1
  mapfile -d '' -t R_ARGV <"/proc/$pid/cmdline"
  [ "${#R_ARGV[@]}" -gt 0 ] || die "cannot read /proc/$pid/cmdline to restart $ID later"
  R_CWD=$(readlink "/proc/$pid/cwd") || die "cannot read /proc/$pid/cwd to restart $ID later"
  if [ -r "/proc/$pid/environ" ]; then
    mapfile -d '' -t R_ENV <"/proc/$pid/environ"
  fi
  R_OUT=$(readlink "/proc/$pid/fd/1" 2>/dev/null || true)
  R_ERR=$(readlink "/proc/$pid/fd/2" 2>/dev/null || true)
  local fallback="${TMPDIR:-/tmp}/troupe-$ID-restart.log"
  reopenable() { [[ $1 == /* && $1 != *" (deleted)" ]] && { [ -f "$1" ] || [ -c "$1" ]; }; }
  if ! reopenable "$R_OUT"; then
    R_NOTE="its output went to ${R_OUT:-nowhere known}, which cannot be reopened; the restarted node logs to $fallback"
    R_OUT=$fallback
  fi
  if ! reopenable "$R_ERR"; then
    R_ERR=$R_OUT
  fi
}

RESTART_PENDING=0
NEW_PID=''
restart_node() {
  RESTART_PENDING=0
  if [ "$MODE" = command ]; then
    run_template "start $ID" "$(fill_template "$START_CMD" "$ID" "$HTTP" "$RAFT")"
  else
    local launcher=()
    command -v setsid >/dev/null 2>&1 && launcher=(setsid)
    [ "${#R_ENV[@]}" -gt 0 ] && launcher+=(env -i "${R_ENV[@]}")
    [ -z "$R_NOTE" ] || log "note: $R_NOTE"
    log "restarting $ID in $R_CWD: ${R_ARGV[*]} >>$R_OUT"
    # The exit trap ignores INT, TERM and PIPE; the node must not inherit
    # that.
    if [ "$R_OUT" = "$R_ERR" ]; then
      (trap - INT TERM PIPE && cd "$R_CWD" && exec "${launcher[@]}" "${R_ARGV[@]}" </dev/null >>"$R_OUT" 2>&1) &
    else
      (trap - INT TERM PIPE && cd "$R_CWD" && exec "${launcher[@]}" "${R_ARGV[@]}" </dev/null >>"$R_OUT" 2>>"$R_ERR") &
    fi
    NEW_PID=$!
  fi
  # Wait for its HTTP API.
  local deadline
  deadline=$(($(now_ms) + 30000))
  until "$KVCTL" --addr "$HTTP" --timeout 1s status >/dev/null 2>&1; do
    if [ "$(now_ms)" -ge "$deadline" ]; then
      warn "$ID does not answer on $HTTP 30s after the restart; see its log"
      return 1
    fi
    if [ -n "$NEW_PID" ] && ! alive "$NEW_PID"; then
      die "the restarted $ID (PID $NEW_PID) exited at once; see $R_OUT"
    fi
    sleep 0.2
  done
  if [ "$MODE" = local ]; then
    # setsid may have forked: name the process that really serves.
    find_node_pid "$ID" "$HTTP" && NEW_PID=$NODE_PID
    log "$ID is back (PID $NEW_PID, answering on $HTTP); it no longer belongs to the script or 'make run' that started it: stop it with: kill $NEW_PID"
  else
    log "$ID is back (answering on $HTTP)"
  fi
}

on_exit() {
  local status=$?
  set +e
  # A second Ctrl-C must not cut the cleanup short (nor kill the commands
  # it runs, which inherit the ignored signals), nor a closed output.
  trap '' INT TERM PIPE
  stop_hold
  if [ "$RESTART_PENDING" = 1 ]; then
    log "interrupted: restarting $ID now"
    restart_node
  fi
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE # output cut off (| head): still clean up

# ---- the kill ------------------------------------------------------------------

if [ "$MODE" = command ]; then
  MARK_MS=$(now_ms)
  run_template "kill $ID" "$(fill_template "$KILL_CMD" "$ID" "$HTTP" "$RAFT")"
  [ -z "$RESTART_AFTER" ] || RESTART_PENDING=1
else
  PID=$NODE_PID
  save_for_restart "$PID"
  what="PID $PID: $(printf '%s ' "${R_ARGV[@]}" | cut -c1-100)"
  MARK_MS=$(now_ms)
  kill -KILL "$PID" || die "kill -KILL $PID ($ID) failed"
  [ -z "$RESTART_AFTER" ] || RESTART_PENDING=1
  log "sent SIGKILL to $ID ($what)"
  for _ in $(seq 1 50); do alive "$PID" || break; sleep 0.1; done
  alive "$PID" && die "PID $PID is still alive 5s after SIGKILL"
  log "$ID (PID $PID) is gone"
fi

wait_new_leader "$ID" "$LEADER_WAIT" || true

if [ -n "$RESTART_AFTER" ]; then
  log "restarting $ID in ${RESTART_AFTER}s (Ctrl-C restarts it at once)"
  hold "$RESTART_AFTER"
  restart_node
  WATCH_ADDR=
  report_leader 10 || true
elif [ "$MODE" = local ]; then
  envs=()
  for e in "${R_ENV[@]}"; do
    case $e in TROUPE_*) envs+=("$e") ;; esac
  done
  log "$ID stays down. To start it again by hand:"
  printf '  (cd %s && %s </dev/null >>%s 2>&1 &)\n' "$(shell_words "$R_CWD")" \
    "$(shell_words "${envs[@]}" setsid "${R_ARGV[@]}")" "$(shell_words "$R_OUT")"
fi
