#!/usr/bin/env bash
# appnet lb under attack: one address holding connections, silent connections filling the
# balancer, a UDP source spraying new flows from many ports, junk at the metrics endpoint, and
# connection churn that must not leak descriptors.
source "$(dirname "$0")/../lib.sh"

mkdir -p "$WORK/site"; echo replica > "$WORK/site/who.txt"
wp=$(free_port)
bg "$APPNET" web serve --root "$WORK/site" --listen "127.0.0.1:$wp" --quiet --max-per-ip 64
wait_tcp 127.0.0.1 "$wp"
lb=$(free_port); mp=$(free_port)
bg "$APPNET" lb --listen "127.0.0.1:$lb" --backend "127.0.0.1:$wp" --max-conns 40 --max-per-client 10 \
  --idle-timeout 3 --metrics "127.0.0.1:$mp"
LBPID=$LAST_PID
wait_tcp 127.0.0.1 "$lb"; wait_tcp 127.0.0.1 "$mp"

python3 - "$lb" "$mp" <<'PY'
import socket, sys, time
lb, mp = int(sys.argv[1]), int(sys.argv[2])

def connect(src, port=lb):
    s = socket.socket(); s.bind((src, 0)); s.settimeout(5); s.connect(("127.0.0.1", port)); return s

def get(s):
    s.sendall(b"GET /who.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"replica" not in data:
        chunk = s.recv(4096)
        if not chunk:
            return data
        data += chunk
    return data

def closed(s):
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, socket.timeout):
        return True

# One address may hold only its cap (10): the 11th is closed at once, another address is served.
held = [connect("127.0.0.2") for _ in range(10)]
for s in held: assert b"replica" in get(s)
extra = connect("127.0.0.2")
assert closed(extra), "the 11th connection from one address must be closed"
assert b"replica" in get(connect("127.0.0.3"))
print("  ok: per-address cap (10) closes the 11th from one address, serves another")
for s in held: s.close()
time.sleep(0.3)

# Silent connections from many addresses fill the balancer (40): a real client still gets
# through, because the longest-waiting silent connection is closed to make room.
silent = [connect("127.0.1.%d" % (i // 8 + 1)) for i in range(40)]
time.sleep(0.3)
real = connect("127.0.2.1")
assert b"replica" in get(real), "a newcomer must get through a balancer full of silent connections"
print("  ok: a balancer full of silent connections still serves a newcomer")
# The rest are cut by the idle timeout (3 s).
time.sleep(3.5)
assert all(closed(s) for s in silent[1:]), "silent connections outlive the idle timeout"
print("  ok: silent connections are closed after the idle timeout")
for s in silent: s.close()
real.close()

# Junk and a huge header line at the metrics endpoint: it closes, then still answers.
m = connect("127.0.0.1", mp)
try:
    m.sendall(b"\x00\xff" * 10000 + b"\r\n" * 2)
except (BrokenPipeError, ConnectionResetError):
    pass
m.close()
m = connect("127.0.0.1", mp)
m.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
data = b""
while True:
    c = m.recv(65536)
    if not c: break
    data += c
assert data.startswith(b"HTTP/1.1 200 OK") and b"lb_refused_total" in data, data[:200]
print("  ok: junk at the metrics endpoint is dropped; it keeps answering")
PY

# Churn: 2000 short connections; the balancer's descriptors return to their starting count.
fds() { ls "/proc/$LBPID/fd" | wc -l; }
before=$(fds)
python3 - "$lb" <<'PY'
import socket, sys
lb = int(sys.argv[1])
for i in range(2000):
    s = socket.socket(); s.bind(("127.0.3.%d" % (i % 200 + 1), 0)); s.connect(("127.0.0.1", lb))
    s.sendall(b"GET /who.txt HTTP/1.0\r\n\r\n")
    while s.recv(4096): pass
    s.close()
PY
for _ in $(seq 1 100); do [ "$(fds)" -le $((before + 2)) ] && break; sleep 0.05; done
check "no descriptor leak after 2000 connections (before $before)" "yes" "$([ "$(fds)" -le $((before + 2)) ] && echo yes || echo "no: $(fds)")"

# UDP: one address spraying new flows from many ports holds at most its flow cap (8); another
# address is still served.
zone="$WORK/z.zone"
printf '$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 h 1 7200 3600 1209600 300\n@ NS ns1\nns1 A 127.0.0.1\nwww A 192.0.2.80\n' > "$zone"
dp=$(free_port)
bg "$APPNET" dns serve --zone "$zone" --listen "127.0.0.1:$dp"
wait_tcp 127.0.0.1 "$dp"
ul=$(free_port); ump=$(free_port)
bg "$APPNET" lb --udp --listen "127.0.0.1:$ul" --backend "127.0.0.1:$dp" --udp-max-flows 64 \
  --udp-max-flows-per-client 8 --metrics "127.0.0.1:$ump"
wait_tcp 127.0.0.1 "$ump"
python3 - "$ul" <<'PY'
import socket, sys, struct
ul = int(sys.argv[1])
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x03www\x07example\x03com\x00" + struct.pack(">HH", 1, 1)
socks = []
for i in range(40):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.5", 0)); s.settimeout(0.5)
    s.sendto(q, ("127.0.0.1", ul)); socks.append(s)
answered = 0
for s in socks:
    try:
        s.recv(512); answered += 1
    except socket.timeout:
        pass
assert answered == 8, f"one address got {answered} flows, the cap is 8"
other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); other.bind(("127.0.0.6", 0)); other.settimeout(2)
other.sendto(q, ("127.0.0.1", ul))
assert other.recv(512)[:2] == b"\x12\x34"
print("  ok: UDP: one address holds at most its 8 flows; another address is served")
PY
check "UDP refusals counted" "yes" "$(curl -s "http://127.0.0.1:$ump/metrics" | awk '$1=="lb_udp_refused_total" && $2 >= 32 {print "yes"}')"
