#!/usr/bin/env bash
# appnet web proxy and the CDN, driven by clients that are not ours: curl through the forward
# proxy (-x), including CONNECT to an HTTPS site; curl and nghttp over TLS to the proxy in front
# of an https:// origin; dig against the CDN's DNS from two resolver
# addresses; and the HTTP working group's cache test suite
# (http-cache-tests from npm) against appnet in reverse-proxy mode, with its pass count printed
# next to the suite's published results for Varnish, Squid and nginx.
source "$(dirname "$0")/lib.sh"

site=$WORK/site
mkdir -p "$site"
echo '<html><body><img src="popular-image.jpg"></body></html>' > "$site/index.html"
head -c 100000 /dev/urandom > "$site/popular-image.jpg"
# No Cache-Control from the origin: a month-old Last-Modified gives heuristic freshness.
touch -d '30 days ago' "$site/popular-image.jpg" "$site/index.html"
export APPNET_CA_DIR=$WORK/ca

oport=$(free_port); tport=$(free_port); pport=$(free_port); dport=$(free_port)
bg "$APPNET" web serve --root "$site" --listen "127.0.0.1:$oport" --quiet
bg "$APPNET" web serve --root "$site" --listen "127.0.0.1:$tport" --tls --quiet
bg "$APPNET" web proxy --listen "127.0.0.1:$pport" --connect-port "$tport" --allow-dest 127.0.0.0/8
bg "$APPNET" web proxy --listen "127.0.0.1:$dport" --allow 10.0.0.0/8
for p in $oport $tport $pport $dport; do wait_tcp 127.0.0.1 "$p"; done
origin=http://127.0.0.1:$oport
C=(curl -s --max-time 10 -x "http://127.0.0.1:$pport")
xcache() { "${C[@]}" -o /dev/null -D - "$@" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}'; }

echo "forward proxy (curl -x)"
check "first fetch is a miss" "MISS" "$(xcache $origin/popular-image.jpg)"
check "second fetch is a hit (heuristic freshness)" "HIT" "$(xcache $origin/popular-image.jpg)"
check "body intact through the cache" "$(sha256sum < "$site/popular-image.jpg")" "$("${C[@]}" $origin/popular-image.jpg | sha256sum)"
check "client no-cache: conditional GET, 304 from the origin" "REVALIDATED" "$(xcache -H 'Cache-Control: no-cache' $origin/popular-image.jpg)"
check "Cache-Status on a hit" "appnet; hit" "$("${C[@]}" -o /dev/null -D - $origin/popular-image.jpg | tr -d '\r' | awk -F': ' 'tolower($1)=="cache-status"{print $2}' | cut -d';' -f1-2)"
check "HEAD from the stored GET" "HIT 100000" "$("${C[@]}" -I $origin/popular-image.jpg | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{x=$2} tolower($1)=="content-length"{l=$2} END{print x, l}')"
check "only-if-cached for an unknown URL" "504" "$("${C[@]}" -o /dev/null -w '%{http_code}' -H 'Cache-Control: only-if-cached' $origin/never-fetched)"
check "PURGE" "200" "$("${C[@]}" -o /dev/null -w '%{http_code}' -X PURGE $origin/popular-image.jpg)"
check "after PURGE a miss again" "MISS" "$(xcache $origin/popular-image.jpg)"
check "HTTP/1.0 client" "HTTP/1.0 200 OK" "$("${C[@]}" --http1.0 -i $origin/index.html | head -1 | tr -d '\r')"
dead=$(free_port)
check "origin down: 502" "502" "$("${C[@]}" -o /dev/null -w '%{http_code}' http://127.0.0.1:$dead/)"
check "CONNECT to an HTTPS site (not cached)" "$(cat "$site/index.html")" "$("${C[@]}" --cacert "$WORK/ca/ca.pem" https://localhost:$tport/index.html)"
check "CONNECT to a port not allowed" "403" "$("${C[@]}" -o /dev/null -w '%{http_connect}' https://localhost:$oport/ 2>/dev/null || true)"
check "client outside the allow list" "403" "$(curl -s --max-time 10 -x "http://127.0.0.1:$dport" -o /dev/null -w '%{http_code}' $origin/index.html)"
metrics=$(curl -s --max-time 10 "http://127.0.0.1:$pport/metrics")
check "metrics: hits counted" "yes" "$(echo "$metrics" | awk '$1=="appnet_proxy_hits_total" && $2>=2 {print "yes"}')"
check "metrics: one tunnel" "1" "$(echo "$metrics" | awk '$1=="appnet_proxy_tunnels_total"{print $2}')"
check "metrics: bytes saved" "yes" "$(echo "$metrics" | awk '$1=="appnet_proxy_bytes_saved_total" && $2>=200000 {print "yes"}')"

echo "HTTPS: an https:// origin behind the proxy, and the proxy's own TLS listener (lab CA)"
xport=$(free_port); fport=$(free_port); uport=$(free_port)
bg "$APPNET" web proxy --reverse "https://localhost:$tport" --tls --listen "127.0.0.1:$xport"
bg "$APPNET" web proxy --tls --listen "127.0.0.1:$fport" --allow-dest 127.0.0.0/8
mkdir -p "$WORK/other-ca"
bg "$APPNET" web proxy --reverse "https://localhost:$tport" --ca-dir "$WORK/other-ca" --listen "127.0.0.1:$uport"
for p in $xport $fport $uport; do wait_tcp 127.0.0.1 "$p"; done
S=(curl -s --max-time 10 --cacert "$WORK/ca/ca.pem")
# sget ARGS...: "HTTP-VERSION STATUS X-CACHE" of one request.
sget() {
  local v
  v=$("${S[@]}" -o /dev/null -D "$WORK/h" -w '%{http_version} %{http_code}' "$@")
  echo "$v $(tr -d '\r' < "$WORK/h" | awk -F': ' 'tolower($1)=="x-cache"{print $2}')"
}
https_url=https://localhost:$xport/popular-image.jpg
check "curl --cacert over TLS, https origin: a miss" "1.1 200 MISS" "$(sget --http1.1 "$https_url")"
check "then a hit" "1.1 200 HIT" "$(sget --http1.1 "$https_url")"
check "HTTP/2 by ALPN: a hit from the same cache" "2 200 HIT" "$(sget --http2 "$https_url")"
check "body intact over TLS on both sides" "$(sha256sum < "$site/popular-image.jpg")" "$("${S[@]}" "$https_url" | sha256sum)"
check "nghttp (h2 over TLS) gets a hit" "HIT" "$(nghttp -y -n -v "$https_url" | awk '$(NF-1)=="x-cache:"{print $NF}')"
check "another object over TLS on both sides" "200" "$("${S[@]}" -o /dev/null -w '%{http_code}' https://localhost:$xport/index.html)"
check "an origin signed by an untrusted CA: 502" "502" "$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' http://127.0.0.1:$uport/index.html)"
check "forward proxy over TLS (curl -x https://, --proxy-cacert)" "200 MISS" "$(curl -s --max-time 10 --proxy-cacert "$WORK/ca/ca.pem" -x "https://localhost:$fport" -o /dev/null -D "$WORK/h" -w '%{http_code}' $origin/index.html; echo " $(tr -d '\r' < "$WORK/h" | awk -F': ' 'tolower($1)=="x-cache"{print $2}')")"

echo "client timers: idle keep-alive connections outlive the header timeout"
iport=$(free_port)
bg "$APPNET" web proxy --reverse "$origin" --listen "127.0.0.1:$iport" --header-timeout 1 --idle-timeout 3
wait_tcp 127.0.0.1 "$iport"
keepalive=$(python3 - "$iport" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
req = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"
def response():
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    head, body = data.split(b"\r\n\r\n", 1)
    n = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
    while len(body) < n:
        body += s.recv(4096)
    return head.split(b"\r\n")[0].decode()
s.sendall(req); first = response()
time.sleep(1.6)
s.sendall(req); second = response()
t = time.monotonic()
closed = s.recv(1) == b""
print(first, "|", second, "|", "closed after idle" if closed and time.monotonic() - t > 2.5 else "closed early")
PY
)
check "second request after 1.6 s idle (header timeout 1 s), then closed at the 3 s idle timeout" \
  "HTTP/1.1 200 OK | HTTP/1.1 200 OK | closed after idle" "$keepalive"
slow=$(python3 - "$iport" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"GET / HTTP/1.1\r\nHost: sl")
t = time.monotonic()
reply = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    reply += chunk
status = reply.split(b"\r\n", 1)[0].decode(errors="replace")
print(status, "|", "cut" if time.monotonic() - t < 5 else "not cut")
PY
)
check "a stalled request head gets 408 and is cut at the header timeout" "HTTP/1.1 408 Request Timeout | cut" "$slow"

echo "CDN: DNS sends each resolver to its nearest healthy replica (dig -b picks the resolver address)"
command -v dig > /dev/null || { echo "  FAIL: dig is needed (bind9-dnsutils)" >&2; exit 1; }
rport=$(free_port); cport=$(free_port)
bg "$APPNET" web proxy --reverse "$origin" --listen "127.0.20.1:$rport"
east_pid=$LAST_PID
bg "$APPNET" web proxy --reverse "$origin" --listen "127.0.20.2:$rport"
wait_tcp 127.0.20.1 "$rport"; wait_tcp 127.0.20.2 "$rport"
bg "$APPNET" web cdn --listen "127.0.0.1:$cport" --check-interval 100 \
  --replica "east=127.0.20.1@127.0.20.1:$rport" --replica "west=127.0.20.2@127.0.20.2:$rport" \
  --network 127.0.4.0/24=east,west --network 127.0.5.0/24=west,east
wait_tcp 127.0.0.1 "$cport"
D=(dig +short +time=2 +tries=2 -p "$cport" @127.0.0.1 a128.g.akamai.net)
check "resolver 127.0.4.1 gets the east replica" "127.0.20.1" "$("${D[@]}" -b 127.0.4.1)"
check "resolver 127.0.5.1 gets the west replica" "127.0.20.2" "$("${D[@]}" -b 127.0.5.1)"
check "short TTL" "20" "$(dig +noall +answer -p "$cport" @127.0.0.1 a128.g.akamai.net -b 127.0.4.1 | awk '{print $2}')"
check "over TCP too" "127.0.20.1" "$("${D[@]}" +tcp -b 127.0.4.1)"
R=(curl -s --max-time 10 --resolve "a128.g.akamai.net:$rport:127.0.20.1" -o /dev/null -D -)
check "the replica pulls from the origin on a miss" "MISS" "$("${R[@]}" "http://a128.g.akamai.net:$rport/popular-image.jpg" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')"
check "and serves hits after" "HIT" "$("${R[@]}" "http://a128.g.akamai.net:$rport/popular-image.jpg" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')"
check "HTTP/2 (h2c) clients of a replica" "2 200" "$(curl -s --max-time 10 --http2-prior-knowledge -o /dev/null -w '%{http_version} %{http_code}' "http://127.0.0.1:$rport/popular-image.jpg" --connect-to "127.0.0.1:$rport:127.0.20.2:$rport")"
kill "$east_pid"
moved=""
for _ in $(seq 50); do
  moved=$("${D[@]}" -b 127.0.4.1)
  [ "$moved" = 127.0.20.2 ] && break
  sleep 0.1
done
check "a dead replica is not handed out" "127.0.20.2" "$moved"

echo "HTTP working group cache tests (reverse proxy)"
command -v npm > /dev/null || { echo "  FAIL: npm is needed for http-cache-tests" >&2; exit 1; }
hct=$WORK/hct
mkdir -p "$hct"
(cd "$hct" && timeout 120 npm i --silent --no-audit --no-fund http-cache-tests > npm.log 2>&1) \
  || { cat "$hct/npm.log" >&2; echo "  FAIL: npm i http-cache-tests" >&2; exit 1; }
suite=$hct/node_modules/http-cache-tests
sport=$(free_port); rport=$(free_port)
bg env npm_config_protocol=http npm_config_port="$sport" npm_config_pidfile="$hct/server.pid" \
  node "$suite/server/server.mjs"
bg "$APPNET" web proxy --reverse "http://127.0.0.1:$sport" --listen "127.0.0.1:$rport"
wait_tcp 127.0.0.1 "$sport"; wait_tcp 127.0.0.1 "$rport"
(cd "$suite" && npm_config_base="http://127.0.0.1:$rport" npm_config_id= npm_package_config_id= \
  timeout 150 node --no-warnings cli.mjs > "$hct/appnet.json")
summary=$(cd "$suite" && node -e '
  const fs = require("fs")
  const load = f => Object.values(JSON.parse(fs.readFileSync(f)))
  const rows = [["appnet", load(process.argv[1])]]
  for (const n of ["varnish", "squid", "nginx", "apache", "trafficserver"]) rows.push([n, load("results/" + n + ".json")])
  for (const [n, r] of rows) {
    const pass = r.filter(x => x === true).length
    console.log(`    ${n.padEnd(14)} ${String(pass).padStart(3)} of ${r.length} passed`)
  }
' "$hct/appnet.json")
echo "$summary"
ours=$(echo "$summary" | awk '$1=="appnet"{print $2}')
varnish=$(echo "$summary" | awk '$1=="varnish"{print $2}')
# Measured 273 of 350 when this script was written; the floor leaves room for timing flukes.
check "http-cache-tests: at least 262 pass" "yes" "$([ "$ours" -ge 262 ] && echo yes || echo "no ($ours)")"
check "http-cache-tests: more than Varnish" "yes" "$([ "$ours" -gt "$varnish" ] && echo yes || echo "no ($ours vs $varnish)")"
echo "web-cache: $CHECKS checks passed"
