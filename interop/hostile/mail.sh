#!/usr/bin/env bash
# appnet mail (SMTP, submission) under attack: one address hogging connections, silent and
# stalled clients, endless lines, oversized messages, command floods, password guessing,
# commands injected before STARTTLS, an open-relay probe, and kill -9 right after a 250.
source "$(dirname "$0")/../lib.sh"

smtp=$(free_port); sub=$(free_port)
while [ "$sub" == "$smtp" ]; do sub=$(free_port); done
ROOT=$WORK/mail
printf 'pw\n' | "$APPNET" mail user add bob@hamburger.edu --root "$ROOT" --password-stdin >/dev/null
serve() {
  bg "$APPNET" mail serve --domain hamburger.edu --root "$ROOT" --smtp "127.0.0.1:$smtp" --submission "127.0.0.1:$sub" \
    --tls --ca-dir "$WORK/ca" --max-per-ip 5 --greeting-timeout 2 --data-timeout 2 --max-errors 5 \
    --max-message-size 64KiB --max-auth-failures 3 --auth-failure-delay 0 --resolver 127.0.0.1:9 --retry-initial 3600 --relay-net 127.0.0.5/32
  wait_tcp 127.0.0.1 "$smtp"; wait_tcp 127.0.0.1 "$sub"
}
serve
SERVER_PID=$LAST_PID

python3 - "$smtp" "$sub" "$WORK/ca/ca.pem" <<'PY'
import socket, ssl, sys, time
smtp, sub, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

def connect(port, src="127.0.0.1"):
    s = socket.socket(); s.bind((src, 0)); s.settimeout(10); s.connect(("127.0.0.1", port))
    return s, s.makefile("rb")

def reply(f):
    lines = []
    while True:
        l = f.readline()
        if not l:
            return b"".join(lines)
        lines.append(l)
        if l[3:4] != b"-":
            return b"".join(lines)

def say(s, f, line):
    s.sendall(line + b"\r\n"); return reply(f)

# One address may hold 5 connections; the 6th is told 421, another address is served.
held = [connect(smtp, "127.0.0.2") for _ in range(5)]
for s, f in held: assert reply(f).startswith(b"220")
s, f = connect(smtp, "127.0.0.2")
assert reply(f).startswith(b"421"), "6th connection from one address"
s, f = connect(smtp, "127.0.0.3"); assert reply(f).startswith(b"220")
for s2, _ in held: s2.close()
print("  ok: per-address cap (5): the 6th gets 421, another address is served")

# A silent client is cut after the greeting timeout (2 s) with 421 4.4.2.
s, f = connect(smtp); reply(f)
t = time.time(); r = reply(f)
assert r.startswith(b"421 4.4.2") and time.time() - t < 5, r
print("  ok: silent client cut with 421 4.4.2 after %.1f s" % (time.time() - t))

# A client that stalls in DATA is cut after the data timeout.
s, f = connect(smtp); reply(f)
say(s, f, b"EHLO x"); say(s, f, b"MAIL FROM:<a@example.org>"); say(s, f, b"RCPT TO:<bob@hamburger.edu>")
assert say(s, f, b"DATA").startswith(b"354")
s.sendall(b"Subject: stalled\r\n")
r = reply(f); assert r.startswith(b"421 4.4.2"), r
print("  ok: stalled DATA cut with 421 4.4.2")

# An endless line (1 MiB, no newline, then one) gets 500 5.5.2 and the session goes on.
s, f = connect(smtp); reply(f)
s.sendall(b"EHLO " + b"x" * (1 << 20) + b"\r\n")
assert reply(f).startswith(b"500 5.5.2")
assert say(s, f, b"NOOP").startswith(b"250")
print("  ok: 1 MiB line answered 500 5.5.2, session continues")

# An oversized message (100 KB > 64 KiB) is refused after the dot; the session goes on.
say(s, f, b"EHLO x"); say(s, f, b"MAIL FROM:<a@example.org>"); say(s, f, b"RCPT TO:<bob@hamburger.edu>")
assert say(s, f, b"DATA").startswith(b"354")
s.sendall((b"y" * 900 + b"\r\n") * 110 + b".\r\n")
r = reply(f); assert r.startswith(b"552 5.3.4"), r
assert say(s, f, b"RSET").startswith(b"250")
print("  ok: 100 KB message over a 64 KiB limit: 552 5.3.4")

# A command flood ends with 421 after 5 errors.
s, f = connect(smtp); reply(f)
for i in range(4): assert say(s, f, b"JUNK %d" % i).startswith(b"500")
r = say(s, f, b"JUNK 4") + reply(f)
assert b"421 4.7.0" in r, r
assert f.readline() == b"", "closed"
print("  ok: 5 bad commands: 421 and closed")

# Open relay probe from a stranger: 554 5.7.1.
s, f = connect(smtp, "127.0.0.4"); reply(f)
say(s, f, b"EHLO spammer"); say(s, f, b"MAIL FROM:<x@spam.example>")
r = say(s, f, b"RCPT TO:<victim@example.org>"); assert r.startswith(b"554 5.7.1"), r
print("  ok: relay for a stranger refused (554 5.7.1)")

# Commands pipelined after STARTTLS are discarded, not run inside the TLS session (RFC 3207).
s, f = connect(sub); reply(f)
say(s, f, b"EHLO x")
s.sendall(b"STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n")
assert reply(f).startswith(b"220")
ctx = ssl.create_default_context(cafile=ca)
t = ctx.wrap_socket(s, server_hostname="127.0.0.1"); tf = t.makefile("rb")
t.sendall(b"EHLO x\r\n"); r = reply(tf)
assert r.startswith(b"250-"), r
print("  ok: input pipelined after STARTTLS discarded")

# Password guessing: 3 failures, then 421 and closed.
t.sendall(b"AUTH PLAIN AGJvYkBoYW1idXJnZXIuZWR1AHdyb25n\r\n"); assert reply(tf).startswith(b"535")
t.sendall(b"AUTH PLAIN AGJvYkBoYW1idXJnZXIuZWR1AHdyb25n\r\n"); assert reply(tf).startswith(b"535")
t.sendall(b"AUTH PLAIN AGJvYkBoYW1idXJnZXIuZWR1AHdyb25n\r\n"); r = reply(tf) + reply(tf)
assert b"421" in r, r
print("  ok: 3 failed AUTHs: 421 and closed")
PY

# kill -9 right after 250: the message is on disk (local) and in the queue (remote).
python3 - "$smtp" <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), source_address=("127.0.0.1", 0))
s.sendmail("a@example.org", ["bob@hamburger.edu"], "Subject: before the crash\r\n\r\nsafe\r\n")
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), source_address=("127.0.0.5", 0))
s.sendmail("bob@hamburger.edu", ["carol@far.example"], "Subject: queued\r\n\r\nfar\r\n")
PY
kill -9 "$SERVER_PID"
check "message that got 250 survives kill -9" "1" "$(grep -l 'before the crash' "$ROOT"/mail/hamburger.edu/bob/new/* | wc -l)"
serve
check "server restarts on the same data" "1" "$(find "$ROOT/mail/hamburger.edu/bob/new" -type f | wc -l)"
check "queued message survives kill -9 and a restart" "1" "$("$APPNET" mail queue --root "$ROOT" | grep -c 'bob@hamburger.edu -> carol@far.example')"
echo "hostile mail: all checks passed"
