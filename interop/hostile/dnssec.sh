#!/usr/bin/env bash
# Issue 18, updates and DNSSEC records: junk, truncated, oversized and forged RFC 2136 UPDATEs
# (dnspython and raw bytes) against `appnet dns serve --allow-update` of a signed zone. Each
# gets an error or nothing, the zone never changes, the server keeps answering with valid
# signatures. Loopback only, every loop bounded.
source "$(dirname "$0")/../lib.sh"

PY=python3
$PY -c 'import dns.update' 2>/dev/null || PY=/usr/bin/python3

zone="$WORK/com.zone"
cat > "$zone" <<'ZONE'
$ORIGIN com.
$TTL 3600
@ SOA a.gtld-servers.net. nstld.verisign-grs.com. 100 1800 900 604800 86400
@ NS a.gtld-servers.net.
ZONE
K="$WORK/keys"
"$APPNET" dns keygen com --keys "$K" >/dev/null
secret=$(head -c 32 /dev/urandom | base64)
port=$(free_port)
bg "$APPNET" dns serve --zone "com=$zone" --listen "127.0.0.1:$port" --dnssec-keys "$K" \
  --tsig-key "registrar:hmac-sha256:$secret" --allow-update com=registrar
wait_tcp 127.0.0.1 "$port"

out=$($PY - "$port" "$secret" <<'PY'
import socket, struct, random, sys, dns.update, dns.query, dns.tsigkeyring, dns.rcode, dns.message
port, secret = int(sys.argv[1]), sys.argv[2]
addr = ("127.0.0.1", port)
random.seed(18)
res = []
def udp(b):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
    s.sendto(b, addr)
    try:
        return s.recv(65535)
    except socket.timeout:
        return None
    finally:
        s.close()
def rc(b):
    return None if b is None or len(b) < 4 else b[3] & 15
# 1. unsigned, wrong key, expired time
u = dns.update.UpdateMessage("com."); u.add("evil.com.", 60, "A", "6.6.6.6")
res.append(("unsigned", rc(udp(u.to_wire()))))
bad = dns.tsigkeyring.from_text({"registrar": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="})
u = dns.update.UpdateMessage("com.", keyring=bad, keyname="registrar", keyalgorithm="hmac-sha256"); u.add("evil.com.", 60, "A", "6.6.6.6")
res.append(("badsig", rc(udp(u.to_wire()))))
good = dns.tsigkeyring.from_text({"registrar": secret})
u = dns.update.UpdateMessage("com.", keyring=good, keyname="registrar", keyalgorithm="hmac-sha256"); u.add("evil.com.", 60, "RRSIG", "A 13 2 60 20300101000000 20200101000000 1 com. AAAA")
res.append(("rrsig-update", rc(udp(u.to_wire()))))
u = dns.update.UpdateMessage("com.", keyring=good, keyname="registrar", keyalgorithm="hmac-sha256"); u.add("evil.org.", 60, "A", "6.6.6.6")
res.append(("notzone", rc(udp(u.to_wire()))))
# 2. random and mutated UPDATEs, unsigned: stopped before the parser (which is fuzzed:
#    fuzz/fuzz_targets/dns_update.rs), must never change anything or stop the server
base = dns.update.UpdateMessage("com."); base.add("evil.com.", 60, "A", "6.6.6.6"); base.delete("com.")
w = bytearray(base.to_wire())
for i in range(300):
    m = bytearray(w)
    for _ in range(random.randint(1, 6)):
        m[random.randrange(len(m))] = random.randrange(256)
    udp(bytes(m[: random.randint(0, len(m))]))
# 3. huge counts, zero counts
udp(struct.pack(">HHHHHH", 7, 0x2800, 1, 0xffff, 0xffff, 0) + b"\x03com\x00\x00\x06\x00\x01")
udp(struct.pack(">HHHHHH", 8, 0x2800, 0, 0, 0, 0))
# 4. the server still answers, unchanged
q = dns.message.make_query("com.", "SOA", want_dnssec=True)
r = dns.query.udp(q, "127.0.0.1", port=port, timeout=2)
res.append(("serial", r.answer[0][0].serial if r.answer else None))
res.append(("signed", any(rr.rdtype == 46 for rr in r.answer)))
q = dns.message.make_query("evil.com.", "A")
res.append(("evil", dns.rcode.to_text(dns.query.udp(q, "127.0.0.1", port=port, timeout=2).rcode())))
print(" ".join(f"{k}={v}" for k, v in res))
PY
)
echo "  $out"
check "unsigned update REFUSED" 5 "$(sed -n 's/.*unsigned=\([0-9]*\).*/\1/p' <<<"$out")"
check "bad signature NOTAUTH" 9 "$(sed -n 's/.*badsig=\([0-9]*\).*/\1/p' <<<"$out")"
check "updating DNSSEC records REFUSED" 5 "$(sed -n 's/.*rrsig-update=\([0-9]*\).*/\1/p' <<<"$out")"
check "out-of-zone name NOTZONE" 10 "$(sed -n 's/.*notzone=\([0-9]*\).*/\1/p' <<<"$out")"
check "serial unchanged after 300 junk updates" 100 "$(sed -n 's/.*serial=\([0-9]*\).*/\1/p' <<<"$out")"
check "answers still signed" True "$(sed -n 's/.*signed=\([A-Za-z]*\).*/\1/p' <<<"$out")"
check "nothing was added" NXDOMAIN "$(sed -n 's/.*evil=\([A-Z]*\).*/\1/p' <<<"$out")"
echo "hostile dnssec: $CHECKS checks passed"
