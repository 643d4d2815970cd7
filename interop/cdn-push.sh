#!/usr/bin/env bash
# CDN push, driven by tools that are not ours: curl posts pushes signed with openssl's HMAC
# (the documented wire format: X-Appnet-Push-Timestamp and X-Appnet-Push-Signature =
# sha256=HMAC-SHA256(secret, "TIMESTAMP.BODY")) to two appnet replicas (web proxy --reverse in
# front of a python http.server origin); curl then asks for the pushed objects: a HIT on the very
# first request. Bad, expired and replayed pushes are refused and store nothing; a no-store
# object is reported and not kept; `appnet web push` pushes to both replicas at once.
source "$(dirname "$0")/lib.sh"

site=$WORK/site
mkdir -p "$site"
echo 'pushed page' > "$site/page.html"
head -c 200000 /dev/urandom > "$site/video.bin"
echo 'later' > "$site/later.html"
touch -d '30 days ago' "$site"/*
# The origin: python's http.server; /nostore answers with Cache-Control: no-store.
cat > "$WORK/origin.py" <<'PY'
import http.server, sys, os
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k): super().__init__(*a, directory=sys.argv[2], **k)
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/nostore":
            body = b"private\n"
            self.send_response(200); self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
            return
        super().do_GET()
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
head -c 32 /dev/urandom | base64 > "$WORK/push.secret"
secret=$(tr -d ' \n\r\t' < "$WORK/push.secret")

oport=$(free_port); r1=$(free_port); r2=$(free_port)
bg python3 "$WORK/origin.py" "$oport" "$site"
bg "$APPNET" web proxy --reverse "http://127.0.0.1:$oport" --listen "127.0.0.1:$r1" --push-secret-file "$WORK/push.secret"
bg "$APPNET" web proxy --reverse "http://127.0.0.1:$oport" --listen "127.0.0.1:$r2" --push-secret-file "$WORK/push.secret"
for p in $oport $r1 $r2; do wait_tcp 127.0.0.1 "$p"; done

# Clients ask for http://www.example.test:PORT/...: that is the URL (and cache key) pushed.
url() { echo "http://www.example.test:$1/$2"; }
C=(curl -s --max-time 20)
# push PORT TIMESTAMP SECRET BODY → status line then the reply, via curl with an openssl HMAC.
push() {
  local port=$1 ts=$2 key=$3 body=$4 sig
  sig=$(printf '%s.%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$key" -r | cut -d' ' -f1)
  "${C[@]}" -w '\n%{http_code}' -H "X-Appnet-Push-Timestamp: $ts" -H "X-Appnet-Push-Signature: sha256=$sig" \
    -H 'Content-Type: text/plain' --data-binary "$body" "http://127.0.0.1:$port/.appnet/push"
}
xcache() { # PORT PATH
  "${C[@]}" -o /dev/null -D - --resolve "www.example.test:$1:127.0.0.1" "$(url "$1" "$2")" |
    tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}'
}
now=$(date +%s)
body="$(url "$r1" page.html)
$(url "$r1" video.bin)
$(url "$r1" nostore)
"

echo "refused pushes change nothing"
check "unsigned push: 401" "401" "$("${C[@]}" -o /dev/null -w '%{http_code}' --data-binary "$body" "http://127.0.0.1:$r1/.appnet/push")"
check "wrong secret: 401" "401" "$(push "$r1" "$now" "not-the-secret" "$body" | tail -1)"
check "expired timestamp (10 min old): 401" "401" "$(push "$r1" "$((now - 600))" "$secret" "$body" | tail -1)"
check "nothing stored after refused pushes" "504" "$("${C[@]}" -o /dev/null -w '%{http_code}' -H 'Cache-Control: only-if-cached' --resolve "www.example.test:$r1:127.0.0.1" "$(url "$r1" page.html)")"

echo "a signed push (curl + openssl HMAC)"
out=$(push "$r1" "$now" "$secret" "$body")
check "push accepted" "200" "$(tail -1 <<<"$out")"
check "page.html stored" "stored" "$(grep -F "$(url "$r1" page.html)" <<<"$out" | cut -f1)"
check "video.bin stored" "stored" "$(grep -F "$(url "$r1" video.bin)" <<<"$out" | cut -f1)"
check "no-store reported, not stored" "not-stored" "$(grep -F "$(url "$r1" nostore)" <<<"$out" | cut -f1)"
check "the reason names no-store" "1" "$(grep -F "$(url "$r1" nostore)" <<<"$out" | grep -c 'no-store')"
check "replayed push: 403" "403" "$(push "$r1" "$now" "$secret" "$body" | tail -1)"

echo "the first requests (curl)"
check "pushed page: HIT on its very first request" "HIT" "$(xcache "$r1" page.html)"
check "pushed video: HIT on its very first request" "HIT" "$(xcache "$r1" video.bin)"
check "pushed body intact" "$(sha256sum < "$site/video.bin")" "$("${C[@]}" --resolve "www.example.test:$r1:127.0.0.1" "$(url "$r1" video.bin)" | sha256sum)"
check "no-store object: a MISS" "MISS" "$(xcache "$r1" nostore)"
check "not pushed: a MISS" "MISS" "$(xcache "$r1" later.html)"

echo "appnet web push to two replicas"
# Each replica is asked for the URL its clients use (its own port here, so one URL per replica).
out=$("$APPNET" web push "$(url "$r2" later.html)" --replica "127.0.0.1:$r2" --secret-file "$WORK/push.secret")
check "replica 2 stored it" "stored" "$(cut -f2 <<<"$out")"
check "replica 2: HIT on the first request" "HIT" "$(xcache "$r2" later.html)"
out=$("$APPNET" web push "$(url "$r1" later.html)" "$(url "$r2" page.html)" --replica "127.0.0.1:$r1" --replica "http://127.0.0.1:$r2" --secret-file "$WORK/push.secret" 2>&1 || true)
check "one line per replica and URL" "4" "$(grep -cE $'\t(stored|not-stored|failed)\t' <<<"$out")"
check "both replicas answered" "2" "$(grep -E $'\tstored\t' <<<"$out" | cut -f1 | sort -u | wc -l | tr -d ' ')"
dead=$(free_port)
if "$APPNET" web push "$(url "$r1" page.html)" --replica "127.0.0.1:$dead" --secret-file "$WORK/push.secret" >/dev/null 2>&1; then
  check "an unreachable replica fails the push" "failure" "success"
else
  check "an unreachable replica fails the push" "failure" "failure"
fi
echo "cdn-push: $CHECKS checks passed"
