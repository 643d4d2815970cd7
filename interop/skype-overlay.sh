#!/usr/bin/env bash
# Three appnet skype supernodes joined into one overlay under a shared secret, on loopback.
# Python (hmac/hashlib, an independent implementation of the SN-SN envelope) relays a lookup
# into the overlay: a correctly tagged datagram is answered with a Reply whose tag Python
# verifies; the same datagram replayed, one tagged under another secret and one with a stale
# timestamp get nothing. Then appnet peers attached to different SNs message each other, and
# after one SN is stopped the two others still carry a message.
source "$(dirname "$0")/lib.sh"

head -c 32 /dev/urandom | base64 > "$WORK/overlay.key"
A=$(free_port); B=$(free_port); C=$(free_port)
start_sn() {
  RUST_LOG=${RUST_LOG:-warn} "$APPNET" skype supernode --listen "127.0.0.1:$1" \
    --overlay-secret-file "$WORK/overlay.key" "${@:2}" >"$WORK/sn-$1.out" 2>&1 &
  LAST_PID=$!; PIDS+=("$LAST_PID")
}
start_sn "$A"
start_sn "$B" --join "127.0.0.1:$A"
start_sn "$C" --join "127.0.0.1:$A"
SN_C=$LAST_PID
for p in "$A" "$B" "$C"; do
  for ((i = 0; i < 50; i++)); do grep -q 'supernode on udp' "$WORK/sn-$p.out" 2>/dev/null && break; sleep 0.1; done
done
out=$("$APPNET" skype supernode --listen 127.0.0.1:0 --join "127.0.0.1:$A" 2>&1 || true)
check "--join without a secret is refused" 1 "$(grep -c 'needs --overlay-secret-file' <<<"$out")"

out=$(python3 - "$A" "$WORK/overlay.key" <<'PY'
import hashlib, hmac, os, socket, struct, sys, time
sn = ("127.0.0.1", int(sys.argv[1]))
secret = open(sys.argv[2], "rb").read().strip()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); s.settimeout(1.0)
me = s.getsockname()
def addr(a): return b"\x04" + socket.inet_aton(a[0]) + struct.pack("!H", a[1])
def seal(kind, body, key=secret, skew=0):
    head = b"SO\x01" + bytes([kind]) + struct.pack("!Q", int(time.time() * 1000) + skew) + os.urandom(8)
    return head + body + hmac.new(key, head + body, hashlib.sha256).digest()
lookup = b"SK\x01\x05" + b"\x00\x00\x00\x2a" + b"\x06nobody"
relay = seal(2, addr(me) + struct.pack("!H", len(lookup)) + lookup)
def answer(d):
    s.sendto(d, sn)
    try:
        while True:
            r = s.recv(2048)
            if r[:2] == b"SO" and r[3] == 3: return r
    except socket.timeout:
        return None
r = answer(relay)
ok = r is not None and hmac.compare_digest(hmac.new(secret, r[:-32], hashlib.sha256).digest(), r[-32:])
inner = r[20 + 7 + 2:-32] if r else b""
print("reply", int(ok), int(inner[:8] == b"SK\x01\x07\x00\x00\x00\x2a" and inner[8:10] == struct.pack("!H", 404)))
print("replay", int(answer(relay) is None))
print("wrong-key", int(answer(seal(2, addr(me) + struct.pack("!H", len(lookup)) + lookup, key=b"not the overlay secret!!")) is None))
print("stale", int(answer(seal(2, addr(me) + struct.pack("!H", len(lookup)) + lookup, skew=-60000)) is None))
PY
)
echo "$out"
check "a relayed lookup tagged by Python is answered (404) with a Reply whose HMAC Python verifies" "reply 1 1" "$(grep ^reply <<<"$out")"
check "the same datagram replayed gets nothing" "replay 1" "$(grep ^replay <<<"$out")"
check "a datagram tagged under another secret gets nothing" "wrong-key 1" "$(grep ^wrong-key <<<"$out")"
check "a datagram 60 s old gets nothing" "stale 1" "$(grep ^stale <<<"$out")"

start_peer() {
  printf 'pw-%s\n' "$1" > "$WORK/pw-$1"
  RUST_LOG=${RUST_LOG:-warn} "$APPNET" skype peer --user "$1" --supernode "127.0.0.1:$2" --listen 127.0.0.1:0 \
    --password-stdin --control "$WORK/$1.sock" <"$WORK/pw-$1" >"$WORK/$1.out" 2>&1 &
  PIDS+=($!)
}
wait_file_line() {
  for ((i = 0; i < 150; i++)); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "no line matching $2 in $1:" >&2; cat "$1" "$WORK"/*.out >&2; return 1
}
start_peer alice "$A"; start_peer bob "$B"; start_peer carol "$C"
for u in alice bob carol; do wait_file_line "$WORK/$u.out" 'registered at'; done
# send FROM TO TEXT: retried while the overlay converges (an SN answers alone until it knows
# the others), at most 20 s.
send() {
  local out i
  for ((i = 0; i < 20; i++)); do
    out=$(timeout 15 "$APPNET" skype message "$2" "$3" --control "$WORK/$1.sock" 2>&1) && { echo "$out"; return 0; }
    sleep 1
  done
  echo "$out"; return 1
}
out=$(send alice bob "hello across sns"); echo "  $out"
check "alice (on SN A) -> bob (on SN B): sent" 1 "$(grep -c '^sent to bob' <<<"$out")"
wait_file_line "$WORK/bob.out" '^alice: hello across sns$'
out=$(send bob carol "hi from b"); echo "  $out"
wait_file_line "$WORK/carol.out" '^bob: hi from b$'
check "bob (on SN B) -> carol (on SN C): carol prints it" 1 "$(grep -c '^bob: hi from b$' "$WORK/carol.out")"
kill "$SN_C"; wait "$SN_C" 2>/dev/null || true # send retries until the survivors drop it (7 s)
out=$(send bob alice "after c died"); echo "  $out"
wait_file_line "$WORK/alice.out" '^bob: after c died$'
check "SN C stopped: bob -> alice still goes through" 1 "$(grep -c '^bob: after c died$' "$WORK/alice.out")"
echo "skype-overlay: $CHECKS checks passed"
