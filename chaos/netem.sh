#!/usr/bin/env bash
# Degrades the links between nodes (delay, jitter, loss, bandwidth) with
# kvctl chaos netem, holds it for a while, then heals. kvctl works out the
# rules and partition.sh holds and heals; this script only turns its
# settings into kvctl's flags. Run with --help for the details.
set -euo pipefail
# shellcheck source=chaos/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG [--addr host:port,...] [--seconds N] [--delay D] [--jitter D]
             [--drop P] [--bandwidth B] [--node ids] [--seed N]

Degrade the links of a Troupe cluster's nodes with 'kvctl chaos netem',
hold it for SECONDS, then heal with 'kvctl chaos heal'. Without DELAY, DROP
and BANDWIDTH the script applies what the chaos runner's netem nemesis
does: 50ms ± 50ms and 20% loss on every link. 'kvctl help chaos netem'
says what each setting does and which rules each node gets.

The nodes must run with chaos enabled: kvnode --chaos, or
TROUPE_CHAOS=true in their environment (for a local cluster:
TROUPE_CHAOS=true make run). Ctrl-C (or SIGTERM) heals before the script
exits; so does any failure after rules were installed.

Settings (environment, or the flags shown):
  ADDR=h:p,h:p   --addr       the cluster's HTTP addresses (default:
                              \$TROUPE_ADDR, else 127.0.0.1:8500.. for NODES
                              nodes from HTTP_BASE: 'make run')
  SECONDS=N      --seconds    how long the links stay degraded (default 10;
                              0: until Ctrl-C)
  DELAY=D        --delay      hold each message back this long (e.g. 100ms)
  JITTER=D       --jitter     vary the delay by up to this much either way
  DROP=P         --drop       probability from 0 to 1 that a message is lost
  BANDWIDTH=B    --bandwidth  bytes per second per link (at least 1024)
  NODE=ids       --node       degrade only these nodes (default: every member)
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
HOLD_ARGS=()
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --addr) need_value "$1" "${2-}"; HOLD_ARGS+=(--addr "$2"); shift 2 ;;
    --seconds | -s) need_value "$1" "${2-}"; OPT_SECONDS=$2; shift 2 ;;
    --delay | --jitter | --drop | --bandwidth | --node | --seed)
      need_value "$1" "${2-}"
      name=${1#--}
      printf -v "${name^^}" %s "$2"
      shift 2
      ;;
    --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done
# Read here, where the environment's SECONDS is still the one given.
hold_setting "$OPT_SECONDS" 10
if [ -z "${DELAY:-}${DROP:-}${BANDWIDTH:-}${JITTER:-}" ]; then
  DELAY=50ms JITTER=50ms DROP=0.2
fi
# Each setting given becomes its kvctl flag; kvctl judges the values.
CMD=(netem)
for name in DELAY JITTER DROP BANDWIDTH NODE SEED; do
  [ -z "${!name:-}" ] || CMD+=("--${name,,}" "${!name}")
done
exec "$(dirname "$0")/partition.sh" "${HOLD_ARGS[@]}" --seconds "$HOLD" -- "${CMD[@]}"
