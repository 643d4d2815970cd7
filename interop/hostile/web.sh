#!/usr/bin/env bash
# appnet web serve under attack (issue 22): silent connections filling the server, one address
# holding connections, a cookieless /cart flood against a real user's cart, invalid Host
# values and unknown expectations.
source "$(dirname "$0")/../lib.sh"

site="$WORK/site"
mkdir -p "$site"
echo "hello" > "$site/index.html"
port=$(free_port)
bg "$APPNET" web serve --root "$site" --listen "127.0.0.1:$port" --quiet \
  --max-connections 50 --max-per-ip 8 --header-timeout 2 --cart-sessions 100
wait_tcp 127.0.0.1 "$port"
base="http://127.0.0.1:$port"

# Silent connections from many addresses (80 for a cap of 50) cannot lock a real client out.
python3 - "$port" <<'PY'
import socket, sys, time
port = int(sys.argv[1])

def connect(src):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s

def get(src, path="/"):
    s = connect(src)
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk

silent = [connect("127.0.1.%d" % (i // 8 + 1)) for i in range(80)]
time.sleep(0.3)
reply = get("127.0.2.1")
assert reply.startswith(b"HTTP/1.1 200"), reply[:100]
print("  ok: 80 silent connections at a cap of 50: a real client still gets 200")

# One address gets its share (8) and no more; other addresses are served.
held = [connect("127.0.3.1") for _ in range(8)]
time.sleep(0.3)
assert get("127.0.3.1").startswith(b"HTTP/1.1 503"), "9th connection from one address"
assert get("127.0.3.2").startswith(b"HTTP/1.1 200")
print("  ok: the 9th connection from one address gets 503, another address 200")

# A silent connection is closed at the header timeout (2 s), not held for the idle timeout.
s = connect("127.0.4.1")
start = time.time()
s.settimeout(6)
try:
    data = s.recv(100)
except (socket.timeout, ConnectionResetError):
    data = None
took = time.time() - start
assert data == b"" and took < 4, (data, took)
print("  ok: a silent connection is closed after %.1f s" % took)
PY

# /cart: a real user's cart survives 21,000 cookieless requests and an add flood.
jar="$WORK/jar"
curl -s -c "$jar" "$base/cart?add=book" > /dev/null
check "real user got a session" "1" "$(grep -c appnet_cart "$jar")"
python3 - "$port" <<'PY'
import socket, sys, time
port = int(sys.argv[1])

def pipelined(src, path, n):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(20)
    s.connect(("127.0.0.1", port))
    req = ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode()
    last = ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode()
    s.sendall(req * (n - 1) + last)
    out = bytearray()
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            return bytes(out)
        out += chunk

start = time.time()
ok = cookies = 0
for i in range(21):
    out = pipelined("127.0.5.%d" % (i + 1), "/cart", 1000)
    ok += out.count(b"HTTP/1.1 200")
    cookies += out.lower().count(b"set-cookie:")
assert ok == 21000 and cookies == 0, (ok, cookies)
print("  ok: 21000 cookieless GET /cart in %.1f s created no session" % (time.time() - start))
out = pipelined("127.0.6.1", "/cart?add=spam", 500)
limited = out.count(b"HTTP/1.1 429")
assert limited >= 450, limited
print("  ok: a cookieless add flood from one address: %d of 500 got 429" % limited)
PY
check "the real cart survived" "1 item(s)" \
  "$(curl -s -b "$jar" "$base/cart" | head -1 | grep -o '[0-9] item(s)')"

# Request heads: invalid Host values get 400, unknown expectations 417.
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
check "Host: a b" "400" "$(code -H 'Host: a b' "$base/")"
check "Host: user@x" "400" "$(code -H 'Host: user@x' "$base/")"
check "Host: [::1]:80" "200" "$(code -H 'Host: [::1]:80' "$base/")"
check "Expect: foo" "417" "$(code -H 'Expect: foo' --data-binary x "$base/echo")"
check "Expect: 100-continue" "200" "$(code -H 'Expect: 100-continue' --data-binary x "$base/echo")"
echo "hostile web: ok"
