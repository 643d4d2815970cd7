#!/usr/bin/env bash
# appnet mail serve's POP3 and IMAP driven by tools that are not ours: curl's pop3:// and
# imap:// URLs (plain and STARTTLS against the lab CA), Python's poplib, fetchmail in batch
# mode, appnet mail fetch, and one scripted Python imaplib session covering the IMAP4rev1
# command list, run against appnet and against Dovecot on copies of the same Maildir: the two
# transcripts must be identical.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-dovecot.sh"

for tool in curl python3 fetchmail dovecot; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed (see .ci/apt.d/mail.txt)" >&2; exit 1; }
done
HERE=$(cd "$(dirname "$0")" && pwd)

ports=()
while [ "${#ports[@]}" -lt 8 ]; do
  p=$(free_port); [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
done
smtp=${ports[0]}; pop=${ports[1]}; imap=${ports[2]}; dimap=${ports[3]}; dpop=${ports[4]}
tpop=${ports[5]}; timap=${ports[6]}; tsmtp=${ports[7]}
ROOT=$WORK/root
U=bob@hamburger.edu
PW='s3cret pass'

printf '%s\n' "$PW" | "$APPNET" mail user add "$U" --root "$ROOT" --password-stdin >/dev/null
bg "$APPNET" mail serve --domain hamburger.edu --root "$ROOT" --smtp "127.0.0.1:$smtp" --submission off \
  --pop3 "127.0.0.1:$pop" --imap "127.0.0.1:$imap" --allow-plain-auth
wait_tcp 127.0.0.1 "$smtp"; wait_tcp 127.0.0.1 "$pop"; wait_tcp 127.0.0.1 "$imap"

# Three messages arrive over SMTP (Python smtplib): one with a dot-leading line, one MIME.
python3 - "$smtp" <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20)
s.sendmail("alice@crepes.fr", ["bob@hamburger.edu"], "From: Alice <alice@crepes.fr>\r\nTo: bob@hamburger.edu\r\nSubject: Ketchup\r\nMessage-ID: <1@crepes.fr>\r\n\r\nDo you like ketchup?\r\nHow about pickles?\r\n.leading dot\r\n")
s.sendmail("carol@x.org", ["bob@hamburger.edu"], "From: carol@x.org\r\nTo: bob@hamburger.edu\r\nSubject: Second\r\n\r\nsecond message\r\n")
s.sendmail("dave@y.org", ["bob@hamburger.edu"], "From: dave@y.org\r\nSubject: Pictures\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--zz\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--zz--\r\n")
s.quit()
PY
check "three messages delivered" "3" "$(find "$ROOT/mail/hamburger.edu/bob/new" -type f | wc -l)"
# Dovecot gets a copy of the untouched tree (same users file, same Maildir++).
DROOT=$WORK/dovecot-root
cp -a "$ROOT" "$DROOT"

echo "curl pop3:// and imap://"
list=$(curl -s --max-time 20 "pop3://127.0.0.1:$pop/" -u "$U:$PW")
check "curl pop3 LIST: three messages" "3" "$(wc -l <<<"$list")"
size1=$(awk '$1 == 1 {print $2}' <<<"$list" | tr -d '\r')
got=$(curl -s --max-time 20 "pop3://127.0.0.1:$pop/1" -u "$U:$PW" | wc -c)
check "curl pop3 RETR 1 is LIST's size (line ends as two octets)" "$size1" "$got"
check "curl pop3 RETR: dot-stuffing undone" "1" "$(curl -s --max-time 20 "pop3://127.0.0.1:$pop/1" -u "$U:$PW" | grep -c '^\.leading dot')"
check "curl pop3 wrong password fails" "67" "$(curl -s --max-time 20 "pop3://127.0.0.1:$pop/" -u "$U:nope" >/dev/null; echo $?)"
check "curl imap UID fetch" "1" "$(curl -s --max-time 20 "imap://127.0.0.1:$imap/INBOX;UID=2" -u "$U:$PW" | grep -c '^Subject: Second')"
check "curl imap SEARCH" "* SEARCH 3" "$(curl -s --max-time 20 "imap://127.0.0.1:$imap/INBOX?SUBJECT%20Pictures" -u "$U:$PW" | tr -d '\r')"
check "curl imap LIST" '* LIST (\HasNoChildren) "." "INBOX"' "$(curl -s --max-time 20 "imap://127.0.0.1:$imap/" -u "$U:$PW" | tr -d '\r')"
check "curl imap custom FETCH" "3" "$(curl -s --max-time 20 "imap://127.0.0.1:$imap/INBOX" -X 'FETCH 1:* (FLAGS)' -u "$U:$PW" | grep -c FETCH)"

echo "Python poplib"
python3 - "$pop" "$U" "$PW" <<'PY'
import poplib, sys
port, user, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
p = poplib.POP3("127.0.0.1", port, timeout=20)
caps = p.capa()
assert "TOP" in caps and "UIDL" in caps and "USER" in caps, caps
p.user(user); p.pass_(pw)
n, total = p.stat()
sizes = {int(l.split()[0]): int(l.split()[1]) for l in p.list()[1]}
assert n == 3 and sum(sizes.values()) == total, (n, total, sizes)
for i in range(1, n + 1):
    resp, lines, octets = p.retr(i)
    assert octets == sizes[i], ("RETR octets differ from LIST", i, octets, sizes[i])
uidl = p.uidl()[1]
assert len(p.top(3, 0)[1]) > 2
try:
    p.retr(9); raise SystemExit("RETR 9 succeeded")
except poplib.error_proto:
    pass
p.dele(2)
try:
    p.retr(2); raise SystemExit("RETR of a deleted message succeeded")
except poplib.error_proto:
    pass
p.rset(); p.dele(2)
# A second session is refused while this one holds the maildrop.
q = poplib.POP3("127.0.0.1", port, timeout=20); q.user(user)
try:
    q.pass_(pw); raise SystemExit("second session got the maildrop")
except poplib.error_proto as e:
    assert b"IN-USE" in e.args[0], e
q.quit()
p.quit()
p = poplib.POP3("127.0.0.1", port, timeout=20); p.user(user); p.pass_(pw)
assert p.stat()[0] == 2, p.stat()
assert [u.split()[1] for u in p.uidl()[1]] == [uidl[0].split()[1], uidl[2].split()[1]], "UIDLs stable"
p.quit()
print("  ok: poplib STAT/LIST/RETR sizes, TOP, UIDL, DELE/RSET, deletion at QUIT, one session per maildrop")
PY

echo "fetchmail (batch, keep)"
cat > "$WORK/fetchmailrc" <<EOF
set no syslog
poll 127.0.0.1 protocol pop3 port $pop auth password timeout 20
  user "$U" there with password "$PW" is "$(id -un)" here
  options keep sslproto '' no sslcertck
  mda "/bin/sh -c 'cat >> $WORK/fetched.mbox'"
EOF
chmod 600 "$WORK/fetchmailrc"
HOME=$WORK timeout 60 fetchmail -f "$WORK/fetchmailrc" >"$WORK/fetchmail.log" 2>&1 || { cat "$WORK/fetchmail.log" >&2; exit 1; }
check "fetchmail fetched both messages" "2" "$(grep -c '^Subject:' "$WORK/fetched.mbox")"

echo "appnet mail fetch"
check "mail fetch --pop3 --list" "2" "$(printf '%s\n' "$PW" | "$APPNET" mail fetch --pop3 "127.0.0.1:$pop" --user "$U" --password-stdin --list | wc -l)"
check "mail fetch --imap --get 1" "1" "$(printf '%s\n' "$PW" | "$APPNET" mail fetch --imap "127.0.0.1:$imap" --user "$U" --password-stdin --get 1 | grep -c '^Subject: Ketchup')"

echo "STARTTLS and STLS (lab CA), plain logins refused without TLS"
TROOT=$WORK/troot
printf '%s\n' "$PW" | "$APPNET" mail user add "$U" --root "$TROOT" --password-stdin >/dev/null
bg "$APPNET" mail serve --domain hamburger.edu --root "$TROOT" --smtp "127.0.0.1:$tsmtp" --submission off \
  --pop3 "127.0.0.1:$tpop" --imap "127.0.0.1:$timap" --tls --ca-dir "$WORK/ca"
wait_tcp 127.0.0.1 "$tpop"; wait_tcp 127.0.0.1 "$timap"
check "curl pop3 with STLS" "0" "$(curl -s --max-time 20 --ssl-reqd --cacert "$WORK/ca/ca.pem" "pop3://127.0.0.1:$tpop/" -u "$U:$PW" >/dev/null; echo $?)"
check "curl imap with STARTTLS" "0" "$(curl -s --max-time 20 --ssl-reqd --cacert "$WORK/ca/ca.pem" "imap://127.0.0.1:$timap/" -u "$U:$PW" >/dev/null; echo $?)"
check "curl imap without TLS: login refused" "67" "$(curl -s --max-time 20 "imap://127.0.0.1:$timap/" -u "$U:$PW" >/dev/null; echo $?)"

echo "the scripted IMAP session: appnet vs Dovecot"
if [ "$(id -u)" = 0 ]; then MUID=65534; MGID=65534; chown -R "$MUID:$MGID" "$DROOT/mail"; chmod 711 "$WORK" "$DROOT"; else MUID=$(id -u); MGID=$(id -g); fi
dovecot_config "$WORK/dovecot" "$DROOT" "$dimap" "$dpop" "$MUID" "$MGID" 100
bg dovecot -F -c "$WORK/dovecot/dovecot.conf"
wait_tcp 127.0.0.1 "$dimap" || { cat "$WORK/dovecot/dovecot.log" >&2; exit 1; }
# appnet's INBOX was read above: a fresh tree for the session, copied from Dovecot's.
SROOT=$WORK/sroot
cp -a "$DROOT" "$SROOT"
sport=$(free_port); sport2=$(free_port)
bg "$APPNET" mail serve --domain hamburger.edu --root "$SROOT" --smtp off --submission off \
  --pop3 off --imap "127.0.0.1:$sport" --allow-plain-auth
wait_tcp 127.0.0.1 "$sport"
timeout 120 python3 "$HERE/mail_imap_session.py" 127.0.0.1 "$dimap" "$U" "$PW" >"$WORK/dovecot.txt" || { cat "$WORK/dovecot/dovecot.log" >&2; exit 1; }
timeout 120 python3 "$HERE/mail_imap_session.py" 127.0.0.1 "$sport" "$U" "$PW" >"$WORK/appnet.txt"
check "the session covers the command list" "58" "$(wc -l <"$WORK/appnet.txt")"
if ! diff "$WORK/dovecot.txt" "$WORK/appnet.txt" >"$WORK/diff.txt"; then
  echo "  FAIL: the IMAP session differs from Dovecot's:" >&2; cat "$WORK/diff.txt" >&2; exit 1
fi
echo "  ok: imaplib session transcript identical to Dovecot's ($(wc -l <"$WORK/appnet.txt") steps)"
echo "mail-access: $CHECKS checks passed"
