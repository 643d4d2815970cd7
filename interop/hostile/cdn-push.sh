#!/usr/bin/env bash
# CDN push against a hostile tester: forged and junk signatures in bulk, an oversized body, a
# body that never arrives, a pushed object larger than the object limit, a full replay memory;
# the replica keeps answering its clients throughout. Loopback only, about 10 s.
source "$(dirname "$0")/../lib.sh"

site=$WORK/site
mkdir -p "$site"
echo 'page' > "$site/page.html"
head -c $((4 * 1024 * 1024)) /dev/urandom > "$site/big.bin"
touch -d '30 days ago' "$site"/*
head -c 32 /dev/urandom | base64 > "$WORK/push.secret"
secret=$(tr -d ' \n\r\t' < "$WORK/push.secret")
oport=$(free_port); rport=$(free_port)
bg "$APPNET" web serve --root "$site" --listen "127.0.0.1:$oport" --quiet
bg "$APPNET" web proxy --reverse "http://127.0.0.1:$oport" --listen "127.0.0.1:$rport" \
  --push-secret-file "$WORK/push.secret" --max-object-size 1MiB --push-max-remembered 3 --header-timeout 2
for p in $oport $rport; do wait_tcp 127.0.0.1 "$p"; done
P=http://127.0.0.1:$rport/.appnet/push
C=(curl -s --max-time 10)
push() { # TIMESTAMP KEY BODY → the reply then the status
  local sig
  sig=$(printf '%s.%s' "$1" "$3" | openssl dgst -sha256 -hmac "$2" -r | cut -d' ' -f1)
  "${C[@]}" -w '\n%{http_code}' -H "X-Appnet-Push-Timestamp: $1" -H "X-Appnet-Push-Signature: sha256=$sig" --data-binary "$3" "$P"
}
now=$(date +%s)

echo "forged signatures in bulk"
bad=0
for i in $(seq 1 200); do
  c=$("${C[@]}" -o /dev/null -w '%{http_code}' -H "X-Appnet-Push-Timestamp: $now" \
    -H "X-Appnet-Push-Signature: sha256=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    --data-binary "http://127.0.0.1:$rport/page.html" "$P")
  [ "$c" = 401 ] && bad=$((bad + 1))
done
check "200 forged pushes: all 401" "200" "$bad"
check "junk signature header: 401" "401" "$("${C[@]}" -o /dev/null -w '%{http_code}' -H "X-Appnet-Push-Timestamp: $now" -H 'X-Appnet-Push-Signature: sha256=zz%00' --data-binary x "$P")"
check "junk timestamp: 401" "401" "$("${C[@]}" -o /dev/null -w '%{http_code}' -H 'X-Appnet-Push-Timestamp: -1e99' -H 'X-Appnet-Push-Signature: sha256=00' --data-binary x "$P")"
check "nothing was fetched for them" "504" "$("${C[@]}" -o /dev/null -w '%{http_code}' -H 'Cache-Control: only-if-cached' "http://127.0.0.1:$rport/page.html")"

echo "oversized and missing bodies"
head -c $((3 * 1024 * 1024)) /dev/zero > "$WORK/huge"
check "a 3 MiB push body: 413" "413" "$("${C[@]}" -o /dev/null -w '%{http_code}' -H "X-Appnet-Push-Timestamp: $now" -H 'X-Appnet-Push-Signature: sha256=00' --data-binary "@$WORK/huge" "$P")"
start=$(date +%s)
got=$(python3 - "$rport" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=15)
s.sendall(b"POST /.appnet/push HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhttp://")
try:
    print(s.recv(200).split(b"\r\n")[0].decode())
except Exception as e:
    print("no answer:", e)
PY
)
check "a body that never arrives: 408" "HTTP/1.1 408 Request Timeout" "$got"
check "  within the header timeout" "1" "$(( $(date +%s) - start <= 6 ? 1 : 0 ))"

echo "signed pushes at the limits"
out=$(push "$now" "$secret" "http://127.0.0.1:$rport/big.bin")
check "a 4 MiB object over --max-object-size 1MiB: not stored" "not-stored" "$(head -1 <<<"$out" | cut -f1)"
check "  and the push still succeeds" "200" "$(tail -1 <<<"$out")"
check "two more pushes fill the replay memory (3)" "200 200" "$(push "$((now + 1))" "$secret" "http://127.0.0.1:$rport/page.html" | tail -1) $(push "$((now + 2))" "$secret" "http://127.0.0.1:$rport/page.html" | tail -1)"
check "the next push within the window: 503" "503" "$(push "$((now + 3))" "$secret" "http://127.0.0.1:$rport/page.html" | tail -1)"
check "clients are still served" "HIT" "$("${C[@]}" -o /dev/null -D - "http://127.0.0.1:$rport/page.html" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')"
echo "hostile cdn-push: $CHECKS checks passed"
