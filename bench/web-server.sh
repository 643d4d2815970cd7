#!/usr/bin/env bash
# Web server benchmark (a report, not a test): the same 612-byte file (h2o's published
# benchmark size) and a 1 MB file served by appnet, nginx and h2o, each with the same
# number of worker threads and pinned to the same CPUs; wrk for HTTP/1.1 keep-alive and h2load
# for HTTP/2 (h2c prior knowledge), same connections and duration. Prints req/s, p99 and ratios,
# and each server's CPU time per request with the load generator's CPU use (where the load
# generator is the limit, at about 100 % of its CPUs, req/s tie and only the server's CPU per
# request shows which server does less work).
# The three servers stay up side by side and take turns: ROUNDS rounds, each running every test
# against every server (the order rotating each round), and the table shows each figure's median
# over the rounds with the spread of the per-round appnet/h2o ratios, so that a slow spell of
# the machine (on a small VM, ±15 % between consecutive 10 s runs) hits every server alike.
#
#   bench/web-server.sh                 # release build of appnet, 3 rounds of 5 s per test
#   DURATION=5 CONNS=50 WORKERS=1 bench/web-server.sh
#   WORKERS=2 LOAD_THREADS=2 bench/web-server.sh   # 2 workers per server; on a 2-core machine
#                                       # server and load then share both CPUs (printed)
#   APPNET=target/release/appnet bench/web-server.sh
#   ROUNDS=15 TESTS="h1:small.html h2:small.html" bench/web-server.sh   # many paired rounds of
#                                       # the small-file tests: the ratio's 95 % interval narrows
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
STREAMS=${STREAMS:-10}          # concurrent streams per HTTP/2 connection
WORKERS=${WORKERS:-1}           # server worker threads/processes, the same for every server
LOAD_THREADS=${LOAD_THREADS:-1} # wrk and h2load threads
# The tests, as PROTOCOL:FILE (h1 or h2; small.html is 612 bytes, 1m.bin 1 MiB).
read -r -a TESTS <<< "${TESTS:-h1:small.html h1:1m.bin h2:small.html h2:1m.bin}"
for test in "${TESTS[@]}"; do
  case $test in
    h1:small.html | h1:1m.bin | h2:small.html | h2:1m.bin) ;;
    *) echo "bench: unknown test '$test' (TESTS takes h1 or h2, a colon, and small.html or 1m.bin)" >&2; exit 1 ;;
  esac
done
NCPU=$(nproc)
# Server on the first CPUs, load generator on the rest (on 2 cores: one each).
SERVER_CPUS=${SERVER_CPUS:-0-$((WORKERS - 1))}
CLIENT_CPUS=${CLIENT_CPUS:-$WORKERS-$((NCPU - 1))}
[ "$WORKERS" -ge "$NCPU" ] && CLIENT_CPUS=0-$((NCPU - 1))
for tool in wrk h2load nginx h2o python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install wrk nghttp2-client nginx-light h2o time)" >&2; exit 1; }
done
source "$here/lib.sh"
release_appnet
site=$WORK/site
write_site "$site" 1m.bin $((1024 * 1024))

# --- the servers: each prints "H1PORT H2PORT" once listening -----------------------------
start_appnet() {
  local p; p=$(free_port)
  # --workers: one thread with its own event loop per worker, as nginx's processes and h2o's
  # threads (the main runtime only waits for signals: one thread is plenty).
  TOKIO_WORKER_THREADS=1 taskset -c "$SERVER_CPUS" "$APPNET" web serve --workers "$WORKERS" --root "$site" --listen "127.0.0.1:$p" --quiet --no-push --max-per-ip $((CONNS + 16)) 2>"$WORK/appnet.err" &
  PIDS+=($!); wait_port "$p"; H1=$p; H2=$p
}
start_nginx() {
  local p q; p=$(free_port); q=$(free_port)
  mkdir -p "$WORK/nginx"
  cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes $WORKERS;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000; keepalive_timeout 60;
  client_body_temp_path $WORK/nginx/body; proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi; uwsgi_temp_path $WORK/nginx/uwsgi; scgi_temp_path $WORK/nginx/scgi;
  server { listen 127.0.0.1:$p; root $site; }
  server { listen 127.0.0.1:$q http2; root $site; }
}
CONF
  taskset -c "$SERVER_CPUS" nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
  PIDS+=($!); wait_port "$p"; wait_port "$q"; H1=$p; H2=$q
}
start_h2o() {
  local p; p=$(free_port)
  cat > "$WORK/h2o.conf" <<CONF
num-threads: $WORKERS
listen:
  host: 127.0.0.1
  port: $p
http2-idle-timeout: 60
hosts:
  default:
    paths:
      /:
        file.dir: $site
CONF
  taskset -c "$SERVER_CPUS" h2o -c "$WORK/h2o.conf" >"$WORK/h2o.log" 2>&1 &
  PIDS+=($!); wait_port "$p"; H1=$p; H2=$p
}

# --- the load generators: print "REQS_PER_SEC P99_MS REQUESTS LOAD_CPU_PERCENT" -------------------
# LOAD_CPU_PERCENT: the load generator's user + system time over its wall-clock time (100 = one
# CPU busy throughout); from `/usr/bin/time -o`, written by the `timed` wrapper.
timed() { /usr/bin/time -f "%e %U %S" -o "$WORK/load.time" "$@"; }
load_cpu() { tail -n 1 "$WORK/load.time" | awk '{ printf "%.0f", ($1 > 0) ? ($2 + $3) * 100 / $1 : 0 }'; }
run_wrk() {
  local out; out=$(timed taskset -c "$CLIENT_CPUS" wrk -t"$LOAD_THREADS" -c "$CONNS" -d "${DURATION}s" --latency "$1")
  local rps p99
  if echo "$out" | grep -q 'Non-2xx'; then echo "  warning: non-2xx answers from $1" >&2; fi
  rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  echo "$rps $(to_ms "$p99") $(echo "$out" | awk '/ requests in / {print $1}') $(load_cpu)"
}
to_ms() { python3 -c '
import sys, re
v = sys.argv[1]; m = re.match(r"([0-9.]+)(us|ms|s)$", v)
print("nan" if not m else "%.2f" % (float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]))' "$1"; }
run_h2load() {
  local log=$WORK/h2load.log
  # h2load appends to --log-file: without this, each p99 would mix in every earlier run's requests.
  rm -f "$log"
  local out; out=$(timed taskset -c "$CLIENT_CPUS" h2load -c "$CONNS" -m "$STREAMS" -t"$LOAD_THREADS" -D "$DURATION" --log-file="$log" "$1" 2>&1)
  local rps; rps=$(echo "$out" | awk '/^finished in/ {for (i=1;i<=NF;i++) if ($i ~ /req\/s/) {gsub(",","",$(i-1)); print $(i-1)}}')
  local ok; ok=$(echo "$out" | awk '/^requests:/ {print $8}')
  local failed; failed=$(echo "$out" | awk '/^requests:/ {print $10}')
  [ "${failed:-0}" -eq 0 ] || echo "  warning: $1: $failed h2 requests failed" >&2
  local p99; p99=$(python3 -c '
import sys
d = sorted(int(l.split()[2]) for l in open(sys.argv[1]) if len(l.split()) >= 3 and l.split()[1] == "200")
print("%.2f" % (d[int(len(d) * 0.99) - 1] / 1000) if d else "nan")' "$log")
  echo "$rps $p99 $ok $(load_cpu)"
}

declare -A RPS P99 CPU LOAD BUSY PORT1 PORT2 SPID
TICK=$(getconf CLK_TCK)
servers=(appnet nginx h2o)
echo "web-server bench: $ROUNDS rounds of ${DURATION}s per test and server, $CONNS connections ($STREAMS streams each for h2), $WORKERS worker thread(s) per server on CPU $SERVER_CPUS, load ($LOAD_THREADS thread(s)) on CPU $CLIENT_CPUS$([ "$SERVER_CPUS" = "$CLIENT_CPUS" ] && echo ' (shared: not enough CPUs to separate them)')"
for server in "${servers[@]}"; do
  "start_$server"
  PORT1[$server]=$H1; PORT2[$server]=$H2; SPID[$server]=${PIDS[-1]}
  # Warm up (file caches, connection setup paths).
  taskset -c "$CLIENT_CPUS" wrk -t1 -c 8 -d 1s "http://127.0.0.1:$H1/small.html" >/dev/null
done
for round in $(seq "$ROUNDS"); do
  # Rotate who goes first, so that no server always follows the same one.
  k=$(( (round - 1) % ${#servers[@]} )); order=("${servers[@]:$k}" "${servers[@]:0:$k}")
  for test in "${TESTS[@]}"; do
    proto=${test%%:*} file=${test#*:}
    for server in "${order[@]}"; do
      t0=$(cpu_ticks "${SPID[$server]}"); th0=$(thread_ticks "${SPID[$server]}")
      if [ $proto = h1 ]; then
        read -r rps p99 ok lcpu < <(run_wrk "http://127.0.0.1:${PORT1[$server]}/$file")
      else
        read -r rps p99 ok lcpu < <(run_h2load "http://127.0.0.1:${PORT2[$server]}/$file")
        [ "${ok:-0}" -gt 0 ] || echo "  warning: $server h2 $file: no successful requests" >&2
      fi
      t1=$(cpu_ticks "${SPID[$server]}")
      RPS[$server,$proto,$file]+="$rps "; P99[$server,$proto,$file]+="$p99 "; LOAD[$server,$proto,$file]+="$lcpu "
      BUSY[$server,$proto,$file]+="$(busy_threads "$th0" "$(thread_ticks "${SPID[$server]}")") "
      # The server's CPU time per request (µs): what the server spends when the load
      # generator, not the server, is the limit (then req/s tie and this does not).
      CPU[$server,$proto,$file]+="$(python3 -c "import sys; t,n=map(float,sys.argv[1:]); print('%.2f' % (t * 1e6 / $TICK / n) if n else 'nan')" $((t1 - t0)) "${ok:-0}") "
    done
  done
done
stop_all

# test_name PROTO FILE: the row label of a test.
test_name() { echo "$([ "$1" = h1 ] && echo 'HTTP/1.1 wrk' || echo 'HTTP/2 h2load') $([ "$2" = small.html ] && echo 612B || echo 1MB)"; }
# median LIST: the median of a space-separated list of numbers.
median() { python3 -c 'import sys, statistics; print("%.2f" % statistics.median(map(float, sys.argv[1:])))' $1; }
# spread A_LIST B_LIST: the lowest and highest per-round ratio a/b.
spread() { python3 -c '
import sys
a, b = (list(map(float, x.split())) for x in sys.argv[1:])
r = [x / y for x, y in zip(a, b) if y]
print("%.2f-%.2f" % (min(r), max(r)) if r else "n/a")' "$1" "$2"; }
ratio() { python3 -c "import sys; a,b=map(float,sys.argv[1:]); print('%.2fx' % (a/b) if b else 'n/a')" "$1" "$2"; }
# paired A_LIST B_LIST: the geometric mean of the per-round ratios a/b with its 95 % interval
# (Student's t over the rounds' log ratios). Each round runs both servers back to back, so the
# pairs share the machine's slow and fast spells; an interval that contains 1 is a tie.
paired() { python3 -c '
import math, statistics, sys
a, b = (list(map(float, x.split())) for x in sys.argv[1:])
r = [math.log(x / y) for x, y in zip(a, b) if x > 0 and y > 0]
if len(r) < 2:
    print("%.2f" % math.exp(r[0]) if r else "n/a"); sys.exit()
t = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23,
     12: 2.18, 14: 2.14, 16: 2.12, 19: 2.09, 24: 2.06, 29: 2.05}
q = t[max(k for k in t if k <= len(r) - 1)] if len(r) <= 30 else 1.96
m, h = statistics.mean(r), q * statistics.stdev(r) / math.sqrt(len(r))
print("%.2f(%.2f-%.2f)" % (math.exp(m), math.exp(m - h), math.exp(m + h)))' "$1" "$2"; }
# lower A_LIST B_LIST: in how many rounds a was at most b, as "k/n".
lower() { python3 -c '
import sys
a, b = (list(map(float, x.split())) for x in sys.argv[1:])
print("%d/%d" % (sum(x <= y for x, y in zip(a, b)), min(len(a), len(b))))' "$1" "$2"; }

printf '\n%-22s %12s %10s %12s %10s %12s %10s %10s %10s %12s %18s %10s\n' test appnet_req/s p99_ms nginx_req/s p99_ms h2o_req/s p99_ms vs_nginx vs_h2o vs_h2o_range vs_h2o_paired p99_lower
for test in "${TESTS[@]}"; do
  proto=${test%%:*} file=${test#*:}
  name=$(test_name "$proto" "$file")
  a=$(median "${RPS[appnet,$proto,$file]}"); n=$(median "${RPS[nginx,$proto,$file]}"); h=$(median "${RPS[h2o,$proto,$file]}")
  printf '%-22s %12s %10s %12s %10s %12s %10s %10s %10s %12s %18s %10s\n' "$name" "$a" "$(median "${P99[appnet,$proto,$file]}")" \
    "$n" "$(median "${P99[nginx,$proto,$file]}")" "$h" "$(median "${P99[h2o,$proto,$file]}")" \
    "$(ratio "$a" "$n")" "$(ratio "$a" "$h")" "$(spread "${RPS[appnet,$proto,$file]}" "${RPS[h2o,$proto,$file]}")" \
    "$(paired "${RPS[appnet,$proto,$file]}" "${RPS[h2o,$proto,$file]}")" "$(lower "${P99[appnet,$proto,$file]}" "${P99[h2o,$proto,$file]}")"
done

printf '\n%-22s %12s %12s %12s %10s %12s\n' "server CPU, us/request" appnet nginx h2o vs_h2o vs_h2o_range
for test in "${TESTS[@]}"; do
  proto=${test%%:*} file=${test#*:}
  name=$(test_name "$proto" "$file")
  a=$(median "${CPU[appnet,$proto,$file]}"); h=$(median "${CPU[h2o,$proto,$file]}")
  printf '%-22s %12s %12s %12s %10s %12s\n' "$name" "$a" "$(median "${CPU[nginx,$proto,$file]}")" "$h" \
    "$(ratio "$a" "$h")" "$(spread "${CPU[appnet,$proto,$file]}" "${CPU[h2o,$proto,$file]}")"
done
printf '\n%-22s %12s %12s %12s\n' "load generator CPU, %" appnet nginx h2o
for test in "${TESTS[@]}"; do
  proto=${test%%:*} file=${test#*:}
  name=$(test_name "$proto" "$file")
  printf '%-22s %12s %12s %12s\n' "$name" "$(median "${LOAD[appnet,$proto,$file]}")" \
    "$(median "${LOAD[nginx,$proto,$file]}")" "$(median "${LOAD[h2o,$proto,$file]}")"
done
if [ "$WORKERS" -gt 1 ]; then
  # With the load generator on the same CPUs, how many of a server's workers did the work
  # decides how many busy threads share the CPUs (docs/web-server.md, "Two workers").
  printf '\n%-22s %-20s %-20s %-20s\n' "CPU split, threads" appnet nginx h2o
  for test in "${TESTS[@]}"; do
    proto=${test%%:*} file=${test#*:}
    printf '%-22s %-20s %-20s %-20s\n' "$(test_name "$proto" "$file")" "${BUSY[appnet,$proto,$file]% }" "${BUSY[nginx,$proto,$file]% }" "${BUSY[h2o,$proto,$file]% }"
  done
fi
echo
echo "Medians over $ROUNDS rounds; vs_h2o_range: the lowest and highest ratio of a single round;"
echo "vs_h2o_paired: the geometric mean of the rounds' ratios and its 95 % interval (one that"
echo "contains 1.00 is a tie); p99_lower: the rounds in which appnet's p99 was at most h2o's."
echo "Server CPU: user + system time of the server's processes during the run over the requests"
echo "answered (lower is better; the CPU ratio is appnet/h2o, below 1 when appnet spends less)."
echo "Load generator CPU: its user + system time over its run time, while loading each server"
echo "(100 per load thread busy throughout: there the load generator, not the server, is the limit)."
if [ "$WORKERS" -gt 1 ]; then
  echo "CPU split: per round, the share (%) of the server's CPU time used by each of its threads"
  echo "(nginx: processes) that used a tenth or more; \"100\" means one thread did all the work."
fi
