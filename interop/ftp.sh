#!/usr/bin/env bash
# FTP interop: `appnet ftp serve` driven by clients that are not ours (lftp, curl, Python ftplib,
# wget) in passive and active mode, with uploads, mirrors both ways, REST resume and FTPS; a bounce
# attempt (PORT naming another host) refused; and `appnet ftp ls|get|put` against vsftpd and
# against appnet's own server, with the trace showing one data connection per transfer.
source "$(dirname "$0")/lib.sh"
for tool in lftp curl wget vsftpd python3 sha256sum openssl; do
  command -v "$tool" >/dev/null || { echo "ftp interop needs $tool (.ci/apt.d/ftp.txt)" >&2; exit 1; }
done
export APPNET_CA_DIR=$WORK/ca
T=(timeout 60)
sum() { sha256sum "$1" | cut -d' ' -f1; }

# --- the trees ---------------------------------------------------------------------------
root=$WORK/root; alice=$WORK/alice
mkdir -p "$root/pub/tree/sub" "$alice/up"
echo "hello from appnet ftp" > "$root/pub/hello.txt"
head -c 3000000 /dev/urandom > "$root/pub/big.bin"
for i in $(seq 1 20); do echo "file $i" > "$root/pub/tree/f$i.txt"; done
echo "deep" > "$root/pub/tree/sub/deep.txt"
users=$WORK/users
printf 'secret\n' | "$APPNET" ftp user add alice --users "$users" --home "$alice" --password-stdin

port=$(free_port)
bg "$APPNET" ftp serve --root "$root" --listen "127.0.0.1:$port" --anonymous --users "$users" --write
wait_tcp 127.0.0.1 "$port"
tport=$(free_port)
bg "$APPNET" ftp serve --root "$root" --listen "127.0.0.1:$tport" --anonymous --users "$users" --write --tls
wait_tcp 127.0.0.1 "$tport"
cacert=$APPNET_CA_DIR/ca.pem
url=ftp://127.0.0.1:$port
LFTP_SET="set net:timeout 10; set net:max-retries 2; set net:reconnect-interval-base 1; set cmd:fail-exit yes; set ftp:ssl-allow no"
lf() { "${T[@]}" lftp -p "$port" "$@" 127.0.0.1; }

echo "lftp"
check "lftp ls (passive)" "yes" "$(lf -u anonymous, -e "$LFTP_SET; cls -1 pub; bye" | grep -qx 'pub/hello.txt' && echo yes)"
check "lftp ls (active)" "yes" "$(lf -u anonymous, -e "$LFTP_SET; set ftp:passive-mode off; cls -1 pub; bye" | grep -qx 'pub/big.bin' && echo yes)"
lf -u anonymous, -e "$LFTP_SET; get pub/big.bin -o $WORK/lftp-big.bin; bye"
check "lftp get (passive)" "$(sum "$root/pub/big.bin")" "$(sum "$WORK/lftp-big.bin")"
lf -u anonymous, -e "$LFTP_SET; set ftp:passive-mode off; get pub/hello.txt -o $WORK/lftp-active.txt; bye"
check "lftp get (active)" "hello from appnet ftp" "$(cat "$WORK/lftp-active.txt")"
head -c 200000 /dev/urandom > "$WORK/up.bin"
lf -u alice,secret -e "$LFTP_SET; put $WORK/up.bin -o up/lftp-up.bin; bye"
check "lftp put as alice (into her home)" "$(sum "$WORK/up.bin")" "$(sum "$alice/up/lftp-up.bin")"
lf -u anonymous, -e "$LFTP_SET; mirror pub/tree $WORK/mirror-down; bye"
check "lftp mirror (download)" "$(cd "$root/pub/tree" && find . -type f | sort | xargs cat | sha256sum)" "$(cd "$WORK/mirror-down" && find . -type f | sort | xargs cat | sha256sum)"
lf -u anonymous, -e "$LFTP_SET; set ftp:passive-mode off; mirror pub/tree $WORK/mirror-active; bye"
check "lftp mirror (active)" "21" "$(find "$WORK/mirror-active" -type f | wc -l)"
lf -u alice,secret -e "$LFTP_SET; mirror -R $root/pub/tree tree-copy; bye"
check "lftp mirror -R (upload)" "$(cd "$root/pub/tree" && find . -type f | sort | xargs cat | sha256sum)" "$(cd "$alice/tree-copy" && find . -type f | sort | xargs cat | sha256sum)"

echo "curl"
C=(curl -s --max-time 30)
check "curl list" "yes" "$("${C[@]}" "$url/pub/" | grep -q 'hello.txt' && echo yes)"
check "curl list-only" "yes" "$("${C[@]}" -l "$url/pub/" | tr -d '\r' | grep -qx 'big.bin' && echo yes)"
"${C[@]}" -o "$WORK/curl-big.bin" "$url/pub/big.bin"
check "curl download (EPSV)" "$(sum "$root/pub/big.bin")" "$(sum "$WORK/curl-big.bin")"
"${C[@]}" --disable-epsv -o "$WORK/curl-pasv.bin" "$url/pub/big.bin"
check "curl download (PASV)" "$(sum "$root/pub/big.bin")" "$(sum "$WORK/curl-pasv.bin")"
"${C[@]}" -P - -o "$WORK/curl-active.bin" "$url/pub/big.bin"
check "curl -P - download (active, EPRT)" "$(sum "$root/pub/big.bin")" "$(sum "$WORK/curl-active.bin")"
"${C[@]}" -P - --disable-eprt -o "$WORK/curl-port.bin" "$url/pub/big.bin"
check "curl -P - --disable-eprt (PORT)" "$(sum "$root/pub/big.bin")" "$(sum "$WORK/curl-port.bin")"
"${C[@]}" -T "$WORK/up.bin" "ftp://alice:secret@127.0.0.1:$port/up/curl-up.bin"
check "curl upload as alice" "$(sum "$WORK/up.bin")" "$(sum "$alice/up/curl-up.bin")"
check "curl resume (-C -)" "$(sum "$root/pub/big.bin")" "$(head -c 1000000 "$root/pub/big.bin" > "$WORK/curl-part.bin" && "${C[@]}" -C - -o "$WORK/curl-part.bin" "$url/pub/big.bin" && sum "$WORK/curl-part.bin")"

echo "wget"
"${T[@]}" wget -q -O "$WORK/wget.bin" "$url/pub/big.bin"
check "wget download" "$(sum "$root/pub/big.bin")" "$(sum "$WORK/wget.bin")"

echo "Python ftplib"
check "ftplib: MLSD facts, REST resume, NLST, SIZE" "ok" "$("${T[@]}" python3 - "$port" "$root" <<'PY'
import ftplib, sys
port, root = int(sys.argv[1]), sys.argv[2]
f = ftplib.FTP(timeout=10)
f.connect("127.0.0.1", port)
f.login()
facts = dict(f.mlsd("pub", facts=["type", "size"]))
assert facts["big.bin"]["type"] == "file" and int(facts["big.bin"]["size"]) == 3000000, facts
assert facts["tree"]["type"] == "dir", facts
data = open(root + "/pub/big.bin", "rb").read()
got = bytearray()
f.retrbinary("RETR pub/big.bin", got.extend, rest=1234567)
assert bytes(got) == data[1234567:], len(got)
assert "hello.txt" in f.nlst("pub")
assert f.size("pub/big.bin") == 3000000
f.quit()
print("ok")
PY
)"

echo "bounce: PORT/EPRT naming another host are refused"
check "PORT 127.0.0.2 / EPRT |1|127.0.0.2| answered 5xx" "5 5" "$("${T[@]}" python3 - "$port" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
r = s.makefile("rb")
def reply():
    line = r.readline()
    code = line[:3]
    while line[3:4] == b"-":
        line = r.readline()
        while not (line[:3] == code and line[3:4] == b" "):
            line = r.readline()
    return line.decode()
reply()
s.sendall(b"USER anonymous\r\n"); reply()
s.sendall(b"PASS x@\r\n"); reply()
s.sendall(b"PORT 127,0,0,2,200,10\r\n"); a = reply()
s.sendall(b"EPRT |1|127.0.0.2|51210|\r\n"); b = reply()
print(a[0], b[0])
PY
)"

echo "appnet ftp (client) against appnet ftp serve"
"${T[@]}" "$APPNET" ftp ls "$url/pub/" --trace > "$WORK/ls.out" 2> "$WORK/ls.trace"
check "appnet ftp ls" "yes" "$(grep -q 'hello.txt' "$WORK/ls.out" && echo yes)"
check "ls: one data connection opened and closed" "1 1" "$(grep -c '^== data connection open' "$WORK/ls.trace") $(grep -c '^== data connection closed' "$WORK/ls.trace")"
check "ls: the dialogue is traced" "yes" "$(grep -q '^C: PASV' "$WORK/ls.trace" && grep -q '^S: 227 ' "$WORK/ls.trace" && echo yes)"
"${T[@]}" "$APPNET" ftp get "$url/pub/big.bin" -o "$WORK/appnet-big.bin" --active --trace 2> "$WORK/get.trace"
check "appnet ftp get --active" "$(sum "$root/pub/big.bin")" "$(sum "$WORK/appnet-big.bin")"
check "get --active: PORT sent, the server connected" "yes" "$(grep -q '^C: PORT 127,0,0,1,' "$WORK/get.trace" && grep -q 'active: the server connected' "$WORK/get.trace" && echo yes)"
mkdir -p "$WORK/dl"
"${T[@]}" "$APPNET" ftp get "$url/pub/hello.txt" -o "$WORK/dl" 2>/dev/null
check "get -o DIR keeps the file's name" "hello from appnet ftp" "$(cat "$WORK/dl/hello.txt")"
check "ls of a file lists that file" "yes" "$("${T[@]}" "$APPNET" ftp ls "$url/pub/hello.txt" | grep -q 'hello.txt' && echo yes)"
head -c 1234567 "$root/pub/big.bin" > "$WORK/dl/big.bin.part"
"${T[@]}" "$APPNET" ftp get "$url/pub/big.bin" -o "$WORK/dl/big.bin" --resume --trace 2> "$WORK/resume-appnet.trace"
check "get --resume continues FILE.part with REST" "$(sum "$root/pub/big.bin") yes" "$(sum "$WORK/dl/big.bin") $(grep -q '^C: REST 1234567' "$WORK/resume-appnet.trace" && echo yes)"
check "get refuses to reuse a stray FILE.part without --resume" "yes" "$(touch "$WORK/dl/x.part" && { "${T[@]}" "$APPNET" ftp get "$url/pub/hello.txt" -o "$WORK/dl/x" 2>&1 || true; } | grep -q -- '--resume' && echo yes)"
echo 'alice was here' > "$WORK/note.txt"
printf 'secret\n' | "${T[@]}" "$APPNET" ftp put "$WORK/note.txt" "ftp://alice@127.0.0.1:$port/up/" --password-stdin
check "appnet ftp put --password-stdin" "alice was here" "$(cat "$alice/up/note.txt")"
check "appnet ftp get as alice via --password-stdin" "alice was here" "$(printf 'secret\n' | "${T[@]}" "$APPNET" ftp get "ftp://alice@127.0.0.1:$port/up/note.txt" -o - --password-stdin)"
check "a wrong password is refused" "yes" "$(printf 'wrong\n' | "${T[@]}" "$APPNET" ftp ls "ftp://alice@127.0.0.1:$port/" --password-stdin >/dev/null 2>&1 || echo yes)"

echo "appnet ftp (client) against vsftpd"
vport=$(free_port)
mkdir -p "$WORK/vs-empty"
cat > "$WORK/vsftpd.conf" <<CONF
listen=YES
listen_address=127.0.0.1
listen_port=$vport
background=NO
anonymous_enable=YES
local_enable=NO
write_enable=NO
anon_root=$root
no_anon_password=YES
run_as_launching_user=YES
seccomp_sandbox=NO
secure_chroot_dir=$WORK/vs-empty
pasv_enable=YES
port_enable=YES
connect_from_port_20=NO
xferlog_enable=NO
vsftpd_log_file=$WORK/vsftpd.log
CONF
bg vsftpd "$WORK/vsftpd.conf"
wait_tcp 127.0.0.1 "$vport"
vurl=ftp://127.0.0.1:$vport
check "ls vsftpd" "yes" "$("${T[@]}" "$APPNET" ftp ls "$vurl/pub/" | grep -q 'big.bin' && echo yes)"
check "ls --names vsftpd (NLST)" "yes" "$("${T[@]}" "$APPNET" ftp ls --names "$vurl/pub/" | grep -qx 'hello.txt' && echo yes)"
check "ls --mlsd vsftpd (MLSD is not in vsftpd: a clear refusal)" "yes" "$({ "${T[@]}" "$APPNET" ftp ls --mlsd "$vurl/pub/" 2>&1 >/dev/null || true; } | grep -q 'MLSD refused' && echo yes)"
"${T[@]}" "$APPNET" ftp get "$vurl/pub/big.bin" -o "$WORK/vs-big.bin" --trace 2> "$WORK/vs.trace"
check "get from vsftpd (passive)" "$(sum "$root/pub/big.bin")" "$(sum "$WORK/vs-big.bin")"
check "vsftpd trace: one control, one data connection" "1 1" "$(grep -c '^== control connection open' "$WORK/vs.trace") $(grep -c '^== data connection open' "$WORK/vs.trace")"
"${T[@]}" "$APPNET" ftp get "$vurl/pub/big.bin" -o "$WORK/vs-active.bin" --active
check "get from vsftpd (active)" "$(sum "$root/pub/big.bin")" "$(sum "$WORK/vs-active.bin")"
head -c 1000000 "$root/pub/big.bin" > "$WORK/vs-resume.bin"
"${T[@]}" "$APPNET" ftp get "$vurl/pub/big.bin" -o "$WORK/vs-resume.bin" --resume --trace 2> "$WORK/resume.trace"
check "get --resume from vsftpd" "$(sum "$root/pub/big.bin")" "$(sum "$WORK/vs-resume.bin")"
check "resume sent REST 1000000" "yes" "$(grep -q '^C: REST 1000000' "$WORK/resume.trace" && echo yes)"
check "put to read-only vsftpd refused, exit non-zero" "yes" "$("${T[@]}" "$APPNET" ftp put "$WORK/note.txt" "$vurl/" >/dev/null 2>&1 || echo yes)"
echo "FTPS (AUTH TLS, PROT P)"
check "curl --ssl-reqd download" "$(sum "$root/pub/big.bin")" "$("${C[@]}" --ssl-reqd --cacert "$cacert" -o - "ftp://localhost:$tport/pub/big.bin" | sha256sum | cut -d' ' -f1)"
check "lftp ftp:ssl-force ls" "yes" "$("${T[@]}" lftp -p "$tport" -u anonymous, -e "set net:timeout 10; set net:max-retries 2; set cmd:fail-exit yes; set ftp:ssl-force true; set ftp:ssl-protect-data true; set ssl:ca-file $cacert; cls -1 pub; bye" localhost | grep -qx 'pub/hello.txt' && echo yes)"
check "ftplib FTP_TLS with PROT P" "ok" "$("${T[@]}" python3 - "$tport" "$cacert" "$root" <<'PY'
import ftplib, ssl, sys
port, ca, root = int(sys.argv[1]), sys.argv[2], sys.argv[3]
f = ftplib.FTP_TLS(context=ssl.create_default_context(cafile=ca), timeout=30)
f.connect("localhost", port)
f.login()
f.prot_p()
got = bytearray()
f.retrbinary("RETR pub/hello.txt", got.extend)
assert bytes(got) == open(root + "/pub/hello.txt", "rb").read()
f.quit()
print("ok")
PY
)"

"${T[@]}" "$APPNET" ftp get "ftp://127.0.0.1:$tport/pub/big.bin" -o "$WORK/tls-big.bin" --tls --trace 2> "$WORK/tls.trace"
check "appnet ftp get --tls (lab CA via \$APPNET_CA_DIR)" "$(sum "$root/pub/big.bin")" "$(sum "$WORK/tls-big.bin")"
check "get --tls: AUTH TLS, PROT P, TLS data connection" "yes" "$(grep -q '^C: AUTH TLS' "$WORK/tls.trace" && grep -q '^C: PROT P' "$WORK/tls.trace" && grep -q 'is TLS now (PROT P)' "$WORK/tls.trace" && echo yes)"
printf 'secret\n' | "${T[@]}" "$APPNET" ftp put "$WORK/note.txt" "ftp://alice@127.0.0.1:$tport/up/tls-note.txt" --tls --active --password-stdin
check "appnet ftp put --tls --active" "alice was here" "$(cat "$alice/up/tls-note.txt")"

echo "appnet ftp --tls against vsftpd (ssl_enable, a certificate from an openssl CA)"
tls=$WORK/vs-tls; mkdir -p "$tls"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tls/ca.key" -out "$tls/ca.pem" -days 2 -subj /CN=interop-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$tls/key.pem" -out "$tls/leaf.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$tls/ext.cnf"
openssl x509 -req -in "$tls/leaf.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -out "$tls/cert.pem" -days 2 -extfile "$tls/ext.cnf" 2>/dev/null
vtport=$(free_port)
sed -e "s/^listen_port=.*/listen_port=$vtport/" -e "s|^vsftpd_log_file=.*|vsftpd_log_file=$tls/log|" "$WORK/vsftpd.conf" > "$tls/vsftpd.conf"
printf 'ssl_enable=YES\nallow_anon_ssl=YES\nforce_anon_logins_ssl=YES\nforce_anon_data_ssl=YES\nrsa_cert_file=%s\nrsa_private_key_file=%s\n' "$tls/cert.pem" "$tls/key.pem" >> "$tls/vsftpd.conf"
bg vsftpd "$tls/vsftpd.conf"
wait_tcp 127.0.0.1 "$vtport"
check "vsftpd refuses a plain login (force_anon_logins_ssl)" "yes" "$("${T[@]}" "$APPNET" ftp ls "ftp://127.0.0.1:$vtport/" >/dev/null 2>&1 || echo yes)"
"${T[@]}" "$APPNET" ftp get "ftp://localhost:$vtport/pub/big.bin" -o "$WORK/vst-big.bin" --tls --cacert "$tls/ca.pem"
check "get --tls from vsftpd (passive, session reuse on the data connection)" "$(sum "$root/pub/big.bin")" "$(sum "$WORK/vst-big.bin")"
"${T[@]}" "$APPNET" ftp get "ftp://127.0.0.1:$vtport/pub/big.bin" -o "$WORK/vst-active.bin" --tls --cacert "$tls/ca.pem" --active
check "get --tls --active from vsftpd" "$(sum "$root/pub/big.bin")" "$(sum "$WORK/vst-active.bin")"
check "ls --tls from vsftpd" "yes" "$("${T[@]}" "$APPNET" ftp ls --names "ftp://127.0.0.1:$vtport/pub/" --tls --cacert "$tls/ca.pem" | grep -qx 'hello.txt' && echo yes)"
check "a certificate from an untrusted CA is refused" "yes" "$("${T[@]}" "$APPNET" ftp ls "ftp://127.0.0.1:$vtport/" --tls >/dev/null 2>&1 || echo yes)"
echo "ftp interop: $CHECKS checks passed"
