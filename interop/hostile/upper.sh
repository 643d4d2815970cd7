#!/usr/bin/env bash
# appnet upper under attack: one address holding connections, silent and trickling clients
# filling the server, and UDP reflection.
source "$(dirname "$0")/../lib.sh"

port=$(free_port)
bg "$APPNET" upper serve --listen "127.0.0.1:$port" --max-connections 40 --max-per-ip 10 --request-timeout 2
wait_tcp 127.0.0.1 "$port"

python3 - "$port" <<'PY'
import socket, sys, time
port = int(sys.argv[1])

def connect(src):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s

def ask(s, line):
    s.sendall(line)
    return s.makefile("rb").readline()

# One address may hold only its cap: the next from it is told "busy", others are served.
held = [connect("127.0.0.2") for _ in range(10)]
time.sleep(0.2)
extra = connect("127.0.0.2")
assert extra.makefile("rb").readline() == b"ERR server busy, try later\n"
assert ask(connect("127.0.0.3"), b"other\n") == b"OTHER\n"
print("  ok: per-address cap (10) refuses the 11th from one address, serves another")

# Silent connections from many addresses fill the server (40): a real client still gets in,
# because the longest-waiting silent connection is closed to make room.
silent = [connect("127.0.1.%d" % (i // 8 + 1)) for i in range(40)]
time.sleep(0.2)
real = connect("127.0.2.1")
assert ask(real, b"real client\n") == b"REAL CLIENT\n"
print("  ok: a full server of silent connections still serves a newcomer")

# A trickling client (one byte every 300 ms, never a newline) is cut at the whole-line
# deadline (2 s), not kept alive by each byte.
t = connect("127.0.3.1")
start = time.time()
t.settimeout(0.3)
reply = b""
while time.time() - start < 10:
    try:
        t.sendall(b"x")
    except OSError:
        break
    try:
        chunk = t.recv(100)
        if not chunk:
            break
        reply += chunk
    except socket.timeout:
        pass
took = time.time() - start
assert reply.startswith(b"ERR"), reply
assert took < 4, took
print("  ok: a trickled line is cut at its deadline (%.1f s)" % took)
PY

uport=$(free_port)
bg "$APPNET" upper serve --udp --listen "127.0.0.1:$uport" --udp-max-amplification 1
python3 - "$uport" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
for attempt in range(100):
    s.sendto(b"ping", ("127.0.0.1", port))
    try:
        assert s.recvfrom(2048)[0] == b"PING"
        break
    except socket.timeout:
        continue
else:
    raise SystemExit("no UDP answer")
worst = ("\u0390" * 100).encode()
s.sendto(worst, ("127.0.0.1", port))
s.settimeout(1)
try:
    data = s.recvfrom(65535)[0]
    raise SystemExit("a %d-byte reply to a %d-byte request was sent at 1x" % (len(data), len(worst)))
except socket.timeout:
    pass
print("  ok: UDP reply over the amplification limit is not sent")
PY
echo "hostile upper: ok"
