#!/usr/bin/env bash
# appnet chord: real node processes on loopback, driven by the appnet CLI and by an independent
# Python client that speaks the documented wire protocol (interop/chord_client.py).
source "$(dirname "$0")/lib.sh"
PY="$(dirname "$0")/chord_client.py"
FAST=(--stabilize-ms 100 --fix-fingers-ms 30 --rpc-timeout-ms 400)

# ring_size ADDR: how many nodes a walk around the ring finds (0 if none answers).
ring_size() { "$APPNET" chord ring --node "$1" >"$WORK/ring" 2>/dev/null || true; awk 'NR == 1 {print $1 + 0}' "$WORK/ring"; }
# first_line CMD...: the first line CMD prints (no SIGPIPE games under pipefail).
first_line() { "$@" >"$WORK/out" 2>/dev/null || true; head -1 "$WORK/out"; }
# eventually NAME EXPECTED CMD...: retries CMD (up to 10 s) until it prints EXPECTED, then checks.
eventually() {
  local name=$1 want=$2 got i
  shift 2
  for ((i = 0; i < 100; i++)); do
    got=$("$@")
    [ "$got" == "$want" ] && break
    sleep 0.1
  done
  check "$name" "$want" "$got"
}
# ring_line ADDR N: line N of `chord ring` as seen from ADDR, without leading spaces.
ring_line() { "$APPNET" chord ring --node "$1" >"$WORK/ring" 2>/dev/null || true; sed -n "${2}p" "$WORK/ring" | sed 's/^ *//'; }
# wait_ring ADDR N: waits until the ring seen from ADDR has N nodes.
wait_ring() {
  local i
  for ((i = 0; i < 200; i++)); do
    [ "$(ring_size "$1")" == "$2" ] && return 0
    sleep 0.1
  done
  echo "ring at $1 never reached $2 nodes" >&2; "$APPNET" chord ring --node "$1" >&2 || true; return 1
}

echo "== a 160-bit ring of five processes"
ports=()
for i in 0 1 2 3 4; do ports+=("$(free_port)"); done
bg "$APPNET" chord node --listen "127.0.0.1:${ports[0]}" "${FAST[@]}"
wait_tcp 127.0.0.1 "${ports[0]}"
pids=("$LAST_PID")
for i in 1 2 3 4; do
  bg "$APPNET" chord node --listen "127.0.0.1:${ports[$i]}" --join "127.0.0.1:${ports[0]}" "${FAST[@]}"
  pids+=("$LAST_PID")
  wait_tcp 127.0.0.1 "${ports[$i]}"
done
wait_ring "127.0.0.1:${ports[0]}" 5
check "ring walk finds 5 nodes" 5 "$(ring_size "127.0.0.1:${ports[2]}")"

"$APPNET" chord put alice 'lives at 12 Elm St' --node "127.0.0.1:${ports[1]}" >/dev/null
check "CLI put, CLI get through another node" "lives at 12 Elm St" \
  "$(first_line "$APPNET" chord get alice --node "127.0.0.1:${ports[3]}")"
hops=$("$APPNET" chord get alice --node "127.0.0.1:${ports[3]}" | sed -n 's/^hops: \([0-9]*\).*/\1/p')
check "get prints the hops" yes "$([ -n "$hops" ] && [ "$hops" -le 5 ] && echo yes || echo "no ($hops)")"

check "python client reads what the CLI stored" "lives at 12 Elm St" "$(python3 "$PY" get "127.0.0.1:${ports[4]}" alice)"
python3 "$PY" put "127.0.0.1:${ports[2]}" bob 'stored by python' >/dev/null
check "CLI reads what the python client stored" "stored by python" \
  "$(first_line "$APPNET" chord get bob --node "127.0.0.1:${ports[0]}")"
py_owner=$(python3 "$PY" owner "127.0.0.1:${ports[1]}" bob | cut -d' ' -f1)
cli_owner=$("$APPNET" chord lookup bob --node "127.0.0.1:${ports[4]}" | sed -n 's/.*-> node \([0-9a-f]*\) at.*/\1/p')
check "python and CLI lookups agree on the owner" "$py_owner" "$cli_owner"
check "unknown version is rejected clearly" "error 1: unsupported protocol version 9 (this node speaks version 1)" \
  "$(python3 "$PY" badversion "127.0.0.1:${ports[0]}")"
# Stats: the python client sends Ping then Stats on one connection; same counters as the CLI's.
python3 "$PY" stats "127.0.0.1:${ports[0]}" >"$WORK/pystats"
"$APPNET" chord stats --raw --node "127.0.0.1:${ports[0]}" >"$WORK/clistats"
check "python and CLI read the same counters" "$(cut -d' ' -f1 "$WORK/clistats" | tr '\n' ' ')" \
  "$(cut -d' ' -f1 "$WORK/pystats" | tr '\n' ' ')"
check "stats: three successors" 3 "$(awk '$1 == "successors" {print $2}' "$WORK/pystats")"
check "stats: the node's RPCs reuse pooled connections" yes \
  "$(awk '$1 == "connections_out_reused" {print ($2 > 0 ? "yes" : "no " $2)}' "$WORK/clistats")"
check "stats: readable summary" "store: lookups: connections:" \
  "$("$APPNET" chord stats --node "127.0.0.1:${ports[0]}" | awk '{print $1}' | grep -E '^(store|lookups|connections):$' | tr '\n' ' ' | sed 's/ $//')"

"$APPNET" chord put doomed 'short-lived' --node "127.0.0.1:${ports[0]}" >/dev/null
check "delete" 'deleted "doomed"' "$("$APPNET" chord delete doomed --node "127.0.0.1:${ports[2]}")"
check "a deleted key is gone (exit status 1)" 1 "$("$APPNET" chord get doomed --node "127.0.0.1:${ports[4]}" >/dev/null 2>&1; echo $?)"

for i in $(seq 1 30); do "$APPNET" chord put "k$i" "v$i" --node "127.0.0.1:${ports[$((i % 5))]}" >/dev/null; done
# kill -9 two nodes (r = 3 replicas): every key stays readable once the ring has repaired itself.
kill -9 "${pids[1]}" "${pids[2]}"
wait_ring "127.0.0.1:${ports[0]}" 3
ok=0
for i in $(seq 1 30); do
  if [ "$(first_line "$APPNET" chord get "k$i" --node "127.0.0.1:${ports[3]}")" == "v$i" ]; then
    ok=$((ok + 1))
  else
    "$APPNET" chord get "k$i" --node "127.0.0.1:${ports[3]}" >&2 || true
  fi
done
check "30 keys readable after two nodes were killed" 30 "$ok"
# Ctrl-C (SIGTERM) is a graceful leave: keys are handed over.
kill -TERM "${pids[4]}"
wait_ring "127.0.0.1:${ports[0]}" 2
# Replicas refill on stabilisation: poll (bounded, 15 s) until every key is readable again.
for _ in $(seq 1 30); do
  ok=0
  for i in $(seq 1 30); do
    [ "$(first_line "$APPNET" chord get "k$i" --node "127.0.0.1:${ports[0]}")" == "v$i" ] && ok=$((ok + 1))
  done
  [ "$ok" = 30 ] && break
  sleep 0.5
done
check "30 keys readable after a graceful leave" 30 "$ok"

echo "== stale replicas are collected (after joins and deletes)"
GC=(--gc-ms 300)
gports=()
for i in 0 1 2 3 4 5; do gports+=("$(free_port)"); done
for i in 0 1 2; do
  join=()
  [ "$i" -gt 0 ] && join=(--join "127.0.0.1:${gports[0]}")
  bg "$APPNET" chord node --listen "127.0.0.1:${gports[$i]}" "${join[@]}" "${FAST[@]}" "${GC[@]}"
  wait_tcp 127.0.0.1 "${gports[$i]}"
done
wait_ring "127.0.0.1:${gports[0]}" 3
for i in $(seq 1 20); do "$APPNET" chord put "g$i" "w$i" --node "127.0.0.1:${gports[$((i % 3))]}" >/dev/null; done
# total_items: items held by all six nodes (a node not answering counts 0).
total_items() {
  local p sum=0 n
  for p in "${gports[@]}"; do
    n=$("$APPNET" chord stats --raw --node "127.0.0.1:$p" 2>/dev/null | awk '$1 == "items" {print $2}')
    sum=$((sum + ${n:-0}))
  done
  echo "$sum"
}
# wait_total N: polls (bounded, 30 s) until the ring holds N items in all.
wait_total() {
  local i got
  for ((i = 0; i < 60; i++)); do
    got=$(total_items)
    [ "$got" == "$1" ] && break
    sleep 0.5
  done
  echo "$got"
}
check "20 keys on 3 nodes: 60 copies" 60 "$(wait_total 60)"
for i in 3 4 5; do
  bg "$APPNET" chord node --listen "127.0.0.1:${gports[$i]}" --join "127.0.0.1:${gports[0]}" "${FAST[@]}" "${GC[@]}"
  wait_tcp 127.0.0.1 "${gports[$i]}"
done
wait_ring "127.0.0.1:${gports[0]}" 6
# The old nodes held every key; each key must end on exactly its 3 holders.
check "after 3 joins, stale copies are collected: 60 copies" 60 "$(wait_total 60)"
for i in $(seq 1 5); do "$APPNET" chord delete "g$i" --node "127.0.0.1:${gports[$((i % 6))]}" >/dev/null; done
check "after 5 deletes: 45 copies" 45 "$(wait_total 45)"
ok=0
for i in $(seq 6 20); do
  [ "$(first_line "$APPNET" chord get "g$i" --node "127.0.0.1:${gports[$((i % 6))]}")" == "w$i" ] && ok=$((ok + 1))
done
check "the 15 remaining keys are readable" 15 "$ok"
check "a deleted key stays deleted" 1 "$("$APPNET" chord get g1 --node "127.0.0.1:${gports[4]}" >/dev/null 2>&1; echo $?)"

echo "== the textbook's 4-bit ring 1,3,4,5,8,10,12,15"
declare -A tport tpid
for id in 1 3 4 5 8 10 12 15; do tport[$id]=$(free_port); done
bg "$APPNET" chord node --bits 4 --id 1 --successors 2 --listen "127.0.0.1:${tport[1]}" "${FAST[@]}"
wait_tcp 127.0.0.1 "${tport[1]}"
for id in 3 4 5 8 10 12 15; do
  bg "$APPNET" chord node --bits 4 --id "$id" --successors 2 --listen "127.0.0.1:${tport[$id]}" \
    --join "127.0.0.1:${tport[1]}" "${FAST[@]}"
  tpid[$id]=$LAST_PID
  wait_tcp 127.0.0.1 "${tport[$id]}"
done
wait_ring "127.0.0.1:${tport[1]}" 8
check "who is responsible for key 1110 (14)?" "id 14 -> node 15" \
  "$(first_line "$APPNET" chord lookup --id 14 --node "127.0.0.1:${tport[3]}" | cut -d' ' -f1-5)"
check "the same, recursively (forwarded node to node)" "id 14 -> node 15" \
  "$(first_line "$APPNET" chord lookup --recursive --id 14 --node "127.0.0.1:${tport[3]}" | cut -d' ' -f1-5)"
eventually "peer 4's successors" "successors:  5, 8" ring_line "127.0.0.1:${tport[4]}" 4
kill -9 "${tpid[5]}"
wait_ring "127.0.0.1:${tport[1]}" 7
eventually "after 5 leaves abruptly, 4's successors are 8, 10" "successors:  8, 10" \
  ring_line "127.0.0.1:${tport[4]}" 4
lookup5() { first_line "$APPNET" chord lookup --id 5 --node "127.0.0.1:${tport[12]}" | cut -d' ' -f1-5; }
eventually "key 5 is now at 8" "id 5 -> node 8" lookup5
echo "chord: $CHECKS checks passed"
