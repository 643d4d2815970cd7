#!/usr/bin/env bash
# appnet upper serve, driven by clients that are not ours: nc and Python's socket module.
source "$(dirname "$0")/lib.sh"

port=$(free_port)
bg "$APPNET" upper serve --listen "127.0.0.1:$port"
wait_tcp 127.0.0.1 "$port"
check "nc, one line" "HELLO WORLD" "$(printf 'hello world\n' | nc -q 2 127.0.0.1 "$port")"
check "nc, last line without newline" "NO NEWLINE" "$(printf 'no newline' | nc -N 127.0.0.1 "$port")"
check "nc, three lines on one connection" "A|B|C" "$(printf 'a\nb\nc\n' | nc -q 2 127.0.0.1 "$port" | paste -sd'|')"

python3 - "$port" <<'PY'
import socket, sys
port = int(sys.argv[1])
# The textbook's TCPClient, plus a newline to end the request.
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall("straße café\n".encode())
assert s.makefile("rb").readline() == "STRASSE CAFÉ\n".encode(), "unicode upper-casing"
s.close()
# Non-UTF-8 bytes come back with only ASCII letters changed.
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(b"ab\xffcd\n")
assert s.makefile("rb").readline() == b"AB\xffCD\n"
s.close()
# An over-long line gets an error, not an echo.
s = socket.create_connection(("127.0.0.1", port), timeout=5)
try:
    s.sendall(b"x" * 200_000 + b"\n")
except (BrokenPipeError, ConnectionResetError):
    pass
reply = s.makefile("rb").readline()
assert reply.startswith(b"ERR line longer than"), reply
print("  ok: python tcp client (unicode, binary, over-long line)")
PY

uport=$(free_port)
bg "$APPNET" upper serve --udp --listen "127.0.0.1:$uport"
python3 - "$uport" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
# The textbook's UDPClient: no connection, one datagram each way. Retry while the server starts.
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
for attempt in range(100):
    s.sendto(b"hello udp", ("127.0.0.1", port))
    try:
        data, addr = s.recvfrom(2048)
        break
    except (socket.timeout, ConnectionRefusedError):
        continue
else:
    raise SystemExit("no UDP answer")
assert data == b"HELLO UDP", data
print("  ok: python udp client")
PY
check "appnet upper ask over udp" "PING" "$("$APPNET" upper ask ping --udp --server "127.0.0.1:$uport")"
check "appnet upper ask over tcp" "PONG" "$("$APPNET" upper ask pong --server "127.0.0.1:$port")"
echo "upper: $CHECKS checks passed"
