#!/usr/bin/env bash
# Servent HTTP benchmark (a report, not a test): a Gnutella node's upload side serving a
# 612-byte and a 1 MiB shared file by URN (/uri-res/N2R?urn:sha1:...), against nginx serving
# the same files as static files; the same wrk load (HTTP/1.1 keep-alive), one server worker
# thread each, pinned to the same CPU. The node's KaZaA limits are opened to the load (every
# connection an upload slot) so that the transfer path is measured, not the queue.
#
#   bench/overlay.sh                        # release build of appnet, 10 s per run
#   DURATION=5 CONNS=32 bench/overlay.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
WORKERS=1
NCPU=$(nproc)
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-$((NCPU > 1 ? 1 : 0))-$((NCPU - 1))}
for tool in wrk nginx python3 sha1sum; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install wrk nginx-light)" >&2; exit 1; }
done
source "$here/lib.sh"
release_appnet
site=$WORK/site
write_site "$site" 1m.bin $((1024 * 1024))
urn_of() { python3 -c '
import base64, hashlib, sys
print("urn:sha1:" + base64.b32encode(hashlib.sha1(open(sys.argv[1], "rb").read()).digest()).decode())' "$1"; }
declare -A PATHS
PATHS[appnet,small]="/uri-res/N2R?$(urn_of "$site/small.html")"
PATHS[appnet,big]="/uri-res/N2R?$(urn_of "$site/1m.bin")"
PATHS[nginx,small]=/small.html
PATHS[nginx,big]=/1m.bin

start_appnet() {
  local p; p=$(free_port)
  TOKIO_WORKER_THREADS=$WORKERS taskset -c "$SERVER_CPUS" "$APPNET" gnutella node --share "$site" --listen "127.0.0.1:$p" \
    --max-uploads $((CONNS * 2)) --max-http-connections $((CONNS * 2)) --max-http-per-ip $((CONNS * 2)) >"$WORK/appnet.log" 2>&1 &
  PIDS+=($!); SERVER_PID=$!; wait_port "$p"; PORT=$p
}
start_nginx() {
  local p; p=$(free_port)
  mkdir -p "$WORK/nginx"
  cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000; keepalive_timeout 60;
  client_body_temp_path $WORK/nginx/body; proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi; uwsgi_temp_path $WORK/nginx/uwsgi; scgi_temp_path $WORK/nginx/scgi;
  server { listen 127.0.0.1:$p; root $site; }
}
CONF
  taskset -c "$SERVER_CPUS" nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
  PIDS+=($!); SERVER_PID=$!; wait_port "$p"; PORT=$p
}
stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
to_ms() { python3 -c '
import sys, re
v = sys.argv[1]; m = re.match(r"([0-9.]+)(us|ms|s)$", v)
print("nan" if not m else "%.2f" % (float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]))' "$1"; }
run_wrk() {
  local out; out=$(taskset -c "$CLIENT_CPUS" wrk -t1 -c "$CONNS" -d "${DURATION}s" --latency "$1")
  if echo "$out" | grep -q 'Non-2xx'; then echo "  warning: non-2xx answers from $1" >&2; fi
  echo "$(echo "$out" | awk '/^Requests\/sec:/ {print $2}') $(to_ms "$(echo "$out" | awk '$1=="99%" {print $2}')")"
}

declare -A RPS P99
echo "overlay HTTP bench: ${DURATION}s per run, $CONNS connections, 1 server thread on CPU $SERVER_CPUS, wrk on CPU $CLIENT_CPUS"
for server in appnet nginx; do
  "start_$server"
  # The same file must come back from both.
  [ "$(curl -sf "http://127.0.0.1:$PORT${PATHS[$server,big]}" | sha1sum)" = "$(sha1sum < "$site/1m.bin")" ] || { echo "bench: $server serves a different file" >&2; exit 1; }
  taskset -c "$CLIENT_CPUS" wrk -t1 -c 8 -d 1s "http://127.0.0.1:$PORT${PATHS[$server,small]}" >/dev/null
  for f in small big; do
    read -r rps p99 < <(run_wrk "http://127.0.0.1:$PORT${PATHS[$server,$f]}")
    RPS[$server,$f]=$rps; P99[$server,$f]=$p99
  done
  stop_server
done
printf '\n%-26s %12s %10s %12s %10s %10s\n' test appnet_req/s p99_ms nginx_req/s p99_ms vs_nginx
for f in small big; do
  a=${RPS[appnet,$f]}; n=${RPS[nginx,$f]}
  printf '%-26s %12s %10s %12s %10s %10s\n' "GET by URN $([ $f = small ] && echo 612B || echo 1MiB)" "$a" "${P99[appnet,$f]}" "$n" "${P99[nginx,$f]}" \
    "$(python3 -c "import sys; a,b=map(float,sys.argv[1:]); print('%.2fx' % (a/b) if b else 'n/a')" "$a" "$n")"
done
