#!/usr/bin/env bash
# appnet web serve, driven by clients that are not ours: curl (HTTP/1.0, 1.1, h2 over TLS, h2c),
# nghttp (server push), and Python raw sockets (pipelining, status codes for bad requests).
source "$(dirname "$0")/lib.sh"

site=$WORK/site; foo=$WORK/foo
mkdir -p "$site/img" "$site/docs" "$foo"
cat > "$site/index.html" <<'HTML'
<html><head><link rel="stylesheet" href="style.css"></head>
<body><h1>someDepartment</h1><img src="img/a.jpg"><img src="img/b.jpg"></body></html>
HTML
echo 'body { color: black }' > "$site/style.css"
head -c 3000 /dev/zero > "$site/img/a.jpg"; head -c 4000 /dev/zero > "$site/img/b.jpg"
seq 1 2000 > "$site/nums.txt"; gzip -k "$site/nums.txt"
echo 'read me' > "$site/docs/readme.txt"
echo 'www.foo.com home' > "$foo/index.html"
export APPNET_CA_DIR=$WORK/ca

port=$(free_port)
bg "$APPNET" web serve --root "$site" --vhost www.foo.com="$foo" --listen "127.0.0.1:$port" --allow-write --max-body 2000000 --metrics-path /server-metrics > "$WORK/access.log"
wait_tcp 127.0.0.1 "$port"
tport=$(free_port)
bg "$APPNET" web serve --root "$site" --listen "127.0.0.1:$tport" --tls --quiet
wait_tcp 127.0.0.1 "$tport"
base=http://127.0.0.1:$port
C=(curl -s --max-time 10)

echo "HTTP/1.0 and 1.1"
check "curl --http1.0" "HTTP/1.0 200 OK" "$("${C[@]}" --http1.0 -i $base/style.css | head -1 | tr -d '\r')"
check "curl --http1.1 body" "body { color: black }" "$("${C[@]}" --http1.1 $base/style.css)"
check "HEAD has no body" "0" "$("${C[@]}" -I $base/nums.txt -o /dev/null -w '%{size_download}')"
check "HEAD has Content-Length" "$(stat -c %s "$site/nums.txt")" "$("${C[@]}" -I $base/nums.txt | tr -d '\r' | awk -F': ' 'tolower($1)=="content-length"{print $2}')"
check "directory without slash" "301 $base/docs/" "$("${C[@]}" -o /dev/null -w '%{http_code} %{redirect_url}' $base/docs)"
check "404" "404" "$("${C[@]}" -o /dev/null -w '%{http_code}' $base/missing)"
check "traversal refused" "400" "$("${C[@]}" --path-as-is -o /dev/null -w '%{http_code}' "$base/../../etc/passwd")"
check "encoded traversal refused" "400" "$("${C[@]}" --path-as-is -o /dev/null -w '%{http_code}' "$base/%2e%2e/%2e%2e/etc/passwd")"
check "keep-alive: two URLs, one connection" "1" "$("${C[@]}" -o /dev/null -o /dev/null -w '%{num_connects}\n' $base/style.css $base/nums.txt | paste -sd+ | bc)"

echo "conditional GET"
etag=$("${C[@]}" -I $base/nums.txt | tr -d '\r' | awk -F': ' 'tolower($1)=="etag"{print $2}')
check "If-None-Match matching" "304" "$("${C[@]}" -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" $base/nums.txt)"
check "If-None-Match other" "200" "$("${C[@]}" -o /dev/null -w '%{http_code}' -H 'If-None-Match: "x"' $base/nums.txt)"
check "curl -z future date" "304" "$("${C[@]}" -o /dev/null -w '%{http_code}' -z 'Fri, 01 Jan 2100 00:00:00 GMT' $base/nums.txt)"
check "curl -z past date" "200" "$("${C[@]}" -o /dev/null -w '%{http_code}' -z 'Sat, 01 Jan 2000 00:00:00 GMT' $base/nums.txt)"
check "If-Match mismatch" "412" "$("${C[@]}" -o /dev/null -w '%{http_code}' -H 'If-Match: "x"' $base/nums.txt)"

echo "ranges and encodings"
check "single range status" "206" "$("${C[@]}" -r 0-5 -o /dev/null -w '%{http_code}' $base/nums.txt)"
check "single range body" "1|2|3" "$("${C[@]}" -r 0-5 $base/nums.txt | paste -sd'|')"
check "multipart ranges" "multipart/byteranges" "$("${C[@]}" -r 0-1,10-11 -o /dev/null -w '%{content_type}' $base/nums.txt | cut -d';' -f1)"
check "unsatisfiable range" "416" "$("${C[@]}" -r 999999- -o /dev/null -w '%{http_code}' $base/nums.txt)"
check "precompressed gzip with --compressed" "$(cat "$site/nums.txt" | md5sum)" "$("${C[@]}" --compressed $base/nums.txt | md5sum)"
check "Vary: Accept-Encoding" "Accept-Encoding" "$("${C[@]}" -I $base/nums.txt | tr -d '\r' | awk -F': ' 'tolower($1)=="vary"{print $2}')"

echo "large files (sendfile on plain TCP, in memory over TLS)"
head -c 6500000 /dev/urandom > "$site/big.bin"; head -c 1048576 /dev/urandom > "$site/1m.bin"
big_md5=$(md5sum < "$site/big.bin")
check "6.5 MB over HTTP/1.1" "$big_md5" "$("${C[@]}" --http1.1 $base/big.bin | md5sum)"
check "6.5 MB over HTTP/1.0" "$big_md5" "$("${C[@]}" --http1.0 $base/big.bin | md5sum)"
conns=$(cd "$WORK" && "${C[@]}" -w '%{num_connects}\n' -o m1 -o m2 -o m3 $base/1m.bin $base/1m.bin $base/1m.bin | paste -sd+ | bc)
check "1 MB three times: one connection" "1" "$conns"
check "1 MB three times: every byte" "$(cat "$site/1m.bin" "$site/1m.bin" "$site/1m.bin" | md5sum)" "$(cat "$WORK"/m1 "$WORK"/m2 "$WORK"/m3 | md5sum)"
check "a range in the middle of 6.5 MB" "$(tail -c +1000001 "$site/big.bin" | head -c 4000000 | md5sum)" "$("${C[@]}" -r 1000000-4999999 $base/big.bin | md5sum)"
check "HEAD of 6.5 MB: its length" "6500000" "$("${C[@]}" -I $base/big.bin | tr -d '\r' | awk -F': ' 'tolower($1)=="content-length"{print $2}')"
check "HEAD of 6.5 MB: no body" "0" "$("${C[@]}" -I -o /dev/null -w '%{size_download}' $base/big.bin)"
aria2c -q -d "$WORK" -o aria.bin -x 4 -s 4 -k 1M --allow-overwrite=true $base/big.bin
check "aria2c, 4 connections of ranges" "$big_md5" "$(md5sum < "$WORK/aria.bin")"
check "6.5 MB over TLS" "$big_md5" "$("${C[@]}" --http1.1 --cacert "$APPNET_CA_DIR/ca.pem" "https://localhost:$tport/big.bin" | md5sum)"
rm -f "$site/big.bin" "$site/1m.bin"

echo "virtual hosts and cookies"
check "vhost by --resolve" "www.foo.com home" "$("${C[@]}" --resolve "www.foo.com:$port:127.0.0.1" "http://www.foo.com:$port/")"
check "unknown host gets the default site" "body { color: black }" "$("${C[@]}" -H 'Host: nobody.example' $base/style.css)"
jar=$WORK/cookies
"${C[@]}" -c "$jar" "$base/cart?add=book" > /dev/null
check "session cookie stored" "1" "$(grep -c appnet_cart "$jar")"
check "cart remembers with -b" "2 item(s)" "$("${C[@]}" -b "$jar" -c "$jar" "$base/cart?add=pen" | head -1 | grep -o '[0-9] item(s)')"
check "another client has an empty cart" "0 item(s)" "$("${C[@]}" "$base/cart" | head -1 | grep -o '[0-9] item(s)')"
check "echo returns the request" "x-teach: yes" "$("${C[@]}" -H 'X-Teach: yes' $base/echo | grep -i x-teach)"

echo "uploads (--allow-write)"
head -c 1500000 /dev/urandom > "$WORK/upload.bin"
check "PUT with Expect: 100-continue" "201" "$("${C[@]}" -T "$WORK/upload.bin" -H 'Expect: 100-continue' -o /dev/null -w '%{http_code}' $base/up/upload.bin)"
check "uploaded bytes" "$(md5sum < "$WORK/upload.bin")" "$(md5sum < "$site/up/upload.bin")"
check "chunked PUT" "204" "$(printf 'abc' | "${C[@]}" -T - -H 'Transfer-Encoding: chunked' -o /dev/null -w '%{http_code}' $base/up/upload.bin)"
check "PUT over the cap" "413" "$(head -c 3000000 /dev/zero | "${C[@]}" -T - -o /dev/null -w '%{http_code}' $base/up/big.bin)"
check "DELETE" "204" "$("${C[@]}" -X DELETE -o /dev/null -w '%{http_code}' $base/up/upload.bin)"

echo "HTTP/2"
check "h2c prior knowledge" "2 200" "$("${C[@]}" --http2-prior-knowledge -o /dev/null -w '%{http_version} %{http_code}' $base/style.css)"
cacert=$APPNET_CA_DIR/ca.pem
check "h2 over TLS (ALPN) with --cacert" "2 200" "$("${C[@]}" --http2 --cacert "$cacert" -o /dev/null -w '%{http_version} %{http_code}' "https://localhost:$tport/style.css")"
check "HTTP/1.1 over TLS" "1.1 200" "$("${C[@]}" --http1.1 --cacert "$cacert" -o /dev/null -w '%{http_version} %{http_code}' "https://localhost:$tport/")"
check "TLS cert fails without the CA" "60" "$(curl -s --max-time 10 -o /dev/null "https://localhost:$tport/" ; echo $?)"
pushes=$(nghttp -nv "$base/" | grep -c 'recv PUSH_PROMISE')
check "nghttp sees PUSH_PROMISE for the page's links" "3" "$pushes"
pushes_tls=$(nghttp -nv "https://localhost:$tport/" 2>/dev/null | grep -c 'recv PUSH_PROMISE')
check "push over TLS too" "3" "$pushes_tls"
check "no push when the client disables it" "0" "$(nghttp -nv --no-push "$base/" | grep -c 'recv PUSH_PROMISE' || true)"
check "nghttp multiplexes 20 streams on one connection" "20" "$(nghttp -n -s $(for i in $(seq 20); do echo "$base/nums.txt?$i"; done) 2>/dev/null | grep -c ' 200 .*/nums.txt' || true)"

echo "raw sockets"
python3 - "$port" <<'PY'
import socket, sys
port = int(sys.argv[1])
def exchange(data, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d: break
            out += d
    except socket.timeout:
        pass
    s.close()
    return out
# Ten pipelined requests in one write, answered in order.
reqs = b"".join(b"GET /echo/%d HTTP/1.1\r\nHost: x\r\n%s\r\n" % (i, b"Connection: close\r\n" if i == 9 else b"") for i in range(10))
out = exchange(reqs)
assert out.count(b"HTTP/1.1 200 OK") == 10, out[:300]
order = [int(line.split(b" ")[1].split(b"/")[2]) for line in out.split(b"\n") if line.startswith(b"GET /echo/")]
assert order == list(range(10)), order
print("  ok: 10 pipelined requests in one write, 10 responses in order")
cases = [
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "unsupported version"),
    (b"GET / HTTP/1.1\r\n\r\n", 400, "HTTP/1.1 without Host"),
    (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "long request line"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n", 431, "too many header fields"),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "CL + TE smuggling"),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, "duplicate Content-Length"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n", 400, "obs-fold"),
    (b"BREW /pot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 501, "unknown method"),
    (b"DELETE /style.css HTTP/1.1\r\nHost: x\r\nIf-Match: \"x\"\r\nConnection: close\r\n\r\n", 412, "conditional DELETE"),
]
for req, want, name in cases:
    got = int(exchange(req).split(b" ")[1])
    assert got == want, (name, got)
    print(f"  ok: {name} -> {want}")
# HTTP/1.0 keep-alive: two answers on one connection.
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(b"GET /style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /style.css HTTP/1.0\r\n\r\n")
out = b""
while True:
    d = s.recv(65536)
    if not d: break
    out += d
assert out.count(b"HTTP/1.0 200 OK") == 2, out
print("  ok: HTTP/1.0 keep-alive, then close")
PY

check "access log in Combined Log Format" "1" "$(grep -cE '^127\.0\.0\.1 - - \[[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9:]{8} \+0000\] "GET /style.css HTTP/1.0" 200 22 "-" "curl/' "$WORK/access.log")"

check "per-status counters (Prometheus text)" "1" "$("${C[@]}" $base/server-metrics | grep -c '^web_responses_total{code="505"} 1$')"

echo "appnet web get"
check "get --http1.0" "body { color: black }" "$("$APPNET" web get --http1.0 $base/style.css)"
check "get --http2 (h2c)" "HTTP/2.0 200 OK" "$("$APPNET" web get -i --http2 $base/style.css | head -1)"
check "get --http2 over TLS" "HTTP/2.0 200 OK" "$("$APPNET" web get -i --http2 --cacert "$cacert" "https://localhost:$tport/" | head -1)"
echo "HTTP/2 conformance"
# httpwg comes from crates.io (.ci/cargo.d/web.txt: cargo install --locked httpwg-cli), not from
# Debian. A missing httpwg is a failure: a skipped conformance run proves nothing.
PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
command -v httpwg >/dev/null || { echo "  FAIL: httpwg is not installed (cargo install --locked httpwg-cli)" >&2; exit 1; }
cport=$(free_port)
# httpwg opens one connection per test case, all 107 at once from 127.0.0.1: above the default
# per-address cap (64), which would answer the extra ones with HTTP/1.1 503.
printf '[web]\necho_paths = ["/"]\naccess_log = false\nmax_per_ip = 256\n' > "$WORK/conformance.toml"
result=$(timeout 120 httpwg --frame-timeout 1000 -a "127.0.0.1:$cport" -- "$APPNET" --config "$WORK/conformance.toml" web serve --root "$site" --listen "127.0.0.1:$cport" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | grep -o 'Passed [0-9]*/[0-9]*' || true)
check "httpwg (h2c, echo app at /, the own HTTP/2 core)" "Passed 107/107" "$result"
# The same suite against the h2 crate's driver (h2_engine = "h2-crate", still selectable).
oport=$(free_port)
printf 'h2_engine = "h2-crate"\n' >> "$WORK/conformance.toml"
result=$(timeout 120 httpwg --frame-timeout 1000 -a "127.0.0.1:$oport" -- "$APPNET" --config "$WORK/conformance.toml" web serve --root "$site" --listen "127.0.0.1:$oport" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | grep -o 'Passed [0-9]*/[0-9]*' || true)
check "httpwg against the h2 crate's driver" "Passed 107/107" "$result"
echo "web-server: $CHECKS checks passed"
