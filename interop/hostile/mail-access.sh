#!/usr/bin/env bash
# appnet mail's POP3 and IMAP under attack: one address hogging connections, silent clients,
# endless lines, oversized literals (synchronising and LITERAL+), command floods, password
# guessing (delay, disconnect, lock-out of the address), commands injected before STARTTLS,
# mailbox names that try to leave the Maildir, and a good client still served at the end.
source "$(dirname "$0")/../lib.sh"

pop=$(free_port); imap=$(free_port)
while [ "$imap" == "$pop" ]; do imap=$(free_port); done
ROOT=$WORK/mail
printf 'pw\n' | "$APPNET" mail user add bob@hamburger.edu --root "$ROOT" --password-stdin >/dev/null
bg "$APPNET" mail serve --domain hamburger.edu --root "$ROOT" --smtp off --submission off \
  --pop3 "127.0.0.1:$pop" --imap "127.0.0.1:$imap" --tls --ca-dir "$WORK/ca" --allow-plain-auth \
  --max-per-ip 4 --greeting-timeout 2 --max-errors 4 --max-message-size 64KiB --max-auth-failures 3 \
  --auth-failure-delay 0 --login-lockout-failures 6 --login-lockout 30
wait_tcp 127.0.0.1 "$pop"; wait_tcp 127.0.0.1 "$imap"

timeout 50 python3 - "$pop" "$imap" "$ROOT" <<'PY'
import os, socket, sys, time
pop, imap, root = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

def connect(port, src="127.0.0.1"):
    s = socket.socket(); s.bind((src, 0)); s.settimeout(10); s.connect(("127.0.0.1", port))
    return s, s.makefile("rb")

def until(f, tag):
    out = []
    while True:
        l = f.readline()
        out.append(l)
        if not l or l.startswith(tag + b" "):
            return b"".join(out)

for port, busy in ((pop, b"-ERR"), (imap, b"* BYE")):
    held = [connect(port, "127.0.0.2") for _ in range(4)]
    for s, f in held: assert f.readline()[:4] in (b"+OK ", b"* OK"), "greeting, not a refusal"
    s, f = connect(port, "127.0.0.2")
    assert f.readline().startswith(busy), "5th connection from one address"
    s, f = connect(port, "127.0.0.3"); assert f.readline()[:1] in (b"+", b"*")
    for s2, _ in held: s2.close()
print("  ok: per-address cap (4) on POP3 and IMAP: the 5th is told so, another address is served")

for port in (pop, imap):
    s, f = connect(port); f.readline()
    t = time.time(); r = f.readline()
    while r and not (r.startswith(b"-ERR") or r.startswith(b"* BYE")):
        r = f.readline()
    assert time.time() - t < 6, "silent client kept"
    assert f.readline() == b"", "closed"
print("  ok: silent clients cut after the login timeout (2 s)")

# Endless lines: answered with an error, the session goes on; a flood of junk is disconnected.
s, f = connect(pop); f.readline()
s.sendall(b"X" * 200000 + b"\r\n"); assert f.readline().startswith(b"-ERR")
s.sendall(b"CAPA\r\n"); assert f.readline().startswith(b"+OK")
while f.readline() != b".\r\n":
    pass
s.sendall(b"JUNK\r\n" * 10)
lines = []
while True:
    l = f.readline()
    if not l: break
    lines.append(l)
assert len(lines) <= 5 and b"too many errors" in lines[-1], lines
print("  ok: POP3: an endless line gets -ERR; a junk flood is disconnected after 4 errors")

s, f = connect(imap); f.readline()
s.sendall(b"a1 " + b"X" * 200000 + b"\r\n"); assert b"BAD" in f.readline()
s.sendall(b"a2 NOOP\r\n"); assert f.readline().startswith(b"a2 OK")
s.sendall(b"a3 LOGIN bob@hamburger.edu pw\r\n"); assert until(f, b"a3").split(b"\r\n")[-2].startswith(b"a3 OK")
s.sendall(b"a4 APPEND INBOX {99999999}\r\n"); r = f.readline()
assert r.startswith(b"a4 BAD"), r
s.sendall(b"a5 APPEND INBOX {100000+}\r\n" + b"x" * 100000 + b"\r\n"); r = until(f, b"a5")
assert b"a5 BAD" in r, r
s.sendall(b"a6 NOOP\r\n"); assert until(f, b"a6").split(b"\r\n")[-2].startswith(b"a6 OK")
for name in (b"../../etc", b"a/b", b"..", b".hidden", b"x..y"):
    s.sendall(b"c CREATE \"" + name + b"\"\r\n"); r = until(f, b"c")
    assert b"c NO" in r or b"c BAD" in r, (name, r)
    s.sendall(b"c SELECT \"" + name + b"\"\r\n"); r = until(f, b"c")
    assert b"c NO" in r or b"c BAD" in r, (name, r)
assert not os.path.exists(os.path.join(root, "mail", "etc")) and not os.path.exists("/etc/cur")
s.sendall(b"z BOGUS\r\n" * 6)
data = b""
while True:
    l = f.readline()
    if not l: break
    data += l
assert b"* BYE" in data, data
print("  ok: IMAP: endless line BAD, literals over the size cap refused (sync and LITERAL+), names leaving the Maildir refused, junk flood disconnected")

# Commands pipelined after STARTTLS are discarded (RFC 3501 §6.2.1), not run after the handshake.
import ssl
s, f = connect(imap); f.readline()
s.sendall(b"t1 STARTTLS\r\nt2 LOGIN bob@hamburger.edu pw\r\n")
assert f.readline().startswith(b"t1 OK")
ctx = ssl.create_default_context(cafile=os.environ.get("CA"))
ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s, server_hostname="localhost"); tf = t.makefile("rb")
t.sendall(b"t3 NOOP\r\n"); r = tf.readline()
assert r.startswith(b"t3 OK"), ("the injected LOGIN was answered", r)
t.sendall(b"t4 SELECT INBOX\r\n"); r = until(tf, b"t4")
assert b"t4 BAD" in r, ("not logged in: the injected LOGIN was discarded", r)
print("  ok: a LOGIN injected after STARTTLS is discarded")

# Password guessing: delayed, disconnected after 3, the address locked out after 6.
def guess(port, n):
    answers = []
    s, f = connect(port, "127.0.0.9"); f.readline()
    for i in range(n):
        if port == pop:
            s.sendall(b"USER bob@hamburger.edu\r\n"); f.readline()
            s.sendall(b"PASS wrong\r\n"); answers.append(f.readline())
        else:
            s.sendall(b"g LOGIN bob@hamburger.edu wrong\r\n"); answers.append(until(f, b"g"))
    return answers
a = guess(pop, 3); assert b"closing" in a[-1], a
a = guess(imap, 3); assert b"BYE" in a[-1] or b"NO" in a[-1], a
s, f = connect(imap, "127.0.0.9"); f.readline()
s.sendall(b"g LOGIN bob@hamburger.edu pw\r\n"); r = until(f, b"g")
assert b"Too many failed logins" in r, ("right password while locked out", r)
s, f = connect(imap, "127.0.0.10"); f.readline()
s.sendall(b"g LOGIN bob@hamburger.edu pw\r\n"); r = until(f, b"g")
assert b"g OK" in r, ("another address is not locked out", r)
print("  ok: password guessing: disconnect after 3 failures, the address locked out after 6, others unaffected")
PY
check "POP3 still serves a good client" "0" "$(curl -s --max-time 10 "pop3://127.0.0.1:$pop/" -u 'bob@hamburger.edu:pw' >/dev/null; echo $?)"
check "IMAP still serves a good client" "0" "$(curl -s --max-time 10 "imap://127.0.0.1:$imap/" -u 'bob@hamburger.edu:pw' >/dev/null; echo $?)"
