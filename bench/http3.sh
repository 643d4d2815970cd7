#!/usr/bin/env bash
# HTTP/3 benchmark (a report, not a test): appnet (`web serve --tls --http3`) and caddy serve the
# same 612-byte file (h2o's published size) and a 1 MB file over HTTP/3, one after the other,
# pinned to the same CPUs, under the same load client: crates/web/examples/h3load.rs (Debian's
# h2load has no HTTP/3; aioquic is far too slow to load a server), CONNS QUIC connections with
# STREAMS GETs in flight each. Prints requests/s (612 B), MB/s (1 MB) and appnet/caddy ratios.
# (HTTP/2 vs HTTP/3 on a lossy emulated link is `appnet experiment http`'s part.)
#
#   bench/http3.sh                          # release builds, 10 s per run
#   DURATION=5 CONNS=8 STREAMS=16 bench/http3.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
DURATION=${DURATION:-10}
CONNS=${CONNS:-8}
STREAMS=${STREAMS:-16}
WORKERS=${WORKERS:-1}
NCPU=$(nproc)
SERVER_CPUS=${SERVER_CPUS:-0-$((WORKERS - 1))}
CLIENT_CPUS=${CLIENT_CPUS:-$WORKERS-$((NCPU - 1))}
[ "$WORKERS" -ge "$NCPU" ] && CLIENT_CPUS=0-$((NCPU - 1))
for tool in caddy openssl python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install caddy openssl)" >&2; exit 1; }
done
source "$here/lib.sh"
source "$here/../interop/lib-caddy.sh"
release_appnet
LOAD=${H3LOAD:-}
if [ -z "$LOAD" ]; then
  cargo build --release --quiet -p appnet-web --example h3load
  LOAD=$PWD/target/release/examples/h3load
fi
site=$WORK/site
write_site "$site" 1m.bin $((1024 * 1024))
pki=$WORK/pki
caddy_pki "$pki" "bench CA"

start_appnet() {
  PORT=$(free_port)
  TOKIO_WORKER_THREADS=$WORKERS taskset -c "$SERVER_CPUS" "$APPNET" web serve --root "$site" \
    --listen "127.0.0.1:$PORT" --tls --http3 --cert "$pki/cert.pem" --key "$pki/key.pem" --quiet \
    --max-per-ip $((CONNS + 16)) 2>"$WORK/appnet.err" &
  PIDS+=($!); wait_port "$PORT"
}
start_caddy() {
  PORT=$(free_port)
  caddy_start "$WORK" "$PORT" "$site" "$pki" env GOMAXPROCS="$WORKERS" taskset -c "$SERVER_CPUS"
  wait_port "$PORT"
  # caddy opens its UDP socket just after TCP: wait for an HTTP/3 answer.
  for _ in $(seq 50); do
    timeout 5 "$LOAD" "127.0.0.1:$PORT" localhost "$pki/ca.pem" /small.html 1 1 0 >/dev/null 2>&1 && return 0
    sleep 0.1
  done
}
# run PATH CONNS STREAMS: one load run; prints the h3load line.
run() { taskset -c "$CLIENT_CPUS" "$LOAD" "127.0.0.1:$PORT" localhost "$pki/ca.pem" "$1" "$2" "$3" "$DURATION"; }

declare -A RPS MBS ERR
for server in appnet caddy; do
  "start_$server"
  run /small.html "$CONNS" "$STREAMS" >/dev/null   # warm-up (handshakes, caches)
  small=$(run /small.html "$CONNS" "$STREAMS")
  big=$(run /1m.bin "$CONNS" 2)
  RPS[$server]=$(awk '{print $2}' <<<"$small")
  MBS[$server]=$(awk '{print $4}' <<<"$big")
  ERR[$server]=$(( $(awk '{print $8}' <<<"$small") + $(awk '{print $8}' <<<"$big") ))
  stop_all
done
echo "HTTP/3, $CONNS connections x $STREAMS streams (1 MB: x 2), ${DURATION}s per run, $WORKERS server worker(s)"
printf '%-28s %12s %12s %8s\n' "" appnet caddy ratio
printf '%-28s %12s %12s %8s\n' "612 B requests/s" "${RPS[appnet]}" "${RPS[caddy]}" \
  "$(python3 -c "print(f'{${RPS[appnet]}/max(${RPS[caddy]},1):.2f}')")"
printf '%-28s %12s %12s %8s\n' "1 MB throughput MB/s" "${MBS[appnet]}" "${MBS[caddy]}" \
  "$(python3 -c "print(f'{${MBS[appnet]}/max(${MBS[caddy]},0.1):.2f}')")"
printf '%-28s %12s %12s\n' "errors" "${ERR[appnet]}" "${ERR[caddy]}"
