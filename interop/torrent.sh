#!/usr/bin/env bash
# BitTorrent interop: appnet's tracker, seeder, client and DHT node trading with aria2c, python
# libtorrent and opentracker on loopback (DHT, LPD, PEX, UPnP off except where a step tests
# one). Every download must end with the same SHA-256 as the original data.
source "$(dirname "$0")/lib.sh"
# start_dht_node PORT LOG STATUS_SECS: a standalone appnet DHT node on 127.0.0.1:PORT with no
# bootstrap of its own (the clients of sections 8 and 9 join through it); returns once it is up.
start_dht_node() {
  local i
  bg "$APPNET" torrent dht --listen "127.0.0.1:$1" --bootstrap none --status-secs "$3" >"$2" 2>&1
  for ((i = 0; i < 50; i++)); do grep -q "^appnet torrent dht: node" "$2" && break; sleep 0.1; done
}

cd "$WORK"

ARIA=(aria2c --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false
  --summary-interval=0 --console-log-level=warn --file-allocation=none --bt-stop-timeout=60)
sums() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }

echo "torrent: appnet tracker (HTTP + UDP)"
TP=$(free_port)
bg "$APPNET" torrent tracker --listen "127.0.0.1:$TP" --interval 5 --min-interval 1 >tracker.log 2>&1
wait_tcp 127.0.0.1 "$TP"

# --- 1. aria2c downloads from an appnet seeder via appnet's tracker (torrent made by appnet).
mkdir -p src1/album/cd2
head -c 5000000 /dev/urandom >src1/album/track1.bin
head -c 777777 /dev/urandom >src1/album/cd2/track2.bin
"$APPNET" torrent create src1/album -o album.torrent --tracker "http://127.0.0.1:$TP/announce" --piece-size 64KiB >/dev/null
SP=$(free_port)
bg "$APPNET" torrent seed --no-dht album.torrent --data src1/album --listen "127.0.0.1:$SP" >seed1.log 2>&1
wait_tcp 127.0.0.1 "$SP"
timeout 90 "${ARIA[@]}" --dir=dl1 --seed-time=0 album.torrent >aria1.log 2>&1 || { cat aria1.log; exit 1; }
check "aria2c got appnet's multi-file torrent, byte for byte" "$(sums src1)" "$(sums dl1)"
HASH=$("$APPNET" torrent info album.torrent | awk '/^info hash/ {print $3}')
STATS=$(python3 -c "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:$TP/stats').read().decode())")
check "tracker status page lists the torrent" "1" "$(grep -c "$HASH" <<<"$STATS")"

# --- 2. appnet downloads from an aria2c seeder; torrent by mktorrent. Its first tier is the UDP
# tracker (appnet announces there; aria2c only speaks UDP trackers with DHT on, so it falls
# back to the HTTP tier) — both land in the same swarm.
mkdir -p src2/docs/deep/er
head -c 3000000 /dev/urandom >src2/docs/a.bin
head -c 1234567 /dev/urandom >src2/docs/deep/er/b.bin
printf 'hello\n' >src2/docs/c.txt
mktorrent -a "udp://127.0.0.1:$TP/announce" -a "http://127.0.0.1:$TP/announce" -l 18 -o docs.torrent src2/docs >/dev/null
AP=$(free_port)
bg "${ARIA[@]}" --dir=src2 --check-integrity=true --seed-ratio=0.0 --seed-time=120 --listen-port="$AP" docs.torrent >aria2.log 2>&1
wait_tcp 127.0.0.1 "$AP" 30
timeout 90 "$APPNET" torrent get --no-dht --preallocate docs.torrent -o dl2 --quiet >get2.log 2>&1 || { cat get2.log; exit 1; }
check "appnet got the mktorrent torrent from aria2c (files preallocated)" "$(sums src2)" "$(sums dl2)"

# --- 3. A mixed swarm: appnet seeder, python libtorrent and appnet leechers; then opentracker.
if python3 -c 'import libtorrent' 2>/dev/null; then
  mkdir -p src3
  head -c 6000000 /dev/urandom >src3/mixed.bin
  # UDP tier first: libtorrent announces to appnet's BEP 15 tracker.
  "$APPNET" torrent create src3/mixed.bin -o mixed.torrent --tracker "udp://127.0.0.1:$TP/announce" \
    --tracker "http://127.0.0.1:$TP/announce" --piece-size 32KiB >/dev/null
  SP3=$(free_port)
  bg "$APPNET" torrent seed --no-dht mixed.torrent --data src3 --listen "127.0.0.1:$SP3" --upload-rate 3MiB >seed3.log 2>&1
  wait_tcp 127.0.0.1 "$SP3"
  LP=$(free_port)
  # One python libtorrent peer for every libtorrent step: SOURCE is a .torrent file or a magnet
  # link. It waits until it has everything (printing "seeding HASH"), then stays --stay seconds;
  # with --expect-pex PORT it instead exits once connected to that port learned over PEX.
  cat >lt.py <<'PY'
import argparse, sys, time, libtorrent as lt
a = argparse.ArgumentParser()
a.add_argument("source"); a.add_argument("save"); a.add_argument("port", type=int)
a.add_argument("limit", type=float)
a.add_argument("--connect", type=int, default=0)
a.add_argument("--expect-pex", type=int, default=0)
a.add_argument("--stay", type=float, default=0)
a.add_argument("--upload-rate", type=int, default=0)
o = a.parse_args()
s = lt.session({"listen_interfaces": f"127.0.0.1:{o.port}", "enable_dht": False, "enable_lsd": False,
                "enable_upnp": False, "enable_natpmp": False, "allow_multiple_connections_per_ip": True,
                "alert_mask": 0, "upload_rate_limit": o.upload_rate})
p = lt.parse_magnet_uri(o.source) if o.source.startswith("magnet:") else lt.add_torrent_params()
if not o.source.startswith("magnet:"):
    p.ti = lt.torrent_info(o.source)
p.save_path = o.save
h = s.add_torrent(p)
if o.connect:
    h.connect_peer(("127.0.0.1", o.connect))
end = time.time() + o.limit
while True:
    if o.expect_pex:
        if any(pi.ip[1] == o.expect_pex and pi.source & lt.peer_info.pex for pi in h.get_peer_info()):
            print("pex")
            sys.exit(0)
    elif h.status().is_seeding:
        break
    if time.time() > end:
        st = h.status()
        sys.exit(f"libtorrent: timed out at {st.progress:.0%}, metadata {st.has_metadata}, peers "
                 f"{[(pi.ip, pi.source) for pi in h.get_peer_info()]}")
    time.sleep(0.1)
print("seeding", h.torrent_file().info_hash(), flush=True)
time.sleep(o.stay)
PY
  bg python3 lt.py mixed.torrent lt3 "$LP" 90 --stay 3 >lt3.log 2>&1
  LT=$LAST_PID
  timeout 90 "$APPNET" torrent get --no-dht mixed.torrent -o dl3 --quiet --seed-time 5 >get3.log 2>&1 || { cat get3.log; exit 1; }
  wait "$LT" || { cat lt3.log; echo "libtorrent peer failed" >&2; exit 1; }
  check "appnet leecher in the mixed swarm" "$(sums src3)" "$(sums dl3)"
  check "libtorrent leecher in the mixed swarm" "$(sums src3)" "$(sums lt3)"
  UDP=$(python3 -c "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:$TP/metrics').read().decode())" |
    awk '/^tracker_udp_packets_total/ {print ($2 > 0) ? "yes" : "no"}')
  check "the swarm announced over UDP (BEP 15)" "yes" "$UDP"
else
  echo "  skip: python libtorrent not installed (pip install libtorrent)"
fi

if command -v opentracker >/dev/null; then
  OP=$(free_port)
  mkdir -p src4
  cp -r src1/album src4/
  # opentracker drops to user nobody before reading its allow-list: make it readable.
  chmod 755 "$WORK"
  echo "$HASH" >whitelist
  chmod 644 whitelist
  bg opentracker -i 127.0.0.1 -p "$OP" -P "$OP" -w "$WORK/whitelist" >opentracker.log 2>&1
  wait_tcp 127.0.0.1 "$OP"
  "$APPNET" torrent create src4/album -o ot.torrent --tracker "http://127.0.0.1:$OP/announce" --piece-size 64KiB >/dev/null
  OTHASH=$("$APPNET" torrent info ot.torrent | awk '/^info hash/ {print $3}')
  # opentracker's whitelist is the new torrent's hash (different announce URL, same info dict).
  check "same info dict, same info hash" "$HASH" "$OTHASH"
  SP4=$(free_port)
  bg "$APPNET" torrent seed --no-dht ot.torrent --data src4 --listen "127.0.0.1:$SP4" >seed4.log 2>&1
  wait_tcp 127.0.0.1 "$SP4"
  timeout 90 "$APPNET" torrent get --no-dht ot.torrent -o dl4 --quiet >get4.log 2>&1 || { cat get4.log; exit 1; }
  check "appnet peers swarm through opentracker (allow-listed hash)" "$(sums src4)" "$(sums dl4)"
else
  echo "  skip: opentracker not installed"
fi

# --- 5. Magnet links (BEP 9 metadata exchange over BEP 10). (a) appnet fetches the metadata
# from an aria2c seeder, then downloads: once through appnet's tracker (hex btih, tr=), once
# with no tracker at all (base32 btih, x.pe= the seeder's address).
mkdir -p src5/pics
head -c 2500000 /dev/urandom >src5/pics/p1.bin
head -c 600000 /dev/urandom >src5/pics/p2.bin
mktorrent -a "http://127.0.0.1:$TP/announce" -l 16 -o pics.torrent src5/pics >/dev/null
start_aria5() {
  AP5=$(free_port)
  bg aria2c --seed-ratio=0 -V --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false \
    --summary-interval=0 --console-log-level=warn --file-allocation=none --dir=src5 --seed-time=120 \
    --listen-port="$AP5" pics.torrent >aria5.log 2>&1
  wait_tcp 127.0.0.1 "$AP5" 30
}
# aria2c has (rarely) not come up on its port in CI; show why and give it one more start.
start_aria5 || {
  echo "  aria2c did not listen on $AP5; its log:"; cat aria5.log
  kill "$LAST_PID" 2>/dev/null || true
  start_aria5
}
PICS=$("$APPNET" torrent info pics.torrent | awk '/^info hash/ {print $3}')
timeout 90 "$APPNET" torrent get --no-dht "magnet:?xt=urn:btih:$PICS&dn=pics&tr=http%3A%2F%2F127.0.0.1%3A$TP%2Fannounce" \
  -o dl5a --quiet --save-torrent dl5a.torrent >get5a.log 2>&1 || { cat get5a.log; exit 1; }
check "appnet got a magnet link's metadata and data from aria2c (tracker, hex btih)" "$(sums src5)" "$(sums dl5a)"
check "the fetched metadata is the torrent's info dictionary" "$PICS" \
  "$("$APPNET" torrent info dl5a.torrent | awk '/^info hash/ {print $3}')"
B32=$(python3 -c "import base64,sys;print(base64.b32encode(bytes.fromhex(sys.argv[1])).decode())" "$PICS")
timeout 90 "$APPNET" torrent get --no-dht "magnet:?xt=urn:btih:$B32&x.pe=127.0.0.1:$AP5" -o dl5b --quiet >get5b.log 2>&1 ||
  { cat get5b.log; exit 1; }
check "appnet got a magnet link from aria2c with no tracker (base32 btih, x.pe)" "$(sums src5)" "$(sums dl5b)"
timeout 90 "$APPNET" torrent get --no-dht "magnet:?xt=urn:btih:$PICS&tr=udp%3A%2F%2F127.0.0.1%3A$TP%2Fannounce" -o dl5c --quiet \
  >get5c.log 2>&1 || { cat get5c.log; exit 1; }
check "appnet got a magnet link from aria2c through the UDP tracker (BEP 15)" "$(sums src5)" "$(sums dl5c)"

# (b) aria2c and python libtorrent download appnet's seeded multi-file torrent (section 1) from
# a magnet link: the appnet seeder answers their ut_metadata requests.
MAG=$("$APPNET" torrent info album.torrent | awk '/^magnet/ {print $2}')
mkdir -p dl6
timeout 90 "${ARIA[@]}" --dir=dl6 --seed-time=0 --bt-metadata-only=false --bt-save-metadata=true "$MAG" >aria6.log 2>&1 ||
  { cat aria6.log; exit 1; }
check "aria2c got appnet's torrent from a magnet link" "$(sums src1)" "$(sums dl6 | grep -v '\.torrent$')"
check "aria2c saved the metadata appnet served" "$HASH" \
  "$("$APPNET" torrent info "dl6/$HASH.torrent" | awk '/^info hash/ {print $3}')"
if python3 -c 'import libtorrent' 2>/dev/null; then
  LP7=$(free_port)
  timeout 90 python3 lt.py "$MAG" lt7 "$LP7" 80 >lt7.log 2>&1 || { cat lt7.log; exit 1; }
  check "python libtorrent got appnet's torrent from a magnet link" "$(sums src1)" "$(sums lt7)"
  check "libtorrent's metadata has the magnet's info hash" "$HASH" "$(awk '/^seeding/ {print $2}' lt7.log)"

  # --- 6. Peer exchange (BEP 11) with libtorrent, no tracker. (a) An appnet seeder tells a
  # libtorrent leecher about an appnet leecher (which has PEX off, so only libtorrent can have
  # dialled it): libtorrent must list that peer with the PEX source bit. (b) A libtorrent seeder
  # tells an appnet leecher about another appnet leecher, which it then dials.
  mkdir -p src8 && head -c 3000000 /dev/urandom >src8/x.bin
  "$APPNET" torrent create src8/x.bin -o pex.torrent --piece-size 32KiB >/dev/null
  printf '[torrent]\npex_interval_secs = 3\n' >pex-fast.toml
  printf '[torrent]\npex = false\n' >pex-off.toml
  SP8=$(free_port) LP8=$(free_port) BP8=$(free_port)
  bg "$APPNET" --config pex-fast.toml torrent seed --no-dht pex.torrent --data src8 --listen "127.0.0.1:$SP8" --upload-rate 200KiB >seed8.log 2>&1
  wait_tcp 127.0.0.1 "$SP8"
  bg python3 lt.py pex.torrent lt8 "$LP8" 40 --connect "$SP8" --expect-pex "$BP8" --upload-rate 400000 >lt8.log 2>&1
  LT8=$LAST_PID
  sleep 1 # libtorrent first, so the appnet leecher is news in the seeder's next PEX message
  bg "$APPNET" --config pex-off.toml torrent get --no-dht pex.torrent -o dl8 --peer "127.0.0.1:$SP8" --listen "127.0.0.1:$BP8" --quiet >get8.log 2>&1
  wait "$LT8" || { cat lt8.log; exit 1; }
  check "libtorrent dialled a peer it learned from the appnet seeder's PEX" "pex" "$(tail -1 lt8.log)"
  LS9=$(free_port) CP9=$(free_port) DP9=$(free_port)
  bg python3 lt.py pex.torrent src8 "$LS9" 30 --stay 60 --upload-rate 400000 >lt9.log 2>&1
  for ((i = 0; i < 100; i++)); do grep -q seeding lt9.log && break; sleep 0.1; done
  bg env RUST_LOG=appnet_torrent=debug "$APPNET" torrent get --no-dht pex.torrent -o dl9c --peer "127.0.0.1:$LS9" \
    --listen "127.0.0.1:$CP9" --quiet --seed-time 30 >get9c.log 2>&1
  C9=$LAST_PID
  bg "$APPNET" --config pex-off.toml torrent get --no-dht pex.torrent -o dl9d --peer "127.0.0.1:$LS9" \
    --listen "127.0.0.1:$DP9" --quiet --seed-time 30 >get9d.log 2>&1
  D9=$LAST_PID
  for ((i = 0; i < 150; i++)); do grep -q "peer 127.0.0.1:$DP9 connected" get9c.log && break; sleep 0.2; done
  check "appnet dialled a peer it learned from libtorrent's PEX" "1" "$(grep -c "peer 127.0.0.1:$DP9 connected" get9c.log)"
  kill "$C9" "$D9" 2>/dev/null || true

  # --- 7. appnet fetches a magnet link's metadata from libtorrent (its ut_metadata, not aria2c's).
  PEXH=$("$APPNET" torrent info pex.torrent | awk '/^info hash/ {print $3}')
  timeout 60 "$APPNET" torrent get --no-dht "magnet:?xt=urn:btih:$PEXH&x.pe=127.0.0.1:$LS9" -o dl10 --quiet >get10.log 2>&1 ||
    { cat get10.log; exit 1; }
  check "appnet got a magnet link's metadata and data from libtorrent" "$(sums src8)" "$(sums dl10)"

  # --- 8. The mainline DHT (BEP 5), magnet links with no tr= and no x.pe=. A standalone appnet
  # DHT node is the only bootstrap node. (a) libtorrent seeds and announces into the DHT; appnet
  # finds it by get_peers and downloads. (b) appnet seeds and announces; libtorrent finds it.
  cat >ltdht.py <<'PY'
import sys, time, libtorrent as lt
source, save, port, dht, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
s = lt.session({"listen_interfaces": f"127.0.0.1:{port}", "enable_dht": True, "enable_lsd": False,
                "enable_upnp": False, "enable_natpmp": False, "alert_mask": 0,
                "allow_multiple_connections_per_ip": True,
                "dht_bootstrap_nodes": f"127.0.0.1:{dht}", "dht_restrict_routing_ips": False,
                "dht_restrict_search_ips": False, "dht_enforce_node_id": False,
                "dht_ignore_dark_internet": False, "dht_prefer_verified_node_ids": False,
                "dht_announce_interval": 5})
p = lt.parse_magnet_uri(source) if source.startswith("magnet:") else lt.add_torrent_params()
if not source.startswith("magnet:"):
    p.ti = lt.torrent_info(source)
p.save_path = save
h = s.add_torrent(p)
end = time.time() + limit
while not h.status().is_seeding:
    if time.time() > end:
        sys.exit(f"libtorrent: timed out at {h.status().progress:.0%}, metadata {h.status().has_metadata}")
    time.sleep(0.1)
print("seeding", h.torrent_file().info_hash(), flush=True)
if not source.startswith("magnet:"):
    time.sleep(limit)
PY
  mkdir -p src11 src12 && head -c 2500000 /dev/urandom >src11/d.bin && head -c 1700000 /dev/urandom >src12/e.bin
  "$APPNET" torrent create src11/d.bin -o dht11.torrent --piece-size 64KiB >/dev/null
  "$APPNET" torrent create src12/e.bin -o dht12.torrent --piece-size 64KiB >/dev/null
  DN=$(free_port)
  start_dht_node "$DN" dht.log 1
  LP11=$(free_port)
  bg python3 ltdht.py dht11.torrent src11 "$LP11" "$DN" 90 >lt11.log 2>&1
  H11=$("$APPNET" torrent info dht11.torrent | awk '/^info hash/ {print $3}')
  timeout 60 "$APPNET" torrent get "magnet:?xt=urn:btih:$H11" --dht-bootstrap "127.0.0.1:$DN" -o dl11 --quiet \
    >get11.log 2>&1 || { cat get11.log lt11.log; tail -3 dht.log; exit 1; }
  check "appnet found libtorrent through the DHT (magnet, no tracker, no x.pe)" "$(sums src11)" "$(sums dl11)"
  SP12=$(free_port) LP12=$(free_port)
  bg "$APPNET" torrent seed dht12.torrent --data src12 --listen "127.0.0.1:$SP12" --dht-bootstrap "127.0.0.1:$DN" >seed12.log 2>&1
  H12=$("$APPNET" torrent info dht12.torrent | awk '/^info hash/ {print $3}')
  timeout 60 python3 ltdht.py "magnet:?xt=urn:btih:$H12" lt12 "$LP12" "$DN" 55 >lt12.log 2>&1 ||
    { cat lt12.log seed12.log; tail -3 dht.log; exit 1; }
  check "libtorrent found appnet's seeder through the DHT" "$(sums src12)" "$(sums lt12)"
  for ((i = 0; i < 30; i++)); do grep -q ", 2 torrents stored" dht.log && break; sleep 0.1; done
  check "the appnet DHT node stores both announces" "yes" "$(grep -q ", 2 torrents stored" dht.log && echo yes)"
fi

# --- 9. The DHT with aria2c as the other client: aria2c seeds and announces into an appnet DHT
# node, appnet downloads by a bare magnet link; appnet seeds and announces, aria2c downloads by
# a bare magnet link.
ADHT=(--enable-dht=true --dht-file-path="$WORK/aria-dht.dat" --enable-dht6=false --bt-enable-lpd=false
  --enable-peer-exchange=false --summary-interval=0 --console-log-level=warn --file-allocation=none)
mkdir -p src13 src14 && head -c 2200000 /dev/urandom >src13/f.bin && head -c 1300000 /dev/urandom >src14/g.bin
"$APPNET" torrent create src13/f.bin -o dht13.torrent --piece-size 64KiB >/dev/null
"$APPNET" torrent create src14/g.bin -o dht14.torrent --piece-size 64KiB >/dev/null
DN9=$(free_port)
start_dht_node "$DN9" dht9.log 0
bg aria2c "${ADHT[@]}" --dht-entry-point="127.0.0.1:$DN9" --dht-listen-port="$(free_port)" --listen-port="$(free_port)" \
  -V --seed-ratio=0.0 --bt-stop-timeout=90 -d src13 dht13.torrent >aria13.log 2>&1
H13=$("$APPNET" torrent info dht13.torrent | awk '/^info hash/ {print $3}')
timeout 60 "$APPNET" torrent get "magnet:?xt=urn:btih:$H13" --dht-bootstrap "127.0.0.1:$DN9" -o dl13 --quiet \
  >get13.log 2>&1 || { cat get13.log aria13.log; exit 1; }
check "appnet found aria2c through the DHT (magnet, no tracker, no x.pe)" "$(sums src13)" "$(sums dl13)"
SP14=$(free_port)
bg "$APPNET" torrent seed dht14.torrent --data src14 --listen "127.0.0.1:$SP14" --dht-bootstrap "127.0.0.1:$DN9" >seed14.log 2>&1
H14=$("$APPNET" torrent info dht14.torrent | awk '/^info hash/ {print $3}')
timeout 60 aria2c "${ADHT[@]}" --dht-file-path="$WORK/aria-dht14.dat" --dht-entry-point="127.0.0.1:$DN9" \
  --dht-listen-port="$(free_port)" --listen-port="$(free_port)" --seed-time=0 -d dl14 \
  "magnet:?xt=urn:btih:$H14" >aria14.log 2>&1 || { cat aria14.log seed14.log; exit 1; }
check "aria2c found appnet's seeder through the DHT" "$(sums src14)" "$(sums dl14)"

echo "torrent: $CHECKS checks passed"
