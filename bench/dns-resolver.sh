#!/usr/bin/env bash
# Recursive resolver benchmark (a report, not a test), appnet vs Unbound, both resolving through
# the appnet lab's DNS hierarchy on port 53 (so run as root):
#  1. cold resolution: the same list of lab names asked once each from a cold cache; the
#     upstream queries each resolver sends are counted on the wire (tshark on loopback, by the
#     resolver's source address) with the total time;
#  2. cached answers: dnsperf with the same query file against warm caches, same duration,
#     same number of server threads; queries/s, latency and the ratio appnet/Unbound.
#
#   bench/dns-resolver.sh                 release build, 10 s dnsperf runs
#   DURATION=30 THREADS=2 bench/dns-resolver.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
THREADS=${THREADS:-$(nproc)}
CLIENTS=${CLIENTS:-8}
[ "$(id -u)" = 0 ] || { echo "run as root: the lab must listen on port 53 for Unbound" >&2; exit 2; }
for tool in unbound dnsperf dig tshark python3; do
  command -v "$tool" >/dev/null || { echo "bench needs $tool (see .ci/apt.d/resolver.txt)" >&2; exit 2; }
done
source bench/lib.sh
release_appnet

wait_dns() { # server port
  for _ in $(seq 1 100); do
    dig @"$1" -p "$2" +time=1 +tries=1 +short localhost >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "no answer from $1:$2" >&2; return 1
}

"$APPNET" lab --dns-port 53 --dir "$WORK/lab" > "$WORK/lab.log" 2>&1 & PIDS+=($!)
wait_dns 127.0.4.1 53

# appnet's resolver under test: its own address, the lab's root hints, same threads as Unbound.
APPNET_RES=127.0.5.1
TOKIO_WORKER_THREADS=$THREADS "$APPNET" dns resolver --listen "$APPNET_RES:53" \
  --root-hints "$WORK/lab/root.hints" --upstream-port 53 > "$WORK/appnet-res.log" 2>&1 & PIDS+=($!)
UNBOUND_RES=127.0.5.2
cat > "$WORK/unbound.conf" <<CONF
server:
  interface: $UNBOUND_RES@53
  outgoing-interface: $UNBOUND_RES
  num-threads: $THREADS
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "$WORK"
  pidfile: "$WORK/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  module-config: "iterator"
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  root-hints: "$WORK/lab/root.hints"
  msg-cache-size: 64m
  rrset-cache-size: 64m
CONF
unbound -d -c "$WORK/unbound.conf" > "$WORK/unbound.log" 2>&1 & PIDS+=($!)
wait_dns "$APPNET_RES" 53
wait_dns "$UNBOUND_RES" 53

NAMES="gaia.cs.umass.edu www.umass.edu www.stanford.edu cis.poly.edu www.networkutopia.com
mail.networkutopia.com www.bbc.co.uk www.cl.cam.ac.uk www.ibm.com mail.hamburger.edu mail.crepes.fr
www.someschool.edu a128.g.akamai.net gaai.cs.umass.edu nosuch.stanford.edu"

cold() { # name server -> prints "queries seconds"
  local server=$1 cap="$WORK/cap-$1.pcap"
  tshark -q -i lo -f "udp dst port 53 and src host $server" -w "$cap" > /dev/null 2>&1 & local tpid=$!
  sleep 1.5
  local start end
  start=$(date +%s.%N)
  for n in $NAMES; do dig @"$server" -p 53 +time=3 +tries=1 "$n" > /dev/null; done
  end=$(date +%s.%N)
  sleep 1
  kill "$tpid"; wait "$tpid" 2>/dev/null || true
  local count
  count=$(tshark -r "$cap" 2>/dev/null | wc -l)
  echo "$count $(python3 -c "print(f'{$end-$start:.3f}')")"
}
# The names the resolvers of the lab itself already cached do not matter: these are fresh resolvers.
read -r a_q a_t <<<"$(cold $APPNET_RES)"
read -r u_q u_t <<<"$(cold $UNBOUND_RES)"

: > "$WORK/queries"
for n in $NAMES; do echo "$n A" >> "$WORK/queries"; done
perf() { # server -> "qps avg_ms"
  dnsperf -s "$1" -p 53 -d "$WORK/queries" -l "$DURATION" -c "$CLIENTS" -T 2 -q 500 > "$WORK/perf-$1.txt" 2>&1
  local qps lat
  qps=$(sed -n 's/.*Queries per second: *\([0-9.]*\).*/\1/p' "$WORK/perf-$1.txt")
  lat=$(sed -n 's/.*Average Latency (s): *\([0-9.]*\).*/\1/p' "$WORK/perf-$1.txt")
  echo "$qps $(python3 -c "print(f'{float(\"$lat\")*1000:.3f}')")"
}
read -r a_qps a_lat <<<"$(perf $APPNET_RES)"
read -r u_qps u_lat <<<"$(perf $UNBOUND_RES)"

python3 - "$a_q" "$a_t" "$u_q" "$u_t" "$a_qps" "$a_lat" "$u_qps" "$u_lat" "$THREADS" "$DURATION" <<'PY'
import sys
aq, at, uq, ut, aqps, alat, uqps, ulat, threads, dur = sys.argv[1:]
aq, uq = int(aq), int(uq)
print(f"resolver benchmark: lab hierarchy on port 53, {threads} server threads, dnsperf {dur}s")
print(f"{'':28}{'appnet':>12}{'unbound':>12}{'ratio':>10}")
print(f"{'cold: upstream queries':28}{aq:>12}{uq:>12}{aq/uq if uq else float('nan'):>10.2f}")
print(f"{'cold: seconds for 15 names':28}{float(at):>12.3f}{float(ut):>12.3f}{float(at)/float(ut):>10.2f}")
print(f"{'cached: queries/s':28}{float(aqps):>12.0f}{float(uqps):>12.0f}{float(aqps)/float(uqps):>10.2f}")
print(f"{'cached: mean latency ms':28}{float(alat):>12.3f}{float(ulat):>12.3f}{float(alat)/float(ulat):>10.2f}")
PY
