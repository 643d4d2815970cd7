#!/usr/bin/env bash
# appnet sip under attack: junk and truncated datagrams, oversized messages, header floods,
# missing mandatory headers (400 or 513, never a crash), an open-relay attempt (403), a wrong
# Digest password and a replayed Authorization (403), Max-Forwards 0 (483), and one address
# filling its quota of live transactions (503 Retry-After) while another address is still served, an
# endless TCP header block (closed) and too many TCP connections from one address (refused).
source "$(dirname "$0")/../lib.sh"

users=$WORK/users
printf 'pw\n' | "$APPNET" sip user add bob@umass.edu --users "$users" --password-stdin >/dev/null
port=$(free_port)
bg "$APPNET" sip serve --domain umass.edu --listen "127.0.0.1:$port" --users "$users" \
  --max-transactions-per-ip 40 --max-headers 50 --max-message 8000 --max-tcp-per-ip 3

out=$(timeout 50 python3 - "$port" <<'PY'
import socket, sys, time, hashlib, re
port = int(sys.argv[1])
srv = ("127.0.0.1", port)

def sock(src="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((src, 0)); s.settimeout(2); return s

def req(s, method, uri, branch, extra="", body=""):
    me = "%s:%d" % s.getsockname()
    return ("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\n"
            "From: <sip:alice@poly.edu>;tag=a\r\nTo: <sip:bob@umass.edu>\r\nCall-ID: %s\r\n"
            "CSeq: 1 %s\r\n%sContent-Length: %d\r\n\r\n%s" % (method, uri, me, branch, branch, method, extra, len(body), body)).encode()

def ask(s, data, want_final=True):
    s.sendto(data, srv)
    end = time.time() + 3
    while time.time() < end:
        try:
            d, _ = s.recvfrom(65535)
        except socket.timeout:
            return None
        code = int(d.split(b" ", 2)[1])
        if code >= 200 or not want_final:
            return code, d.decode("latin-1")
    return None

s = sock()
# readiness: OPTIONS until answered
for i in range(100):
    r = ask(s, req(s, "OPTIONS", "sip:umass.edu", "ready%d" % i))
    if r: break
print("options", r[0])

junk = [b"\x00" * 10, b"INVITE", b"SIP/2.0 200\r\n\r\n", b"\xff" * 3000, b"OPTIONS sip:x SIP/2.0\r\n" * 50,
        req(s, "OPTIONS", "sip:umass.edu", "t")[:60]]
for j in junk:
    s.sendto(j, srv)
big = req(s, "OPTIONS", "sip:umass.edu", "big", body="x" * 9000)
print("oversized", ask(s, big)[0])
flood = req(s, "OPTIONS", "sip:umass.edu", "hdr", extra="X-A: 1\r\n" * 60)
print("header-flood", ask(s, flood)[0])
nocseq = req(s, "OPTIONS", "sip:umass.edu", "nocseq").replace(b"CSeq: 1 OPTIONS\r\n", b"")
print("missing-cseq", ask(s, nocseq)[0])
badmf = req(s, "INVITE", "sip:bob@umass.edu", "mf0").replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
print("max-forwards-0", ask(s, badmf)[0])
print("relay", ask(s, req(s, "INVITE", "sip:carol@example.com", "relay"))[0])

# Digest: challenge, wrong password, right password, replay.
def register(branch, auth=""):
    me = "%s:%d" % s.getsockname()
    return ("REGISTER sip:umass.edu SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\n"
            "From: <sip:bob@umass.edu>;tag=r\r\nTo: <sip:bob@umass.edu>\r\nCall-ID: reg\r\nCSeq: %d REGISTER\r\n"
            "Contact: <sip:bob@%s>\r\n%sContent-Length: 0\r\n\r\n" % (me, branch, abs(hash(branch)) % 100000, me, auth)).encode()
code, text = ask(s, register("r1"))
nonce = re.search(r'nonce="([^"]+)"', text).group(1)
def auth(pw, nc):
    h = lambda x: hashlib.md5(x.encode()).hexdigest()
    resp = h("%s:%s:%s:c:auth:%s" % (h("bob:umass.edu:" + pw), nonce, nc, h("REGISTER:sip:umass.edu")))
    return ('Authorization: Digest username="bob", realm="umass.edu", nonce="%s", uri="sip:umass.edu", '
            'response="%s", algorithm=MD5, qop=auth, nc=%s, cnonce="c"\r\n' % (nonce, resp, nc))
print("challenge", code)
print("wrong-password", ask(s, register("r2", auth("guess", "00000001")))[0])
print("right-password", ask(s, register("r3", auth("pw", "00000002")))[0])
print("replay", ask(s, register("r4", auth("pw", "00000002")))[0])

# Finished transactions (answered, lingering to absorb retransmissions) do not hold the
# per-address quota: 60 OPTIONS in a row from one address, quota 40, all answered.
d = sock()
done = [(ask(d, req(d, "OPTIONS", "sip:umass.edu", "done%d" % i)) or (0,))[0] for i in range(60)]
print("finished-not-counted", all(c == 200 for c in done))
# One address fills its quota with live transactions (INVITEs ringing at bob's contact, which
# never answers): 503 with Retry-After; another address is served.
f = sock()
for i in range(60):
    f.sendto(req(f, "INVITE", "sip:bob@umass.edu", "cap%d" % i), srv)
codes = []
end = time.time() + 5
while time.time() < end:
    try:
        data, _ = f.recvfrom(65535)
    except socket.timeout:
        break
    try:
        codes.append(int(data.split(b" ", 2)[1]))
    except ValueError:
        pass
print("quota-503", 503 in codes)
other = sock("127.0.0.2")
print("other-address", ask(other, req(other, "OPTIONS", "sip:umass.edu", "other"))[0])

# TCP: a header block that never ends is cut at --max-message; a 4th connection from one
# address is refused while 3 are open; the server still answers over UDP afterwards.
t = socket.create_connection(srv, timeout=5)
try:
    for _ in range(20):
        t.sendall(b"X-Junk: " + b"a" * 1000 + b"\r\n")
    closed = t.recv(10) == b""
except (ConnectionResetError, BrokenPipeError):
    closed = True
print("tcp-unframeable-closed", closed)
# From an address of their own: the connection closed above may still be counted for a moment.
held = [socket.create_connection(srv, timeout=5, source_address=("127.0.0.3", 0)) for _ in range(3)]
extra = socket.create_connection(srv, timeout=5, source_address=("127.0.0.3", 0))
try:
    refused = extra.recv(10) == b""
except ConnectionResetError:
    refused = True
print("tcp-per-address-cap", refused)
for h in held: h.close()
print("after-tcp", ask(other, req(other, "OPTIONS", "sip:umass.edu", "after"))[0])
PY
) || true
echo "$out"
check "OPTIONS answered" "options 200" "$(grep '^options' <<<"$out")"
check "oversized message gets 513" "oversized 513" "$(grep '^oversized' <<<"$out")"
check "header flood gets 400" "header-flood 400" "$(grep '^header-flood' <<<"$out")"
check "missing CSeq gets 400" "missing-cseq 400" "$(grep '^missing-cseq' <<<"$out")"
check "Max-Forwards 0 gets 483" "max-forwards-0 483" "$(grep '^max-forwards-0' <<<"$out")"
check "no open relay" "relay 403" "$(grep '^relay' <<<"$out")"
check "REGISTER challenged" "challenge 401" "$(grep '^challenge' <<<"$out")"
check "wrong password refused" "wrong-password 403" "$(grep '^wrong-password' <<<"$out")"
check "right password accepted" "right-password 200" "$(grep '^right-password' <<<"$out")"
check "replayed nonce count refused" "replay 403" "$(grep '^replay' <<<"$out")"
check "finished transactions do not hold the per-address quota" "finished-not-counted True" "$(grep '^finished-not-counted' <<<"$out")"
check "per-address transaction cap" "quota-503 True" "$(grep '^quota-503' <<<"$out")"
check "another address still served" "other-address 200" "$(grep '^other-address' <<<"$out")"
check "unframeable TCP stream closed" "tcp-unframeable-closed True" "$(grep '^tcp-unframeable' <<<"$out")"
check "TCP connections per address capped" "tcp-per-address-cap True" "$(grep '^tcp-per-address' <<<"$out")"
check "served after the TCP abuse" "after-tcp 200" "$(grep '^after-tcp' <<<"$out")"
kill -0 "$LAST_PID" && echo "  ok: server still running"
