#!/usr/bin/env bash
# HTTP/3 0-RTT across runs: `appnet web get --http3 --0rtt` keeps TLS session tickets in a file
# (--session-file, default $XDG_CACHE_HOME/appnet/h3-sessions), so a second process resumes
# and sends its GET as early data. Against appnet's server and against caddy (quic-go), with
# the file's promises checked: 0600 in a 0700 directory, keyed by the server's address, a
# corrupt file ignored and replaced, a symlink never followed, and a server that forgot its
# ticket keys (restarted) rejecting the early data while the GET still succeeds in 1-RTT.
# (ngtcp2's gtlsclient resuming from its own session file is checked in interop/http3.sh.)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-caddy.sh"
for tool in openssl caddy stat; do
  command -v "$tool" >/dev/null || { echo "http3-0rtt interop needs $tool (.ci/apt.d/web.txt)" >&2; exit 1; }
done
T=(timeout 60)

pki=$WORK/pki
caddy_pki "$pki" "interop CA"
site=$WORK/site; mkdir -p "$site"
echo "hello over QUIC" > "$site/hello.txt"

serve() { # serve PORT: appnet's HTTP/3 server on 127.0.0.1:PORT; sets $LAST_PID
  bg "$APPNET" web serve --root "$site" --listen "127.0.0.1:$1" --tls --http3 \
    --cert "$pki/cert.pem" --key "$pki/key.pem" --quiet
  wait_tcp 127.0.0.1 "$1"
}
# get PORT [FLAGS...]: one run of the client; prints "BODY|VERDICT" (the stderr 0-RTT line's
# first words: "accepted", "not accepted" or "not tried").
get() {
  local port=$1; shift
  local body err
  body=$("${T[@]}" "$APPNET" web get --http3 --0rtt "$@" "https://localhost:$port/hello.txt" \
    --cacert "$pki/ca.pem" 2>"$WORK/err") || { cat "$WORK/err" >&2; echo "FAILED"; return; }
  err=$(sed -n 's/^appnet web: 0-RTT \(accepted\|not accepted\|not tried\).*/\1/p' "$WORK/err")
  echo "$body|$err"
}
mode() { stat -c %a "$1"; }

echo "appnet web get --http3 --0rtt -> appnet (two processes sharing a session file)"
port=$(free_port)
serve "$port"; server_pid=$LAST_PID
F=$WORK/sessions/h3
check "first run: a full handshake, nothing to resume yet" "hello over QUIC|not tried" "$(get "$port" --session-file "$F")"
check "the session file is private" "600" "$(mode "$F")"
check "... and holds a ticket for localhost at this address" "yes" \
  "$(grep -q "^ticket localhost 127.0.0.1:$port " "$F" && echo yes)"
check "second run: resumed, the server accepts the GET as early data" "hello over QUIC|accepted" \
  "$(get "$port" --session-file "$F")"
check "third run: the resumed connection left fresh tickets" "hello over QUIC|accepted" \
  "$(get "$port" --session-file "$F")"

echo "the default session file (XDG_CACHE_HOME)"
export XDG_CACHE_HOME=$WORK/cache
get "$port" >/dev/null
check "default file made under \$XDG_CACHE_HOME/appnet, directory 0700, file 0600" "700 600" \
  "$(mode "$XDG_CACHE_HOME/appnet") $(mode "$XDG_CACHE_HOME/appnet/h3-sessions")"
check "a second run with the default file resumes" "hello over QUIC|accepted" "$(get "$port")"

echo "tickets are per server address"
port2=$(free_port)
serve "$port2"
check "another server (same name, other port) gets no ticket of the first" "hello over QUIC|not tried" \
  "$(get "$port2" --session-file "$F")"
check "... and the first server's ticket is still there" "hello over QUIC|accepted" "$(get "$port" --session-file "$F")"

echo "a corrupt file, a symlink"
printf 'not a session file\n\001\002' > "$F"
check "a corrupt file is ignored (with a warning)" "hello over QUIC|not tried" "$(get "$port" --session-file "$F")"
check "... the warning says so" "yes" "$(grep -q 'corrupt; ignored' "$WORK/err" && echo yes)"
check "... and is replaced by a good one" "hello over QUIC|accepted" "$(get "$port" --session-file "$F")"
echo "secret" > "$WORK/target"
ln -s "$WORK/target" "$WORK/link"
check "a symlinked session file is not followed" "hello over QUIC|not tried" \
  "$(get "$port" --session-file "$WORK/link")"
check "... nor written through, nor replaced" "secret symlink" "$(cat "$WORK/target") $([ -L "$WORK/link" ] && echo symlink)"

echo "a restarted server has forgotten its ticket keys"
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
serve "$port"
check "the early data is rejected and the GET is sent again after the handshake" \
  "hello over QUIC|not accepted" "$(get "$port" --session-file "$F")"
check "... and the new tickets resume" "hello over QUIC|accepted" "$(get "$port" --session-file "$F")"

echo "appnet web get --http3 --0rtt -> caddy"
cport=$(free_port)
caddy_start "$WORK" "$cport" "$site" "$pki"
wait_tcp 127.0.0.1 "$cport"
C=$WORK/caddy.sessions
first=""
for _ in $(seq 1 50); do # caddy's UDP listener may lag its TCP one
  first=$(get "$cport" --session-file "$C") && [ "$first" != FAILED ] && break
  sleep 0.1
done
check "caddy, first run: full handshake, ticket stored" "hello over QUIC|not tried" "$first"
check "caddy, second run: resumed with 0-RTT, early data accepted" "hello over QUIC|accepted" \
  "$(get "$cport" --session-file "$C")"
echo "http3-0rtt interop: $CHECKS checks passed"
