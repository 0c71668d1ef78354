# Shared helpers of the chaos scripts (run.sh, kill-leader.sh,
# pause-leader.sh, partition.sh, netem.sh). Sourced, never run: it defines
# functions and variables, and acts on nothing by itself. Processes are
# found and signalled by troupe-chaos (localcluster), not here.
#
# Variables the scripts share:
#   ADDR        node HTTP addresses, host:port,host:port (or --addr); else
#               $TROUPE_ADDR; else 127.0.0.1:$HTTP_BASE.. for $NODES nodes,
#               which is what 'make run' starts (8500, 8501, 8502)
#   GO          the go command used to (re)build bin/* (default go)
#   KVCTL       a kvctl binary to use instead of building bin/kvctl
# shellcheck shell=bash
# The variables set here are for the scripts that source this file.
# shellcheck disable=SC2034

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROG=$(basename "$0")
GO=${GO:-go}

# ---- output ----------------------------------------------------------------

# ts prints a wall-clock timestamp with milliseconds when date can.
if [[ $(date +%3N 2>/dev/null) =~ ^[0-9]{3}$ ]]; then
  ts() { date '+%Y-%m-%d %H:%M:%S.%3N'; }
else
  ts() { date '+%Y-%m-%d %H:%M:%S'; }
fi

# log prints one timestamped line of what the script does.
log() { printf '%s  %s\n' "$(ts)" "$*"; }

# warn and die go to stderr; die exits with status 2 (an error), or with
# the status given as DIE_STATUS.
warn() { printf '%s  %s: %s\n' "$(ts)" "$PROG" "$*" >&2; }
die() {
  warn "$*"
  exit "${DIE_STATUS:-2}"
}

# usage_error points at --help and exits 2.
usage_error() {
  printf '%s: %s (see %s --help)\n' "$PROG" "$*" "$PROG" >&2
  exit 2
}

# now_ms is milliseconds since the epoch (seconds * 1000 without GNU date).
now_ms() {
  local n
  n=$(date +%s%N 2>/dev/null)
  case $n in
    *N | '') echo $(($(date +%s) * 1000)) ;;
    *) echo $((n / 1000000)) ;;
  esac
}

# shell_words ARG...: the arguments as shell words, quoted only where
# needed, for commands printed for a person to paste.
shell_words() {
  local a out=()
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
      out+=("$a")
    else
      out+=("'${a//\'/\'\\\'\'}'")
    fi
  done
  printf '%s' "${out[*]}"
}

# ---- arguments ---------------------------------------------------------------

# need_value FLAG VALUE: a flag given without its value is a usage error.
need_value() {
  [ -n "${2-}" ] || usage_error "$1 needs a value"
}

# is_uint VALUE: a non-negative whole number.
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# SECONDS (how long a fault is held) needs care: bash turns an inherited
# SECONDS into a counter that keeps ticking from that value, and without
# one SECONDS still reads as the seconds since the shell started. So the
# value is taken once, as the script starts, and only if it came from the
# environment. ENV_SECONDS holds it ('' when not given).
ENV_SECONDS=
if printenv SECONDS >/dev/null 2>&1; then
  ENV_SECONDS=$(printenv SECONDS)
fi

# hold_setting FLAG_VALUE DEFAULT: sets HOLD from --seconds, else SECONDS,
# else DEFAULT, and checks it.
hold_setting() {
  HOLD=${1:-${ENV_SECONDS:-$2}}
  is_uint "$HOLD" || usage_error "SECONDS/--seconds must be whole seconds, not '$HOLD'"
}

# ---- endpoints -----------------------------------------------------------------

# default_addr is the HTTP addresses of a cluster started by 'make run'.
default_addr() {
  local base=${HTTP_BASE:-8500} n=${NODES:-3} i out=()
  is_uint "$base" || die "HTTP_BASE=$base is not a port number"
  if ! is_uint "$n" || [ "$n" -lt 1 ]; then die "NODES=$n is not a node count"; fi
  for ((i = 0; i < n; i++)); do out+=("127.0.0.1:$((base + i))"); done
  local IFS=,
  echo "${out[*]}"
}

# resolve_addr sets ADDR from --addr, $ADDR, $TROUPE_ADDR or the default.
resolve_addr() {
  ADDR=${ADDR:-${TROUPE_ADDR:-}}
  if [ -z "$ADDR" ]; then
    ADDR=$(default_addr)
    ADDR_SOURCE="default: a local 'make run' cluster"
  else
    ADDR_SOURCE=given
  fi
  ADDR=${ADDR// /}
}

# ---- binaries --------------------------------------------------------------------

# stale BIN: BIN is missing, or a Go source, go.mod or go.sum of the module
# is newer than it.
stale() {
  [ -x "$1" ] || return 0
  [ -n "$(find "$ROOT" \( -path "$ROOT/.git" -o -path "$ROOT/data" -o -path "$ROOT/bin" -o -path "$ROOT/chaos-results" \) -prune -o \
    \( \( -name '*.go' ! -name '*_test.go' \) -o -name go.mod -o -name go.sum \) -newer "$1" -print 2>/dev/null | head -n 1)" ]
}

# ensure_built NAME: builds bin/NAME from ./cmd/NAME when missing or stale.
# It builds next to the target and renames, so a running binary is
# replaced safely.
ensure_built() {
  local name=$1 bin="$ROOT/bin/$1" tmp
  stale "$bin" || return 0
  if ! command -v "$GO" >/dev/null 2>&1; then
    [ -x "$bin" ] && { warn "bin/$name may be out of date and '$GO' is not installed; using it as is"; return 0; }
    die "bin/$name is missing and '$GO' is not installed to build it (make build)"
  fi
  mkdir -p "$ROOT/bin"
  tmp="$ROOT/bin/.$name.tmp.$$"
  log "building bin/$name ($GO build ./cmd/$name)"
  if ! (cd "$ROOT" && "$GO" build -o "$tmp" "./cmd/$name"); then
    rm -f "$tmp"
    die "building bin/$name failed (see the compiler's messages above)"
  fi
  mv -f "$tmp" "$bin"
}

# ensure_kvctl sets KVCTL to a kvctl that knows 'chaos': $KVCTL, else
# bin/kvctl (built or rebuilt when stale).
ensure_kvctl() {
  if [ -n "${KVCTL:-}" ]; then
    command -v "$KVCTL" >/dev/null 2>&1 || die "KVCTL=$KVCTL is not an executable"
  else
    ensure_built kvctl
    KVCTL="$ROOT/bin/kvctl"
  fi
  "$KVCTL" help chaos >/dev/null 2>&1 ||
    die "$KVCTL has no 'chaos' command: it is older than the chaos commands; rebuild it (make build)"
}

# kv runs kvctl against the cluster.
kv() { "$KVCTL" --addr "$ADDR" "$@"; }

# json_str FIELD: the string value of FIELD in the JSON on stdin (top
# level, or the first occurrence).
json_str() {
  if command -v jq >/dev/null 2>&1; then
    jq -r --arg f "$1" '.[$f] // empty'
  else
    tr -d '\n' | sed -n "s/.*\"$1\": *\"\\([^\"]*\\)\".*/\\1/p"
  fi
}

# json_list FIELD: every string value of FIELD in the JSON on stdin, one
# a line (for lists of objects).
json_list() {
  if command -v jq >/dev/null 2>&1; then
    jq -r --arg f "$1" '.[] | .[$f] // empty'
  else
    grep -o "\"$1\": *\"[^\"]*\"" | sed 's/.*: *"\(.*\)"/\1/'
  fi
}

# load_members fills M_IDS and M_HTTP with the members and their HTTP
# addresses (kvctl members); they stay empty if the list cannot be read.
M_IDS=() M_HTTP=()
load_members() {
  local out
  M_IDS=() M_HTTP=()
  out=$(kv --timeout 5s -o json members 2>/dev/null) || return 0
  mapfile -t M_IDS < <(json_list id <<<"$out")
  mapfile -t M_HTTP < <(json_list http_addr <<<"$out")
  [ "${#M_IDS[@]}" -eq "${#M_HTTP[@]}" ] || M_IDS=() M_HTTP=()
}

# addrs_without ID...: the HTTP addresses of the members not named, comma
# separated; ADDR if there are none or the member list cannot be read.
# Used to ask the other nodes while some are cut off, frozen or dead: a
# cut-off node knows no leader, and kvctl waits out its whole --timeout
# on a frozen one instead of failing over.
addrs_without() {
  local i id skip list=()
  [ "${#M_IDS[@]}" -gt 0 ] || load_members
  for i in "${!M_IDS[@]}"; do
    skip=0
    for id in "$@"; do
      if [ "${M_IDS[$i]}" = "$id" ]; then skip=1; fi
    done
    if [ "$skip" = 0 ] && [ -n "${M_HTTP[$i]}" ]; then list+=("${M_HTTP[$i]}"); fi
  done
  if [ "${#list[@]}" -eq 0 ]; then
    echo "$ADDR"
    return
  fi
  local IFS=,
  echo "${list[*]}"
}

# ---- the leader ------------------------------------------------------------------

# find_leader sets LEADER_ID, LEADER_HTTP and LEADER_RAFT from the cluster
# (asked through WATCH_ADDR if set, else ADDR).
# Status: 0 found, 1 no leader known (an election, no quorum), 2 the
# cluster did not answer.
find_leader() {
  local out status=0
  LEADER_ID='' LEADER_HTTP='' LEADER_RAFT=''
  out=$("$KVCTL" --addr "${WATCH_ADDR:-$ADDR}" --timeout "${KV_TIMEOUT:-5s}" -o json leader 2>&1) || status=$?
  case $status in
    0) ;;
    1) LEADER_ERR=$(printf '%s' "$out" | grep -v '^[{}]' | grep -v '^ *"' | tr '\n' ' '); return 1 ;;
    *) LEADER_ERR=$out; return 2 ;;
  esac
  LEADER_ID=$(json_str id <<<"$out")
  LEADER_HTTP=$(json_str http_addr <<<"$out")
  LEADER_RAFT=$(json_str raft_addr <<<"$out")
  [ -n "$LEADER_ID" ] || { LEADER_ERR="no leader in kvctl's answer: $out"; return 1; }
  if [ -z "$LEADER_HTTP" ]; then
    LEADER_ERR="the leader $LEADER_ID has no HTTP address registered yet"
    return 1
  fi
  return 0
}

# require_leader: find_leader or exit (1: no leader, 2: no answer).
require_leader() {
  local s=0
  find_leader || s=$?
  case $s in
    0) ;;
    1) DIE_STATUS=1 die "no leader to act on: ${LEADER_ERR:-none known}" ;;
    *) die "the cluster at $ADDR ($ADDR_SOURCE) did not answer: $LEADER_ERR" ;;
  esac
}

# wait_new_leader OLD SECONDS: waits until the cluster names a leader other
# than OLD and logs it with the time since MARK_MS.
wait_new_leader() {
  local old=$1 limit=$2 deadline
  deadline=$(($(now_ms) + limit * 1000))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    if KV_TIMEOUT=1s find_leader && [ "$LEADER_ID" != "$old" ]; then
      log "new leader: $LEADER_ID ($LEADER_HTTP), $(($(now_ms) - MARK_MS)) ms after the fault"
      return 0
    fi
    sleep 0.2
  done
  if [ -n "$LEADER_ID" ]; then
    log "no new leader within ${limit}s (the others still follow $LEADER_ID)"
  else
    log "no new leader within ${limit}s (no leader known)"
  fi
  return 1
}

# report_leader logs who leads now, waiting up to SECONDS for one.
report_leader() {
  local limit=$1 deadline
  deadline=$(($(now_ms) + limit * 1000))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    if KV_TIMEOUT=1s find_leader; then
      log "leader now: $LEADER_ID ($LEADER_HTTP)"
      return 0
    fi
    sleep 0.2
  done
  log "no leader known ${limit}s later: ${LEADER_ERR:-}"
  return 1
}

# ---- network faults (kvctl chaos) -------------------------------------------

# FAULT is 1 while rules may be installed, so the exit trap heals them.
FAULT=0

# chaos_apply ARGS...: runs 'kvctl chaos ARGS', printing what each node
# got. A node without chaos enabled gets an explanation of how to enable
# it; any failure exits (after the trap heals what was installed).
chaos_apply() {
  local out status=0
  FAULT=1
  out=$(kv chaos "$@" 2>&1) || status=$?
  [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/    /'
  [ "$status" -eq 0 ] && return 0
  case $out in
    *"chaos is not enabled"*)
      FAULT=0
      die "the nodes must run with chaos enabled: start kvnode with --chaos, or with TROUPE_CHAOS=true in its environment (for a local cluster: TROUPE_CHAOS=true make run)"
      ;;
    *"nothing changed"* | *"no member with id"* | *"see 'kvctl help"*)
      FAULT=0
      die "kvctl chaos $* failed; nothing was changed"
      ;;
  esac
  die "kvctl chaos $* failed (status $status); healing what was installed"
}

# chaos_heal removes every node's rules (kvctl chaos heal), trying a few
# times: a node may be busy electing.
chaos_heal() {
  local out i
  for i in 1 2 3; do
    if out=$(kv --timeout 5s chaos heal 2>&1); then
      FAULT=0
      log "healed: kvctl chaos heal"
      printf '%s\n' "$out" | sed 's/^/    /'
      return 0
    fi
    [ "$i" -lt 3 ] && sleep 1
  done
  printf '%s\n' "$out" | sed 's/^/    /' >&2
  warn "could not heal every node; retry by hand: $(shell_words "$KVCTL" --addr "$ADDR" chaos heal)"
  return 1
}

# ---- waiting ---------------------------------------------------------------------

# hold SECONDS: sleeps, interruptibly (a trap runs at once on a signal);
# SECONDS may have decimals; 0 waits until interrupted.
SLEEP_PID=
hold() {
  if [ "$1" = 0 ]; then
    sleep 2147483647 &
  else
    sleep "$1" &
  fi
  SLEEP_PID=$!
  wait "$SLEEP_PID" || true
  SLEEP_PID=
}

# stop_hold ends a pending hold (for traps).
stop_hold() {
  if [ -n "${SLEEP_PID:-}" ]; then
    kill "$SLEEP_PID" 2>/dev/null || true
    SLEEP_PID=
  fi
}

# hold_fault OLD_LEADER: keeps the fault for HOLD seconds from MARK_MS (0:
# until Ctrl-C). When OLD_LEADER is given, it first watches for the
# cluster to replace it (at most LEADER_WAIT seconds, and no longer than
# the fault) and logs the new leader.
hold_fault() {
  local old=$1 watch left
  if [ -n "$old" ]; then
    watch=${LEADER_WAIT:-15}
    if [ "$HOLD" -ne 0 ] && [ "$HOLD" -lt "$watch" ]; then watch=$HOLD; fi
    wait_new_leader "$old" "$watch" || true
  fi
  if [ "$HOLD" -eq 0 ]; then
    hold 0
    return
  fi
  left=$((HOLD * 1000 - ($(now_ms) - MARK_MS)))
  if [ "$left" -gt 0 ]; then
    hold "$((left / 1000)).$(printf '%03d' $((left % 1000)))"
  fi
}
