#!/usr/bin/env bash
# Plays the fencing-token story against a running cluster: a lock holder
# frozen with SIGSTOP past its TTL loses the lock to another holder, wakes
# up and writes with its old token, and the protected resource refuses it.
# 'troupe-chaos fencing' with settings from the environment. Run with
# --help for the details.
set -euo pipefail
# shellcheck source=chaos/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
  cat <<EOF2
Usage: $PROG [--addr host:port,...] [--ttl DURATION] [troupe-chaos fencing flags...]

Holder A, a process of its own, takes a lock and writes to a resource with
its fencing token (the lock key's LockIndex). A is frozen with SIGSTOP; its
session ends 2×TTL after its last renewal, and holder B takes the lock with
a higher token and writes. A is resumed and, not knowing it lost the lock,
writes with its old token: the resource refuses it, because it has seen a
higher one. A lock alone cannot stop A; the token does (docs/fault-model.md,
"Locks and fencing tokens"). This is bin/troupe-chaos fencing (built when
missing or stale); its --help lists its flags.

Settings (environment, or the flags shown):
  ADDR=h:p,h:p   --addr   the cluster's HTTP addresses (default:
                          \$TROUPE_ADDR, else 127.0.0.1:8500.. for NODES
                          nodes from HTTP_BASE: 'make run')
  TTL=10s        --ttl    the holders' session TTL; at least the cluster's
                          session_ttl_min (a cluster started with
                          --session-ttl-min=1s runs the story in seconds)

Examples:
  $PROG
  TTL=1s $PROG --addr 127.0.0.1:8500,127.0.0.1:8501,127.0.0.1:8502

Exit status: 0 the stale write was refused; 1 it was accepted, or the story
did not unfold; 2 error.
EOF2
}

TTL=${TTL:-10s} pass=()
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --addr) need_value "$1" "${2-}"; ADDR=$2; shift 2 ;;
    --addr=*) ADDR=${1#*=}; shift ;;
    --ttl) need_value "$1" "${2-}"; TTL=$2; shift 2 ;;
    --ttl=*) TTL=${1#*=}; shift ;;
    *) pass+=("$1"); shift ;;
  esac
done
resolve_addr

ensure_built troupe-chaos
exec "$ROOT/bin/troupe-chaos" fencing --endpoints "$ADDR" --ttl "$TTL" "${pass[@]}"
