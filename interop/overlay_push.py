"""A scripted Gnutella 0.6 servent for interop/overlay.sh: joins a node, floods a Query,
takes the QueryHit's servent GUID, sends a Push through the overlay, accepts the pushed
GIV connection and fetches the file over it. Prints the file's SHA-1 (hex)."""
import hashlib, os, socket, struct, sys, time

node_host, node_port, words = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def block(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        c = sock.recv(4096)
        if not c:
            raise SystemExit("closed during handshake")
        buf += c
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode(), rest

def desc(guid, ptype, ttl, payload):
    return guid + bytes([ptype, ttl, 0]) + struct.pack("<I", len(payload)) + payload

listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(1)
lport = listener.getsockname()[1]
s = socket.create_connection((node_host, node_port), timeout=10)
s.sendall(b"GNUTELLA CONNECT/0.6\r\nUser-Agent: interop-push/1\r\nX-Ultrapeer: False\r\n\r\n")
head, rest = block(s)
assert head.startswith("GNUTELLA/0.6 200"), head
s.sendall(b"GNUTELLA/0.6 200 OK\r\n\r\n")
qguid = os.urandom(16)
s.sendall(desc(qguid, 0x80, 7, b"\x00\x00" + words.encode() + b"\x00urn:\x00"))
buf, deadline, servent, index = rest, time.time() + 10, None, None
while servent is None and time.time() < deadline:
    while len(buf) >= 23:
        ln = struct.unpack("<I", buf[19:23])[0]
        if len(buf) < 23 + ln:
            break
        g, pt, p = buf[:16], buf[16], buf[23:23 + ln]
        buf = buf[23 + ln:]
        if pt == 0x81 and g == qguid:
            index = struct.unpack("<I", p[11:15])[0]
            servent = p[-16:]
    if servent is None:
        c = s.recv(65536)
        if not c:
            raise SystemExit("node closed")
        buf += c
assert servent is not None, "no QueryHit"
push = servent + struct.pack("<I", index) + socket.inet_aton("127.0.0.1") + struct.pack("<H", lport)
s.sendall(desc(os.urandom(16), 0x40, 7, push))
listener.settimeout(10)
c, _ = listener.accept()
giv = b""
while b"\n\n" not in giv:
    giv += c.recv(1024)
line = giv.split(b"\n", 1)[0].decode()
assert line.startswith("GIV %d:" % index), line
name = line.split("/", 1)[1]
c.sendall(("GET /get/%d/%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (index, name.replace(" ", "%20"))).encode())
data = b""
while True:
    d = c.recv(65536)
    if not d:
        break
    data += d
head, body = data.split(b"\r\n\r\n", 1)
assert head.startswith(b"HTTP/1.1 200"), head
print(hashlib.sha1(body).hexdigest())
