#!/usr/bin/env bash
# BitTorrent throughput: one seeder, one leecher, SIZE (default 1 GiB) on loopback, no rate
# limit. Runs appnet→appnet, libtorrent→libtorrent (python libtorrent) and aria2c→aria2c one
# after the other with the same file and the same tracker (appnet's), and prints download time,
# CPU seconds (seeder + leecher, user + system) and appnet/anchor ratios.
# Usage: bench/torrent.sh [SIZE_MIB]   (APPNET defaults to target/release/appnet)
# A report, not a test: CI does not run it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
APPNET=${APPNET:-$ROOT/target/release/appnet}
SIZE_MIB=${1:-1024}
[ -x "$APPNET" ] || { echo "build first: cargo build --release -p appnet" >&2; exit 1; }
source "$ROOT/bench/lib.sh"
cd "$WORK"

# cpu PID: user+system seconds a live process has used so far.
cpu() { awk -v t="$(getconf CLK_TCK)" '{print ($14+$15)/t}' "/proc/$1/stat"; }
wait_tcp() { for _ in $(seq 1 400); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
# wait_seeders HASH: until appnet's tracker lists one seeder for HASH.
wait_seeders() {
  python3 - "$TP" "$1" <<'PY'
import sys, time, urllib.request, urllib.parse
port, h = sys.argv[1], bytes.fromhex(sys.argv[2])
url = f"http://127.0.0.1:{port}/scrape?info_hash=" + urllib.parse.quote(h)
for _ in range(600):
    if b"8:completei1e" in urllib.request.urlopen(url).read():
        sys.exit(0)
    time.sleep(0.05)
sys.exit("seeder never announced")
PY
}

echo "bench/torrent: ${SIZE_MIB} MiB, one seeder → one leecher on loopback"
mkdir -p src
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >src/big.bin
WANT=$(sha256sum <src/big.bin | cut -d' ' -f1)
"$APPNET" torrent create src/big.bin -o big.torrent >/dev/null
HASH=$("$APPNET" torrent info big.torrent | awk '/^info hash/ {print $3}')
sync

declare -A TIME CPU
# run NAME SEED_CMD... -- LEECH_CMD...: starts the seeder, waits for its announce, times the
# leecher, and charges both processes' CPU.
run() {
  local name=$1; shift
  local seed=() leech=()
  while [ "$1" != "--" ]; do seed+=("$1"); shift; done
  shift
  leech=("$@")
  rm -rf dl && mkdir dl
  # A fresh tracker per run, so a killed seeder from an earlier run is not counted.
  TP=$(free_port)
  "$APPNET" torrent tracker --listen "127.0.0.1:$TP" >"tracker-$name.log" 2>&1 &
  local tp=$!
  PIDS+=("$tp")
  wait_tcp "$TP"
  "$APPNET" torrent create src/big.bin -o big.torrent --tracker "http://127.0.0.1:$TP/announce" >/dev/null
  "${seed[@]}" >"seed-$name.log" 2>&1 &
  local sp=$!
  PIDS+=("$sp")
  wait_seeders "$HASH"
  sleep 0.5
  local c0 t0 t1 c1 lc
  c0=$(cpu "$sp")
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "leech-$name.cpu" "${leech[@]}" >"leech-$name.log" 2>&1
  t1=$(date +%s.%N)
  c1=$(cpu "$sp")
  kill "$sp" "$tp" 2>/dev/null || true
  wait "$sp" "$tp" 2>/dev/null || true
  lc=$(awk '{print $1 + $2}' "leech-$name.cpu")
  local got
  got=$(sha256sum <"dl/big.bin" | cut -d' ' -f1)
  [ "$got" = "$WANT" ] || { echo "$name: downloaded data differs!" >&2; exit 1; }
  TIME[$name]=$(echo "$t1 - $t0" | bc -l)
  CPU[$name]=$(echo "$c1 - $c0 + $lc" | bc -l)
  printf '  %-12s %7.2f s  %6.0f MiB/s  CPU %6.2f s (seeder %.2f + leecher %.2f)\n' "$name" "${TIME[$name]}" \
    "$(echo "$SIZE_MIB / ${TIME[$name]}" | bc -l)" "${CPU[$name]}" "$(echo "$c1 - $c0" | bc -l)" "$lc"
  rm -rf dl
  sync
}

SP=$(free_port)
run appnet "$APPNET" torrent seed --no-dht big.torrent --data src --listen "127.0.0.1:$SP" \
  -- "$APPNET" torrent get --no-dht big.torrent -o dl --quiet --no-fsync

if python3 -c 'import libtorrent' 2>/dev/null; then
  cat >lt.py <<'PY'
import sys, time, libtorrent as lt
mode, torrent, save, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = lt.session({"listen_interfaces": f"127.0.0.1:{port}", "enable_dht": False, "enable_lsd": False,
                "enable_upnp": False, "enable_natpmp": False, "allow_multiple_connections_per_ip": True,
                # TCP only, like appnet and aria2c (uTP's delay-based congestion control caps
                # loopback transfers at about 12 MiB/s).
                "enable_outgoing_utp": False, "enable_incoming_utp": False, "alert_mask": 0})
p = lt.add_torrent_params()
p.ti, p.save_path = lt.torrent_info(torrent), save
if mode == "seed":
    p.flags |= lt.torrent_flags.seed_mode
h = s.add_torrent(p)
if mode == "seed":
    while True:
        time.sleep(1)
while not h.status().is_seeding:
    time.sleep(0.02)
PY
  LP=$(free_port)
  run libtorrent python3 lt.py seed big.torrent src "$LP" -- python3 lt.py get big.torrent dl "$(free_port)"
fi

if command -v aria2c >/dev/null; then
  ARIA=(aria2c --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false
    --summary-interval=0 --console-log-level=warn --file-allocation=none)
  AP=$(free_port)
  run aria2c "${ARIA[@]}" --dir=src --bt-seed-unverified=true --seed-ratio=0.0 --listen-port="$AP" big.torrent \
    -- "${ARIA[@]}" --dir=dl --seed-time=0 --listen-port="$(free_port)" big.torrent
fi

echo "appnet/anchor (time ratio < 1 means appnet is faster; CPU ratio < 1 means appnet uses less):"
for anchor in libtorrent aria2c; do
  [ -n "${TIME[$anchor]:-}" ] || continue
  printf '  vs %-10s time %.2f  CPU %.2f\n' "$anchor" "$(echo "${TIME[appnet]} / ${TIME[$anchor]}" | bc -l)" \
    "$(echo "${CPU[appnet]} / ${CPU[$anchor]}" | bc -l)"
done
