#!/usr/bin/env bash
# STUN/TURN against a hostile tester: junk datagrams, truncated and bit-flipped STUN messages,
# oversized attribute lengths, ChannelData for unbound channels, forged nonces and wrong
# passwords in bulk, allocations past the per-user quota, a flood of unauthenticated requests
# (as from a spoofed source: their 401s are rate-limited per source IP); the server keeps
# answering Binding requests and refuses what it must. Then the skype supernode: junk datagrams,
# names bound past the per-address cap, a registration with a wrong password, a lookup flood.
# Loopback only, a few seconds.
source "$(dirname "$0")/../lib.sh"

printf 'alice:secret\n' > "$WORK/users"
PORT=$(free_port)
bg "$APPNET" turn serve --listen "127.0.0.1:$PORT" --realm lab --users "$WORK/users" \
  --ports 50500-50599 --user-quota 3
for _ in $(seq 40); do "$APPNET" stun "127.0.0.1:$PORT" --timeout 0.5 >/dev/null 2>&1 && break; sleep 0.1; done

out=$(python3 - "$PORT" <<'PY'
import hashlib, hmac, os, random, socket, struct, sys, zlib
port = int(sys.argv[1]); server = ("127.0.0.1", port)
COOKIE = 0x2112A442
def attr(t, v): return struct.pack("!HH", t, len(v)) + v + b"\0" * ((4 - len(v) % 4) % 4)
def msg(mtype, attrs, tid=None, key=None):
    tid = tid or os.urandom(12)
    body = b"".join(attrs)
    if key is not None:
        head = struct.pack("!HHI", mtype, len(body) + 24, COOKIE) + tid
        body += attr(0x0008, hmac.new(key, head + body, hashlib.sha1).digest())
    head = struct.pack("!HHI", mtype, len(body) + 8, COOKIE) + tid
    fp = (zlib.crc32(head + body) ^ 0x5354554E) & 0xffffffff
    return head + body + attr(0x8028, struct.pack("!I", fp))
def ask(s, data):
    # replies to earlier junk may still be queued: read until our transaction id comes back;
    # retransmit every 100 ms for 3 s like a client (error replies to unauthenticated
    # requests are rate-limited per source, and the junk used up this source's budget)
    s.settimeout(0.1)
    for _ in range(30):
        s.sendto(data, server)
        try:
            for _ in range(10000):
                r = s.recv(2048)
                if r[8:20] == data[8:20]: return r
        except socket.timeout: continue
    return None
def code(resp):
    pos = 20
    while resp and pos + 4 <= len(resp):
        t, l = struct.unpack("!HH", resp[pos:pos + 4])
        if t == 0x0009: return resp[pos + 6] * 100 + resp[pos + 7]
        pos += 4 + l + (4 - l % 4) % 4
    return 0
def nonce_of(resp):
    pos = 20
    while pos + 4 <= len(resp):
        t, l = struct.unpack("!HH", resp[pos:pos + 4])
        if t == 0x0015: return resp[pos + 4:pos + 4 + l]
        pos += 4 + l + (4 - l % 4) % 4
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
rnd = random.Random(7)
good = msg(0x0003, [attr(0x0019, b"\x11\0\0\0")])
for i in range(3000):
    kind = i % 5
    if kind == 0: d = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 200)))
    elif kind == 1: d = good[:rnd.randrange(0, len(good))]
    elif kind == 2:
        d = bytearray(good); d[rnd.randrange(len(d))] ^= 1 << rnd.randrange(8); d = bytes(d)
    elif kind == 3: d = good[:20] + struct.pack("!HH", 0x0006, 0xffff) + b"x" * 8
    else: d = struct.pack("!HH", 0x4000 + rnd.randrange(0x3fff), 4) + b"abcd"
    s.sendto(d, server)
alive = ask(s, msg(0x0001, []))
print("binding-after-junk", int(alive is not None and alive[0:2] == b"\x01\x01"))
key = hashlib.md5(b"alice:lab:secret").digest()
forged = [code(ask(s, msg(0x0003, [attr(0x0019, b"\x11\0\0\0"), attr(0x0006, b"alice"), attr(0x0014, b"lab"),
                                     attr(0x0015, b"%040x" % rnd.getrandbits(160))], key=key))) for _ in range(50)]
print("forged-nonce-438", int(all(c == 438 for c in forged)))
n = nonce_of(ask(s, good))
wrong = hashlib.md5(b"alice:lab:guess").digest()
bad = [code(ask(s, msg(0x0003, [attr(0x0019, b"\x11\0\0\0"), attr(0x0006, b"alice"), attr(0x0014, b"lab"),
                                  attr(0x0015, n)], key=wrong))) for _ in range(50)]
print("wrong-password-401", int(all(c == 401 for c in bad)))
codes = []
for i in range(5):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(2)
    codes.append(code(ask(c, msg(0x0003, [attr(0x0019, b"\x11\0\0\0"), attr(0x0006, b"alice"), attr(0x0014, b"lab"),
                                            attr(0x0015, n)], key=key))))
print("user-quota", ",".join(map(str, codes)))
# 1000 unauthenticated Allocates in a burst (what a spoofed victim address would be sent):
# the server's --unauth-rate 50 (burst 100) lets few 401s out, and later ones again.
import time
time.sleep(2.5)
f = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); f.settimeout(0.5)
start = time.monotonic()
for _ in range(1000): f.sendto(msg(0x0003, [attr(0x0019, b"\x11\0\0\0")]), server)
got = 0
try:
    while True: f.recv(2048); got += 1
except socket.timeout: pass
elapsed = time.monotonic() - start
print("flood-answered", got, "in", round(elapsed, 2), "s")
print("flood-limited", int(1 <= got <= 100 + 50 * elapsed + 10))
time.sleep(1)
print("after-flood-401", code(ask(f, good)))
PY
)
echo "$out"
check "Binding still answered after 3000 hostile datagrams" "binding-after-junk 1" "$(grep binding-after-junk <<<"$out")"
check "forged nonces get 438" "forged-nonce-438 1" "$(grep forged-nonce <<<"$out")"
check "wrong passwords get 401" "wrong-password-401 1" "$(grep wrong-password <<<"$out")"
check "the 4th and 5th allocation of a user get 486" "user-quota 0,0,0,486,486" "$(grep user-quota <<<"$out")"
check "1000 unauthenticated requests from one source get at most burst + rate 401s" "flood-limited 1" "$(grep flood-limited <<<"$out")"
check "a second later that source gets its 401 again" "after-flood-401 401" "$(grep after-flood-401 <<<"$out")"

SN=$(free_port)
bg "$APPNET" skype supernode --listen "127.0.0.1:$SN" --names-per-ip 3 --requests-per-sec 20
out=$(python3 - "$SN" <<'PY'
import hashlib, hmac, os, random, socket, struct, sys, time
sn = ("127.0.0.1", int(sys.argv[1]))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.3)
def frame(kind, body, tid=None):
    return b"SK\x01" + bytes([kind]) + (tid or os.urandom(4)) + body
def st(x): return bytes([len(x)]) + x
def ask(kind, body):
    d = frame(kind, body)
    for _ in range(20):
        s.sendto(d, sn)
        try:
            while True:
                r = s.recv(2048)
                if r[4:8] == d[4:8]: return r
        except socket.timeout: continue
    return None
def err(r): return struct.unpack("!H", r[8:10])[0] if r and r[3] == 7 else 0
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes, serialization
def seal(sn_key, user, plain):
    # The verifier sealed to the SN's X25519 key (python's own cryptography, not appnet's).
    e = X25519PrivateKey.generate()
    shared = e.exchange(X25519PublicKey.from_public_bytes(sn_key))
    k = HKDF(hashes.SHA256(), 32, None, b"appnet skype bind" + sn_key + user).derive(shared)
    epub = e.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return epub + ChaCha20Poly1305(k).encrypt(bytes(12), plain, user)
def register(user, password, salt=None):
    c = ask(1, st(user))
    nonce, has_salt = c[8:24], c[24]
    salt = c[25:41] if has_salt else (salt or os.urandom(16))
    sn_key = c[41:73] if has_salt else c[25:57]
    salted = hashlib.pbkdf2_hmac("sha256", password, salt, 4096)
    ck = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    sk = hashlib.sha256(ck).digest()
    bind = b"" if has_salt else b"\x02" + seal(sn_key, user, salt + sk)
    signed = st(user) + (bind or b"\x00") + b"\x00"
    sig = hmac.new(sk, nonce + signed, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(ck, sig))
    r = ask(3, st(user) + nonce + proof + (bind or b"\x00") + b"\x00")
    return "ok" if r and r[3] == 4 else str(err(r))
rnd = random.Random(3)
for i in range(2000):
    n = rnd.randrange(0, 80)
    d = bytes(rnd.getrandbits(8) for _ in range(n))
    if i % 2: d = b"SK\x01" + bytes([rnd.randrange(0, 13)]) + d
    s.sendto(d, sn)
time.sleep(2.5)
print("lookup-after-junk", err(ask(5, st(b"nobody"))))
def clear_bind(user, password):
    # The old form: the verifier in the clear (flag 1). Refused: no answer, the name stays free.
    c = ask(1, st(user))
    nonce, salt = c[8:24], os.urandom(16)
    ck = hmac.new(hashlib.pbkdf2_hmac("sha256", password, salt, 4096), b"Client Key", hashlib.sha256).digest()
    sk = hashlib.sha256(ck).digest()
    bind = b"\x01" + salt + sk
    sig = hmac.new(sk, nonce + st(user) + bind + b"\x00", hashlib.sha256).digest()
    d = frame(3, st(user) + nonce + bytes(a ^ b for a, b in zip(ck, sig)) + bind + b"\x00")
    s.sendto(d, sn)
    try:
        while True:
            if s.recv(2048)[4:8] == d[4:8]: return "answered"
    except socket.timeout: pass
    return "refused" if err(ask(5, st(user))) == 404 else "bound"
print("clear-bind", clear_bind(b"u9", b"pw"))
print("bind", ",".join(register(b"u%d" % i, b"pw") for i in range(4)))
print("takeover", register(b"u0", b"guess"))
print("owner", register(b"u0", b"pw"))
time.sleep(2.5)
f = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); f.settimeout(0.5)
for _ in range(300): f.sendto(frame(5, st(b"u0")), sn)
got = 0
try:
    while True: f.recv(2048); got += 1
except socket.timeout: pass
print("lookup-flood", got, int(got <= 60))
PY
)
echo "$out"
check "the SN answers a lookup after 2000 junk datagrams (404 for an unknown name)" "lookup-after-junk 404" "$(grep lookup-after-junk <<<"$out")"
check "a first registration with the verifier in the clear is refused (the name stays unbound)" "clear-bind refused" "$(grep clear-bind <<<"$out")"
check "one address binds 3 names, the 4th gets 429" "bind ok,ok,ok,429" "$(grep '^bind' <<<"$out")"
check "a wrong password cannot take a bound name over" "takeover 401" "$(grep takeover <<<"$out")"
check "the owner's password still registers it" "owner ok" "$(grep owner <<<"$out")"
check "300 lookups in a burst from one address: at most burst + rate answered" 1 "$(grep lookup-flood <<<"$out" | awk '{print $3}')"
echo "nat hostile: $CHECKS checks passed"
