#!/usr/bin/env bash
# Load-balancer benchmark (a report, not a test): appnet lb and HAProxy in mode tcp, side by
# side in one run, each with one worker thread pinned to the same CPU, in front of the same
# three nginx replicas serving h2o's 612-byte page. wrk through each: keep-alive connections
# (the relay path), and a new connection per request (the accept/connect path). Two policies
# each: round robin, and consistent hashing (appnet: Maglev over the client's address and
# port; HAProxy: `balance source` with `hash-type consistent`). Prints req/s, p99, ratios.
#
#   bench/lb.sh                       # release build of appnet, 10 s per run
#   DURATION=5 CONNS=32 bench/lb.sh
set -euo pipefail
[ -n "${BENCH_TRACE:-}" ] && set -x
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
NCPU=$(nproc)
LB_CPUS=${LB_CPUS:-0}                            # the balancer under test
REST_CPUS=${REST_CPUS:-$([ "$NCPU" -gt 1 ] && echo "1-$((NCPU - 1))" || echo 0)}   # replicas and wrk
for tool in wrk haproxy nginx python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install wrk haproxy nginx-light)" >&2; exit 1; }
done
source "$here/lib.sh"
release_appnet
site=$WORK/site
write_site "$site" 1k.bin 1024

# --- three nginx replicas (one nginx, one worker, three ports) ------------------------------
R1=$(free_port); R2=$(free_port); R3=$(free_port)
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
  access_log off; sendfile on; tcp_nodelay on;
  keepalive_requests 1000000; keepalive_timeout 60;
  client_body_temp_path $WORK/nginx/body; proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi; uwsgi_temp_path $WORK/nginx/uwsgi; scgi_temp_path $WORK/nginx/scgi;
  server { listen 127.0.0.1:$R1 backlog=4096; listen 127.0.0.1:$R2 backlog=4096; listen 127.0.0.1:$R3 backlog=4096; root $site; }
}
CONF
taskset -c "$REST_CPUS" nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
PIDS+=($!)
for p in $R1 $R2 $R3; do wait_port "$p"; done

# --- the balancers ----------------------------------------------------------------------------
start_appnet() { # POLICY
  local p; p=$(free_port)
  TOKIO_WORKER_THREADS=1 taskset -c "$LB_CPUS" "$APPNET" lb --listen "127.0.0.1:$p" \
    --backend "127.0.0.1:$R1,127.0.0.1:$R2,127.0.0.1:$R3" --balance "$1" \
    --max-conns 8000 --max-per-client 8000 >"$WORK/appnet.out" 2>&1 &
  LB_PID=$!; PIDS+=($!); wait_port "$p"; LB=$p
}
start_haproxy() { # BALANCE-LINES
  local p; p=$(free_port)
  cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8000
defaults
  mode tcp
  timeout connect 3s
  timeout client 300s
  timeout server 300s
listen lb
  bind 127.0.0.1:$p
  $1
  server r1 127.0.0.1:$R1 check
  server r2 127.0.0.1:$R2 check
  server r3 127.0.0.1:$R3 check
CONF
  taskset -c "$LB_CPUS" haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.out" 2>&1 &
  LB_PID=$!; PIDS+=($!); wait_port "$p"; LB=$p
}
stop_lb() { kill "$LB_PID" 2>/dev/null || true; wait "$LB_PID" 2>/dev/null || true; }

# --- the load: prints "REQS_PER_SEC P99_MS" ------------------------------------------------
to_ms() { python3 -c '
import sys, re
v = sys.argv[1]; m = re.match(r"([0-9.]+)(us|ms|s)$", v)
print("nan" if not m else "%.2f" % (float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]))' "$1"; }
run_wrk() { # URL [wrk args...]
  local url=$1; shift
  local out; out=$(taskset -c "$REST_CPUS" wrk -t1 -c "$CONNS" -d "${DURATION}s" --latency "$@" "$url")
  if echo "$out" | grep -qE 'Non-2xx|Socket errors'; then echo "  note: $(echo "$out" | grep -E 'Non-2xx|Socket errors' | xargs)" >&2; fi
  echo "$(echo "$out" | awk '/^Requests\/sec:/ {print $2}') $(to_ms "$(echo "$out" | awk '$1=="99%" {print $2}')")"
}

declare -A RPS P99
echo "lb bench: ${DURATION}s per run, $CONNS connections, balancer on CPU $LB_CPUS (1 thread), replicas and wrk on CPU $REST_CPUS"
for policy in roundrobin hash; do
  for lb in appnet haproxy; do
    if [ $lb = appnet ]; then
      start_appnet "$([ $policy = roundrobin ] && echo roundrobin || echo maglev)"
    else
      start_haproxy "$([ $policy = roundrobin ] && echo 'balance roundrobin' || printf 'balance source\n  hash-type consistent')"
    fi
    taskset -c "$REST_CPUS" wrk -t1 -c 8 -d 1s "http://127.0.0.1:$LB/small.html" >/dev/null   # warm-up
    read -r rps p99 < <(run_wrk "http://127.0.0.1:$LB/small.html")
    RPS[$lb,$policy,ka]=$rps; P99[$lb,$policy,ka]=$p99
    read -r rps p99 < <(run_wrk "http://127.0.0.1:$LB/small.html" -H "Connection: close")
    RPS[$lb,$policy,close]=$rps; P99[$lb,$policy,close]=$p99
    stop_lb
  done
done

ratio() { python3 -c "import sys; a,b=map(float,sys.argv[1:]); print('%.2fx' % (a/b) if b else 'n/a')" "$1" "$2"; }
printf '\n%-38s %13s %8s %13s %8s %9s\n' test appnet_req/s p99_ms haproxy_req/s p99_ms vs_haproxy
for policy in roundrobin hash; do
  for mode in ka close; do
    name="$([ $policy = roundrobin ] && echo 'roundrobin' || echo 'maglev vs source+consistent') $([ $mode = ka ] && echo 'keep-alive' || echo 'conn/request')"
    a=${RPS[appnet,$policy,$mode]}; h=${RPS[haproxy,$policy,$mode]}
    printf '%-38s %13s %8s %13s %8s %9s\n' "$name" "$a" "${P99[appnet,$policy,$mode]}" "$h" "${P99[haproxy,$policy,$mode]}" "$(ratio "$a" "$h")"
  done
done
