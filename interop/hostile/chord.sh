#!/usr/bin/env bash
# appnet chord against a hostile tester: forged Leaving frames, a ring secret (unsigned,
# foreign-secret and replayed frames refused; the ring keeps working), and 100 connections
# announcing 4 MiB frames (memory stays bounded). Loopback only, about 20 s.
source "$(dirname "$0")/../lib.sh"
FAST=(--stabilize-ms 100 --fix-fingers-ms 30 --rpc-timeout-ms 400)

# The forger: raw frames in the documented wire format (README, "Chord"), standard library only.
cat >"$WORK/forge.py" <<'PY'
import hashlib, hmac, os, socket, struct, sys, time

def recvn(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("closed")
        buf += chunk
    return buf

def exchange(addr, body, trailer=b""):
    with socket.create_connection(addr, timeout=5) as s:
        body += trailer
        s.sendall(struct.pack(">I", len(body)) + body)
        (n,) = struct.unpack(">I", recvn(s, 4))
        return recvn(s, n)

def hostport(text):
    h, p = text.rsplit(":", 1)
    return (h, int(p))

def node_bytes(resp):
    """The node field of a Pong (id, family, address, port) as raw bytes."""
    return resp[3:]

def info_nodes(addr):
    """Raw node fields named by an Info answer: predecessor and successors."""
    r = exchange(addr, bytes([1, 0, 0x02]))
    bits = r[1]
    idlen = (bits + 7) // 8
    def node(off):
        fam = r[off + idlen]
        end = off + idlen + 1 + (4 if fam == 4 else 16) + 2
        return r[off:end], end
    _, off = node(3)
    named = []
    if r[off] == 1:
        n, off = node(off + 1)
        named.append(n)
    else:
        off += 1
    count, off = r[off], off + 1
    for _ in range(count):
        n, off = node(off)
        named.append(n)
    return named

def sealed(secret, body, ts, rid):
    mac = hmac.new(secret, b"appnet-chord-1" + b"\x00" + struct.pack(">QQ", ts, rid) + body, hashlib.sha256).digest()
    return struct.pack(">QQ", ts, rid) + mac

cmd = sys.argv[1]
if cmd == "leaving":
    # leaving VICTIM ROUNDS TARGET...: forge `Leaving(victim)` to every target ROUNDS times,
    # 100 ms apart; after each round, count the targets whose views lost the victim.
    victim, rounds, targets = hostport(sys.argv[2]), int(sys.argv[3]), [hostport(t) for t in sys.argv[4:]]
    pong = exchange(victim, bytes([1, 0, 0x01]))
    bits, me = pong[1], node_bytes(pong)
    lost = 0
    for _ in range(rounds):
        for t in targets:
            r = exchange(t, bytes([1, bits, 0x0a]) + me + b"\x00" + b"\x00")
            assert r[2] == 0x86, r
        time.sleep(0.1)
        lost += sum(1 for t in targets if me not in info_nodes(t))
    print("views that lost the live node:", lost)
elif cmd == "unsigned":
    r = exchange(hostport(sys.argv[2]), bytes([1, 0, 0x01]))
    print(f"error {r[3]}" if r[2] == 0xFF else "answered")
elif cmd == "signed-then-replayed":
    # A Ping sealed with SECRET: answered; the same bytes again: refused (error 6).
    addr, secret = hostport(sys.argv[2]), open(sys.argv[3], "rb").read().strip()
    body = bytes([1, 0, 0x01])
    trailer = sealed(secret, body, int(time.time() * 1000), int.from_bytes(os.urandom(8), "big"))
    first = exchange(addr, body, trailer)
    again = exchange(addr, body, trailer)
    print("pong" if first[2] == 0x81 else f"type {first[2]:#x}", f"error {again[3]}" if again[2] == 0xFF else "answered")
elif cmd == "hold":
    # hold HOST:PORT N SECONDS: N connections from 127.0.0.2, each announcing a 4 MiB frame and
    # sending one byte of it, kept open SECONDS.
    addr, n, secs = hostport(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    conns = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.connect(addr)
        s.sendall(struct.pack(">I", 4 * 1024 * 1024) + b"\x01")
        conns.append(s)
    print("holding", len(conns), flush=True)
    time.sleep(secs)
PY
FORGE=(python3 "$WORK/forge.py")

# wait_ring ADDR N [SECRET...]: waits (bounded, 20 s) until a walk from ADDR finds N nodes.
wait_ring() {
  local addr=$1 n=$2 i
  shift 2
  for ((i = 0; i < 200; i++)); do
    "$APPNET" chord ring --node "$addr" "$@" >"$WORK/ring" 2>/dev/null || true
    [ "$(awk 'NR == 1 {print $1 + 0}' "$WORK/ring")" == "$n" ] && return 0
    sleep 0.1
  done
  echo "ring at $addr never reached $n nodes" >&2; return 1
}
rss_kb() { awk '$1 == "VmRSS:" {print $2}' "/proc/$1/status"; }
# first_line CMD...: the first line CMD prints (no SIGPIPE under pipefail).
first_line() { "$@" >"$WORK/out" 2>/dev/null || true; head -1 "$WORK/out"; }

echo "== forged Leaving frames against a ring without a secret"
p=(); for i in 0 1 2; do p+=("$(free_port)"); done
bg "$APPNET" chord node --listen "127.0.0.1:${p[0]}" "${FAST[@]}" --max-connections-per-ip 200
pid0=$LAST_PID
wait_tcp 127.0.0.1 "${p[0]}"
for i in 1 2; do
  bg "$APPNET" chord node --listen "127.0.0.1:${p[$i]}" --join "127.0.0.1:${p[0]}" "${FAST[@]}"
  wait_tcp 127.0.0.1 "${p[$i]}"
done
wait_ring "127.0.0.1:${p[0]}" 3
# Node 2 named as leaving to nodes 0 and 1, 20 rounds in 2 s: no view loses it.
check "a forged Leaving removes no live node from its neighbours' views" \
  "views that lost the live node: 0" \
  "$("${FORGE[@]}" leaving "127.0.0.1:${p[2]}" 20 "127.0.0.1:${p[0]}" "127.0.0.1:${p[1]}")"
"$APPNET" chord ring --node "127.0.0.1:${p[2]}" >"$WORK/ring2"
id2=$(sed -n '/^node /{s/^node \([0-9a-f]*\) at.*/\1/p;q}' "$WORK/ring2")
check "a lookup of its id still routes to it" "127.0.0.1:${p[2]}" \
  "$("$APPNET" chord lookup --id "$id2" --node "127.0.0.1:${p[0]}" | sed -n '1s/.* at \([0-9.:]*\).*/\1/p')"
check "the ring walk still finds 3 nodes" 3 \
  "$("$APPNET" chord ring --node "127.0.0.1:${p[1]}" | awk 'NR == 1 {print $1}')"

echo "== 100 connections announcing 4 MiB frames"
before=$(rss_kb "$pid0")
bg "${FORGE[@]}" hold "127.0.0.1:${p[0]}" 100 4
holder=$LAST_PID
sleep 2
after=$(rss_kb "$pid0")
grown=$(((after - before) / 1024))
echo "  RSS ${before} kB -> ${after} kB"
check "RSS grows by less than 32 MiB" yes "$([ "$grown" -lt 32 ] && echo yes || echo "no ($grown MiB)")"
"$APPNET" chord put hostile survived --node "127.0.0.1:${p[1]}" >/dev/null
check "the ring serves while they hang" survived \
  "$(first_line "$APPNET" chord get hostile --node "127.0.0.1:${p[0]}")"
wait "$holder" 2>/dev/null || true

echo "== a ring with a secret"
head -c 32 /dev/urandom | base64 >"$WORK/secret"
head -c 32 /dev/urandom | base64 >"$WORK/other"
s=(); for i in 0 1 2; do s+=("$(free_port)"); done
SECRET=(--secret "$WORK/secret")
bg "$APPNET" chord node --listen "127.0.0.1:${s[0]}" "${FAST[@]}" "${SECRET[@]}"
wait_tcp 127.0.0.1 "${s[0]}"
for i in 1 2; do
  bg "$APPNET" chord node --listen "127.0.0.1:${s[$i]}" --join "127.0.0.1:${s[0]}" "${FAST[@]}" "${SECRET[@]}"
  wait_tcp 127.0.0.1 "${s[$i]}"
done
wait_ring "127.0.0.1:${s[0]}" 3 "${SECRET[@]}"
check "an unsigned frame is refused (error 6)" "error 6" "$("${FORGE[@]}" unsigned "127.0.0.1:${s[1]}")"
check "a signed frame is answered once; replayed, it is refused" "pong error 6" \
  "$("${FORGE[@]}" signed-then-replayed "127.0.0.1:${s[1]}" "$WORK/secret")"
check "a frame signed with another secret is refused" "type 0xff error 6" \
  "$("${FORGE[@]}" signed-then-replayed "127.0.0.1:${s[1]}" "$WORK/other")"
check "a client without the secret is refused" 1 \
  "$("$APPNET" chord get alice --node "127.0.0.1:${s[0]}" >/dev/null 2>&1; echo $?)"
"$APPNET" chord put alice 'lives at 12 Elm St' --node "127.0.0.1:${s[1]}" "${SECRET[@]}" >/dev/null
check "the ring works for clients with the secret" "lives at 12 Elm St" \
  "$(first_line "$APPNET" chord get alice --node "127.0.0.1:${s[2]}" "${SECRET[@]}")"
check "after the refused frames the ring still has 3 nodes" 3 \
  "$("$APPNET" chord ring --node "127.0.0.1:${s[0]}" "${SECRET[@]}" | awk 'NR == 1 {print $1}')"
echo "chord (hostile): $CHECKS checks passed"
