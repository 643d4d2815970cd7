#!/usr/bin/env bash
# Napster and Gnutella under attack: descriptors with bad lengths, an oversized handshake,
# path traversal on the HTTP side (and a symlink out of the share), a query flood, an endless
# directory line and an entry flood.
source "$(dirname "$0")/../lib.sh"

mkdir -p "$WORK/share" "$WORK/empty"
echo "hey jude" > "$WORK/share/Hey Jude.mp3"
echo "secret" > "$WORK/secret.txt"
ln -s "$WORK/secret.txt" "$WORK/share/link.txt"
a=$(free_port); b=$(free_port); d=$(free_port)
bg "$APPNET" gnutella node --share "$WORK/share" --listen "127.0.0.1:$a" --query-rate 5 --query-burst 10 --max-peers 8
wait_tcp 127.0.0.1 "$a"
bg "$APPNET" napster server --listen "127.0.0.1:$d" --max-entries-per-peer 5
wait_tcp 127.0.0.1 "$d"

python3 - "$a" "$d" "$WORK" <<'PY'
import os, socket, struct, sys, time
node, directory, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

def join():
    s = socket.create_connection(("127.0.0.1", node), timeout=5)
    s.sendall(b"GNUTELLA CONNECT/0.6\r\nUser-Agent: hostile\r\nX-Ultrapeer: False\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    assert buf.startswith(b"GNUTELLA/0.6 200"), buf[:40]
    s.sendall(b"GNUTELLA/0.6 200 OK\r\n\r\n")
    return s

def closed(s, limit=5):
    s.settimeout(limit)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False

def desc(ptype, payload, ttl=7, length=None):
    n = len(payload) if length is None else length
    return os.urandom(16) + bytes([ptype, ttl, 0]) + struct.pack("<I", n) + payload

# A descriptor claiming 4 GiB of payload: the connection is dropped at once.
s = join(); s.sendall(desc(0x80, b"", length=0xFFFFFFF0))
assert closed(s), "a 4 GiB descriptor must close the connection"
print("  ok: a descriptor with a huge length drops the connection")
# A Pong whose payload is shorter than a Pong: dropped too.
s = join(); s.sendall(desc(0x01, b"\x01\x02"))
assert closed(s), "a 2-byte Pong must close the connection"
print("  ok: a descriptor whose length does not fit its type drops the connection")

# An oversized handshake (10 KiB of headers, never an empty line): refused, not answered 200.
s = socket.create_connection(("127.0.0.1", node), timeout=5)
s.sendall(b"GNUTELLA CONNECT/0.6\r\n" + b"X-Junk: " + b"a" * 10000 + b"\r\n")
got = b""
s.settimeout(5)
try:
    while True:
        c = s.recv(4096)
        if not c: break
        got += c
except (ConnectionResetError, socket.timeout):
    pass
assert b"200" not in got, got[:80]
print("  ok: an oversized handshake is refused")

# Path traversal and a symlink out of the share: 404, never the secret.
def get(path):
    h = socket.create_connection(("127.0.0.1", node), timeout=5)
    h.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
    data = b""
    while True:
        c = h.recv(65536)
        if not c: break
        data += c
    return data
for path in ["/get/0/../../../../etc/passwd", "/../../etc/passwd", "/get/1/link.txt", "/get/0/..%2f..%2fsecret.txt", "/uri-res/N2R?urn:sha1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]:
    r = get(path)
    assert r.startswith(b"HTTP/1.1 404"), (path, r[:60])
    assert b"secret" not in r and b"root:" not in r
assert get("/get/0/Hey%20Jude.mp3").startswith(b"HTTP/1.1 200")
print("  ok: path traversal and a symlink out of the share get 404; the shared file is served")

# A query flood from one neighbour: an observer neighbour receives at most the burst plus the
# rate, and the flooder is cut after too many dropped queries in a row.
obs = join()
flood = join()
t0 = time.time()
sent = 0
try:
    for i in range(3000):
        flood.sendall(desc(0x80, b"\x00\x00flood %d\x00" % i))
        sent += 1
except (BrokenPipeError, ConnectionResetError):
    pass
dt = time.time() - t0
obs.settimeout(1.0)
buf = b""
try:
    while True:
        c = obs.recv(65536)
        if not c: break
        buf += c
except socket.timeout:
    pass
queries = 0
while len(buf) >= 23:
    n = struct.unpack("<I", buf[19:23])[0]
    if len(buf) < 23 + n: break
    if buf[16] == 0x80: queries += 1
    buf = buf[23 + n:]
limit = 10 + 5 * (dt + 1.5) + 2
assert queries <= limit, (queries, limit)
assert closed(flood, 5), "the flooder must be disconnected"
print("  ok: a flood of %d queries: %d forwarded (limit %.0f), the flooder cut" % (sent, queries, limit))
# The node still serves others.
s = join(); s.close()
print("  ok: the node still accepts neighbours after the attacks")

# The directory: an endless line is cut with ERR 400; an entry flood hits the per-peer cap.
n = socket.create_connection(("127.0.0.1", directory), timeout=5)
n.sendall(b"SEARCH " + b"x" * 100000)
line = n.makefile("rb").readline()
assert line.startswith(b"ERR 400"), line
print("  ok: a 100 KB directory line gets ERR 400")
n = socket.create_connection(("127.0.0.1", directory), timeout=5)
f = n.makefile("rb")
n.sendall(b"HELLO 127.0.0.1:1\r\n")
assert f.readline().startswith(b"OK")
codes = []
for i in range(8):
    n.sendall(b"ADD 1 urn:sha1:%s f%d\r\n" % (b"A" * 32, i))
    codes.append(f.readline().split()[0:2])
assert codes[4] == [b"OK", b"added"] and codes[5] == [b"ERR", b"413"], codes
print("  ok: the 6th entry from one peer gets ERR 413")
PY
echo "  ok: overlay hostile checks passed"
