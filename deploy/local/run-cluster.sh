#!/usr/bin/env bash
# Starts a local Troupe cluster on loopback: NODES nodes (default 3), data
# under ./data/<id>, logs under ./data/<id>.log. Ctrl-C stops every node
# cleanly; running it again keeps the data.
set -euo pipefail
cd "$(dirname "$0")/../.."

NODES=${NODES:-3}
BIN=${BIN:-./bin}
DATA=${DATA:-./data}
HTTP_BASE=${HTTP_BASE:-8500}
RAFT_BASE=${RAFT_BASE:-8300}

[ -x "$BIN/kvnode" ] || { echo "build first: make build" >&2; exit 1; }
mkdir -p "$DATA"

# The members are fixed when the cluster first starts: a different NODES on
# existing data would leave the new nodes bootstrapping a cluster of their
# own. Grow a cluster with --join instead (docs/operations.md).
if [ -f "$DATA/nodes" ] && [ "$(cat "$DATA/nodes")" != "$NODES" ]; then
  echo "$DATA holds a $(cat "$DATA/nodes")-node cluster; run with NODES=$(cat "$DATA/nodes"), or 'make clean' to start over" >&2
  exit 1
fi
echo "$NODES" >"$DATA/nodes"

members=()
for i in $(seq 1 "$NODES"); do
  members+=("n$i=127.0.0.1:$((RAFT_BASE + i - 1))")
done
initial=$(IFS=,; echo "${members[*]}")

pids=()
stop() {
  trap - INT TERM
  echo
  echo "stopping ${#pids[@]} nodes..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  echo "stopped; data kept in $DATA"
}
trap stop INT TERM

endpoints=()
for i in $(seq 1 "$NODES"); do
  http="127.0.0.1:$((HTTP_BASE + i - 1))"
  endpoints+=("$http")
  "$BIN/kvnode" --node-id "n$i" --data-dir "$DATA/n$i" \
    --http-addr "$http" --raft-addr "127.0.0.1:$((RAFT_BASE + i - 1))" \
    --initial-cluster "$initial" >>"$DATA/n$i.log" 2>&1 &
  pids+=($!)
  echo "n$i  pid $!  http $http  raft 127.0.0.1:$((RAFT_BASE + i - 1))  log $DATA/n$i.log"
done
addrs=$(IFS=,; echo "${endpoints[*]}")

# Wait until a leader is known.
for _ in $(seq 1 100); do
  if curl -sf "http://${endpoints[0]}/readyz" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
leader=$(curl -s "http://${endpoints[0]}/v1/status/leader" | tr -d '"' || true)

cat <<TOUR

Troupe is running ($NODES nodes, leader at $leader). Try:

  curl -X PUT -d hello http://${endpoints[0]}/v1/kv/greeting
  curl http://${endpoints[1]}/v1/kv/greeting?raw
  curl "http://${endpoints[0]}/v1/kv/?recurse"
  curl http://${endpoints[0]}/v1/cluster/members
  $BIN/kvctl --addr $addrs put config/color blue
  $BIN/kvctl --addr $addrs get config/color
  $BIN/kvctl --addr $addrs ls config/
  $BIN/kvctl --addr $addrs status

Consul's tools work too: CONSUL_HTTP_ADDR=${endpoints[0]} consul kv get greeting

Press Ctrl-C to stop every node.
TOUR
wait "${pids[@]}"
