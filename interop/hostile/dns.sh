#!/usr/bin/env bash
# Issue 22, the authoritative DNS server: the hostile tester's attacks replayed with dig and
# python against `appnet dns serve` (run by interop/hostile.sh with APPNET set to the release
# binary). Loopback only, every loop bounded.
source "$(dirname "$0")/../lib.sh"

PY=python3
$PY -c 'import dns.message' 2>/dev/null || PY=/usr/bin/python3

zone="$WORK/h.test.zone"
cat > "$zone" <<'ZONE'
$ORIGIN h.test.
$TTL 300
@     SOA  ns1 hostmaster 1 3600 600 86400 60
@     NS   ns1
@     MX   10 @
ns1   A    127.0.0.1
www   A    192.0.2.80
www   AAAA 2001:db8::80
www   TXT  "www"
www2  CNAME @
*.wild A   192.0.2.99
dn    DNAME other.test.
ZONE

port=$(free_port)
bg "$APPNET" dns serve --zone "$zone" --listen "127.0.0.1:$port"
wait_tcp 127.0.0.1 "$port"
D=(dig @127.0.0.1 -p "$port" +norec +time=2 +tries=1)
status() { "${D[@]}" "$@" 2>&1 | sed -n 's/.*status: \([A-Z]*\),.*/\1/p'; }

echo "questions that are not questions (RFC 6895 meta-types)"
check "qtype 0 → FORMERR" "FORMERR" "$(status www.h.test TYPE0)"
check "qtype TSIG → FORMERR" "FORMERR" "$(status www.h.test TYPE250)"
check "qtype OPT → FORMERR" "FORMERR" "$(status www.h.test TYPE41)"
check "qtype 0 over TCP → FORMERR" "FORMERR" "$(status +tcp www.h.test TYPE0)"
check "an ordinary question still answered" "192.0.2.80" "$("${D[@]}" +short www.h.test A)"

echo "ANY (RFC 8482)"
check "ANY over UDP: one RRset" "1" "$("${D[@]}" +notcp +noall +answer www.h.test ANY | grep -c .)"
check "ANY over TCP: everything" "3" "$("${D[@]}" +tcp +noall +answer www.h.test ANY | grep -c .)"

echo "zone data"
check "CNAME @ is the origin" "h.test." "$("${D[@]}" +short www2.h.test CNAME)"
check "MX 10 @ is the origin" "10 h.test." "$("${D[@]}" +short h.test MX)"
check "DNAME applied (RFC 6672)" "other.test.|x.other.test." \
  "$("${D[@]}" +short x.dn.h.test A | paste -sd'|')"

echo "TCP: one client holding 520 connections (cap 512)"
# The hoarder opens its connections from 127.0.0.1 and holds them until told to stop.
cat > "$WORK/hold.py" <<'PY'
import os, socket, sys, time
port, source, count, ready, stop = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
held = []
for _ in range(count):
    s = socket.socket()
    s.bind((source, 0))
    try:
        s.connect(("127.0.0.1", port))
        held.append(s)
    except OSError:
        s.close()
open(ready, "w").write(str(len(held)))
deadline = time.time() + 60
while not os.path.exists(stop) and time.time() < deadline:
    time.sleep(0.05)
PY
wait_file() { local i; for ((i = 0; i < 400; i++)); do [ -e "$1" ] && return 0; sleep 0.05; done; return 1; }
bg "$PY" "$WORK/hold.py" "$port" 127.0.0.1 520 "$WORK/ready1" "$WORK/stop"
wait_file "$WORK/ready1"
sleep 0.5 # let the server take (and refuse) the backlog
check "another client's TCP query is answered" "192.0.2.80" \
  "$(dig @127.0.0.1 -p "$port" -b 127.0.0.2 +tcp +short +time=3 +tries=1 www.h.test A)"
# Now many addresses, each holding its share (64), fill the global cap: a newcomer still gets in,
# in place of the longest-idle connection.
for i in $(seq 1 8); do
  bg "$PY" "$WORK/hold.py" "$port" "127.0.1.$i" 64 "$WORK/ready-$i" "$WORK/stop"
done
for i in $(seq 1 8); do wait_file "$WORK/ready-$i"; done
sleep 0.5
check "at the global cap a newcomer is answered" "192.0.2.80" \
  "$(dig @127.0.0.1 -p "$port" -b 127.0.0.3 +tcp +short +time=3 +tries=1 www.h.test A)"
touch "$WORK/stop"

echo "RRL: random names under a wildcard share one bucket"
rport=$(free_port)
bg "$APPNET" dns serve --zone "$zone" --listen "127.0.0.1:$rport" --rrl-rate 5 --rrl-slip 0 --rrl-loopback
wait_tcp 127.0.0.1 "$rport"
answered=$("$PY" - "$rport" <<'PY'
import random, socket, sys, time
import dns.message
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
rng = random.Random(22)
for i in range(100):
    name = "".join(rng.choice("abcdefghij") for _ in range(10)) + ".wild.h.test."
    s.sendto(dns.message.make_query(name, "A").to_wire(), ("127.0.0.1", port))
got = 0
deadline = time.time() + 2
while time.time() < deadline:
    try:
        s.recvfrom(4096)
        got += 1
    except socket.timeout:
        break
print(got)
PY
)
check "100 random wildcard names at 5/s: most dropped" "yes" "$([ "$answered" -le 20 ] && echo yes || echo "no: $answered answered")"
random_nx=$("$PY" - "$rport" <<'PY'
import random, socket, sys, time
import dns.message
port = int(sys.argv[1])
time.sleep(1.2)  # a fresh second for the NXDOMAIN bucket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
rng = random.Random(23)
for i in range(100):
    name = "".join(rng.choice("abcdefghij") for _ in range(10)) + ".h.test."
    s.sendto(dns.message.make_query(name, "A").to_wire(), ("127.0.0.1", port))
got = 0
while True:
    try:
        s.recvfrom(4096)
        got += 1
    except socket.timeout:
        break
print(got)
PY
)
check "100 random NXDOMAIN names at 5/s: most dropped" "yes" "$([ "$random_nx" -le 20 ] && echo yes || echo "no: $random_nx answered")"
echo "hostile dns: $CHECKS checks passed"
