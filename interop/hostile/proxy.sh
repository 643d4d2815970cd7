#!/usr/bin/env bash
# appnet web proxy against a hostile tester (issue 22): cache poisoning through Host, SSRF and
# ACL bypass in forward mode (loopback destinations, the proxy's own /metrics through itself,
# CONNECT to local ports, port scanning by error text), malformed Host / Expect, and memory per
# miss: slow clients of large misses, with the proxy's peak RSS checked against
# memory size + 64 MiB. Loopback only, about 20 s.
source "$(dirname "$0")/../lib.sh"

site=$WORK/site; evil=$WORK/evil
mkdir -p "$site" "$evil"
echo "good page" > "$site/page.html"
echo "EVIL page" > "$evil/page.html"
head -c $((16 * 1024 * 1024)) /dev/urandom > "$site/big.bin"
# No Cache-Control from the origin: a month-old Last-Modified makes them cacheable.
touch -d '30 days ago' "$site/page.html" "$site/big.bin" "$evil/page.html"

oport=$(free_port); pport=$(free_port); sport=$(free_port)
bg "$APPNET" web serve --root "$site" --vhost "evil.test=$evil" --listen "127.0.0.1:$oport" --quiet
# The lab-style proxy (loopback origins allowed) and a default one (no internal destinations).
bg "$APPNET" web proxy --listen "127.0.0.1:$pport" --allow-dest 127.0.0.0/8 --memory-size 32MiB
PROXY_PID=$LAST_PID
bg "$APPNET" web proxy --listen "127.0.0.1:$sport"
for p in $oport $pport $sport; do wait_tcp 127.0.0.1 "$p"; done
origin=http://127.0.0.1:$oport
C=(curl -s --max-time 10 -x "http://127.0.0.1:$pport")
S=(curl -s --max-time 10 -x "http://127.0.0.1:$sport")
code() { "$@" -o /dev/null -w '%{http_code}' || true; }

echo "cache poisoning through Host (RFC 9112 3.2.2: the absolute-form authority wins)"
check "the attacker's Host: evil.test is not what gets fetched" "good page" "$("${C[@]}" -H 'Host: evil.test' "$origin/page.html")"
got=$("${C[@]}" -D "$WORK/h" "$origin/page.html")
check "the next clean client gets a hit with the origin's own page" "HIT good page" "$(tr -d '\r' < "$WORK/h" | awk -F': ' 'tolower($1)=="x-cache"{print $2}') $got"

# An origin that reflects X-Forwarded-Host (as some frameworks do when building links).
xport=$(free_port)
bg python3 -c "
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ('xfh=%s' % self.headers.get('X-Forwarded-Host')).encode()
        self.send_response(200); self.send_header('Cache-Control', 'max-age=60')
        self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(('127.0.0.1', $xport), H).serve_forever()
"
wait_tcp 127.0.0.1 "$xport"
check "a client's X-Forwarded-Host is not forwarded (it is not in the cache key)" "xfh=None" \
  "$("${C[@]}" -H 'X-Forwarded-Host: evil.test' "http://127.0.0.1:$xport/links")"
check "so the next client's hit is clean" "xfh=None" "$("${C[@]}" "http://127.0.0.1:$xport/links")"

echo "forward-proxy SSRF and ACL bypass"
check "loopback origin refused by default" "403" "$(code "${S[@]}" "$origin/page.html")"
check "a name resolving to loopback refused too" "403" "$(code "${S[@]}" "http://localhost:$oport/page.html")"
check "the proxy's own /metrics through itself refused" "403" "$(code "${C[@]}" "http://127.0.0.1:$pport/metrics")"
check "... also by name" "403" "$(code "${C[@]}" "http://localhost:$pport/metrics")"
check "CONNECT to a local port refused" "403" "$("${S[@]}" -o /dev/null -w '%{http_connect}' "https://127.0.0.1:$oport/" 2>/dev/null || true)"
check "CONNECT to loopback 443 refused" "403" "$("${S[@]}" -o /dev/null -w '%{http_connect}' "https://localhost:443/" 2>/dev/null || true)"
# A port that is closed and a port that is open but not HTTP answer alike.
closed=$(free_port); junk=$(free_port)
bg python3 -c "
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $junk)); s.listen(16)
while True:
    c, _ = s.accept(); c.sendall(b'SSH-2.0-OpenSSH_9.2\r\n'); c.close()
"
wait_tcp 127.0.0.1 "$junk"
a=$("${C[@]}" "http://127.0.0.1:$closed/" | sed "s/$closed/PORT/g")
b=$("${C[@]}" "http://127.0.0.1:$junk/" | sed "s/$junk/PORT/g")
check "closed and open-but-not-HTTP ports give the same 502 text" "$a" "$b"
check "no OS error text in the 502" "no" "$(echo "$a" | grep -qi 'refused\|os error' && echo yes || echo no)"

echo "malformed requests"
check "Host: a b gets 400" "400" "$(code "${C[@]}" -H 'Host: a b' "$origin/page.html")"
check "Expect: other than 100-continue gets 417" "417" "$(code "${C[@]}" -H 'Expect: bogus' "$origin/page.html")"

echo "memory per miss: 10 slow clients of distinct 16 MB misses (memory cache 32 MiB)"
rss() { awk -v k="$1:" '$1==k{print $2}' "/proc/$PROXY_PID/status"; }
before=$(rss VmRSS)
cpids=()
for i in $(seq 1 10); do
  curl -s --max-time 40 --limit-rate 3M -x "http://127.0.0.1:$pport" -o "$WORK/dl$i" "$origin/big.bin?copy=$i" &
  cpids+=($!)
done
for p in "${cpids[@]}"; do wait "$p" || true; done
peak=$(rss VmHWM)
size_ok=yes
for i in $(seq 1 10); do [ "$(stat -c %s "$WORK/dl$i")" = $((16 * 1024 * 1024)) ] || size_ok=no; done
check "every slow client got its whole body" "yes" "$size_ok"
check "bodies intact" "$(sha256sum < "$site/big.bin")" "$(sha256sum < "$WORK/dl7")"
bound=$(((32 + 64) * 1024))
echo "  proxy RSS before ${before} KiB, peak ${peak} KiB, bound ${bound} KiB (memory size + 64 MiB)"
check "peak RSS under memory size + 64 MiB" "yes" "$([ "$peak" -lt "$bound" ] && echo yes || echo no)"
metrics=$(curl -s --max-time 10 "http://127.0.0.1:$pport/metrics")
echo "$metrics" | grep inflight | grep -v "^#" | sed "s/^/  /"
# In flight: at most the memory size being stored, plus a short queue per client.
check "the in-flight gauge stayed bounded (memory size + 8 MiB of queues)" "yes" \
  "$(echo "$metrics" | awk '$1=="appnet_proxy_inflight_bytes_peak" && $2 <= 40*1024*1024 {print "yes"}')"
echo "proxy: $CHECKS checks passed"
