#!/usr/bin/env bash
# DNSSEC serving benchmark: appnet, NSD and Knot serve the same pre-signed zone (signed once by
# `appnet dns sign`, NSEC, ECDSA P-256 KSK+ZSK) in turn, each on its own port with the same
# number of threads, and dnsperf sends the same DO=1 queries (answers with RRSIGs, NXDOMAIN and
# NODATA with NSEC proofs) for the same time. Prints queries/s and the ratios. A report, not a
# test.
#
# Then the validating resolvers: Knot serves a local signed hierarchy (the root and sig.example,
# both signed by `appnet dns sign`, DS in the root) on 127.0.6.1:53; appnet's resolver
# (`--dnssec --trust-anchor`) and Unbound (validator module, trust-anchor-file: the same root
# DS, aggressive-nsec off like appnet) run with the same threads on their own addresses. Cold:
# each fresh resolver gets RESOLVER_NAMES distinct names once (every one a cache miss,
# validated); cached: the same names again for DURATION s. Needs root (port 53).
#
#   bench/dnssec.sh                        release build, 10 s per run, threads = CPUs
#   DURATION=5 THREADS=2 bench/dnssec.sh
#   SKIP_RESOLVER=1 bench/dnssec.sh        the authoritative half only (SKIP_AUTH=1: the resolvers only)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
THREADS=${THREADS:-$(nproc)}
CLIENTS=${CLIENTS:-8}
OUTSTANDING=${OUTSTANDING:-200}
NAMES=${NAMES:-10000}
for tool in nsd knotd unbound dnsperf dig python3; do
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

source bench/lib-dns.sh

qps_of() { # PORT QUERYFILE
  dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$DURATION" -c "$CLIENTS" -q "$OUTSTANDING" -T 1 -D 2>&1 \
    | awk '/Queries per second/ {printf "%d", $4}'
}

ratio() { python3 -c "a, b = float('$1' or 0), float('$2' or 0); print(f'{a / b:.2f}' if b else '-')"; }
if [ "${SKIP_AUTH:-0}" != 1 ]; then
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
echo
echo "| DO=1, signed $NAMES-name zone (70% A, 20% NXDOMAIN, 10% NODATA) | appnet q/s | NSD q/s | Knot q/s | appnet/NSD | appnet/Knot |"
echo "|---|---|---|---|---|---|"
echo "| pre-signed, NSEC | ${QPS[appnet]} | ${QPS[nsd]} | ${QPS[knot]} | $(ratio "${QPS[appnet]}" "${QPS[nsd]}") | $(ratio "${QPS[appnet]}" "${QPS[knot]}") |"
fi

[ "${SKIP_RESOLVER:-0}" = 1 ] && exit 0

echo
echo "validating resolvers over a local signed hierarchy (Knot on 127.0.6.1:53) ..."
RESOLVER_NAMES=${RESOLVER_NAMES:-5000}
K="$WORK/keys"
"$SIGNER" dns keygen . --ksk --keys "$K" > "$WORK/root-ksk"
"$SIGNER" dns keygen . --keys "$K" >/dev/null
cat > "$WORK/root.zone" <<'ZONE'
$TTL 86400
. SOA ns. hostmaster. 1 7200 3600 1209600 300
. NS ns.
ns. A 127.0.6.1
sig.example. NS ns1.sig.example.
ns1.sig.example. A 127.0.6.1
ZONE
# The same names under sig.example. (test. is answered locally by both resolvers, RFC 6761).
sed -e 's/^\$ORIGIN sig.test.$/$ORIGIN sig.example./' -e 's/^ns1 A 127.0.0.1$/ns1 A 127.0.6.1/' \
  "$WORK/sig.test.zone" > "$WORK/sig.example.zone"
"$SIGNER" dns keygen sig.example --ksk --keys "$K" >/dev/null
"$SIGNER" dns keygen sig.example --keys "$K" >/dev/null
"$SIGNER" dns sign "$WORK/sig.example.zone" --keys "$K" -o "$WORK/sig.example.signed" >/dev/null
"$SIGNER" dns sign "$WORK/root.zone" --origin . --keys "$K" -o "$WORK/root.signed" >/dev/null
"$SIGNER" dns ds "$K/$(cat "$WORK/root-ksk").key" > "$WORK/root.ds"
printf '. 3600000 NS ns.\nns. 3600000 A 127.0.6.1\n' > "$WORK/root.hints"
KD="$WORK/knot-hier"; mkdir -p "$KD"
cat > "$KD/knot.conf" <<CONF
server:
    listen: 127.0.6.1@53
    rundir: "$KD"
    udp-workers: $THREADS
database:
    storage: "$KD"
template:
  - id: default
    storage: "$KD"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: .
    file: "$WORK/root.signed"
  - domain: sig.example.
    file: "$WORK/sig.example.signed"
CONF
knotd -c "$KD/knot.conf" > "$KD/stdout.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 100); do dig @127.0.6.1 +short +time=1 +tries=1 host1.sig.example A 2>/dev/null | grep -q '^10\.' && break; sleep 0.1; done

python3 - "$WORK" "$RESOLVER_NAMES" <<'PY'
import sys
work, n = sys.argv[1], int(sys.argv[2])
with open(f"{work}/val.q", "w") as f:
    for i in range(n):
        f.write(f"host{i}.sig.example A\n" if i % 5 else f"nohost{i}.sig.example A\n")
PY
start_appnet_resolver() {
  TOKIO_WORKER_THREADS=$THREADS "$APPNET" dns resolver --listen 127.0.6.2:53 --root-hints "$WORK/root.hints" \
    --upstream-port 53 --dnssec --trust-anchor "$WORK/root.ds" --max-in-flight-per-client 0 \
    --max-in-flight-per-zone 0 --max-in-flight 8192 > "$WORK/appnet-res.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
}
start_unbound() {
  cat > "$WORK/unbound.conf" <<CONF
server:
  interface: 127.0.6.3@53
  outgoing-interface: 127.0.6.3
  num-threads: $THREADS
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "$WORK"
  pidfile: "$WORK/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  module-config: "validator iterator"
  trust-anchor-file: "$WORK/root.ds"
  aggressive-nsec: no
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  root-hints: "$WORK/root.hints"
  msg-cache-size: 64m
  rrset-cache-size: 64m
CONF
  unbound -d -c "$WORK/unbound.conf" > "$WORK/unbound.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
}
resolver_ready() { # ADDR
  local i
  for ((i = 0; i < 100; i++)); do
    dig @"$1" +time=1 +tries=1 +dnssec sig.example SOA 2>/dev/null | grep -q 'flags: qr rd ra ad' && return 0
    sleep 0.1
  done
  echo "resolver $1 did not validate sig.example SOA" >&2; return 1
}
perf() { # ADDR [dnsperf args] -> "qps servfail"
  local out="$WORK/perf-$1-$RANDOM.txt"
  dnsperf -s "$1" -p 53 -d "$WORK/val.q" -c "$CLIENTS" -q "$OUTSTANDING" -T 1 -D "${@:2}" > "$out" 2>&1
  local sf; sf=$(grep -o 'SERVFAIL [0-9]*' "$out" | head -1 | cut -d' ' -f2)
  echo "$(awk '/Queries per second/ {printf "%d", $4}' "$out") ${sf:-0}"
}
declare -A COLD CACHED
for r in appnet unbound; do
  case $r in appnet) addr=127.0.6.2; start_appnet_resolver ;; unbound) addr=127.0.6.3; start_unbound ;; esac
  resolver_ready "$addr"
  check_ad=$(dig @"$addr" +dnssec host7.sig.example A | grep -c 'flags: qr rd ra ad' || true)
  [ "$check_ad" = 1 ] || { echo "$r does not validate host7.sig.example" >&2; exit 1; }
  read -r COLD[$r] cold_sf <<<"$(perf "$addr" -n 1)"
  read -r CACHED[$r] cached_sf <<<"$(perf "$addr" -l "$DURATION")"
  printf '  %-7s validating: cold %8s q/s (SERVFAIL %s), cached %8s q/s (SERVFAIL %s)\n' \
    "$r" "${COLD[$r]}" "${cold_sf:-0}" "${CACHED[$r]}" "${cached_sf:-0}"
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
done
echo
echo "| validating resolver, $RESOLVER_NAMES names under a signed root and zone (80% A, 20% NXDOMAIN) | appnet q/s | Unbound q/s | appnet/Unbound |"
echo "|---|---|---|---|"
echo "| cold (each name once, validated) | ${COLD[appnet]} | ${COLD[unbound]} | $(ratio "${COLD[appnet]}" "${COLD[unbound]}") |"
echo "| cached ($DURATION s) | ${CACHED[appnet]} | ${CACHED[unbound]} | $(ratio "${CACHED[appnet]}" "${CACHED[unbound]}") |"
