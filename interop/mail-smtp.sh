#!/usr/bin/env bash
# appnet mail serve (SMTP, submission, the queue) driven by tools that are not ours: swaks
# (plain, pipelining, STARTTLS + AUTH), curl's smtp://, Python's smtplib, a would-be open relay
# from a non-relay address, and Postfix as a peer both ways: Postfix relays into appnet
# (relayhost), and appnet's queue finds Postfix through an MX record and delivers into it.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-postfix.sh"

for tool in swaks curl postfix postconf python3; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed (see .ci/apt.d/mail.txt)" >&2; exit 1; }
done

# Four distinct free ports (free_port may hand out one twice).
ports=()
while [ "${#ports[@]}" -lt 4 ]; do
  p=$(free_port); [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
done
smtp=${ports[0]}; sub=${ports[1]}; dnsport=${ports[2]}; pfport=${ports[3]}
ROOT=$WORK/hamburger
PF=$WORK/postfix
stop_postfix() { [ -f "$PF/conf/main.cf" ] && postfix -c "$PF/conf" stop >/dev/null 2>&1 || true; }
trap 'stop_postfix; cleanup' EXIT

printf 'bobpw\n' | "$APPNET" mail user add bob@hamburger.edu --root "$ROOT" --password-stdin >/dev/null
new_count() { find "$ROOT/mail/hamburger.edu/bob/new" -type f | wc -l; }
wait_count() { # wait_count N: until Bob has N messages (10 s)
  local i; for ((i = 0; i < 200; i++)); do [ "$(new_count)" -ge "$1" ] && break; sleep 0.05; done; new_count
}

# The zone that makes Postfix the MX of postfix.test, on appnet's own DNS server.
cat > "$WORK/postfix.test.zone" <<'EOF'
$ORIGIN postfix.test.
$TTL 60
@ IN SOA ns admin 1 3600 600 86400 60
@ IN NS ns
@ IN MX 10 mx
ns IN A 127.0.0.1
mx IN A 127.0.0.1
EOF
bg "$APPNET" dns serve --zone "$WORK/postfix.test.zone" --listen "127.0.0.1:$dnsport"
wait_tcp 127.0.0.1 "$dnsport"

bg "$APPNET" mail serve --domain hamburger.edu --root "$ROOT" --smtp "127.0.0.1:$smtp" --submission "127.0.0.1:$sub" \
  --tls --ca-dir "$WORK/ca" --resolver "127.0.0.1:$dnsport" --remote-smtp-port "$pfport" \
  --relay-net 127.0.0.3/32 --retry-initial 1
wait_tcp 127.0.0.1 "$smtp"; wait_tcp 127.0.0.1 "$sub"
CA=$WORK/ca/ca.pem

echo "swaks"
out=$(swaks --server "127.0.0.1:$smtp" --from alice@crepes.fr --to bob@hamburger.edu --header "Subject: swaks plain" 2>&1)
check "swaks plain: 250 after DATA" "1" "$(grep -c '^<-  250 2.0.0 Ok: queued as' <<<"$out")"
check "swaks plain: in Bob's Maildir" "1" "$(wait_count 1)"
out=$(swaks --server "127.0.0.1:$smtp" --pipeline --from alice@crepes.fr --to bob@hamburger.edu 2>&1)
check "swaks --pipeline: commands sent in one go, accepted" "1" "$(grep -c '^<-  250 2.0.0 Ok: queued as' <<<"$out")"
out=$(swaks --server "127.0.0.1:$sub" -tls --tls-ca-path "$CA" --tls-verify --auth PLAIN \
  --auth-user bob@hamburger.edu --auth-password bobpw --from bob@hamburger.edu --to bob@hamburger.edu 2>&1)
check "swaks STARTTLS (verified against the lab CA) + AUTH PLAIN" "1" "$(grep -c '^<~  235 2.7.0' <<<"$out")"
out=$(swaks --server "127.0.0.1:$sub" -tls --tls-ca-path "$CA" --auth LOGIN \
  --auth-user bob@hamburger.edu --auth-password bobpw --from bob@hamburger.edu --to bob@hamburger.edu 2>&1)
check "swaks STARTTLS + AUTH LOGIN" "1" "$(grep -c '^<~  250 2.0.0 Ok: queued' <<<"$out")"
out=$(swaks --server "127.0.0.1:$sub" --auth PLAIN --auth-user bob@hamburger.edu --auth-password bobpw \
  --from bob@hamburger.edu --to bob@hamburger.edu 2>&1 || true)
check "swaks AUTH without TLS: not offered on submission" "1" "$(grep -c "Host did not advertise authentication" <<<"$out")"
out=$(swaks --server "127.0.0.1:$sub" -tls --tls-ca-path "$CA" --auth PLAIN --auth-user bob@hamburger.edu \
  --auth-password wrong --from bob@hamburger.edu --to bob@hamburger.edu 2>&1 || true)
check "swaks wrong password: 535 5.7.8" "1" "$(grep -c '^<~\* 535 5.7.8' <<<"$out")"
check "four messages so far" "4" "$(wait_count 4)"

echo "curl smtp://"
printf 'From: curl@example.org\r\nTo: bob@hamburger.edu\r\nSubject: curl\r\n\r\nvia curl\r\n' > "$WORK/m.txt"
curl -sS "smtp://127.0.0.1:$smtp" --mail-from curl@example.org --mail-rcpt bob@hamburger.edu --upload-file "$WORK/m.txt"
check "curl smtp:// delivers" "5" "$(wait_count 5)"
curl -sS "smtp://127.0.0.1:$sub" --ssl-reqd --cacert "$CA" --user 'bob@hamburger.edu:bobpw' \
  --mail-from bob@hamburger.edu --mail-rcpt bob@hamburger.edu --upload-file "$WORK/m.txt"
check "curl smtp:// --ssl-reqd + AUTH on submission" "6" "$(wait_count 6)"
rc=0; curl -sS "smtp://127.0.0.1:$smtp" --mail-from x@example.org --mail-rcpt nobody@hamburger.edu \
  --upload-file "$WORK/m.txt" 2>"$WORK/curl.err" || rc=$?
check "curl to an unknown user fails (550 5.1.1)" "1" "$(grep -c '550' "$WORK/curl.err")"

echo "python smtplib"
python3 - "$smtp" "$sub" "$CA" <<'PY'
import smtplib, ssl, sys
smtp, sub, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = smtplib.SMTP("127.0.0.1", sub, local_hostname="ua.example")
ctx = ssl.create_default_context(cafile=ca)
s.starttls(context=ctx)   # verifies the lab-CA certificate for 127.0.0.1
s.login("bob@hamburger.edu", "bobpw")
assert s.sendmail("bob@hamburger.edu", ["bob@hamburger.edu"], "Subject: smtplib\r\n\r\nhi\r\n") == {}
s.quit()
s = smtplib.SMTP("127.0.0.1", smtp)
code, _ = s.verify("bob")
assert code == 252, code
refused = s.sendmail("a@example.org", ["bob@hamburger.edu", "ghost@hamburger.edu"], "Subject: two\r\n\r\nx\r\n")
assert list(refused) == ["ghost@hamburger.edu"] and refused["ghost@hamburger.edu"][0] == 550, refused
s.quit()
# No open relay: from 127.0.0.2 (not a --relay-net) mail for another domain is refused.
s = smtplib.SMTP("127.0.0.1", smtp, source_address=("127.0.0.2", 0))
try:
    s.sendmail("x@spam.example", ["victim@example.org"], "Subject: relay\r\n\r\nx\r\n")
    raise SystemExit("FAIL: relayed for a stranger")
except smtplib.SMTPRecipientsRefused as e:
    assert e.recipients["victim@example.org"][0] == 554, e.recipients
print("  ok: smtplib STARTTLS+login, VRFY 252, partial 550, no open relay from 127.0.0.2 (554 5.7.1)")
PY
check "python messages delivered" "8" "$(wait_count 8)"

echo "postfix as a peer"
# Postfix's daemons run as the postfix user: they must be able to reach their directories.
chmod 755 "$WORK"
postfix_config "$PF" "$pfport" mx.postfix.test postfix.test carol "mydomain = postfix.test
myorigin = postfix.test
relayhost = [127.0.0.1]:$smtp
smtp_dns_support_level = disabled
smtp_host_lookup = native"
postfix -c "$PF/conf" start >/dev/null 2>&1 || { cat "$PF/maillog" >&2; echo "FAIL: postfix did not start" >&2; exit 1; }
wait_tcp 127.0.0.1 "$pfport"
out=$(swaks --server "127.0.0.1:$pfport" --from carol@postfix.test --to bob@hamburger.edu --header "Subject: relayed by postfix" 2>&1)
check "postfix accepted mail for hamburger.edu" "1" "$(grep -c '^<-  250 2.0.0 Ok: queued as' <<<"$out")"
check "postfix relayed it into appnet (relayhost)" "9" "$(wait_count 9)"
sent=0
for ((i = 0; i < 100; i++)); do
  sent=$(grep -c "relay=127.0.0.1\[127.0.0.1\]:$smtp.*status=sent (250 2.0.0 Ok: queued as" "$PF/maillog" || true)
  [ "$sent" -ge 1 ] && break; sleep 0.05
done
check "postfix's log: sent via appnet" "1" "$sent"
grep -l "Subject: relayed by postfix" "$ROOT"/mail/hamburger.edu/bob/new/* >/dev/null || { echo "FAIL: relayed message not found" >&2; exit 1; }

echo 'bobpw' > "$WORK/pw"
echo "Hello Carol, from appnet's queue" | "$APPNET" mail send --from bob@hamburger.edu --to carol@postfix.test \
  --subject "to postfix" --server "127.0.0.1:$sub" --starttls --cacert "$CA" --user bob@hamburger.edu \
  --password-file "$WORK/pw" --trace > "$WORK/send.trace"
check "mail send --trace: C:/S: dialogue with STARTTLS" "1" "$(grep -c '^C: STARTTLS' "$WORK/send.trace")"
carol=""
for ((i = 0; i < 200; i++)); do carol=$(find "$PF/vmail/postfix.test/carol/new" -type f 2>/dev/null | head -1 || true); [ -n "$carol" ] && break; sleep 0.05; done
check "appnet's queue found postfix.test's MX and delivered into Postfix" "1" "$(grep -c "Hello Carol, from appnet's queue" "$carol")"
check "Postfix's Received: shows appnet as the sender's MTA" "1" "$(grep -c 'from mail.hamburger.edu' "$carol")"

echo "relay network and the queue listing"
# 127.0.0.3 is a --relay-net: it may relay; the message waits in the queue for an MX that is down.
out=$(swaks --server "127.0.0.1:$smtp" --local-interface 127.0.0.3 --from bob@hamburger.edu --to dave@nowhere.invalid 2>&1)
check "relay network may relay" "1" "$(grep -c '^<-  250 2.0.0 Ok: queued as' <<<"$out")"
listing=""
for ((i = 0; i < 100; i++)); do listing=$("$APPNET" mail queue --root "$ROOT"); grep -q "dave@nowhere.invalid" <<<"$listing" && break; sleep 0.05; done
check "mail queue lists the message with its recipient" "1" "$(grep -c 'bob@hamburger.edu -> dave@nowhere.invalid' <<<"$listing")"
echo "mail-smtp: $CHECKS checks passed"
