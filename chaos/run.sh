#!/usr/bin/env bash
# Runs Troupe's chaos suite (cmd/troupe-chaos) against a fresh local
# cluster, building what it needs first. 'make chaos' calls this. Run with
# --help for the details.
set -euo pipefail
# shellcheck source=chaos/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG [troupe-chaos flags...]

Build bin/kvnode and bin/troupe-chaos (when missing or older than the
sources), then run troupe-chaos: it starts a fresh local cluster of NODES
kvnode processes with chaos enabled, drives a recorded workload against it
for DURATION while nemeses kill, pause and partition nodes, heals, checks
the history for linearizability and lost writes, and writes report.html,
history.json and summary.json to OUT. See docs/chaos.md.

Settings (environment, or make variables: make chaos NODES=5 DURATION=30m):
  NODES=3          nodes of the local cluster
  DURATION=5m      how long the load and the faults run (Go duration)
  NEMESIS=mixed    comma-separated nemeses, 'mixed' for every one that
                   applies, 'none' for a baseline; known: kill, kill-leader,
                   pause, pause-leader, partition-leader, partition-half,
                   partition-bridge (5+ nodes), oneway, netem, crash,
                   corrupt, os-partition (NETNS only)
  SEED=N           seed of the schedule and the workload; the default comes
                   from the clock and is printed: reuse it to replay a run
  NETNS=1          run the nodes in network namespaces (needs root, ip and
                   iptables) and add the os-partition nemesis
  OUT=dir          output directory (default chaos-results/<time>)
  CHAOS_ARGS='..'  more troupe-chaos flags (make chaos CHAOS_ARGS='--clients 20')
  GO=go            the go command used to build
Any argument is passed on to troupe-chaos and wins over the settings above,
e.g. $PROG --clients 20 --fault-duration 15s. 'bin/troupe-chaos --help' lists
every flag, including --endpoints and --kill-cmd for a cluster that is
already running.

Beside the KV workload, 4 lock clients (--lock-clients N, 0: none)
contend for one lock and write a fenced resource with its token.

Exit status (troupe-chaos's): 0 the run passed; 1 a linearizability
violation, lost writes, diverged replicas or a lock/fencing violation; 2
an error (the cluster did not start or did not settle, bad flags, a build
failure).
EOF
}

for a in "$@"; do
  case $a in
    -h | --help) usage; exit 0 ;;
  esac
done

NODES=${NODES:-3}
DURATION=${DURATION:-5m}
NEMESIS=${NEMESIS:-mixed}
SEED=${SEED:-}
NETNS=${NETNS:-}
OUT=${OUT:-}
CHAOS_ARGS=${CHAOS_ARGS:-}

if ! is_uint "$NODES" || [ "$NODES" -lt 1 ]; then usage_error "NODES must be a node count, not '$NODES'"; fi
if [ -n "$SEED" ] && ! is_uint "$SEED"; then usage_error "SEED must be a whole number, not '$SEED'"; fi

extra=()
if [ -n "$CHAOS_ARGS" ]; then
  read -ra extra <<<"$CHAOS_ARGS"
fi
extra+=("$@")

# The output directory: --out among the arguments wins over OUT. It is
# taken out of them, so the one path given to troupe-chaos is the one this
# script reports; a relative path is taken from where the script started.
rest=()
for ((i = 0; i < ${#extra[@]}; i++)); do
  case ${extra[$i]} in
    --out) OUT=${extra[$((i + 1))]:-}; i=$((i + 1)); [ -n "$OUT" ] || usage_error "--out needs a directory" ;;
    --out=*) OUT=${extra[$i]#--out=} ;;
    *) rest+=("${extra[$i]}") ;;
  esac
done
extra=("${rest[@]}")
[ -n "$OUT" ] || OUT="$ROOT/chaos-results/$(date +%Y%m%d-%H%M%S)"
case $OUT in /*) ;; *) OUT="$PWD/$OUT" ;; esac

# troupe-chaos runs the bin/kvnode beside it.
args=(--nodes "$NODES" --duration "$DURATION" --nemesis "$NEMESIS" --out "$OUT")
[ -z "$SEED" ] || args+=(--seed "$SEED")
case ${NETNS,,} in
  '' | 0 | false | no) ;;
  1 | true | yes)
    [ "$(id -u)" -eq 0 ] || die "NETNS=1 needs root (network namespaces and iptables): run as root, e.g. sudo env PATH=\"\$PATH\" make chaos NETNS=1"
    for tool in ip iptables; do
      command -v "$tool" >/dev/null 2>&1 || die "NETNS=1 needs the $tool command"
    done
    args+=(--netns)
    ;;
  *) usage_error "NETNS must be 1 or 0, not '$NETNS'" ;;
esac

cd "$ROOT"
ensure_built kvnode
ensure_built troupe-chaos

log "running: bin/troupe-chaos $(shell_words "${args[@]}" "${extra[@]}")"
# Ctrl-C reaches troupe-chaos too: it stops the load early, heals, checks
# and reports. The script waits for it and only notes the interruption.
INTERRUPTED=0
trap 'INTERRUPTED=1' INT
status=0
"$ROOT/bin/troupe-chaos" "${args[@]}" "${extra[@]}" || status=$?
trap - INT

echo
[ "$status" -ne 0 ] || [ -f "$OUT/summary.json" ] || exit 0 # e.g. --help
case $status in
  0) verdict="PASS" ;;
  1)
    lin=$(grep -o '"linearizable": *"[a-z]*"' "$OUT/summary.json" 2>/dev/null | sed 's/.*"\([a-z]*\)"$/\1/' || true)
    why=()
    [ "$lin" != violation ] || why+=("a linearizability violation")
    ! grep -q '"lost_writes"' "$OUT/summary.json" 2>/dev/null || why+=("lost writes")
    ! grep -q '"diverged"' "$OUT/summary.json" 2>/dev/null || why+=("diverged replicas")
    ! grep -q '"lock_violations"' "$OUT/summary.json" 2>/dev/null || why+=("a lock or fencing violation")
    if [ "${#why[@]}" -gt 0 ]; then
      verdict="FAIL: ${why[0]}"
      for w in "${why[@]:1}"; do verdict+=", $w"; done
    else
      verdict="FAIL (status 1)"
    fi
    ;;
  *) verdict="ERROR (status $status): the run could not complete or could not be decided (see 'error' in summary.json and the messages above)" ;;
esac
if [ "$INTERRUPTED" = 1 ]; then
  verdict+=" -- interrupted early: the verdict covers the shorter run"
fi
log "$verdict"
if [ -f "$OUT/report.html" ]; then
  log "report:  $OUT/report.html"
  [ ! -f "$OUT/linearizability.html" ] || log "violation: $OUT/linearizability.html"
  log "history: $OUT/history.json, summary: $OUT/summary.json, node logs: $OUT/cluster/n*.log"
  seed=$(tr -d '\n ' <"$OUT/summary.json" 2>/dev/null | sed -n 's/^{"seed":\([0-9]*\).*/\1/p')
  [ -z "$seed" ] || log "replay:  the same settings and flags with SEED=$seed"
else
  log "no report was written (output directory: $OUT); check the settings and flags"
fi
exit "$status"
