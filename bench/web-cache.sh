#!/usr/bin/env bash
# Caching-proxy benchmark (a report, not a test): cache hits of a 612-byte and a 100 KB object
# through appnet web proxy (reverse mode), Varnish and Squid in turn, all in front of the same
# origin, each pinned to the same CPUs with one worker thread/process where the server allows
# choosing; wrk with the same connections and duration. Prints req/s, p99 and appnet's ratio.
#
#   bench/web-cache.sh                  # release build of appnet, 10 s per run
#   DURATION=5 CONNS=32 bench/web-cache.sh
#   APPNET=target/release/appnet bench/web-cache.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
WORKERS=${WORKERS:-1}
NCPU=$(nproc)
SERVER_CPUS=${SERVER_CPUS:-0-$((WORKERS - 1))}
CLIENT_CPUS=${CLIENT_CPUS:-$WORKERS-$((NCPU - 1))}
[ "$WORKERS" -ge "$NCPU" ] && CLIENT_CPUS=0-$((NCPU - 1))
for tool in wrk varnishd python3 curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install wrk varnish squid curl)" >&2; exit 1; }
done
SQUID=$(command -v squid || true)
source "$here/lib.sh"
release_appnet
site=$WORK/site
write_site "$site" 100k.bin $((100 * 1024))
# The origin: appnet web serve with Cache-Control: max-age=3600 on everything (on the client
# CPUs: it only sees the first miss of each cache).
cat > "$WORK/origin.toml" <<'TOML'
[web]
access_log = false
[[web.cache]]
max_age = 3600
TOML
OPORT=$(free_port)
taskset -c "$CLIENT_CPUS" "$APPNET" --config "$WORK/origin.toml" web serve --root "$site" --listen "127.0.0.1:$OPORT" 2>"$WORK/origin.err" &
PIDS+=($!); wait_port "$OPORT"

start_appnet() {
  local p; p=$(free_port)
  TOKIO_WORKER_THREADS=$WORKERS taskset -c "$SERVER_CPUS" "$APPNET" web proxy --reverse "http://127.0.0.1:$OPORT" \
    --listen "127.0.0.1:$p" 2>"$WORK/appnet.err" &
  PIDS+=($!); SERVER_PID=$!; wait_port "$p"; PORT=$p
}
start_varnish() {
  local p; p=$(free_port)
  mkdir -p "$WORK/varnish"
  # Varnish runs a thread per connection; one pool, enough threads for the load, same CPUs.
  taskset -c "$SERVER_CPUS" varnishd -F -n "$WORK/varnish" -a "127.0.0.1:$p" -b "127.0.0.1:$OPORT" \
    -s malloc,256m -p thread_pools=1 -p thread_pool_min=$((CONNS + 16)) -p thread_pool_max=1000 \
    >"$WORK/varnish.log" 2>&1 &
  PIDS+=($!); SERVER_PID=$!; wait_port "$p"; PORT=$p
}
start_squid() {
  local p; p=$(free_port)
  mkdir -p "$WORK/squid"; chmod 777 "$WORK/squid"
  cat > "$WORK/squid/squid.conf" <<CONF
http_port 127.0.0.1:$p accel defaultsite=127.0.0.1 no-vhost
cache_peer 127.0.0.1 parent $OPORT 0 no-query originserver name=origin
http_access allow all
cache_peer_access origin allow all
cache_mem 256 MB
maximum_object_size_in_memory 1 MB
cache deny !all
access_log none
cache_log $WORK/squid/cache.log
pid_filename $WORK/squid/squid.pid
coredump_dir $WORK/squid
workers $WORKERS
shutdown_lifetime 0 seconds
CONF
  taskset -c "$SERVER_CPUS" "$SQUID" -N -f "$WORK/squid/squid.conf" >"$WORK/squid/out.log" 2>&1 &
  PIDS+=($!); SERVER_PID=$!; wait_port "$p"; PORT=$p
}
stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }

# run_wrk PATH: prints "req/s p99ms"
run_wrk() {
  local out
  out=$(taskset -c "$CLIENT_CPUS" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$PORT$1")
  echo "$out" > "$WORK/wrk.last"
  local rps p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; print v}')
  local errs; errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}')
  [ -n "$errs" ] && echo "bench: wrk reported: $errs" >&2
  echo "$rps $p99"
}

# warm PATH: fetches twice so the object is cached; checks the second is a hit.
warm() {
  curl -s -o /dev/null "http://127.0.0.1:$PORT$1"
  curl -s -o /dev/null "http://127.0.0.1:$PORT$1"
  local h; h=$(curl -s -D - -o /dev/null "http://127.0.0.1:$PORT$1" | tr -d '\r')
  # appnet and Squid say X-Cache: HIT; Varnish names two transactions in X-Varnish on a hit.
  if ! echo "$h" | grep -qE '^([Xx]-[Cc]ache: HIT|[Xx]-[Vv]arnish: [0-9]+ [0-9]+)'; then
    echo "bench: $1 does not look like a cache hit:" >&2; echo "$h" >&2; exit 1
  fi
}

declare -A RES
servers=(appnet varnish)
[ -n "$SQUID" ] && servers+=(squid)
for s in "${servers[@]}"; do
  "start_$s"
  for obj in /small.html /100k.bin; do
    warm "$obj"
    RES[$s$obj]=$(run_wrk "$obj")
  done
  stop_server
done

printf '\ncache hits, wrk -c%s -d%ss, %s server worker(s) on CPU %s, wrk on CPU %s\n' "$CONNS" "$DURATION" "$WORKERS" "$SERVER_CPUS" "$CLIENT_CPUS"
printf '%-10s %-12s %12s %10s %16s\n' object server req/s p99-ms "appnet ratio"
for obj in /small.html /100k.bin; do
  read -r a_rps a_p99 <<<"${RES[appnet$obj]}"
  for s in "${servers[@]}"; do
    read -r rps p99 <<<"${RES[$s$obj]}"
    ratio=$(python3 -c "print(f'{$a_rps/$rps:.2f}x' if $rps > 0 else '-')")
    [ "$s" = appnet ] && ratio=""
    printf '%-10s %-12s %12s %10s %16s\n' "${obj#/}" "$s" "$rps" "$p99" "$ratio"
  done
done
