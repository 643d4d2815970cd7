#!/usr/bin/env bash
# appnet torrent under attack (issue 22): `get` clobbering a file or writing through a planted
# symlink, a download too big to fit leaving debris, handshake-only peers filling a seeder's
# slots, a random-info-hash flood filling the tracker's table, and forged UDP connection ids.
source "$(dirname "$0")/../lib.sh"
cd "$WORK"

# --- 1. A zero-length torrent named .bashrc must not truncate an existing .bashrc.
mkdir -p src out outside
: >src/.bashrc
"$APPNET" torrent create src/.bashrc -o bashrc.torrent >/dev/null
printf 'export PATH=/precious\n' >out/.bashrc
rc=0; "$APPNET" torrent get --no-dht --quiet bashrc.torrent -o out >get1.log 2>&1 || rc=$?
check "get of a .bashrc torrent over an existing .bashrc fails" "1" "$([ "$rc" -ne 0 ] && echo 1 || echo 0)"
check "the error names the file and --overwrite" "1" "$(grep -c 'bashrc.*--overwrite' get1.log)"
check "the existing .bashrc is untouched" "export PATH=/precious" "$(cat out/.bashrc)"

# --- 2. A planted symlink out/linkout -> ../outside/linkout is never followed; the same
# torrent still downloads from a real seeder into a clean directory.
head -c 300000 /dev/urandom >src/linkout
"$APPNET" torrent create src/linkout -o linkout.torrent --piece-size 16KiB >/dev/null
ln -s ../outside/linkout out/linkout
SP=$(free_port)
bg "$APPNET" torrent seed --no-dht linkout.torrent --data src/linkout --listen "127.0.0.1:$SP" --max-peers 5 >seed.log 2>&1
wait_tcp 127.0.0.1 "$SP"
rc=0; timeout 30 "$APPNET" torrent get --no-dht --quiet linkout.torrent -o out --peer "127.0.0.1:$SP" >get2.log 2>&1 || rc=$?
check "get through a planted symlink fails" "1" "$([ "$rc" -ne 0 ] && echo 1 || echo 0)"
check "the error says why" "1" "$(grep -c 'symbolic link' get2.log)"
check "nothing was written outside -o" "absent" "$([ -e outside/linkout ] && echo present || echo absent)"
check "the symlink is left as it was" "../outside/linkout" "$(readlink out/linkout)"

# --- 3. A 20 TiB download that cannot fit (EFBIG) leaves nothing behind, not even its -o.
python3 - <<'PY'
import hashlib
piece = 1 << 30
length = 20 << 40
n = length // piece
info = (b"d6:lengthi%de4:name8:huge.iso12:piece lengthi%de6:pieces%d:" % (length, piece, n * 20)
        + b"\0" * (n * 20) + b"e")
open("huge.torrent", "wb").write(b"d4:info" + info + b"e")
PY
rc=0; timeout 30 "$APPNET" torrent get --no-dht --quiet --preallocate huge.torrent -o hugeout >get3.log 2>&1 || rc=$?
check "a 20 TiB download fails to start" "1" "$([ "$rc" -ne 0 ] && echo 1 || echo 0)"
check "and leaves nothing behind" "absent" "$([ -e hugeout ] && echo present || echo absent)"

# --- 4. 50 connections that only handshake do not keep a real leecher out of --max-peers 5.
HASH=$("$APPNET" torrent info linkout.torrent | awk '/^info hash/ {print $3}')
python3 - "$SP" "$HASH" >flood.log 2>&1 <<'PY' &
import socket, sys, time
port, info_hash = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
held = []
for i in range(50):
    # Two thirds from 127.0.0.1 (the leecher's own address), the rest from other addresses.
    src = "127.0.0.1" if i % 3 else "127.0.5.%d" % (i % 7 + 1)
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"\x13BitTorrent protocol" + bytes(8) + info_hash + b"-FLOOD-%012d" % i)
    except OSError:
        continue
    held.append(s)
print("flood: %d connections open" % len(held), flush=True)
time.sleep(60)
PY
FLOOD_PID=$!; PIDS+=("$FLOOD_PID")
for ((i = 0; i < 100; i++)); do grep -q "connections open" flood.log && break; sleep 0.1; done
check "the flood is in place" "1" "$(grep -c 'connections open' flood.log)"
rc=0; timeout 45 "$APPNET" torrent get --no-dht --quiet linkout.torrent -o dl4 --peer "127.0.0.1:$SP" >get4.log 2>&1 || rc=$?
check "a real leecher completes despite 50 handshake-only peers" "0" "$rc"
check "its data is the seeder's" "$(sha256sum <src/linkout | cut -d' ' -f1)" "$(sha256sum <dl4/linkout | cut -d' ' -f1)"
kill "$FLOOD_PID" 2>/dev/null || true

# --- 5. The tracker: random info hashes from 200 addresses do not fill the table (new torrents
# per address per minute are capped), and a forged connection id is refused as such.
TP=$(free_port)
bg "$APPNET" torrent tracker --listen "127.0.0.1:$TP" --max-torrents 10000 >tracker.log 2>&1
wait_tcp 127.0.0.1 "$TP"
python3 - "$TP" <<'PY'
import os, socket, struct, sys
port = int(sys.argv[1])

def sock(src):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.settimeout(2)
    return s

def connect(s):
    s.sendto(struct.pack(">QII", 0x41727101980, 0, 7), ("127.0.0.1", port))
    action, tx, conn = struct.unpack(">IIQ", s.recv(64)[:16])
    assert action == 0 and tx == 7
    return conn

def announce(s, conn, info_hash, event=2, tx=9):
    pkt = struct.pack(">QII20s20sQQQIIIiH", conn, 1, tx, info_hash, os.urandom(20), 0, 100, 0,
                      event, 0, 1, -1, 6881)
    s.sendto(pkt, ("127.0.0.1", port))
    reply = s.recv(2048)
    return struct.unpack(">I", reply[:4])[0], reply[8:]

accepted = refused = 0
for a in range(200):
    s = sock("127.0.%d.%d" % (10 + a // 250, a % 250 + 1))
    conn = connect(s)
    for _ in range(60):
        action, rest = announce(s, conn, os.urandom(20))
        if action == 1:
            accepted += 1
        else:
            refused += 1
    s.close()
assert accepted == 200 * 30, (accepted, refused)
print("  ok: 200 addresses x 60 random info hashes: %d tracked (30 per address), %d refused"
      % (accepted, refused))

s = sock("127.0.0.1")
conn = connect(s)
action, _ = announce(s, conn, os.urandom(20))
assert action == 1, "a genuinely new torrent is still accepted"
print("  ok: a new torrent is still accepted after the flood")

# A forged connection id, with a bad event too: the answer is about the connection id.
action, msg = announce(s, 0xDEADBEEF, os.urandom(20), event=9, tx=11)
assert action == 3 and b"connection id" in msg, (action, msg)
print("  ok: a forged connection id gets the error action: %s" % msg.decode())
PY
CHECKS=$((CHECKS + 3))
echo "torrent hostile: $CHECKS checks passed"
