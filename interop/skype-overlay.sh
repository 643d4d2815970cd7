#!/usr/bin/env bash
# Three appnet skype supernodes joined into one overlay under a shared secret, on loopback.
# Python (hmac/hashlib, an independent implementation of the SN-SN envelope and its per-epoch
# keys) relays a lookup into the overlay: a correctly tagged datagram is answered with a Reply
# whose tag Python verifies; the same datagram replayed, one tagged under another secret, one
# under the raw secret and one with a stale timestamp get nothing. Then appnet peers attached
# to different SNs message each other; a peer with --promote-after is promoted, runs an SN that
# Python's lookup and another peer use; after one SN is stopped the two others still carry a
# message, and the peer that was attached to it fails over and still gets a message and a call.
source "$(dirname "$0")/lib.sh"

head -c 32 /dev/urandom | base64 > "$WORK/overlay.key"
A=$(free_port); B=$(free_port); C=$(free_port)
start_sn() {
  RUST_LOG=${RUST_LOG:-warn} "$APPNET" skype supernode --listen "127.0.0.1:$1" \
    --overlay-secret-file "$WORK/overlay.key" "${@:2}" >"$WORK/sn-$1.out" 2>&1 &
  LAST_PID=$!; PIDS+=("$LAST_PID")
}
start_sn "$A" --promote-min-uptime 1
start_sn "$B" --join "127.0.0.1:$A" --promote-min-uptime 1
start_sn "$C" --join "127.0.0.1:$A" --promote-min-uptime 1
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
def epoch_key(ts_ms, sec=secret):  # HMAC(secret, "appnet skype overlay epoch" || epoch), 600 s epochs
    return hmac.new(sec, b"appnet skype overlay epoch" + struct.pack("!Q", ts_ms // 1000 // 600), hashlib.sha256).digest()
def seal(kind, body, sec=secret, skew=0, raw_key=False):
    ts = int(time.time() * 1000) + skew
    head = b"SO\x01" + bytes([kind]) + struct.pack("!Q", ts) + os.urandom(8)
    key = sec if raw_key else epoch_key(ts, sec)
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
ok = r is not None and hmac.compare_digest(hmac.new(epoch_key(struct.unpack("!Q", r[4:12])[0]), r[:-32], hashlib.sha256).digest(), r[-32:])
inner = r[20 + 7 + 2:-32] if r else b""
print("reply", int(ok), int(inner[:8] == b"SK\x01\x07\x00\x00\x00\x2a" and inner[8:10] == struct.pack("!H", 404)))
print("replay", int(answer(relay) is None))
print("wrong-key", int(answer(seal(2, addr(me) + struct.pack("!H", len(lookup)) + lookup, sec=b"not the overlay secret!!")) is None))
print("raw-secret", int(answer(seal(2, addr(me) + struct.pack("!H", len(lookup)) + lookup, raw_key=True)) is None))
print("stale", int(answer(seal(2, addr(me) + struct.pack("!H", len(lookup)) + lookup, skew=-60000)) is None))
PY
)
echo "$out"
check "a relayed lookup tagged by Python is answered (404) with a Reply whose HMAC Python verifies" "reply 1 1" "$(grep ^reply <<<"$out")"
check "the same datagram replayed gets nothing" "replay 1" "$(grep ^replay <<<"$out")"
check "a datagram tagged under another secret gets nothing" "wrong-key 1" "$(grep ^wrong-key <<<"$out")"
check "a datagram tagged with the raw secret instead of the epoch's key gets nothing" "raw-secret 1" "$(grep ^raw-secret <<<"$out")"
check "a datagram 60 s old gets nothing" "stale 1" "$(grep ^stale <<<"$out")"

start_peer() {
  printf 'pw-%s\n' "$1" > "$WORK/pw-$1"
  RUST_LOG=${RUST_LOG:-warn} "$APPNET" skype peer --user "$1" --supernode "127.0.0.1:$2" --listen 127.0.0.1:0 \
    --password-stdin --control "$WORK/$1.sock" "${@:3}" <"$WORK/pw-$1" >"$WORK/$1.out" 2>&1 &
  PIDS+=($!)
}
wait_file_line() {
  for ((i = 0; i < 150; i++)); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "no line matching $2 in $1:" >&2; cat "$1" "$WORK"/*.out >&2; return 1
}
P=$(free_port)
start_peer alice "$A"; start_peer bob "$B"; start_peer carol "$C"; start_peer erin "$C"
start_peer pat "$A" --promote-after 2 --sn-listen "127.0.0.1:$P"
for u in alice bob carol erin pat; do wait_file_line "$WORK/$u.out" 'registered at'; done
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
# Promotion: pat (public on loopback, up 2 s) asks A; A probes pat's SN port unsolicited and
# hands over the grant sealed; pat then runs an SN on 127.0.0.1:$P that joins the overlay.
wait_file_line "$WORK/pat.out" "promoted: supernode on udp 127.0.0.1:$P"
check "pat is promoted to supernode on its SN port" 1 "$(grep -c "^appnet skype: promoted: supernode on udp 127.0.0.1:$P$" "$WORK/pat.out")"
lookup_at() { # PORT USER: Python's own SN-protocol Lookup; prints "found ONLINE"
  python3 - "$1" "$2" <<'PY'
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.0)
user = sys.argv[2].encode()
q = b"SK\x01\x05" + b"\x00\x00\x00\x07" + bytes([len(user)]) + user
for _ in range(3):
    s.sendto(q, ("127.0.0.1", int(sys.argv[1])))
    try:
        r = s.recv(2048)
    except socket.timeout:
        continue
    if r[:4] == b"SK\x01\x06" and r[4:8] == b"\x00\x00\x00\x07":
        n = r[8]; print("found", r[9 + n]); sys.exit(0)
    print("answer", r[3]); sys.exit(0)
print("none")
PY
}
for ((i = 0; i < 40; i++)); do [ "$(lookup_at "$P" bob)" == "found 1" ] && break; sleep 0.5; done
check "the promoted SN answers a lookup (Python) for bob, registered at B" "found 1" "$(lookup_at "$P" bob)"
start_peer dave "$P"
wait_file_line "$WORK/dave.out" 'registered at'
out=$(send alice dave "via the promoted sn"); echo "  $out"
wait_file_line "$WORK/dave.out" '^alice: via the promoted sn$'
check "dave, attached to the promoted SN, gets alice's message" 1 "$(grep -c '^alice: via the promoted sn$' "$WORK/dave.out")"

kill "$SN_C"; wait "$SN_C" 2>/dev/null || true # send retries until the survivors drop it (7 s)
out=$(send bob alice "after c died"); echo "  $out"
wait_file_line "$WORK/alice.out" '^bob: after c died$'
check "SN C stopped: bob -> alice still goes through" 1 "$(grep -c '^bob: after c died$' "$WORK/alice.out")"
# Failover: erin was attached to C; her keepalives go unanswered (7 s) and she re-registers
# through an SN C told her about.
for ((i = 0; i < 300; i++)); do grep -q 're-registered at supernode' "$WORK/erin.out" && break; sleep 0.1; done
check "erin (on C) re-registers through another SN" 1 "$(grep -c '^appnet skype: re-registered at supernode' "$WORK/erin.out")"
out=$(send bob erin "after the failover"); echo "  $out"
wait_file_line "$WORK/erin.out" '^bob: after the failover$'
check "bob -> erin after her failover" 1 "$(grep -c '^bob: after the failover$' "$WORK/erin.out")"
out=$(timeout 30 "$APPNET" skype call erin --secs 1 --control "$WORK/bob.sock" 2>&1); echo "  $out"
check "bob calls erin after her failover: 50 voice packets received" 1 "$(grep -c 'sent 50 voice packets.*50 received' <<<"$out")"
echo "skype-overlay: $CHECKS checks passed"
