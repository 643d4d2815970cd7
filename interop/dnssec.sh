#!/usr/bin/env bash
# DNSSEC: zones signed by `appnet dns keygen/sign` are accepted by three independent verifiers
# (ldns-verify-zone, kzonecheck -d on from Knot, dnssec-verify from BIND), with NSEC and NSEC3,
# ECDSA P-256 and Ed25519, split KSK/ZSK and a single combined key; `appnet dns ds` matches
# BIND's dnssec-dsfromkey; key files are BIND's and the secret ones are 0600.
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

echo "dnssec: $CHECKS checks passed"
