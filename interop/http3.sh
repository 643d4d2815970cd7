#!/usr/bin/env bash
# HTTP/3 interop: independent HTTP/3 clients against `appnet web serve --tls --http3` — aioquic
# (interop/http3_client.py: concurrent streams, a malformed request reset alone) and ngtcp2's
# gtlsclient (downloads, 0-RTT with its session file, connection migration); Alt-Svc discovery
# end to end (curl over HTTP/1.1 and HTTP/2 sees Alt-Svc: h3=":PORT", aioquic then uses it);
# `appnet web proxy --tls --http3` serving aioquic from its cache; and `appnet web get --http3`
# against caddy, which serves h3 on the same port.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-caddy.sh"
for tool in curl openssl caddy gtlsclient python3 sha256sum; do
  command -v "$tool" >/dev/null || { echo "http3 interop needs $tool (.ci/apt.d/web.txt)" >&2; exit 1; }
done
python3 -c 'import aioquic' 2>/dev/null || { echo "http3 interop needs aioquic (.ci/pip.d/web.txt)" >&2; exit 1; }
H3PY=$(dirname "$0")/http3_client.py
T=(timeout 60)
sum() { sha256sum "$1" | cut -d' ' -f1; }

# --- a CA and a certificate for localhost, used by appnet and caddy alike -------------------
pki=$WORK/pki
caddy_pki "$pki" "interop CA"

site=$WORK/site; mkdir -p "$site"
echo "hello over QUIC" > "$site/hello.txt"
head -c 1048576 /dev/urandom > "$site/big.bin"
head -c 612 /dev/urandom > "$site/small.bin"

port=$(free_port)
bg "$APPNET" web serve --root "$site" --listen "127.0.0.1:$port" --tls --http3 \
  --cert "$pki/cert.pem" --key "$pki/key.pem" --quiet
wait_tcp 127.0.0.1 "$port"

echo "aioquic -> appnet"
out=$("${T[@]}" python3 "$H3PY" 127.0.0.1 "$port" "$pki/ca.pem" localhost /hello.txt /big.bin /small.bin /missing)
check "aioquic GET /hello.txt" "200 $(sum "$site/hello.txt")" "$(awk '$1=="/hello.txt"{print $2, $4}' <<<"$out")"
check "aioquic GET /big.bin (1 MiB) on a concurrent stream" "200 1048576 $(sum "$site/big.bin")" \
  "$(awk '$1=="/big.bin"{print $2, $3, $4}' <<<"$out")"
check "aioquic GET /missing is 404" "404" "$(awk '$1=="/missing"{print $2}' <<<"$out")"
check "no Alt-Svc on HTTP/3 responses" "-" "$(awk '$1=="/hello.txt"{print $5}' <<<"$out")"
out=$("${T[@]}" python3 "$H3PY" 127.0.0.1 "$port" "$pki/ca.pem" localhost '!/hello.txt' /big.bin \
  --header 'connection: close')
check "a malformed request (Connection:) is reset with H3_MESSAGE_ERROR (0x10e)" "RESET 270" \
  "$(awk '$1=="/hello.txt"{print $2, $3}' <<<"$out")"
check "... while the other stream on the connection completes" "200 $(sum "$site/big.bin")" \
  "$(awk '$1=="/big.bin"{print $2, $4}' <<<"$out")"

echo "ngtcp2 gtlsclient -> appnet"
dl=$WORK/dl; mkdir -p "$dl"
ng() { "${T[@]}" gtlsclient --exit-on-all-streams-close --download "$dl" "$@" 127.0.0.1 "$port" \
  "https://localhost:$port/big.bin" "https://localhost:$port/hello.txt"; }
ng -q >/dev/null 2>&1
check "gtlsclient downloads big.bin" "$(sum "$site/big.bin")" "$(sum "$dl/big.bin")"
check "gtlsclient downloads hello.txt" "$(sum "$site/hello.txt")" "$(sum "$dl/hello.txt")"
rm -f "$dl"/*
ng --session-file "$WORK/ng.session" --tp-file "$WORK/ng.tp" >"$WORK/ng1.log" 2>&1
check "gtlsclient saves a session ticket" "yes" "$([ -s "$WORK/ng.session" ] && echo yes)"
rm -f "$dl"/*
ng --session-file "$WORK/ng.session" --tp-file "$WORK/ng.tp" >"$WORK/ng2.log" 2>&1
check "gtlsclient resumes: sends 0-RTT packets and the server does not reject its early data" "1 0" \
  "$(grep -ac 'type=0RTT' "$WORK/ng2.log" | awk '{print ($1 > 0)}') $(grep -ac 'rejected by server' "$WORK/ng2.log")"
check "... and the 0-RTT download is intact" "$(sum "$site/big.bin")" "$(sum "$dl/big.bin")"
rm -f "$dl"/*
ng --change-local-addr=50ms --delay-stream=100ms >"$WORK/ng3.log" 2>&1
check "gtlsclient migrates to a new local address mid-connection and still downloads" \
  "$(sum "$site/big.bin")" "$(sum "$dl/big.bin")"

echo "appnet web get --http3 -> appnet"
check "web get --http3" "hello over QUIC" \
  "$("${T[@]}" "$APPNET" web get --http3 "https://localhost:$port/hello.txt" --cacert "$pki/ca.pem")"
# --0rtt keeps tickets in a session file: the first run stores one, the second resumes
# (more in interop/http3-0rtt.sh).
zget() { "${T[@]}" "$APPNET" web get --http3 --0rtt --session-file "$WORK/appnet.sessions" \
  "https://localhost:$port/hello.txt" --cacert "$pki/ca.pem" 2>&1 >/dev/null | cut -d' ' -f1-4; }
zget >/dev/null
check "web get --http3 --0rtt: the second run's GET is accepted as early data" "appnet web: 0-RTT accepted" "$(zget)"

echo "Alt-Svc discovery: curl over TCP, then HTTP/3 on the advertised port"
for v in --http1.1 --http2; do
  alt=$("${T[@]}" curl -sS "$v" --cacert "$pki/ca.pem" -o /dev/null -D - "https://localhost:$port/hello.txt" \
    | tr -d '\r' | awk 'tolower($1)=="alt-svc:"{print $2}')
  check "curl $v sees Alt-Svc h3 on the same port" "h3=\":$port\";" "$alt"
done
h3port=$(sed -E 's/^h3=":([0-9]+)".*/\1/' <<<"$alt")
out=$("${T[@]}" python3 "$H3PY" 127.0.0.1 "$h3port" "$pki/ca.pem" localhost /hello.txt)
check "aioquic fetches over the advertised h3 endpoint" "200" "$(awk '{print $2}' <<<"$out")"

echo "aioquic -> appnet web proxy --tls --http3 (reverse proxy of a plain origin)"
oport=$(free_port)
bg "$APPNET" web serve --root "$site" --listen "127.0.0.1:$oport" --quiet
wait_tcp 127.0.0.1 "$oport"
pport=$(free_port)
bg "$APPNET" web proxy --reverse "http://127.0.0.1:$oport" --listen "127.0.0.1:$pport" --tls --http3 \
  --cert "$pki/cert.pem" --key "$pki/key.pem"
wait_tcp 127.0.0.1 "$pport"
out=$("${T[@]}" python3 "$H3PY" 127.0.0.1 "$pport" "$pki/ca.pem" localhost /big.bin /hello.txt)
check "aioquic GET /big.bin through the proxy over h3" "200 $(sum "$site/big.bin")" "$(awk '$1=="/big.bin"{print $2, $4}' <<<"$out")"
check "aioquic GET /hello.txt through the proxy over h3" "200 $(sum "$site/hello.txt")" "$(awk '$1=="/hello.txt"{print $2, $4}' <<<"$out")"
check "curl over TCP sees the proxy's Alt-Svc" "h3=\":$pport\";" "$("${T[@]}" curl -sS --cacert "$pki/ca.pem" -o /dev/null -D - "https://localhost:$pport/hello.txt" | tr -d '\r' | awk 'tolower($1)=="alt-svc:"{print $2}')"

echo "appnet web get --http3 -> caddy"
cport=$(free_port)
caddy_start "$WORK" "$cport" "$site" "$pki"
wait_tcp 127.0.0.1 "$cport"
got=""
for _ in $(seq 1 50); do
  got=$("${T[@]}" "$APPNET" web get --http3 "https://localhost:$cport/hello.txt" --cacert "$pki/ca.pem" 2>/dev/null) && break
  sleep 0.1
done
check "web get --http3 from caddy" "hello over QUIC" "$got"
"${T[@]}" "$APPNET" web get --http3 "https://localhost:$cport/big.bin" --cacert "$pki/ca.pem" > "$WORK/caddy-big.bin"
check "web get --http3 of 1 MiB from caddy" "$(sum "$site/big.bin")" "$(sum "$WORK/caddy-big.bin")"
tport=$(free_port)
bg "$APPNET" web serve --root "$site" --listen "127.0.0.1:$tport" --tls --cert "$pki/cert.pem" --key "$pki/key.pem" --quiet
wait_tcp 127.0.0.1 "$tport"
check "a TCP-only server answers web get over TCP" "hello over QUIC" \
  "$("${T[@]}" "$APPNET" web get "https://localhost:$tport/hello.txt" --cacert "$pki/ca.pem")"
check "... but web get --http3 never falls back to TCP" "failed" \
  "$("${T[@]}" "$APPNET" web get --http3 --timeout 3 "https://localhost:$tport/hello.txt" --cacert "$pki/ca.pem" >/dev/null 2>&1 || echo failed)"
echo "http3 interop: $CHECKS checks passed"
