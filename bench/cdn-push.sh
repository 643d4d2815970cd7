#!/usr/bin/env bash
# CDN push benchmark (a report, not a test): pre-positioning N objects on a cold replica.
# appnet: one signed push listing the N URLs (the replica fetches them, push_concurrency 8).
# The anchor, Varnish, has no push: its operators warm it by requesting every URL, so it gets
# the same N GETs over 8 keep-alive connections (a python client); appnet pulled the same way
# is measured too. Same origin, same CPUs; then every object is requested once more to check
# it is a hit. Prints objects/s and appnet's ratios.
#
#   bench/cdn-push.sh                   # release build of appnet, 1000 objects of 10 KB
#   OBJECTS=500 SIZE=100000 bench/cdn-push.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
OBJECTS=${OBJECTS:-1000}
SIZE=${SIZE:-10240}
for tool in varnishd python3 curl openssl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install varnish curl openssl)" >&2; exit 1; }
done
source "$here/lib.sh"
release_appnet
site=$WORK/site
mkdir -p "$site/obj"
python3 - "$site/obj" "$OBJECTS" "$SIZE" <<'PY'
import os, sys
d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    open(os.path.join(d, f"{i}.bin"), "wb").write(os.urandom(size))
PY
cat > "$WORK/origin.toml" <<'TOML'
[web]
access_log = false
[[web.cache]]
max_age = 3600
TOML
OPORT=$(free_port)
"$APPNET" --config "$WORK/origin.toml" web serve --root "$site" --listen "127.0.0.1:$OPORT" 2>"$WORK/origin.err" &
PIDS+=($!); wait_port "$OPORT"
head -c 32 /dev/urandom | base64 > "$WORK/push.secret"

# get_all PORT: GETs every object over 8 keep-alive connections; prints "seconds hits".
cat > "$WORK/get_all.py" <<'PY'
import http.client, sys, threading, time
port, n = int(sys.argv[1]), int(sys.argv[2])
hits = [0]; lock = threading.Lock()
def worker(k):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in range(k, n, 8):
        c.request("GET", f"/obj/{i}.bin", headers={"Host": f"127.0.0.1:{port}"})
        r = c.getresponse(); r.read()
        hit = r.getheader("x-cache", "").startswith("HIT") or len((r.getheader("x-varnish") or "").split()) == 2
        with lock: hits[0] += hit
t = time.time()
ts = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
[x.start() for x in ts]; [x.join() for x in ts]
print(f"{time.time() - t:.3f} {hits[0]}")
PY
start_appnet() {
  PORT=$(free_port)
  "$APPNET" web proxy --reverse "http://127.0.0.1:$OPORT" --listen "127.0.0.1:$PORT" --push-secret-file "$WORK/push.secret" 2>"$WORK/appnet.err" &
  PIDS+=($!); SERVER_PID=$!; wait_port "$PORT"
}
start_varnish() {
  PORT=$(free_port)
  rm -rf "$WORK/varnish"; mkdir -p "$WORK/varnish"
  varnishd -F -n "$WORK/varnish" -a "127.0.0.1:$PORT" -b "127.0.0.1:$OPORT" -s malloc,256m >"$WORK/varnish.log" 2>&1 &
  PIDS+=($!); SERVER_PID=$!; wait_port "$PORT"
}
stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }

declare -A T H
# appnet, push
start_appnet
urls=()
for ((i = 0; i < OBJECTS; i++)); do urls+=("http://127.0.0.1:$PORT/obj/$i.bin"); done
t0=$(date +%s.%N)
"$APPNET" web push "${urls[@]}" --replica "127.0.0.1:$PORT" --secret-file "$WORK/push.secret" --timeout 600 >"$WORK/push.out" 2>&1
t1=$(date +%s.%N)
T[appnet-push]=$(echo "$t1 - $t0" | bc -l)
H[appnet-push]=$(python3 "$WORK/get_all.py" "$PORT" "$OBJECTS" | cut -d' ' -f2)
stop_server
# appnet and Varnish, warmed by requests
for s in appnet varnish; do
  "start_$s"
  T[$s-pull]=$(python3 "$WORK/get_all.py" "$PORT" "$OBJECTS" | cut -d' ' -f1)
  H[$s-pull]=$(python3 "$WORK/get_all.py" "$PORT" "$OBJECTS" | cut -d' ' -f2)
  stop_server
done
echo "Pre-positioning $OBJECTS objects of $SIZE bytes on a cold replica ($(date -u +%F), $(nproc) CPUs)"
printf '%-34s %10s %12s %14s\n' "how" "seconds" "objects/s" "hits after"
for k in appnet-push appnet-pull varnish-pull; do
  printf '%-34s %10.3f %12.0f %10s/%s\n' "$k" "${T[$k]}" "$(echo "$OBJECTS / ${T[$k]}" | bc -l)" "${H[$k]}" "$OBJECTS"
done
printf 'appnet push / Varnish warmed by GETs: %.2fx the objects/s\n' "$(echo "${T[varnish-pull]} / ${T[appnet-push]}" | bc -l)"
printf 'appnet push / appnet warmed by GETs:  %.2fx the objects/s\n' "$(echo "${T[appnet-pull]} / ${T[appnet-push]}" | bc -l)"
