#!/usr/bin/env bash
# DNSSEC: zones signed by `appnet dns keygen/sign` are accepted by three independent verifiers
# (ldns-verify-zone, kzonecheck -d on from Knot, dnssec-verify from BIND), with NSEC and NSEC3,
# ECDSA P-256 and Ed25519, split KSK/ZSK and a single combined key; `appnet dns ds` matches
# BIND's dnssec-dsfromkey; key files are BIND's and the secret ones are 0600. The validating
# resolver (`dns resolver --dnssec --trust-anchor`) validates a root and children signed by
# dnssec-signzone and served by Knot: AD for kdig/dig, delv validates through it, bogus gets
# SERVFAIL with EDE 6, CD=1 returns the data. The signed lab (appnet lab --dns-port 53, as root):
# Unbound with the lab's root hints and trust-anchor-file, and the lab's own resolver, report the
# same names secure (AD), the CDN's unsigned zone insecure and dnssec-failed.org bogus; delv with
# the lab's anchor (root.anchor.conf) says "fully validated".
source "$(dirname "$0")/lib.sh"

for tool in ldns-verify-zone kzonecheck dnssec-verify dnssec-dsfromkey; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool missing (see .ci/apt.d/dnssec.txt)" >&2; exit 1; }
done

zone="$WORK/example.com.zone"
cat > "$zone" <<'ZONE'
$ORIGIN example.com.
$TTL 3600
@        IN SOA ns1 hostmaster ( 1 7200 3600 1209600 300 )
@        NS    ns1
@        MX    10 mail
ns1      A     192.0.2.1
mail     A     192.0.2.25
www      A     192.0.2.80
www      AAAA  2001:db8::80
alias    CNAME www
*.wild   TXT   "wildcard"
deep.a.b TXT   "empty non-terminals above"
sub      NS    ns.sub
ns.sub   A     192.0.2.53
insecure NS    ns.elsewhere.net.
ZONE
for i in $(seq 1 12); do echo "big TXT \"record $i: padding padding padding padding padding padding\"" >> "$zone"; done

echo "keys:"
K="$WORK/keys"
ksk=$($APPNET dns keygen example.com --ksk --keys "$K")
zsk=$($APPNET dns keygen example.com --keys "$K")
child=$($APPNET dns keygen sub.example.com -a ed25519 --ksk --keys "$K")
check "KSK file named like BIND's" yes "$([[ $ksk =~ ^Kexample\.com\+013\+[0-9]{5}$ ]] && echo yes || echo no)"
check ".private is 0600" 600 "$(stat -c %a "$K/$ksk.private")"
check "KSK flags 257" 257 "$(awk '/DNSKEY/ {print $4}' "$K/$ksk.key")"
check "ZSK flags 256" 256 "$(awk '/DNSKEY/ {print $4}' "$K/$zsk.key")"
ours=$($APPNET dns ds "$K/$ksk.key" | awk '{print $NF}')
bind=$(dnssec-dsfromkey -2 "$K/$ksk.key" | awk '{print $NF}')
check "appnet dns ds = dnssec-dsfromkey -2" "${bind,,}" "$ours"
childds=$($APPNET dns ds "$K/$child.key" | awk '{print $NF}')

verify_all() { # FILE LABEL [dnssec-verify flags]
  check "ldns-verify-zone ($2)" yes "$(ldns-verify-zone "$1" >/dev/null 2>&1 && echo yes || echo no)"
  check "kzonecheck -d on ($2)" yes "$(kzonecheck -o example.com -d on "$1" >/dev/null 2>&1 && echo yes || echo no)"
  check "dnssec-verify ${3:-} ($2)" yes "$(dnssec-verify -q ${3:-} -o example.com "$1" >/dev/null 2>&1 && echo yes || echo no)"
}

echo "NSEC, KSK+ZSK:"
$APPNET dns sign "$zone" --keys "$K" -o "$WORK/nsec.zone" >/dev/null
verify_all "$WORK/nsec.zone" nsec
check "DS for sub from its key" yes "$(grep -qi "^sub.example.com.* DS .*$childds" "$WORK/nsec.zone" && echo yes || echo no)"
check "glue not signed" 0 "$(grep -c '^ns.sub.example.com.* RRSIG' "$WORK/nsec.zone" || true)"
check "no DS for an unsigned child" 0 "$(grep -c '^insecure.example.com.* DS' "$WORK/nsec.zone" || true)"

echo "NSEC3 (RFC 9276: 0 iterations, no salt):"
$APPNET dns sign "$zone" --keys "$K" --nsec3 -o "$WORK/nsec3.zone" >/dev/null
verify_all "$WORK/nsec3.zone" nsec3
check "NSEC3PARAM 1 0 0 -" "1 0 0 -" "$(awk '$4 == "NSEC3PARAM" {print $5, $6, $7, $8}' "$WORK/nsec3.zone")"

echo "re-signing a signed zone, short expiry:"
$APPNET dns sign "$WORK/nsec.zone" --origin example.com --keys "$K" --expire 2h -o "$WORK/resigned.zone" >/dev/null
verify_all "$WORK/resigned.zone" resigned

echo "one Ed25519 key (CSK), NSEC3:"
K2="$WORK/keys2"
$APPNET dns keygen example.com -a ed25519 --ksk --keys "$K2" >/dev/null
$APPNET dns sign "$zone" --keys "$K2" --nsec3 -o "$WORK/csk.zone" >/dev/null
# BIND wants -z to accept one key with the SEP bit signing everything (a CSK).
verify_all "$WORK/csk.zone" csk -z

echo "a broken signature is caught by the verifiers (the checks above are not vacuous):"
sed 's/^\(www.example.com. [0-9]* IN A \)192.0.2.80/\1192.0.2.81/' "$WORK/nsec.zone" > "$WORK/bad.zone"
check "ldns-verify-zone rejects a changed A" no "$(ldns-verify-zone "$WORK/bad.zone" >/dev/null 2>&1 && echo yes || echo no)"
check "dnssec-verify rejects a changed A" no "$(dnssec-verify -q -o example.com "$WORK/bad.zone" >/dev/null 2>&1 && echo yes || echo no)"

echo "serving the signed zones (pre-signed, as NSD does): kdig +dnssec and delv with the KSK as anchor"
for tool in kdig delv; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool missing (see .ci/apt.d/dnssec.txt)" >&2; exit 1; }
done
set -- $(awk '/DNSKEY 257/ {print $1, $4, $5, $6, $7}' "$K/$ksk.key")
printf 'trust-anchors {\n  %s static-key %s %s %s "%s";\n};\n' "$1" "$2" "$3" "$4" "$5" > "$WORK/anchor.conf"
for chain in nsec nsec3; do
  port=$(free_port)
  bg $APPNET dns serve --zone "example.com=$WORK/$chain.zone" --listen "127.0.0.1:$port"
  wait_tcp 127.0.0.1 "$port"
  kd() { kdig @127.0.0.1 -p "$port" +dnssec +norec +time=2 +retry=1 "$@"; }
  dv() { delv @127.0.0.1 -p "$port" -a "$WORK/anchor.conf" +root=example.com "$@" 2>&1 | head -1; }
  check "$chain: DO bit echoed" yes "$(kd www.example.com A | grep -q 'flags: do' && echo yes || echo no)"
  check "$chain: RRSIG with the A" 1 "$(kd www.example.com A | grep -c 'RRSIG.*A 13 3')"
  check "$chain: no RRSIG without DO" 0 "$(kdig @127.0.0.1 -p "$port" +norec www.example.com A | grep -c RRSIG || true)"
  check "$chain: delv validates an A" "; fully validated" "$(dv www.example.com A)"
  check "$chain: delv validates a CNAME chain" "; fully validated" "$(dv alias.example.com A)"
  check "$chain: delv validates a wildcard" "; fully validated" "$(dv x.wild.example.com TXT)"
  check "$chain: delv validates the DNSKEY set" "; fully validated" "$(dv example.com DNSKEY)"
  for q in "nope.example.com A" "a.b.nope.example.com A" "www.example.com MX" "x.wild.example.com A" "a.b.example.com TXT"; do
    check "$chain: delv validates the denial of $q" "; negative response, fully validated" \
      "$(delv @127.0.0.1 -p "$port" -a "$WORK/anchor.conf" +root=example.com $q 2>&1 | grep '^; negative')"
  done
  check "$chain: signed referral carries DS + RRSIG" 2 "$(kd a.sub.example.com A | grep -cE '\sDS\s|RRSIG\s+DS')"
  check "$chain: insecure referral proves no DS" yes \
    "$(kd a.insecure.example.com A | grep -qE "NSEC3?\s" && echo yes || echo no)"
  check "$chain: a 512-byte UDP answer that does not fit is truncated" yes \
    "$(kd +bufsize=512 +ignore big.example.com TXT | grep -q 'Flags: qr aa tc' && echo yes || echo no)"
  check "$chain: the same over TCP is whole, signed" 13 "$(kd +tcp big.example.com TXT | grep -v '^;' | grep -cE 'IN\s+(TXT|RRSIG)')"
  check "$chain: delv retries over TCP and validates it" "; fully validated" "$(dv big.example.com TXT)"
  kill "$LAST_PID"
done

echo "online signing: dns serve --dnssec-keys signs the unsigned file at load and again after a reload"
for chain in nsec nsec3; do
  port=$(free_port)
  cp "$zone" "$WORK/online.zone"
  flag=(); [ "$chain" = nsec3 ] && flag=(--nsec3)
  bg $APPNET dns serve --zone "example.com=$WORK/online.zone" --listen "127.0.0.1:$port" --dnssec-keys "$K" \
    --pid-file "$WORK/online.pid" "${flag[@]}"
  wait_tcp 127.0.0.1 "$port"
  dv() { delv @127.0.0.1 -p "$port" -a "$WORK/anchor.conf" +root=example.com "$@" 2>&1 | head -1; }
  check "online $chain: delv validates an A" "; fully validated" "$(dv www.example.com A)"
  check "online $chain: delv validates NXDOMAIN" "; negative response, fully validated" \
    "$(delv @127.0.0.1 -p "$port" -a "$WORK/anchor.conf" +root=example.com nope.example.com A 2>&1 | grep '^; negative')"
  check "online $chain: the right chain" yes \
    "$(kdig @127.0.0.1 -p "$port" +dnssec nope.example.com A | grep -qE "IN\s+$(echo $chain | tr a-z A-Z)\s" && echo yes || echo no)"
  echo "new TXT \"added\"" >> "$WORK/online.zone"   # the serial is not touched: the server bumps it
  $APPNET dns reload --pid-file "$WORK/online.pid"
  for _ in $(seq 1 100); do
    [ "$(kdig @127.0.0.1 -p "$port" +short new.example.com TXT)" = '"added"' ] && break; sleep 0.1
  done
  check "online $chain: a reload is re-signed and validates" "; fully validated" "$(dv new.example.com TXT)"
  check "online $chain: serial bumped past the file's" 2 "$(kdig @127.0.0.1 -p "$port" +short example.com SOA | awk '{print $3}')"
  kill "$LAST_PID"; wait "$LAST_PID" 2>/dev/null || true
done

echo "NSD serves the appnet-signed zone (RRSIG times as YYYYMMDDHHmmSS) and delv validates it"
command -v nsd >/dev/null || { echo "FAIL: nsd missing (see .ci/apt.d/dns.txt)" >&2; exit 1; }
ND="$WORK/nsd"; mkdir -p "$ND"; nport=$(free_port)
cat > "$ND/nsd.conf" <<NSD
server:
    ip-address: 127.0.0.1@$nport
    port: $nport
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "$ND"
    database: ""
    pidfile: "$ND/nsd.pid"
    xfrdfile: "$ND/xfrd.state"
    zonelistfile: "$ND/zone.list"
    xfrdir: "$ND"
    logfile: "$ND/nsd.log"
remote-control:
    control-enable: no
zone:
    name: example.com
    zonefile: "$WORK/nsec3.zone"
NSD
bg nsd -d -c "$ND/nsd.conf"
wait_tcp 127.0.0.1 "$nport"
check "NSD read the signed zone without errors" 0 "$(grep -c 'error' "$ND/nsd.log" || true)"
check "delv validates NSD's answer" "; fully validated" \
  "$(delv @127.0.0.1 -p "$nport" -a "$WORK/anchor.conf" +root=example.com www.example.com A 2>&1 | head -1)"
kill "$LAST_PID"

echo "RFC 2136: nsupdate -y updates appnet (the registrar inserting networkutopia.com into com)"
command -v nsupdate >/dev/null || { echo "FAIL: nsupdate missing (see .ci/apt.d/dnssec.txt)" >&2; exit 1; }
cat > "$WORK/com.zone" <<'ZONE'
$ORIGIN com.
$TTL 3600
@ SOA a.gtld-servers.net. nstld.verisign-grs.com. 100 1800 900 604800 86400
@ NS a.gtld-servers.net.
ZONE
KC="$WORK/comkeys"
comksk=$($APPNET dns keygen com --ksk --keys "$KC")
set -- $(awk '/DNSKEY 257/ {print $1, $4, $5, $6, $7}' "$KC/$comksk.key")
printf 'trust-anchors {\n  %s static-key %s %s %s "%s";\n};\n' "$1" "$2" "$3" "$4" "$5" > "$WORK/com-anchor.conf"
secret=$(head -c 32 /dev/urandom | base64)
port=$(free_port)
bg $APPNET dns serve --zone "com=$WORK/com.zone" --listen "127.0.0.1:$port" --tsig-key "registrar:hmac-sha256:$secret" \
  --allow-update com=registrar --dnssec-keys "$KC" --allow-transfer 127.0.0.0/8
wait_tcp 127.0.0.1 "$port"
nsu() { printf 'server 127.0.0.1 %s\nzone com.\n%s\nsend\n' "$port" "$1" | nsupdate -t 5 "${@:2}" 2>&1 || true; }
has() { grep -q -- "$1" <<<"$2" && echo yes || echo no; }
check "before: networkutopia.com does not exist" NXDOMAIN \
  "$(kdig @127.0.0.1 -p "$port" +norec networkutopia.com NS | grep -o 'status: [A-Z]*' | cut -d' ' -f2)"
check "nsupdate -y: prereq nxdomain + NS + glue accepted" "" \
  "$(nsu $'prereq nxdomain networkutopia.com.\nupdate add networkutopia.com. 3600 NS dns1.networkutopia.com.\nupdate add dns1.networkutopia.com. 3600 A 212.212.212.1' -y "hmac-sha256:registrar:$secret")"
check "the delegation is served" "dns1.networkutopia.com." \
  "$(kdig @127.0.0.1 -p "$port" +norec www.networkutopia.com A | awk '$4 == "NS" {print $5}')"
check "the glue is in the referral" "212.212.212.1" \
  "$(kdig @127.0.0.1 -p "$port" +norec www.networkutopia.com A | awk '$1 == "dns1.networkutopia.com." && $4 == "A" {print $5}')"
check "serial bumped" 101 "$(kdig @127.0.0.1 -p "$port" +short com SOA | awk '{print $3}')"
check "journaled: IXFR from 100 carries the added NS" yes \
  "$(has 'networkutopia.com.*NS.*dns1.networkutopia.com' "$(kdig @127.0.0.1 -p "$port" -t IXFR=100 com +tcp)")"
check "re-signed: delv proves the insecure delegation (no DS)" "; negative response, fully validated" \
  "$(delv @127.0.0.1 -p "$port" -a "$WORK/com-anchor.conf" +root=com networkutopia.com DS 2>&1 | grep '^; negative')"
check "the same prerequisite now fails" yes \
  "$(has YXDOMAIN "$(nsu $'prereq nxdomain networkutopia.com.\nupdate add x.com. 60 A 192.0.2.1' -y "hmac-sha256:registrar:$secret")")"
check "a wrong secret: NOTAUTH/BADSIG" yes \
  "$(has 'NOTAUTH(BADSIG)' "$(nsu 'update add x.com. 60 A 192.0.2.1' -y "hmac-sha256:registrar:$(head -c 32 /dev/urandom | base64)")")"
check "unsigned: REFUSED" yes "$(has REFUSED "$(nsu 'update add x.com. 60 A 192.0.2.1')")"
check "nothing changed by the refused ones" "101 " \
  "$(kdig @127.0.0.1 -p "$port" +short com SOA | awk '{print $3}') $(kdig @127.0.0.1 -p "$port" +short x.com A)"
check "delete the glue" "" "$(nsu 'update delete dns1.networkutopia.com. A' -y "hmac-sha256:registrar:$secret")"
check "glue gone, serial 102" "102 " \
  "$(kdig @127.0.0.1 -p "$port" +short com SOA | awk '{print $3}') $(kdig @127.0.0.1 -p "$port" +norec www.networkutopia.com A | awk '$1 == "dns1.networkutopia.com." && $4 == "A" {print $5}')"
kill "$LAST_PID"; wait "$LAST_PID" 2>/dev/null || true
echo "restarted from the same zone file: the accepted updates were kept (in com.zone.state by default)"
bg $APPNET dns serve --zone "com=$WORK/com.zone" --listen "127.0.0.1:$port" --tsig-key "registrar:hmac-sha256:$secret" \
  --allow-update com=registrar --dnssec-keys "$KC" --allow-transfer 127.0.0.0/8
wait_tcp 127.0.0.1 "$port"
check "after the restart: serial 102, the delegation served, the glue still gone" "102 dns1.networkutopia.com. " \
  "$(kdig @127.0.0.1 -p "$port" +short com SOA | awk '{print $3}') $(kdig @127.0.0.1 -p "$port" +norec www.networkutopia.com A | awk '$4 == "NS" {print $5}') $(kdig @127.0.0.1 -p "$port" +norec www.networkutopia.com A | awk '$1 == "dns1.networkutopia.com." && $4 == "A" {print $5}')"
check "after the restart: IXFR from 100 still carries the added NS" yes \
  "$(has 'networkutopia.com.*NS.*dns1.networkutopia.com' "$(kdig @127.0.0.1 -p "$port" -t IXFR=100 com +tcp)")"
check "after the restart: delv still proves the insecure delegation" "; negative response, fully validated" \
  "$(delv @127.0.0.1 -p "$port" -a "$WORK/com-anchor.conf" +root=com networkutopia.com DS 2>&1 | grep '^; negative')"
check "the zone file itself is untouched (serial 100)" yes "$(grep -q ' 100 1800 900 ' "$WORK/com.zone" && echo yes || echo no)"
kill "$LAST_PID"

echo "appnet dns update (like nsupdate) against Knot and against appnet"
command -v knotd >/dev/null || { echo "FAIL: knotd missing (see .ci/apt.d/dnssec.txt)" >&2; exit 1; }
rsecret=$(head -c 32 /dev/urandom | base64)
# The key file as tsig-keygen writes it.
printf 'key "registrar" {\n\talgorithm hmac-sha256;\n\tsecret "%s";\n};\n' "$rsecret" > "$WORK/registrar.key"
KD="$WORK/knot"; mkdir -p "$KD/db"; cp "$WORK/com.zone" "$KD/com.zone"
kport=$(free_port)
cat > "$KD/knot.conf" <<KNOT
server:
    listen: 127.0.0.1@$kport
    rundir: $KD
key:
  - id: registrar
    algorithm: hmac-sha256
    secret: $rsecret
acl:
  - id: upd
    key: registrar
    action: update
template:
  - id: default
    storage: $KD
    file: "%s.zone"
zone:
  - domain: com
    acl: upd
database:
    storage: $KD/db
KNOT
bg bash -c "exec knotd -c '$KD/knot.conf' > '$KD/log' 2>&1"
wait_tcp 127.0.0.1 "$kport"
aport=$(free_port)
# A fresh copy of the zone (next to $WORK/com.zone is the state of the updates made above).
mkdir -p "$WORK/fresh"; cp "$WORK/com.zone" "$WORK/fresh/com.zone"
bg $APPNET dns serve --zone "com=$WORK/fresh/com.zone" --listen "127.0.0.1:$aport" --tsig-key-file "$WORK/registrar.key" --allow-update com=registrar
wait_tcp 127.0.0.1 "$aport"
for target in "Knot:$kport" "appnet:$aport"; do
  who=${target%%:*}; p=${target#*:}
  upd() { $APPNET dns update --server "127.0.0.1:$p" --key "$WORK/registrar.key" --zone com "$@" 2>&1 || true; }
  check "$who: appnet dns update inserts networkutopia.com" "update accepted by 127.0.0.1:$p" \
    "$(upd --prereq 'nxdomain networkutopia.com' add networkutopia.com NS dns1.networkutopia.com add dns1.networkutopia.com A 212.212.212.1)"
  check "$who: delegation and glue served" "dns1.networkutopia.com. 212.212.212.1" \
    "$(kdig @127.0.0.1 -p "$p" +norec www.networkutopia.com A | awk '$4 == "NS" {n=$5} $4 == "A" {a=$5} END {print n, a}')"
  check "$who: serial 101" 101 "$(kdig @127.0.0.1 -p "$p" +short com SOA | awk '{print $3}')"
  check "$who: a failed prerequisite is reported" yes "$(has YXDOMAIN "$(upd --prereq 'nxdomain networkutopia.com' add x.com A 192.0.2.1)")"
  check "$who: delete NAME TYPE DATA" "update accepted by 127.0.0.1:$p" "$(upd delete dns1.networkutopia.com A 212.212.212.1)"
  check "$who: serial 102" 102 "$(kdig @127.0.0.1 -p "$p" +short com SOA | awk '{print $3}')"
done

echo "the validating resolver: appnet dns resolver --dnssec over a hierarchy signed by dnssec-signzone, served by Knot"
for tool in dnssec-keygen dnssec-signzone kdig dig delv knotd; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool missing (see .ci/apt.d/dnssec.txt)" >&2; exit 1; }
done
VB="$WORK/val"; VK="$VB/keys"; mkdir -p "$VK" "$VB/db"
kport=$(free_port)
for z in . example. bad.; do
  dnssec-keygen -q -K "$VK" -a ECDSAP256SHA256 -f KSK "$z" >/dev/null
  dnssec-keygen -q -K "$VK" -a ECDSAP256SHA256 "$z" >/dev/null
done
ksk_of() { grep -l 'DNSKEY 257' "$VK"/K"$1"+*.key; }
ds_of() { dnssec-dsfromkey -2 "$(ksk_of "$1")"; }
cat > "$VB/root.zone" <<ZONE
\$TTL 300
. SOA ns. admin. 1 3600 600 86400 300
. NS ns.
ns. A 127.0.0.1
example. NS ns.example.
ns.example. A 127.0.0.1
bad. NS ns.bad.
ns.bad. A 127.0.0.1
unsigned. NS ns.unsigned.
ns.unsigned. A 127.0.0.1
ZONE
ds_of example. >> "$VB/root.zone"; ds_of bad. >> "$VB/root.zone"
for z in example bad unsigned; do
  printf '$TTL 300\n@ SOA ns admin 1 3600 600 86400 300\n@ NS ns\nns A 127.0.0.1\nwww A 192.0.2.80\n*.wild TXT "wildcard"\n' \
    > "$VB/$z.zone"
done
(cd "$VB" && dnssec-signzone -q -S -K "$VK" -o . -f root.signed root.zone \
  && dnssec-signzone -q -S -K "$VK" -3 - -H 0 -o example. -f example.signed example.zone \
  && dnssec-signzone -q -S -K "$VK" -o bad. -f bad.signed bad.zone) >/dev/null
# bad.: the address changed under its signature.
sed -i 's/^\(www\.bad\.[[:space:]].*[[:space:]]A[[:space:]]*\)192\.0\.2\.80/\1203.0.113.66/' "$VB/bad.signed"
check "bad. tampered" 1 "$(grep -c '203.0.113.66' "$VB/bad.signed")"
cp "$VB/unsigned.zone" "$VB/unsigned.signed"
cat > "$VB/knot.conf" <<KNOT
server:
    listen: 127.0.0.1@$kport
    rundir: $VB
database:
    storage: $VB/db
template:
  - id: default
    storage: $VB
    zonefile-sync: -1
    journal-content: none
    semantic-checks: off
zone:
  - domain: .
    file: root.signed
  - domain: example.
    file: example.signed
  - domain: bad.
    file: bad.signed
  - domain: unsigned.
    file: unsigned.signed
KNOT
bg bash -c "exec knotd -c '$VB/knot.conf' > '$VB/knot.log' 2>&1"
wait_tcp 127.0.0.1 "$kport"
for _ in $(seq 1 100); do kdig @127.0.0.1 -p "$kport" +short www.bad. A | grep -q . && break; sleep 0.1; done
printf '. 3600 NS ns.\nns. 3600 A 127.0.0.1\n' > "$VB/root.hints"
ds_of . > "$VB/root.ds"
# BIND splits the key's base64 into several fields: join them.
set -- $(awk '/DNSKEY 257/ {k = ""; for (i = 7; i <= NF; i++) k = k $i; print $1, $4, $5, $6, k}' "$(ksk_of .)")
printf 'trust-anchors {\n  %s static-key %s %s %s "%s";\n};\n' "$1" "$2" "$3" "$4" "$5" > "$VB/root-anchor.conf"
rport=$(free_port)
bg $APPNET dns resolver --listen "127.0.0.1:$rport" --root-hints "$VB/root.hints" --upstream-port "$kport" \
  --dnssec --trust-anchor "$VB/root.ds"
wait_tcp 127.0.0.1 "$rport"
kr() { kdig @127.0.0.1 -p "$rport" +time=5 +retry=1 "$@"; }
flags() { kr "$@" | grep -o 'Flags: [a-z ]*' | head -1; }
status() { kr "$@" | grep -o 'status: [A-Z]*' | head -1 | cut -d' ' -f2; }
ede_of() { kr "$@" | awk '/EDE:/ {print $3; exit}'; }
check "kdig +dnssec: a secure answer has AD" "Flags: qr rd ra ad" "$(flags +dnssec www.example. A)"
check "kdig +dnssec: RRSIGs come with DO" 1 "$(kr +dnssec www.example. A | grep -c 'RRSIG.*A 13 2')"
check "dig +adflag: AD without DO" "flags: qr rd ra ad" \
  "$(dig @127.0.0.1 -p "$rport" +adflag +time=5 www.example. A | grep -o 'flags: [a-z ]*' | head -1)"
check "dig without DO or AD: no AD" "flags: qr rd ra" \
  "$(dig @127.0.0.1 -p "$rport" +noadflag +time=5 www.example. A | grep -o 'flags: [a-z ]*' | head -1)"
check "NSEC3 (dnssec-signzone -3) NXDOMAIN is secure" "NXDOMAIN Flags: qr rd ra ad" \
  "$(status +dnssec nope.example. A) $(flags +dnssec nope.example. A)"
check "a wildcard answer is secure" "Flags: qr rd ra ad" "$(flags +dnssec x.wild.example. TXT)"
check "the root NSEC NODATA is secure" "Flags: qr rd ra ad" "$(flags +dnssec example. MX)"
check "an unsigned child (no DS) is answered without AD" "192.0.2.80 Flags: qr rd ra" \
  "$(kr +short www.unsigned. A) $(flags +dnssec www.unsigned. A)"
check "a tampered answer: SERVFAIL with EDE 6" "SERVFAIL 6" "$(status +dnssec www.bad. A) $(ede_of +dnssec www.bad. A)"
check "dig shows the same EDE" 1 "$(dig @127.0.0.1 -p "$rport" +dnssec www.bad. A | grep -c 'EDE: 6 (DNSSEC Bogus)')"
check "CD=1: the tampered data, unvalidated" "203.0.113.66" "$(kr +cd +short www.bad. A)"
check "delv through the resolver validates (its own chain from the anchor)" "; fully validated" \
  "$(delv @127.0.0.1 -p "$rport" -a "$VB/root-anchor.conf" www.example. A 2>&1 | head -1)"
check "delv: the NSEC3 denial through the resolver" "; negative response, fully validated" \
  "$(delv @127.0.0.1 -p "$rport" -a "$VB/root-anchor.conf" nope.example. A 2>&1 | grep '^; negative')"
check "delv agrees the tampered name is bogus (it gets SERVFAIL)" yes \
  "$(delv @127.0.0.1 -p "$rport" -a "$VB/root-anchor.conf" www.bad. A 2>&1 | grep -qiE 'SERVFAIL|failed|resolution' && echo yes || echo no)"
kill "$LAST_PID"
rport2=$(free_port)
bg $APPNET dns resolver --listen "127.0.0.1:$rport2" --root-hints "$VB/root.hints" --upstream-port "$kport" --dnssec
wait_tcp 127.0.0.1 "$rport2"
check "with the IANA root anchor instead, the private root is bogus (DNSKEY missing)" "SERVFAIL 9" \
  "$(rport=$rport2 status +dnssec www.example. A) $(rport=$rport2 ede_of +dnssec www.example. A)"
kill "$LAST_PID"

echo "the signed lab on port 53 (root): Unbound and delv validate with the lab's own root anchor"
if [ "$(id -u)" != 0 ]; then
  echo "FAIL: the lab on port 53 needs root; run interop/dnssec.sh as root" >&2
  exit 1
fi
command -v unbound >/dev/null || { echo "FAIL: unbound missing (see .ci/apt.d/dnssec.txt)" >&2; exit 1; }
LAB="$WORK/lab"
bg $APPNET lab --dns-port 53 --web-port "$(free_port)" --ftp-port "$(free_port)" --dir "$LAB"
wait_tcp 127.0.4.1 53 60
check "the lab wrote its root anchor (DS) and the delv form" "yes yes" \
  "$(has ' IN DS ' "$(cat "$LAB/root.anchor")") $(has 'static-ds' "$(cat "$LAB/root.anchor.conf")")"
check "key files are 0600" "600" "$(stat -c %a "$LAB"/keys/K* | sort -u | tr '\n' ' ' | xargs)"
uport=$(free_port)
cat > "$WORK/unbound.conf" <<UNBOUND
server:
  interface: 127.0.0.1
  port: $uport
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$WORK"
  pidfile: ""
  use-syslog: no
  logfile: "$WORK/unbound.log"
  val-log-level: 2
  root-hints: "$LAB/root.hints"
  trust-anchor-file: "$LAB/root.anchor"
  # The lab lives on 127.0.0.0/8; no name is exempt from validation (no domain-insecure).
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  module-config: "validator iterator"
UNBOUND
bg unbound -d -c "$WORK/unbound.conf"
wait_tcp 127.0.0.1 "$uport"
# ask SERVER PORT NAME TYPE: "STATUS ad|-" (the AD flag of a DO=1 query).
ask() {
  local out; out=$(kdig @"$1" -p "$2" +dnssec +time=5 +retry=1 "$3" "$4")
  echo "$(grep -o 'status: [A-Z]*' <<<"$out" | cut -d' ' -f2) $(grep -q 'Flags: [a-z ]* ad' <<<"$out" && echo ad || echo -)"
}
for who in "Unbound 127.0.0.1 $uport" "dns.poly.edu 127.0.4.1 53"; do
  read -r name addr p <<<"$who"
  for q in "gaia.cs.umass.edu A" "www.bbc.co.uk A" "www.ibm.com A" "www.networkutopia.com A" "hamburger.edu MX"; do
    check "$name: $q is secure" "NOERROR ad" "$(ask "$addr" "$p" $q)"
  done
  check "$name: NXDOMAIN in a signed zone is secure" "NXDOMAIN ad" "$(ask "$addr" "$p" gaai.cs.umass.edu A)"
  check "$name: the unsigned CDN zone is insecure (no AD)" "NOERROR -" "$(ask "$addr" "$p" a128.g.akamai.net A)"
  check "$name: dnssec-failed.org is bogus" "SERVFAIL -" "$(ask "$addr" "$p" www.dnssec-failed.org A)"
  check "$name: +cd still gets its data" "127.0.10.30" \
    "$(kdig @"$addr" -p "$p" +cd +short +time=5 www.dnssec-failed.org A)"
done
check "Unbound logs why: no DS matches dnssec-failed.org's keys" yes \
  "$(has 'validation failure <www.dnssec-failed.org. A IN>: no keys have a DS' "$(cat "$WORK/unbound.log")")"
check "dns.poly.edu names the reason: EDE 9" 9 \
  "$(kdig @127.0.4.1 +dnssec +time=5 www.dnssec-failed.org A | awk '/EDE:/ {print $3; exit}')"
for q in "gaia.cs.umass.edu A" "www.networkutopia.com A" "www.cl.cam.ac.uk A"; do
  check "delv -a root.anchor.conf through dns.poly.edu: $q" "; fully validated" \
    "$(delv @127.0.4.1 -a "$LAB/root.anchor.conf" $q 2>&1 | head -1)"
done
check "delv: the NSEC denial" "; negative response, fully validated" \
  "$(delv @127.0.4.1 -a "$LAB/root.anchor.conf" gaai.cs.umass.edu A 2>&1 | grep '^; negative')"
check "delv through Unbound too" "; fully validated" \
  "$(delv @127.0.0.1 -p "$uport" -a "$LAB/root.anchor.conf" www.bbc.co.uk A 2>&1 | head -1)"
check "delv rejects dnssec-failed.org" yes \
  "$(delv @127.0.4.1 -a "$LAB/root.anchor.conf" www.dnssec-failed.org A 2>&1 | grep -q 'resolution failed' && echo yes || echo no)"

echo "dnssec: $CHECKS checks passed"
