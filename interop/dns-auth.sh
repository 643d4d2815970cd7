#!/usr/bin/env bash
# appnet dns serve against clients and servers that are not ours: dig and kdig for every record
# type and answer kind, dnspython as a second independent client, and zone transfers both ways
# with NSD (appnet primary → NSD secondary) and Knot (Knot primary → appnet secondary).
source "$(dirname "$0")/lib.sh"

# A python that has dnspython (pyenv's python3 may not see the Debian package).
PY=python3
$PY -c 'import dns.message' 2>/dev/null || PY=/usr/bin/python3

# contains PATTERN CMD...: "yes" if CMD's output matches PATTERN (output captured first, so an
# early grep exit cannot break CMD's pipe under pipefail).
contains() { local out; out=$("${@:2}" 2>&1) || true; grep -q -- "$1" <<<"$out" && echo yes || echo no; }

zone="$WORK/example.com.zone"
write_zone() { # SERIAL WWW-ADDRESS
  cat > "$zone" <<ZONE
\$ORIGIN example.com.
\$TTL 3600
@       IN SOA ns1 hostmaster ( $1 7200 3600 1209600 300 ) ; serial refresh retry expire minimum
@       NS    ns1
@       NS    ns2.example.net.
@       MX    10 mail
@       CAA   0 issue "letsencrypt.org"
ns1     A     127.0.0.1
mail    A     192.0.2.25
www     A     $2
www     AAAA  2001:db8::80
alias   CNAME www
chain   CNAME alias
*.wild  A     192.0.2.99
txt     TXT   "hello world" "second string"
4.2.0.192.in-addr.arpa.example.com. PTR www
ptr     PTR   www.example.com.
_sip._tcp SRV 0 5 5060 sip
sip     A     192.0.2.60
unk     TYPE65534 \# 3 010203
sub     NS    ns.sub
ns.sub  A     192.0.2.53
ZONE
  for i in $(seq -w 1 30); do
    echo "big TXT \"$i-$(printf 'x%.0s' $(seq 1 90))\"" >> "$zone"
  done
}
write_zone 2024010101 192.0.2.80

check "check-zone accepts the zone" "OK" "$("$APPNET" dns check-zone "$zone" | tail -1)"
printf '$ORIGIN bad.test.\n@ 300 SOA ns1 h 1 2 3 4 5\n@ 300 NS ns1\nwww 300 CNAME x\nwww 300 A 192.0.2.1\n' > "$WORK/bad.test.zone"
bad=$("$APPNET" dns check-zone "$WORK/bad.test.zone" 2>&1 || true)
check "check-zone: CNAME and other data, with file:line" "yes" \
  "$(grep -q "bad.test.zone:5: error: CNAME and other data" <<<"$bad" && echo yes || echo "no: $bad")"
check "check-zone: NS without address" "yes" "$(grep -q "NS without address" <<<"$bad" && echo yes || echo no)"
if "$APPNET" dns serve --zone "$WORK/bad.test.zone" --listen 127.0.0.1:0 >/dev/null 2>&1; then
  echo "  FAIL: a broken zone must stop the server from starting" >&2; exit 1
fi
echo "  ok: a broken zone stops the server from starting"

nsd_port=$(free_port)
port=$(free_port)
bg "$APPNET" dns serve --zone "$zone" --listen "127.0.0.1:$port" --allow-transfer 127.0.0.1 \
  --notify "127.0.0.1:$nsd_port" --pid-file "$WORK/appnet.pid"
wait_tcp 127.0.0.1 "$port"
D=(dig @127.0.0.1 -p "$port" +norec +time=2 +tries=2)
K=(kdig @127.0.0.1 -p "$port" +norec +time=2 +retry=1)

echo "dig, every record type"
check "A"        "192.0.2.80"                          "$("${D[@]}" +short www.example.com A)"
check "AAAA"     "2001:db8::80"                        "$("${D[@]}" +short www.example.com AAAA)"
check "NS"       "ns1.example.com.|ns2.example.net."   "$("${D[@]}" +short example.com NS | sort | paste -sd'|')"
check "MX"       "10 mail.example.com."                "$("${D[@]}" +short example.com MX)"
check "TXT multi-string" '"hello world" "second string"' "$("${D[@]}" +short txt.example.com TXT)"
check "PTR"      "www.example.com."                    "$("${D[@]}" +short ptr.example.com PTR)"
check "SRV"      "0 5 5060 sip.example.com."           "$("${D[@]}" +short _sip._tcp.example.com SRV)"
check "CAA"      '0 issue "letsencrypt.org"'           "$("${D[@]}" +short example.com CAA)"
check "SOA"      "ns1.example.com. hostmaster.example.com. 2024010101 7200 3600 1209600 300" \
                 "$("${D[@]}" +short example.com SOA)"
check "unknown type (RFC 3597)" '\# 3 010203'          "$("${D[@]}" +short unk.example.com TYPE65534)"
check "AA bit on answers" "yes" "$(contains 'flags: qr aa;' "${D[@]}" www.example.com)"
check "SRV target address in additional" "sip.example.com. 3600 IN A 192.0.2.60" \
  "$("${D[@]}" +noall +additional _sip._tcp.example.com SRV | awk '{print $1,$2,$3,$4,$5}')"
check "MX target address in additional" "mail.example.com. 3600 IN A 192.0.2.25" \
  "$("${D[@]}" +noall +additional example.com MX | awk '{print $1,$2,$3,$4,$5}')"

echo "dig, answer kinds"
check "CNAME chain" "alias.example.com.|www.example.com.|192.0.2.80" "$("${D[@]}" +short chain.example.com A | paste -sd'|')"
check "wildcard" "anything.wild.example.com. 3600 IN A 192.0.2.99" \
  "$("${D[@]}" +noall +answer anything.wild.example.com A | awk '{print $1,$2,$3,$4,$5}')"
nx=$("${D[@]}" nope.example.com A)
check "NXDOMAIN status" "yes" "$(grep -q 'status: NXDOMAIN' <<<"$nx" && echo yes || echo no)"
check "NXDOMAIN: SOA in authority, TTL=min(SOA TTL, MINIMUM)" "example.com. 300 IN SOA" \
  "$("${D[@]}" +noall +authority nope.example.com A | awk '{print $1,$2,$3,$4}')"
nodata=$("${D[@]}" www.example.com MX)
check "NODATA: NOERROR, no answer" "yes" "$(grep -q 'status: NOERROR.*' <<<"$nodata" && grep -q 'ANSWER: 0, AUTHORITY: 1' <<<"$nodata" && echo yes || echo no)"
check "NODATA: SOA in authority" "example.com. 300 IN SOA" \
  "$("${D[@]}" +noall +authority www.example.com MX | awk '{print $1,$2,$3,$4}')"
ref=$("${D[@]}" host.sub.example.com A)
check "referral: no AA" "yes" "$(grep -q 'flags: qr;' <<<"$ref" && echo yes || echo no)"
check "referral: NS in authority" "sub.example.com. 3600 IN NS ns.sub.example.com." \
  "$("${D[@]}" +noall +authority host.sub.example.com A | awk '{print $1,$2,$3,$4,$5}')"
check "referral: glue in additional" "ns.sub.example.com. 3600 IN A 192.0.2.53" \
  "$("${D[@]}" +noall +additional host.sub.example.com A | awk '{print $1,$2,$3,$4,$5}')"
check "REFUSED outside our zones" "yes" "$(contains 'status: REFUSED' "${D[@]}" www.example.org)"
check "EDNS version 1 → BADVERS" "yes" "$(contains 'status: BADVERS' "${D[@]}" +edns=1 +noednsneg www.example.com)"
check "NOTIMP for opcode STATUS" "yes" "$("$PY" - "$port" <<'PY'
import socket, struct, sys
q = struct.pack(">HHHHHH", 77, 2 << 11, 0, 0, 0, 0)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(q, ("127.0.0.1", int(sys.argv[1])))
r = s.recv(512)
print("yes" if struct.unpack(">HH", r[:4]) == (77, 0x8000 | (2 << 11) | 4) else r)
PY
)"
check "FORMERR for a malformed query" "yes" "$("$PY" - "$port" <<'PY'
import socket, struct, sys
q = struct.pack(">HHHHHH", 78, 0, 2, 0, 0, 0) + b"\x03www\x00\x00\x01\x00\x01"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(q, ("127.0.0.1", int(sys.argv[1])))
r = s.recv(512)
print("yes" if struct.unpack(">H", r[2:4])[0] & 0xf == 1 else r)
PY
)"

echo "truncation and TCP retry"
tc=$("${D[@]}" +bufsize=512 +ignore big.example.com TXT)
check "+bufsize=512: TC set, no partial answer" "yes" "$(grep -q 'flags: qr aa tc;' <<<"$tc" && grep -q 'ANSWER: 0' <<<"$tc" && echo yes || echo no)"
check "dig retries over TCP and gets all 30" "30" "$("${D[@]}" +bufsize=512 +noall +answer big.example.com TXT | wc -l)"
check "kdig over TCP" "30" "$("${K[@]}" +tcp +short big.example.com TXT | wc -l)"

echo "kdig"
check "kdig A" "192.0.2.80" "$("${K[@]}" +short www.example.com A)"
check "kdig MX" "10 mail.example.com." "$("${K[@]}" +short example.com MX)"
check "kdig NXDOMAIN" "yes" "$(contains 'status: NXDOMAIN' "${K[@]}" nope.example.com)"
check "kdig wildcard" "192.0.2.99" "$("${K[@]}" +short x.wild.example.com)"
check "kdig EDNS version 1 → BADVERS" "yes" "$(contains 'BADVERS' "${K[@]}" +edns=1 www.example.com)"

echo "AXFR"
axfr=$("${D[@]}" example.com AXFR +noall +answer)
check "dig axfr: SOA first and last" "SOA|SOA" "$(awk '{print $4}' <<<"$axfr" | sed -n '1p;$p' | paste -sd'|')"
check "dig axfr: every record" "51" "$(wc -l <<<"$axfr")"
check "kdig axfr" "51" "$("${K[@]}" example.com AXFR +noall +answer | grep -c IN)"
check "appnet dns query AXFR" "51" "$("$APPNET" dns query example.com AXFR --server "127.0.0.1:$port" | grep -vc '^;')"

echo "dnspython"
"$PY" - "$port" <<'PY'
import sys
import dns.flags, dns.message, dns.query, dns.rcode, dns.rdatatype, dns.zone, dns.edns
port = int(sys.argv[1]); srv = "127.0.0.1"
def ask(name, t, **kw):
    q = dns.message.make_query(name, t, use_edns=kw.pop("edns", 0), payload=kw.pop("payload", 1232))
    return dns.query.udp(q, srv, port=port, timeout=3, ignore_trailing=True, **kw)
r = ask("www.example.com", "A")
assert r.flags & dns.flags.AA and r.answer[0][0].address == "192.0.2.80", r
r = ask("chain.example.com", "A")
assert [rr.rdtype for rr in r.answer] == [dns.rdatatype.CNAME, dns.rdatatype.CNAME, dns.rdatatype.A], r
r = ask("nope.example.com", "A")
assert r.rcode() == dns.rcode.NXDOMAIN and r.authority[0].rdtype == dns.rdatatype.SOA and r.authority[0].ttl == 300
r = ask("host.sub.example.com", "A")
assert not r.flags & dns.flags.AA and r.authority[0].rdtype == dns.rdatatype.NS and r.additional, r
r = ask("big.example.com", "TXT", edns=-1)
assert r.flags & dns.flags.TC and not r.answer
r = dns.query.tcp(dns.message.make_query("big.example.com", "TXT"), srv, port=port, timeout=3)
assert len(r.answer[0]) == 30
r = ask("www.example.com", "A", edns=1)
assert r.rcode() == dns.rcode.BADVERS, r.rcode()
z = dns.zone.from_xfr(dns.query.xfr(srv, "example.com", port=port, timeout=5))
assert z.get_rdataset("www", "A")[0].address == "192.0.2.80"
print("  ok: dnspython (answer, CNAME chain, NXDOMAIN+SOA, referral, TC, TCP, BADVERS, AXFR)")
PY

echo "appnet dns query"
check "query --short" "192.0.2.80" "$("$APPNET" dns query www.example.com A --server "127.0.0.1:$port" --short)"
check "query over TCP" "yes" "$(contains "SERVER: 127.0.0.1:$port(TCP)" "$APPNET" dns query example.com MX --server "127.0.0.1:$port" --tcp)"

echo "transfers refused outside the allow-list"
port2=$(free_port)
bg "$APPNET" dns serve --zone "$zone" --listen "127.0.0.1:$port2"
wait_tcp 127.0.0.1 "$port2"
check "AXFR without allow-transfer → REFUSED" "yes" "$(contains 'Transfer failed' dig @127.0.0.1 -p "$port2" example.com AXFR)"

echo "appnet primary → NSD secondary"
nsd_dir="$WORK/nsd"; mkdir -p "$nsd_dir"
cat > "$nsd_dir/nsd.conf" <<CONF
server:
    ip-address: 127.0.0.1@$nsd_port
    port: $nsd_port
    username: ""
    chroot: ""
    zonesdir: "$nsd_dir"
    database: ""
    pidfile: "$nsd_dir/nsd.pid"
    xfrdfile: "$nsd_dir/xfrd.state"
    zonelistfile: "$nsd_dir/zone.list"
    xfrdir: "$nsd_dir"
    logfile: "$nsd_dir/nsd.log"
    verbosity: 2
remote-control:
    control-enable: no
zone:
    name: example.com
    zonefile: "example.com.zone"
    request-xfr: 127.0.0.1@$port NOKEY
    allow-notify: 127.0.0.1 NOKEY
    provide-xfr: 127.0.0.1 NOKEY
CONF
bg sh -c 'exec nsd -d -c "$1" >"$2" 2>&1' sh "$nsd_dir/nsd.conf" "$nsd_dir/stdout.log"
wait_tcp 127.0.0.1 "$nsd_port"
serial_of() { dig @127.0.0.1 -p "$1" +short +time=1 +tries=1 "$2" SOA 2>/dev/null | awk '{print $3}'; }
wait_serial() { # PORT ZONE SERIAL
  local i
  for ((i = 0; i < 100; i++)); do [ "$(serial_of "$1" "$2")" = "$3" ] && return 0; sleep 0.2; done
  echo "  serial on port $1 for $2 is $(serial_of "$1" "$2"), wanted $3" >&2; return 1
}
norm_axfr() { dig @127.0.0.1 -p "$1" "$2" AXFR +noall +answer | awk '{ $1 = tolower($1); print }' | sort -u; }
wait_serial "$nsd_port" example.com 2024010101
check "NSD transferred appnet's zone" "$(norm_axfr "$port" example.com)" "$(norm_axfr "$nsd_port" example.com)"
write_zone 2024010102 192.0.2.81
"$APPNET" dns reload --pid-file "$WORK/appnet.pid" >/dev/null
wait_serial "$nsd_port" example.com 2024010102
check "after serial bump + NOTIFY, NSD serves the new data" "192.0.2.81" "$(dig @127.0.0.1 -p "$nsd_port" +short www.example.com)"
check "NSD and appnet serve identical data" "$(norm_axfr "$port" example.com)" "$(norm_axfr "$nsd_port" example.com)"

echo "Knot primary → appnet secondary"
knot_dir="$WORK/knot"; mkdir -p "$knot_dir"
knot_port=$(free_port)
sec_port=$(free_port)
cat > "$knot_dir/example.org.zone" <<ZONE
\$ORIGIN example.org.
\$TTL 300
@    SOA ns1 hostmaster 1 3600 600 86400 60
@    NS  ns1
ns1  A   127.0.0.1
www  A   198.51.100.1
mail MX  10 www
ZONE
cat > "$knot_dir/knot.conf" <<CONF
server:
    listen: 127.0.0.1@$knot_port
    rundir: "$knot_dir"
database:
    storage: "$knot_dir"
control:
    listen: "$knot_dir/knot.sock"
remote:
  - id: appnet
    address: 127.0.0.1@$sec_port
acl:
  - id: xfr
    address: 127.0.0.1
    action: transfer
template:
  - id: default
    storage: "$knot_dir"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: example.org
    notify: appnet
    acl: xfr
CONF
bg sh -c 'exec knotd -c "$1" >"$2" 2>&1' sh "$knot_dir/knot.conf" "$knot_dir/stdout.log"
wait_tcp 127.0.0.1 "$knot_port"
bg "$APPNET" dns serve --secondary "example.org=127.0.0.1:$knot_port" --listen "127.0.0.1:$sec_port" \
  --state-dir "$WORK/secondary" --allow-transfer 127.0.0.1
wait_tcp 127.0.0.1 "$sec_port"
wait_serial "$sec_port" example.org 1
check "appnet transferred Knot's zone" "$(norm_axfr "$knot_port" example.org)" "$(norm_axfr "$sec_port" example.org)"
check "the secondary copy is on disk" "yes" "$([ -s "$WORK/secondary/example.org.zone" ] && echo yes || echo no)"
sed -i 's/SOA ns1 hostmaster 1 /SOA ns1 hostmaster 2 /; s/198.51.100.1/198.51.100.2/' "$knot_dir/example.org.zone"
knotc -c "$knot_dir/knot.conf" zone-reload example.org >/dev/null
wait_serial "$sec_port" example.org 2
check "after serial bump + NOTIFY from Knot, appnet serves the new data" "198.51.100.2" \
  "$(dig @127.0.0.1 -p "$sec_port" +short www.example.org)"
check "Knot and appnet serve identical data" "$(norm_axfr "$knot_port" example.org)" "$(norm_axfr "$sec_port" example.org)"

echo "TSIG (RFC 8945) and IXFR (RFC 1995)"
secret=$("$PY" -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
wrong=$("$PY" -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
printf 'key "xfr-key" {\n\talgorithm hmac-sha256;\n\tsecret "%s";\n};\n' "$secret" > "$WORK/xfr.key"
tzone="$WORK/tsig.test.zone"
write_tzone() { # SERIAL WWW-ADDRESS
  { printf '$ORIGIN tsig.test.\n$TTL 300\n@ SOA ns1 hostmaster %s 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\nwww A %s\n' "$1" "$2"
    for i in $(seq 1 1500); do echo "h$i A 10.1.$((i / 250)).$((i % 250))"; done; } > "$tzone"
}
write_tzone 1 192.0.2.1
knot2_dir="$WORK/knot2"; mkdir -p "$knot2_dir"
knot2_port=$(free_port)
nsd2_port=$(free_port)
tsig_port=$(free_port)
sec2_port=$(free_port)
# This one from a [dns] config table (keys, keyed allow-transfer, per-server keys for NOTIFY).
cat > "$WORK/tsig.toml" <<CONF
[dns]
listen = "127.0.0.1:$tsig_port"
zones = [{ file = "$tzone" }]
tsig_key_files = ["$WORK/xfr.key"]
allow_transfer = ["127.0.0.1 key xfr-key"]
notify = ["127.0.0.1:$knot2_port", "127.0.0.1:$nsd2_port"]
server_keys = ["127.0.0.1:$knot2_port key xfr-key", "127.0.0.1:$nsd2_port key xfr-key"]
state_dir = "$WORK/primary-state"
CONF
bg "$APPNET" --config "$WORK/tsig.toml" dns serve --pid-file "$WORK/tsig.pid"
tsig_pid=$LAST_PID
wait_tcp 127.0.0.1 "$tsig_port"
TD=(dig @127.0.0.1 -p "$tsig_port" +time=3 +tries=1)
signed_axfr() { dig @127.0.0.1 -p "$1" -y "hmac-sha256:xfr-key:$secret" "$2" AXFR +noall +answer | grep -v TSIG | awk '{ $1 = tolower($1); print }' | sort -u; }
signed=$("${TD[@]}" -y "hmac-sha256:xfr-key:$secret" tsig.test AXFR)
check "dig -y AXFR: every record (several messages)" "1505" "$(grep -c '	IN	' <<<"$signed")"
check "dig -y AXFR: TSIG on the answer, verified (no failure reported)" "yes|0" \
  "$(grep -q 'xfr-key.*TSIG.*hmac-sha256.*NOERROR' <<<"$signed" && echo yes || echo no)|$(grep -ci 'verify\|failed\|BADSIG' <<<"$signed" || true)"
check "dig -y AXFR: more than one message, each signed" "yes" \
  "$(n=$(grep -c 'TSIG.*NOERROR' <<<"$signed"); m=$(sed -n 's/.*messages \([0-9]*\),.*/\1/p' <<<"$signed"); [ "$m" -gt 1 ] && [ "$n" = "$m" ] && echo yes || echo "no: $n TSIGs, $m messages")"
kaxfr=$(kdig @127.0.0.1 -p "$tsig_port" -y "hmac-sha256:xfr-key:$secret" tsig.test AXFR 2>&1)
# kdig prints "WARNING: reply verification ... failed to verify TSIG" when a signature is wrong.
check "kdig -y AXFR: every record, TSIG verified (no warning)" "1505|0" \
  "$(grep -c '	IN	' <<<"$kaxfr")|$(grep -c 'WARNING' <<<"$kaxfr" || true)"
check "appnet dns query -y AXFR" "1505" \
  "$("$APPNET" dns query tsig.test AXFR --server "127.0.0.1:$tsig_port" -y "hmac-sha256:xfr-key:$secret" | grep -vc '^;')"
check "appnet dns query -y: signed answer, verified" "yes" \
  "$(contains ';; TSIG verified (key xfr-key., hmac-sha256)' "$APPNET" dns query www.tsig.test A --server "127.0.0.1:$tsig_port" -y "xfr-key:hmac-sha256:$secret")"
check "appnet dns query -y with a wrong secret: BADSIG" "yes" \
  "$(contains 'BADSIG' "$APPNET" dns query www.tsig.test A --server "127.0.0.1:$tsig_port" -y "xfr-key:hmac-sha256:$wrong")"
badvers=$("${TD[@]}" -y "hmac-sha256:xfr-key:$secret" +edns=1 +noednsneg www.tsig.test A 2>&1 || true)
check "dig -y +edns=1: BADVERS, signed, TSIG verified" "yes|yes|0" \
  "$(grep -q 'status: BADVERS' <<<"$badvers" && echo yes || echo no)|$(grep -q ';; TSIG PSEUDOSECTION' <<<"$badvers" && echo yes || echo no)|$(grep -ci 'verify failure\|failed\|BADSIG\|expected a TSIG' <<<"$badvers" || true)"
check "unsigned AXFR refused by a keyed allow-transfer" "yes" "$(contains 'Transfer failed' "${TD[@]}" tsig.test AXFR)"
check "wrong secret → BADSIG" "yes" "$(contains 'BADSIG' "${TD[@]}" -y "hmac-sha256:xfr-key:$wrong" tsig.test AXFR)"
check "unknown key → BADKEY" "yes" "$(contains 'BADKEY' "${TD[@]}" -y "hmac-sha256:nokey:$secret" tsig.test AXFR)"
check "signed SOA query answered signed" "yes" \
  "$(contains 'xfr-key.*TSIG.*NOERROR' "${TD[@]}" -y "hmac-sha256:xfr-key:$secret" tsig.test SOA)"

echo "appnet primary → Knot secondary with TSIG, then IXFR after a change"
cat > "$knot2_dir/knot.conf" <<CONF
server:
    listen: 127.0.0.1@$knot2_port
    rundir: "$knot2_dir"
log:
  - target: "$knot2_dir/knot.log"
    any: info
database:
    storage: "$knot2_dir"
control:
    listen: "$knot2_dir/knot.sock"
key:
  - id: xfr-key
    algorithm: hmac-sha256
    secret: $secret
remote:
  - id: appnet
    address: 127.0.0.1@$tsig_port
    key: xfr-key
  - id: appnet-secondary
    address: 127.0.0.1@$sec2_port
    key: xfr-key
acl:
  - id: from-appnet
    address: 127.0.0.1
    key: xfr-key
    action: [notify, transfer]
template:
  - id: default
    storage: "$knot2_dir"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: changes
    zonefile-load: difference
zone:
  - domain: tsig.test
    master: appnet
    acl: from-appnet
  - domain: example.net
    notify: appnet-secondary
    acl: from-appnet
CONF
cat > "$knot2_dir/example.net.zone" <<ZONE
\$ORIGIN example.net.
\$TTL 300
@    SOA ns1 hostmaster 10 3600 600 86400 60
@    NS  ns1
ns1  A   127.0.0.1
www  A   203.0.113.1
ZONE
bg sh -c 'exec knotd -c "$1" >"$2" 2>&1' sh "$knot2_dir/knot.conf" "$knot2_dir/stdout.log"
wait_tcp 127.0.0.1 "$knot2_port"
wait_serial "$knot2_port" tsig.test 1

# NSD: secondary of appnet for tsig.test, and primary of nsd.test for an appnet secondary.
nsd2_dir="$WORK/nsd2"; mkdir -p "$nsd2_dir"
write_nzone() { # SERIAL WWW-ADDRESS
  { printf '$ORIGIN nsd.test.\n$TTL 300\n@ SOA ns1 hostmaster %s 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\nwww A %s\n' "$1" "$2"
    for i in $(seq 1 3000); do echo "n$i TXT \"nsd record $i\""; done; } > "$nsd2_dir/nsd.test.zone"
}
write_nzone 100 198.51.100.100
cat > "$nsd2_dir/nsd.conf" <<CONF
server:
    ip-address: 127.0.0.1@$nsd2_port
    port: $nsd2_port
    username: ""
    chroot: ""
    zonesdir: "$nsd2_dir"
    database: ""
    pidfile: "$nsd2_dir/nsd.pid"
    xfrdfile: "$nsd2_dir/xfrd.state"
    zonelistfile: "$nsd2_dir/zone.list"
    xfrdir: "$nsd2_dir"
    logfile: "$nsd2_dir/nsd.log"
    verbosity: 2
remote-control:
    control-enable: no
key:
    name: "xfr-key"
    algorithm: hmac-sha256
    secret: "$secret"
zone:
    name: tsig.test
    zonefile: "tsig.test.zone"
    request-xfr: 127.0.0.1@$tsig_port xfr-key
    allow-notify: 127.0.0.1 xfr-key
    provide-xfr: 127.0.0.1 xfr-key
zone:
    name: nsd.test
    zonefile: "nsd.test.zone"
    provide-xfr: 127.0.0.1 xfr-key
    notify: 127.0.0.1@$sec2_port xfr-key
CONF
bg sh -c 'exec nsd -d -c "$1" >"$2" 2>&1' sh "$nsd2_dir/nsd.conf" "$nsd2_dir/stdout.log"
nsd2_pid=$LAST_PID
wait_tcp 127.0.0.1 "$nsd2_port"
wait_serial "$nsd2_port" tsig.test 1
check "NSD transferred appnet's zone with TSIG (identical data)" "$(signed_axfr "$tsig_port" tsig.test)" "$(signed_axfr "$nsd2_port" tsig.test)"
check "Knot transferred appnet's zone with TSIG (identical data)" "$(signed_axfr "$tsig_port" tsig.test)" "$(signed_axfr "$knot2_port" tsig.test)"
# appnet's allow-transfer takes only requests signed with xfr-key, and Knot drops answers
# whose TSIG does not verify: the transfer above happened signed both ways.
check "Knot's log: AXFR over several signed messages, no TSIG failure" "yes|0" \
  "$(grep -q 'tsig.test.*AXFR, incoming.*finished.*[2-9] messages' "$knot2_dir/knot.log" && echo yes || echo no)|$(grep -c 'TSIG, \|verification failed\|BADSIG\|BADKEY\|BADTIME' "$knot2_dir/knot.log" || true)"
write_tzone 2 192.0.2.2
"$APPNET" dns reload --pid-file "$WORK/tsig.pid" >/dev/null
wait_serial "$knot2_port" tsig.test 2
wait_serial "$nsd2_port" tsig.test 2
check "NSD followed the signed NOTIFY too, its log says TSIG verified" "192.0.2.2|yes" \
  "$(dig @127.0.0.1 -p "$nsd2_port" +short www.tsig.test)|$(grep -q 'tsig.test.*serial 2.*TSIG verified with key xfr-key' "$nsd2_dir/nsd.log" && echo yes || grep 'tsig.test' "$nsd2_dir/nsd.log" | tail -3)"
# NSD asks by IXFR: the update is a few hundred bytes, not the 45 kB zone.
check "NSD's log: serial 2 came incrementally (under 1 kB)" "yes" \
  "$(grep -q 'tsig.test. received update to serial 2 .*TSIG verified with key xfr-key of [0-9]\{1,3\} bytes' "$nsd2_dir/nsd.log" && echo yes || grep 'tsig.test. received' "$nsd2_dir/nsd.log" | tail -2)"
check "after a serial bump + signed NOTIFY, Knot serves the change" "192.0.2.2" \
  "$(dig @127.0.0.1 -p "$knot2_port" +short www.tsig.test)"
check "Knot's log: it came by IXFR" "yes" \
  "$(grep -q 'tsig.test.*IXFR, incoming.*finished' "$knot2_dir/knot.log" && echo yes || grep 'tsig.test' "$knot2_dir/knot.log" | tail -4)"
ixfr=$("${TD[@]}" -y "hmac-sha256:xfr-key:$secret" tsig.test IXFR=1 +noall +answer)
check "dig IXFR=1: the incremental answer (SOA 2, SOA 1, -www, SOA 2, +www, SOA 2)" \
  "SOA 2|SOA 1|A 192.0.2.1|SOA 2|A 192.0.2.2|SOA 2" \
  "$(grep -v TSIG <<<"$ixfr" | awk '$4 == "SOA" {print "SOA", $7} $4 == "A" {print "A", $5}' | paste -sd'|')"
# Over UDP (RFC 1995 §2) the same answer comes in one datagram when it fits, signed, with OPT.
ixfr_udp=$("${TD[@]}" +notcp -y "hmac-sha256:xfr-key:$secret" tsig.test IXFR=1 +noall +answer +comments +stats)
check "dig +notcp IXFR=1: the incremental answer in one UDP message (TSIG verified, OPT back)" \
  "SOA 2|SOA 1|A 192.0.2.1|SOA 2|A 192.0.2.2|SOA 2|UDP|OPT|0" \
  "$(grep -v TSIG <<<"$ixfr_udp" | awk '$4 == "SOA" {print "SOA", $7} $4 == "A" {print "A", $5}' | paste -sd'|')|$(grep -o '(UDP)' <<<"$ixfr_udp" | tr -d '()')|$(grep -q 'OPT PSEUDOSECTION' <<<"$ixfr_udp" && echo OPT)|$(grep -ci 'verify\|failed\|BADSIG' <<<"$ixfr_udp" || true)"
check "appnet dns query IXFR=1 -y: the same incremental answer" "SOA 2|SOA 1|A 192.0.2.1|SOA 2|A 192.0.2.2|SOA 2" \
  "$("$APPNET" dns query tsig.test IXFR=1 --server "127.0.0.1:$tsig_port" -y "hmac-sha256:xfr-key:$secret" | grep -v '^;' | awk '$4 == "SOA" {print "SOA", $7} $4 == "A" {print "A", $5}' | paste -sd'|')"
check "dig IXFR=0 (unknown serial): the whole zone" "1505" \
  "$("${TD[@]}" -y "hmac-sha256:xfr-key:$secret" tsig.test IXFR=0 +noall +answer | grep -v TSIG | grep -c '	IN	')"
kill "$tsig_pid"; wait "$tsig_pid" 2>/dev/null || true
check "the primary's IXFR journal is on disk (state_dir)" "yes" \
  "$(grep -q 'leading to serial 2 ' "$WORK/primary-state/tsig.test.zone.journal" && echo yes || echo no)"
bg "$APPNET" --config "$WORK/tsig.toml" dns serve --pid-file "$WORK/tsig.pid"
tsig_pid=$LAST_PID
wait_tcp 127.0.0.1 "$tsig_port"
ixfr=$("${TD[@]}" -y "hmac-sha256:xfr-key:$secret" tsig.test IXFR=1 +noall +answer)
check "primary restarted: dig IXFR=1 is still incremental (journal loaded from disk)" \
  "SOA 2|SOA 1|A 192.0.2.1|SOA 2|A 192.0.2.2|SOA 2" \
  "$(grep -v TSIG <<<"$ixfr" | awk '$4 == "SOA" {print "SOA", $7} $4 == "A" {print "A", $5}' | paste -sd'|')"

echo "Knot primary → appnet secondary with TSIG, then IXFR after a change"
bg "$APPNET" dns serve --secondary "example.net=127.0.0.1:$knot2_port key xfr-key" --tsig-key-file "$WORK/xfr.key" \
  --secondary "nsd.test=127.0.0.1:$nsd2_port key xfr-key" --listen "127.0.0.1:$sec2_port" --state-dir "$WORK/secondary2" --allow-transfer 127.0.0.1
wait_tcp 127.0.0.1 "$sec2_port"
wait_serial "$sec2_port" example.net 10
check "appnet transferred Knot's zone with TSIG" "$(signed_axfr "$knot2_port" example.net)" "$(norm_axfr "$sec2_port" example.net)"
sed -i 's/hostmaster 10 /hostmaster 11 /; s/203.0.113.1/203.0.113.2/' "$knot2_dir/example.net.zone"
echo "mail A 203.0.113.25" >> "$knot2_dir/example.net.zone"
knotc -c "$knot2_dir/knot.conf" zone-reload example.net >/dev/null
wait_serial "$sec2_port" example.net 11
check "after Knot's signed NOTIFY, appnet serves the change" "203.0.113.2|203.0.113.25" \
  "$(dig @127.0.0.1 -p "$sec2_port" +short www.example.net)|$(dig @127.0.0.1 -p "$sec2_port" +short mail.example.net)"
check "the secondary keeps its IXFR journal on disk (serial 10 -> 11)" "yes" \
  "$(grep -q 'hostmaster.example.net. 10 ' "$WORK/secondary2/example.net.zone.journal" && grep -q '203.0.113.25' "$WORK/secondary2/example.net.zone.journal" && echo yes || echo no)"
check "Knot and appnet serve identical data after the IXFR" "$(signed_axfr "$knot2_port" example.net)" "$(norm_axfr "$sec2_port" example.net)"
# Knot's ACL takes only signed transfer requests; it logs the IXFR it served.
check "Knot's log: appnet's change came by IXFR (10 -> 11)" "yes" \
  "$(grep -q 'example.net.*IXFR, outgoing.*serial 10 -> 11' "$knot2_dir/knot.log" && echo yes || grep 'example.net.*XFR' "$knot2_dir/knot.log" | tail -3)"

echo "NSD primary → appnet secondary with TSIG"
wait_serial "$sec2_port" nsd.test 100
check "appnet transferred NSD's zone with TSIG (identical data)" "$(signed_axfr "$nsd2_port" nsd.test)" "$(norm_axfr "$sec2_port" nsd.test)"
write_nzone 101 198.51.100.101
kill -HUP "$nsd2_pid"
wait_serial "$sec2_port" nsd.test 101
check "after NSD's reload and signed NOTIFY, appnet serves the change (identical data)" "$(signed_axfr "$nsd2_port" nsd.test)" "$(norm_axfr "$sec2_port" nsd.test)"

echo "dns-auth: $CHECKS checks passed"
