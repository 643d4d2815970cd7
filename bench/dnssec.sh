#!/usr/bin/env bash
# DNSSEC serving benchmark: appnet, NSD and Knot serve the same pre-signed zone (signed once by
# `appnet dns sign`, NSEC, ECDSA P-256 KSK+ZSK) in turn, each on its own port with the same
# number of threads, and dnsperf sends the same DO=1 queries (answers with RRSIGs, NXDOMAIN and
# NODATA with NSEC proofs) for the same time. Prints queries/s and the ratios. A report, not a
# test. (The validating-resolver half of the issue's benchmark is not here: appnet's resolver
# does not validate yet.)
#
#   bench/dnssec.sh                        release build, 10 s per run, threads = CPUs
#   DURATION=5 THREADS=2 bench/dnssec.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
THREADS=${THREADS:-$(nproc)}
CLIENTS=${CLIENTS:-8}
OUTSTANDING=${OUTSTANDING:-200}
NAMES=${NAMES:-10000}
for tool in nsd knotd dnsperf dig python3; do
  command -v "$tool" >/dev/null || { echo "bench needs $tool (see .ci/apt.d/dns.txt, dnssec.txt)" >&2; exit 2; }
done
source bench/lib.sh
release_appnet
echo "generating and signing the zone in $WORK ..."
python3 - "$WORK" "$NAMES" <<'PY'
import random, sys
work, n = sys.argv[1], int(sys.argv[2])
random.seed(1)
with open(f"{work}/sig.test.zone", "w") as f:
    f.write("$ORIGIN sig.test.\n$TTL 3600\n@ SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ NS ns1\nns1 A 127.0.0.1\n")
    for i in range(n):
        f.write(f"host{i} A 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}\n")
with open(f"{work}/sig.q", "w") as f:
    for _ in range(100000):
        r, i = random.random(), random.randrange(n)
        if r < 0.70: f.write(f"host{i}.sig.test A\n")
        elif r < 0.90: f.write(f"nohost{i}.sig.test A\n")
        else: f.write(f"host{i}.sig.test AAAA\n")
PY
# SIGNER: the appnet binary that makes the keys and signs (default: the one benchmarked).
SIGNER=${SIGNER:-$APPNET}
"$SIGNER" dns keygen sig.test --ksk --keys "$WORK/keys" >/dev/null
"$SIGNER" dns keygen sig.test --keys "$WORK/keys" >/dev/null
"$SIGNER" dns sign "$WORK/sig.test.zone" --keys "$WORK/keys" -o "$WORK/sig.test.signed" >/dev/null

# start_SERVER NAME ZONEFILE PORT: starts the server in the background, sets SERVER_PID.
start_appnet() {
  "$APPNET" dns serve --zone "$1=$2" --listen "127.0.0.1:$3" --workers "$THREADS" >"$WORK/appnet.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
}
start_nsd() {
  local d="$WORK/nsd-$3"; mkdir -p "$d"
  cat > "$d/nsd.conf" <<CONF
server:
    ip-address: 127.0.0.1@$3
    port: $3
    server-count: $THREADS
    username: ""
    chroot: ""
    zonesdir: "$d"
    database: ""
    pidfile: "$d/nsd.pid"
    xfrdfile: "$d/xfrd.state"
    zonelistfile: "$d/zone.list"
    xfrdir: "$d"
    logfile: "$d/nsd.log"
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: $1
    zonefile: "$2"
CONF
  nsd -d -c "$d/nsd.conf" >"$d/stdout.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
}
start_knot() {
  local d="$WORK/knot-$3"; mkdir -p "$d"
  cat > "$d/knot.conf" <<CONF
server:
    listen: 127.0.0.1@$3
    rundir: "$d"
    udp-workers: $THREADS
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$d"
template:
  - id: default
    storage: "$d"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: $1
    file: "$2"
CONF
  knotd -c "$d/knot.conf" >"$d/stdout.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
}

wait_ready() { # PORT ZONE SECONDS
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    # dig prints connection errors on stdout too: wait for a real SOA (five numbers at the end).
    dig @127.0.0.1 -p "$1" +short +time=1 +tries=1 "$2" SOA 2>/dev/null \
      | grep -Eq '^[^;].* [0-9]+ [0-9]+ [0-9]+ [0-9]+ [0-9]+$' && return 0
    sleep 0.1
  done
  echo "server on port $1 did not serve $2 within $3 s" >&2; return 1
}

qps_of() { # PORT QUERYFILE
  dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$DURATION" -c "$CLIENTS" -q "$OUTSTANDING" -T 1 -D 2>&1 \
    | awk '/Queries per second/ {printf "%d", $4}'
}

declare -A QPS
echo "threads per server: $THREADS; dnsperf -D: $CLIENTS clients, $OUTSTANDING outstanding, $DURATION s per run"
for server in appnet nsd knot; do
  port=$(free_port)
  "start_$server" sig.test "$WORK/sig.test.signed" "$port"
  wait_ready "$port" sig.test 60
  QPS[$server]=$(qps_of "$port" "$WORK/sig.q")
  stop_all
  printf '  %-6s DO=1 on a signed zone: %8s q/s\n' "$server" "${QPS[$server]}"
done
ratio() { python3 -c "a, b = float('$1' or 0), float('$2' or 0); print(f'{a / b:.2f}' if b else '-')"; }
echo
echo "| DO=1, signed $NAMES-name zone (70% A, 20% NXDOMAIN, 10% NODATA) | appnet q/s | NSD q/s | Knot q/s | appnet/NSD | appnet/Knot |"
echo "|---|---|---|---|---|---|"
echo "| pre-signed, NSEC | ${QPS[appnet]} | ${QPS[nsd]} | ${QPS[knot]} | $(ratio "${QPS[appnet]}" "${QPS[nsd]}") | $(ratio "${QPS[appnet]}" "${QPS[knot]}") |"
