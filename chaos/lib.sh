# Shared helpers of the chaos scripts (run.sh, kill-leader.sh,
# pause-leader.sh, partition.sh, netem.sh). Sourced, never run: it defines
# functions and variables, and acts on nothing by itself.
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

# hostport_of strips a scheme and path: http://h:1/x -> h:1
hostport_of() {
  local a=${1#*://}
  echo "${a%%/*}"
}

# host_of / port_of split host:port (and [v6]:port).
host_of() {
  local hp
  hp=$(hostport_of "$1")
  case $hp in
    \[*\]:*) hp=${hp%:*}; hp=${hp#[}; echo "${hp%]}" ;;
    *:*) echo "${hp%:*}" ;;
    *) echo "$hp" ;;
  esac
}
port_of() {
  local hp
  hp=$(hostport_of "$1")
  case $hp in
    *:*) echo "${hp##*:}" ;;
    *) echo 80 ;;
  esac
}

# local_ips lists the addresses of this machine's interfaces (in this
# network namespace).
local_ips() {
  if command -v ip >/dev/null 2>&1; then
    ip -o addr show 2>/dev/null | awk '{print $4}' | cut -d/ -f1
  elif command -v hostname >/dev/null 2>&1; then
    hostname -I 2>/dev/null | tr ' ' '\n'
  fi
}

# is_local_host HOST: HOST is this machine (loopback, a wildcard, or an
# address of one of its interfaces, directly or through name resolution).
is_local_host() {
  local h=$1 ips mine ip
  case $h in
    localhost | 127.* | ::1 | 0.0.0.0 | :: | '') return 0 ;;
  esac
  mine=$(local_ips)
  if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then
    ips=$h
  else
    ips=$(getent ahosts "$h" 2>/dev/null | awk '{print $1}' | sort -u)
  fi
  [ -n "$ips" ] || return 1
  for ip in $ips; do
    case $ip in 127.* | ::1) return 0 ;; esac
    grep -qxF "$ip" <<<"$mine" || return 1
  done
  return 0
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

# ---- local processes -------------------------------------------------------------

# proc_args PID: the process's arguments, one per line.
proc_args() { tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null; }

# arg_value PID FLAG: the value of --flag VALUE or --flag=VALUE on PID's
# command line.
arg_value() {
  proc_args "$1" | awk -v f="$2" '
    take { print; exit }
    $0 == f { take = 1; next }
    index($0, f "=") == 1 { print substr($0, length(f) + 2); exit }'
}

# is_kvnode PID: the process runs a kvnode binary.
is_kvnode() {
  local exe
  exe=$(readlink "/proc/$1/exe" 2>/dev/null || true)
  case ${exe##*/} in kvnode*) return 0 ;; esac
  proc_args "$1" | head -n 1 | grep -q 'kvnode[^/]*$'
}

# alive PID: the process exists and is not a zombie.
alive() {
  [ -r "/proc/$1/stat" ] || return 1
  local state
  state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# listener_pids HOST PORT: PIDs of the processes listening on PORT at HOST
# (its name or any address it resolves to), or on a wildcard address, in
# this network namespace.
listener_pids() {
  local host=$1 port=$2 names
  command -v ss >/dev/null 2>&1 || return 0
  names=" $host $(getent ahosts "$host" 2>/dev/null | awk '{print $1}' | sort -u | tr '\n' ' ')"
  ss -Hltnp "sport = :$port" 2>/dev/null | awk -v names="$names" '
    {
      a = $4; sub(/:[0-9]+$/, "", a); gsub(/[][]/, "", a); sub(/%.*/, "", a)
      if (index(names, " " a " ") || a == "0.0.0.0" || a == "*" || a == "::") print
    }' | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
}

# find_node_pid ID HTTP: sets NODE_PID to the local kvnode that serves HTTP
# (host:port) as node ID. Status 0 found, 1 not a local kvnode (NODE_WHY
# says why), 2 ambiguous.
find_node_pid() {
  local id=$1 http=$2 host port pids p nid candidates=()
  host=$(host_of "$http")
  port=$(port_of "$http")
  NODE_PID='' NODE_WHY=''
  pids=$(listener_pids "$host" "$port")
  if [ -z "$pids" ]; then
    # No ss, or ss may not name another user's processes: look for a
    # kvnode whose command line names this node and this port.
    for p in /proc/[0-9]*; do
      p=${p#/proc/}
      is_kvnode "$p" 2>/dev/null || continue
      [ "$(arg_value "$p" --node-id)" = "$id" ] || continue
      case $(arg_value "$p" --http-addr) in *":$port") pids+=" $p" ;; esac
    done
  fi
  for p in $pids; do
    if ! is_kvnode "$p"; then
      NODE_WHY="port $port here belongs to PID $p ($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-80)), not to a kvnode: the node probably runs in a container or a VM behind a forwarded port"
      continue
    fi
    nid=$(arg_value "$p" --node-id)
    if [ -n "$nid" ] && [ "$nid" != "$id" ]; then
      NODE_WHY="the kvnode listening on $http (PID $p) says --node-id $nid, not $id"
      continue
    fi
    candidates+=("$p")
  done
  case ${#candidates[@]} in
    1) NODE_PID=${candidates[0]}; return 0 ;;
    0)
      [ -n "$NODE_WHY" ] || NODE_WHY="no process on this machine listens on $http (in this network namespace)"
      return 1
      ;;
    *) NODE_WHY="several kvnode processes serve $http: ${candidates[*]}"; return 2 ;;
  esac
}

# fill_template TEMPLATE ID HTTP RAFT: replaces {id}, {host} (the host of
# HTTP), {http} and {raft}.
fill_template() {
  local t=$1 id=$2 http=$3 raft=$4 host
  host=$(host_of "$http")
  t=${t//\{id\}/$id}
  t=${t//\{host\}/$host}
  t=${t//\{http\}/$http}
  t=${t//\{raft\}/$raft}
  printf '%s' "$t"
}

# run_template WHAT COMMAND: runs a filled-in command with sh -c.
run_template() {
  log "$1: $2"
  sh -c "$2" || die "$1 failed (status $?): $2"
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
