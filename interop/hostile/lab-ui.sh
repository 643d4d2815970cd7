#!/usr/bin/env bash
# The lab's page (`appnet lab --ui`) against a hostile client: binary junk, an oversized request
# head, a connection that never finishes its head (cut after the 10 s request timeout), more
# connections than one address may hold (503), bogus commands; the page keeps serving. ~20 s.
source "$(dirname "$0")/../lib.sh"

UI_PORT=$(free_port)
bg "$APPNET" lab --ui "127.0.0.1:$UI_PORT" --ui-max-per-ip 8 --dns-port "$(free_port)" \
  --web-port "$(free_port)" --ftp-port "$(free_port)" --dir "$WORK/lab" >"$WORK/lab.log" 2>&1
wait_tcp 127.0.0.1 "$UI_PORT" 60

timeout 50 python3 - "$UI_PORT" >"$WORK/result.txt" <<'PY'
import socket, sys, time
port = int(sys.argv[1])

def ask(data, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except socket.timeout:
        out += b"<timeout>"
    s.close()
    return out.split(b"\r\n", 1)[0].decode("latin-1")

print("junk", ask(bytes(range(256)) * 4 + b"\r\n\r\n"))
print("huge", ask(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n"))
print("badscene", ask(b"POST /scene/999999999999 HTTP/1.1\r\n\r\n"))
print("badresolve", ask(b"POST /resolve?from=../../etc&name=x HTTP/1.1\r\n\r\n"))
print("method", ask(b"PUT /events HTTP/1.1\r\n\r\n"))
# Eight event streams hold this address's cap; the ninth connection is refused with 503.
held = []
for _ in range(8):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /events HTTP/1.1\r\n\r\n")
    head = s.recv(100)
    assert head.startswith(b"HTTP/1.1 200"), head  # admitted, not refused
    held.append(s)
print("overcap", ask(b"GET / HTTP/1.1\r\n\r\n"))
for s in held:
    s.close()
time.sleep(0.5)
# A slow client: half a request line, then silence; the server cuts it after its request timeout.
s = socket.create_connection(("127.0.0.1", port), timeout=20)
s.sendall(b"GET /lab.js")
t = time.time()
try:
    cut = s.recv(10) == b""
except (socket.timeout, ConnectionResetError):
    cut = False
print("slow", "cut" if cut and time.time() - t < 15 else "held")
print("after", ask(b"GET /lab.json HTTP/1.1\r\n\r\n"))
PY
cat "$WORK/result.txt"
check "binary junk: 400" "junk HTTP/1.1 400 Bad Request" "$(grep '^junk' "$WORK/result.txt")"
check "oversized head: 431" "huge HTTP/1.1 431 Request Header Fields Too Large" "$(grep '^huge' "$WORK/result.txt")"
check "unknown scene: 404" "badscene HTTP/1.1 404 Not Found" "$(grep '^badscene' "$WORK/result.txt")"
check "lookup from a host that is not a client: 400" "badresolve HTTP/1.1 400 Bad Request" "$(grep '^badresolve' "$WORK/result.txt")"
check "wrong method: 405" "method HTTP/1.1 405 Method Not Allowed" "$(grep '^method' "$WORK/result.txt")"
check "over the per-address cap: 503" "overcap HTTP/1.1 503 Service Unavailable" "$(grep '^overcap' "$WORK/result.txt")"
check "a silent client is cut" "slow cut" "$(grep '^slow' "$WORK/result.txt")"
check "the page still answers" "after HTTP/1.1 200 OK" "$(grep '^after' "$WORK/result.txt")"
