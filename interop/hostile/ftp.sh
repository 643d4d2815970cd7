#!/usr/bin/env bash
# appnet ftp under attack: the bounce attack (PORT/EPRT naming another host), a third party
# racing for a passive port, paths out of the root (.., absolute, symlinks), an upload past the
# size cap, password guessing, one address holding sessions, silent and over-long input, and a
# stalled data connection that must not block the control connection.
source "$(dirname "$0")/../lib.sh"

root=$WORK/root
outside=$WORK/outside
mkdir -p "$root/pub" "$outside"
echo "public" > "$root/pub/hello.txt"
echo "secret" > "$outside/secret.txt"
ln -s "$outside" "$root/pub/escape"
ln -s "$outside/secret.txt" "$root/pub/link.txt"
head -c 50000000 /dev/zero > "$root/pub/big.bin"
users=$WORK/users
printf 'right\n' | "$APPNET" ftp user add alice --users "$users" --home "$root" --password-stdin >/dev/null

port=$(free_port)
bg "$APPNET" ftp serve --root "$root" --listen "127.0.0.1:$port" --anonymous --users "$users" --write \
  --max-upload 1MiB --max-sessions-per-ip 5 --login-timeout 2 --login-failure-delay 200 --max-login-failures 3 \
  --max-login-failures-per-ip 5
wait_tcp 127.0.0.1 "$port"

rc=0
out=$(timeout 50 python3 - "$port" "$root" "$outside" <<'PY'
import socket, sys, time, re
port, root, outside = int(sys.argv[1]), sys.argv[2], sys.argv[3]

class C:
    def __init__(self, src="127.0.0.1"):
        self.s = socket.socket(); self.s.bind((src, 0)); self.s.settimeout(10)
        self.s.connect(("127.0.0.1", port)); self.f = self.s.makefile("rb")
        assert self.reply()[0] == 220
    def reply(self):
        line = self.f.readline().decode("latin-1")
        if not line:
            return (0, "")
        code = int(line[:3]); text = line
        if line[3:4] == "-":
            while True:
                l = self.f.readline().decode("latin-1"); text += l
                if not l or (l[:3] == line[:3] and l[3:4] == " "):
                    break
        return (code, text)
    def cmd(self, c):
        self.s.sendall(c.encode("latin-1") + b"\r\n"); return self.reply()
    def anon(self):
        assert self.cmd("USER anonymous")[0] == 331; assert self.cmd("PASS x")[0] == 230; return self
    def epsv(self, src="127.0.0.1"):
        code, text = self.cmd("EPSV"); assert code == 229, text
        p = int(re.search(r"\|\|\|(\d+)\|", text).group(1))
        d = socket.socket(); d.bind((src, 0)); d.settimeout(10); d.connect(("127.0.0.1", p)); return d

def ok(msg): print("  ok: " + msg, flush=True)

# 1. The bounce attack: PORT/EPRT to another host are refused and nothing connects there.
trap = socket.socket(); trap.bind(("127.0.0.2", 0)); trap.listen(5); trap.settimeout(0.5)
tp = trap.getsockname()[1]
c = C().anon()
assert c.cmd("PORT 127,0,0,2,%d,%d" % (tp >> 8, tp & 255))[0] == 500
assert c.cmd("EPRT |1|127.0.0.2|%d|" % tp)[0] == 500
assert c.cmd("PORT 127,0,0,1,0,25")[0] == 500
assert c.cmd("RETR pub/hello.txt")[0] == 425
try:
    trap.accept(); raise SystemExit("the server connected to a foreign address")
except socket.timeout:
    pass
ok("PORT/EPRT naming another host or a privileged port are refused; nothing connects out")

# 2. A third party connecting to our passive port first is refused; the client still gets data.
code, text = c.cmd("EPSV"); p = int(re.search(r"\|\|\|(\d+)\|", text).group(1))
thief = socket.socket(); thief.bind(("127.0.0.3", 0)); thief.settimeout(5); thief.connect(("127.0.0.1", p))
d = socket.socket(); d.settimeout(10); d.connect(("127.0.0.1", p))
assert c.cmd("RETR pub/hello.txt")[0] == 150
data = b""
while True:
    b = d.recv(65536)
    if not b: break
    data += b
assert data == b"public\r\n", data
assert c.reply()[0] == 226
assert thief.recv(10) == b""
ok("a passive port accepts only the control client's address")

# 3. Paths never leave the root.
for cmd in ["CWD ../../../..", "CWD /pub/escape", "SIZE pub/escape/secret.txt", "SIZE pub/link.txt",
            "SIZE ../outside/secret.txt", "MDTM /../../etc/passwd"]:
    code, text = c.cmd(cmd)
    if cmd.startswith("CWD ../"):
        assert code == 250 and c.cmd("PWD")[1].startswith('257 "/"'), text
    else:
        assert code == 550, (cmd, text)
d = c.epsv(); assert c.cmd("RETR pub/link.txt")[0] == 550; d.close()
d = c.epsv(); assert c.cmd("RETR ../../../../../../etc/passwd")[0] == 550; d.close()
ok(".., absolute paths and symlinks stay inside the root")

# 4. An upload past --max-upload is cut at the cap and leaves no file.
c.cmd("TYPE I")
d = c.epsv(); assert c.cmd("STOR huge.bin")[0] == 150
try:
    d.sendall(b"\0" * (8 << 20)); d.shutdown(socket.SHUT_WR)
except OSError:
    pass
code, text = c.reply(); assert code == 552, text
d.close()
import os
assert not os.path.exists(os.path.join(root, "huge.bin"))
assert c.cmd("STOR pub/escape/planted.txt")[0] in (425, 553)
assert not os.path.exists(os.path.join(outside, "planted.txt"))
ok("uploads stop at the size cap (552) and cannot be planted through a symlink")

# 5. A stalled data connection does not block the control connection.
d = c.epsv(); assert c.cmd("RETR pub/big.bin")[0] == 150
code, text = c.cmd("STAT"); assert code == 213 and "RETR /pub/big.bin" in text, text
c.s.sendall(b"\xff\xf4\xff"); c.s.send(b"\xf2", socket.MSG_OOB)
code, _ = c.cmd("ABOR"); assert code == 426
assert c.reply()[0] == 226
assert c.cmd("NOOP")[0] == 200
d.close()
ok("STAT and ABOR (after Telnet IP + Synch as urgent data) answered during a stalled transfer")

# 6. Password guessing: delayed 530s, then 421 and the connection closes.
g = C("127.0.0.4")
t0 = time.time()
codes = []
for i in range(3):
    g.cmd("USER alice"); codes.append(g.cmd("PASS guess%d" % i)[0])
assert codes == [530, 530, 421], codes
assert time.time() - t0 >= 0.6
assert g.f.readline() == b""
ok("three wrong passwords: delayed 530, 530, then 421 and disconnect")
# ... and reconnecting does not buy more guesses: after 5 from one address it is refused.
g = C("127.0.0.4")
g.cmd("USER alice"); assert g.cmd("PASS guess3")[0] == 530
g.cmd("USER alice"); code, text = g.cmd("PASS guess4"); assert code == 421 and "your address" in text, text
late = socket.socket(); late.bind(("127.0.0.4", 0)); late.settimeout(5); late.connect(("127.0.0.1", port))
assert late.makefile("rb").readline().startswith(b"421 Too many failed logins")
assert C("127.0.0.9").cmd("USER alice")[0] == 331
ok("a guesser who reconnects is refused after 5 failures from its address; others are not")

# 7. One address may hold only its cap of sessions; others are still served.
held = [C("127.0.0.5") for _ in range(5)]
extra = socket.socket(); extra.bind(("127.0.0.5", 0)); extra.settimeout(5); extra.connect(("127.0.0.1", port))
assert extra.makefile("rb").readline().startswith(b"421 ")
C("127.0.0.6").anon()
for h in held: h.s.close()
ok("the 6th session from one address gets 421; another address is served")

# 8. Silent connections are closed at the login timeout; an over-long line gets 500.
s = C("127.0.0.7")
t0 = time.time(); line = s.f.readline()
assert line.startswith(b"421 ") and time.time() - t0 < 6, line
l = C("127.0.0.8")
l.s.sendall(b"USER " + b"A" * 200000 + b"\r\n")
assert l.reply()[0] == 500
assert l.cmd("NOOP")[0] == 200
ok("a silent connection is closed after the login timeout; a 200 kB line gets 500 and the session goes on")
assert C().anon().cmd("SIZE pub/hello.txt")[1].startswith("213 7")
ok("still serving")
PY
) || rc=$?
echo "$out"
check "ftp hostile checks" "0" "$rc"
check "the secret outside the root is untouched" "secret" "$(cat "$outside/secret.txt")"
