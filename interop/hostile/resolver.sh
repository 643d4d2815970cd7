#!/usr/bin/env bash
# appnet dns resolver under attack: a random-subdomain flood of a zone whose server never
# answers (from several addresses) while another client's uncached question still resolves
# quickly; a flood of distinct cacheable names keeping the resolver's memory within its cache
# budget; a huge upstream TTL capped at --max-ttl (and a negative one at --max-negative-ttl).
source "$(dirname "$0")/../lib.sh"

# The authoritative side: one appnet dns serve on 127.0.0.1:$port for the root (which also
# holds ok.zz and the 2147483647-TTL huge.zz), wild.zz (a wildcard TXT for any name) and
# big.zz (negative answers with a huge SOA TTL and MINIMUM); wt.zz is delegated to
# 127.0.0.2:$port, where a socket swallows every query.
port=$(free_port)
cat >"$WORK/root.zone" <<EOF
\$ORIGIN .
\$TTL 3600
@ SOA a.root.zz. admin.root.zz. 1 3600 600 86400 60
@ NS a.root.zz.
a.root.zz. A 127.0.0.1
ok.zz. A 192.0.2.1
huge.zz. 2147483647 A 192.0.2.9
wt.zz. NS ns.wt.zz.
ns.wt.zz. A 127.0.0.2
wild.zz. NS a.root.zz.
big.zz. NS a.root.zz.
EOF
filler=$(printf '"%0200d" ' 1 2 3 4)
cat >"$WORK/wild.zone" <<EOF
\$ORIGIN wild.zz.
\$TTL 3600
@ SOA a.root.zz. admin.root.zz. 1 3600 600 86400 60
@ NS a.root.zz.
* TXT $filler
EOF
cat >"$WORK/big.zone" <<EOF
\$ORIGIN big.zz.
\$TTL 2147483647
@ SOA a.root.zz. admin.root.zz. 1 3600 600 86400 2147483647
@ NS a.root.zz.
EOF
printf '. 3600 NS a.root.zz.\na.root.zz. 3600 A 127.0.0.1\n' >"$WORK/root.hints"
bg "$APPNET" dns serve --listen "127.0.0.1:$port" --no-rrl \
  --zone ".=$WORK/root.zone" --zone "wild.zz=$WORK/wild.zone" --zone "big.zz=$WORK/big.zone"
wait_tcp 127.0.0.1 "$port"
bg python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.2", int(sys.argv[1])))
while True:
    s.recv(4096)
' "$port"

rport=$(free_port)
budget=2097152
bg "$APPNET" dns resolver --listen "127.0.0.1:$rport" --root-hints "$WORK/root.hints" \
  --upstream-port "$port" --cache-size 2MiB --max-in-flight 256
resolver_pid=$LAST_PID
wait_tcp 127.0.0.1 "$rport"

# TTL caps, as dig sees them: fresh from upstream, then again from the cache.
for pass in fresh cached; do
  check "2147483647 upstream TTL capped at 86400 ($pass)" "86400" \
    "$(dig @127.0.0.1 -p "$rport" huge.zz A +noall +answer +time=3 +tries=1 | awk '{print $2}')"
done
check "negative answer's SOA TTL capped at 3600" "3600" \
  "$(dig @127.0.0.1 -p "$rport" nope.big.zz A +noall +authority +time=3 +tries=1 | awk '$4 == "SOA" {print $2}')"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$resolver_pid/status"; }

python3 - "$rport" "$budget" "$resolver_pid" <<'PY'
import os, random, select, socket, struct, sys, time

rport, budget, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
server = ("127.0.0.1", rport)

def query(qid, name, qtype):
    wire = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire + struct.pack(">HH", qtype, 1)

def rcode(reply):
    return reply[3] & 0x0F

def rss_kib():
    with open("/proc/%d/status" % pid) as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

def label():
    return "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))

# 1. Random subdomains of the dead zone: 3000 queries over ~3 s from 8 addresses, more than
# the resolver's 256 questions in flight could hold if each waited out its upstream timeouts.
flooders = []
for i in range(8):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.%d" % (10 + i), 0))
    s.setblocking(False)
    flooders.append(s)
victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
victim.bind(("127.0.0.20", 0))
victim.settimeout(2.0)
replies = {0: 0, 2: 0}
victim_rtt = None
victim_rcode = None
start = time.time()
for batch in range(60):
    for j in range(50):
        s = flooders[j % len(flooders)]
        try:
            s.sendto(query(random.getrandbits(16), "%s.wt.zz" % label(), 1), server)
        except BlockingIOError:
            pass
    if batch == 30:
        # Another client's uncached question, mid-flood.
        t0 = time.time()
        victim.sendto(query(4242, "ok.zz", 1), server)
        try:
            reply = victim.recv(1500)
            victim_rtt = time.time() - t0
            victim_rcode = rcode(reply)
        except socket.timeout:
            pass
    deadline = time.time() + 0.05
    while time.time() < deadline:
        ready, _, _ = select.select(flooders, [], [], max(0.0, deadline - time.time()))
        for s in ready:
            try:
                while True:
                    r = s.recv(1500)
                    replies[rcode(r)] = replies.get(rcode(r), 0) + 1
            except BlockingIOError:
                pass
print("  flood of the dead zone: %d queries in %.1f s, replies by rcode %s" % (60 * 50, time.time() - start, replies))
assert victim_rcode == 0, "the other client's question failed (rcode %s)" % victim_rcode
assert victim_rtt < 1.0, "the other client waited %.2f s" % victim_rtt
print("  ok: another client's uncached question resolved in %.0f ms mid-flood" % (victim_rtt * 1000))
assert replies[2] >= 2000, "the flood's excess was not answered SERVFAIL at once"
print("  ok: the flood's excess got SERVFAIL at once (%d)" % replies[2])

# 2. Distinct cacheable names (a ~850-byte TXT each): 15000 of them would take ~18 MB of cache
# without a budget; the resolver's memory must grow by no more than its 2 MiB budget plus
# a margin for buffers and the allocator.
before = rss_kib()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.30", 0))
s.settimeout(2.0)
answered, sent, outstanding, window = 0, 0, 0, 16
end = time.time() + 30
while (sent < 15000 or outstanding) and time.time() < end:
    while sent < 15000 and outstanding < window:
        s.sendto(query(sent & 0xFFFF, "%s.wild.zz" % label(), 16), server)
        sent += 1
        outstanding += 1
    try:
        r = s.recv(4096)
        outstanding -= 1
        if rcode(r) == 0:
            answered += 1
    except socket.timeout:
        outstanding = 0
after = rss_kib()
growth = after - before
print("  cache flood: %d of %d answered; RSS %d -> %d KiB" % (answered, sent, before, after))
assert answered >= 14000, "only %d answers" % answered
margin = 6 * 1024
assert growth < budget // 1024 + margin, "RSS grew %d KiB (budget %d KiB + %d)" % (growth, budget // 1024, margin)
print("  ok: RSS grew %d KiB, within the 2 MiB cache budget + 6 MiB" % growth)
assert after < budget // 1024 + 30 * 1024, "RSS %d KiB" % after
print("  ok: RSS %d KiB in all, under the 2 MiB cache budget + 30 MiB" % after)
PY
check "the resolver still answers after the floods" "192.0.2.1" \
  "$(dig @127.0.0.1 -p "$rport" ok.zz A +short +time=3 +tries=1)"
echo "resolver: $CHECKS checks passed (plus the python checks above); RSS now $(rss_kib) KiB"
