#!/usr/bin/env bash
# Authoritative DNS benchmark: appnet, NSD and Knot serve the same zones in turn, each on its own
# port with the same number of server threads, and dnsperf loads each with the same query file
# for the same time. Prints queries/s, latency percentiles at a fixed rate (the servers side by
# side taking turns over LAT_ROUNDS rounds, with a paired comparison of the p50s), the ratios
# appnet/NSD and appnet/Knot, and memory after loading a 1M-record zone. A report, not a test.
# CPU pinning is equal: with one thread per CPU appnet pins its UDP workers one per CPU, Knot
# always does, and NSD is given cpu-affinity (bench/lib-dns.sh).
#
#   bench/dns-auth.sh                       release build, 10 s per run, threads = CPUs
#   DURATION=30 THREADS=2 bench/dns-auth.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
THREADS=${THREADS:-$(nproc)}
CLIENTS=${CLIENTS:-8}
OUTSTANDING=${OUTSTANDING:-200}
RATE=${RATE:-20000}          # queries/s for the latency runs
LAT_SECONDS=${LAT_SECONDS:-5}
LAT_ROUNDS=${LAT_ROUNDS:-5}  # latency rounds, the servers side by side and taking turns
BIG=${BIG:-100000}           # names in the big zone
HUGE=${HUGE:-1000000}        # records in the memory zone
for tool in nsd knotd dnsperf dig python3; do
  command -v "$tool" >/dev/null || { echo "bench needs $tool (see .ci/apt.d/dns.txt)" >&2; exit 2; }
done

source bench/lib.sh
release_appnet

echo "generating zones and query files in $WORK ..."
python3 - "$WORK" "$BIG" "$HUGE" <<'PY'
import random, sys
work, big, huge = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(1)
head = "$ORIGIN {z}.\n$TTL 3600\n@ SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ NS ns1\nns1 A 127.0.0.1\n"
def host_zone(path, zone, n, extra=True):
    with open(path, "w") as f:
        f.write(head.format(z=zone))
        for i in range(n):
            f.write(f"host{i} A 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}\n")
            if extra and i % 10 == 0:
                f.write(f"host{i} AAAA 2001:db8::{i & 0xffff:x}\n")
            if extra and i % 100 == 0:
                f.write(f"host{i} MX 10 host{(i + 1) % n}\n")
host_zone(f"{work}/big.test.zone", "big.test", big)
host_zone(f"{work}/huge.test.zone", "huge.test", huge, extra=False)
with open(f"{work}/small.test.zone", "w") as f:
    f.write(head.format(z="small.test"))
    f.write("www A 192.0.2.80\nwww AAAA 2001:db8::80\nmail A 192.0.2.25\n@ MX 10 mail\nalias CNAME www\n"
            "*.wild A 192.0.2.99\ntxt TXT \"hello world\"\n")
with open(f"{work}/big.q", "w") as f:
    for _ in range(200000):
        r = random.random()
        i = random.randrange(big)
        if r < 0.80: f.write(f"host{i}.big.test A\n")
        elif r < 0.90: f.write(f"host{i - i % 10}.big.test AAAA\n")
        else: f.write(f"nohost{i}.big.test A\n")
with open(f"{work}/small.q", "w") as f:
    for q in ["www.small.test A", "www.small.test AAAA", "small.test MX", "alias.small.test A",
              "x.wild.small.test A", "txt.small.test TXT", "nope.small.test A", "small.test SOA"]:
        f.write(q + "\n")
PY

source bench/lib-dns.sh

# Proportional set size of a process and its children, in MiB (shared pages counted once).
pss_mib() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" 2>/dev/null || true); do
    local kb; kb=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
    total=$((total + ${kb:-0}))
  done
  echo $((total / 1024))
}

qps_of() { # PORT QUERYFILE
  dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$DURATION" -c "$CLIENTS" -q "$OUTSTANDING" -T 1 2>&1 \
    | awk '/Queries per second/ {printf "%d", $4}'
}
latency_of() { # PORT QUERYFILE → "p50 p99 p99.9" in microseconds at $RATE q/s
  dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$LAT_SECONDS" -Q "$RATE" -c "$CLIENTS" -T 1 -v 2>/dev/null \
    | awk '/^> / {print $NF * 1000000}' | sort -n \
    | awk 'function at(p,  i) { i = int(NR * p); if (i < 1) i = 1; return a[i] }
           { a[NR] = $1 }
           END { if (NR == 0) print "- - -"; else printf "%d %d %d", at(0.50), at(0.99), at(0.999) }'
}

# latency_summary "P50 P99 P999;..." → the median of each column over the rounds.
latency_summary() { python3 -c '
import statistics, sys
rows = [list(map(float, r.split())) for r in sys.argv[1].split(";") if r.strip() and "-" not in r]
print(" ".join("%d" % statistics.median(c) for c in zip(*rows)) if rows else "- - -")' "$1"; }
# p50_paired A_ROUNDS B_ROUNDS → the rounds in which a's p50 was at most b's, and the mean of
# the per-round differences a - b (µs) with its 95 % interval (Student's t; one that contains 0
# is a tie). Each round loads the servers back to back, so a pair shares the machine's spell.
p50_paired() { python3 -c '
import math, statistics, sys
a, b = ([None if "-" in r else float(r.split()[0]) for r in x.split(";") if r.strip()] for x in sys.argv[1:])
d = [x - y for x, y in zip(a, b) if x is not None and y is not None]
if len(d) < 2:
    print("n/a"); sys.exit()
t = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23}
q = t.get(len(d) - 1, 2.1)
m, h = statistics.mean(d), q * statistics.stdev(d) / math.sqrt(len(d))
print("p50 at most in %d/%d rounds, difference %+.1f us (%+.1f to %+.1f)" % (sum(x <= 0 for x in d), len(d), m, m - h, m + h))' "$1" "$2"; }

declare -A QPS LAT LATS LPORT
echo "threads per server: $THREADS; dnsperf: $CLIENTS clients, $OUTSTANDING outstanding, $DURATION s per run"
servers=(appnet nsd knot)
for zone in small big; do
  # Throughput: one server at a time, alone on the machine.
  for server in "${servers[@]}"; do
    port=$(free_port)
    "start_$server" "$zone.test" "$WORK/$zone.test.zone" "$port"
    wait_ready "$port" "$zone.test" 60
    QPS[$server-$zone]=$(qps_of "$port" "$WORK/$zone.q")
    stop_all
    printf '  %-6s %-5s zone: %8s q/s\n' "$server" "$zone" "${QPS[$server-$zone]}"
  done
  # Latency at a fixed rate: the three servers up side by side (idle ones sleep) and taking
  # turns over LAT_ROUNDS rounds, the order rotating, so that a slow spell of the machine hits
  # every server alike; a single run per server differed by ±5 us in p50 from run to run.
  for server in "${servers[@]}"; do
    LPORT[$server]=$(free_port)
    "start_$server" "$zone.test" "$WORK/$zone.test.zone" "${LPORT[$server]}"
    wait_ready "${LPORT[$server]}" "$zone.test" 60
  done
  for round in $(seq "$LAT_ROUNDS"); do
    k=$(( (round - 1) % ${#servers[@]} )); order=("${servers[@]:$k}" "${servers[@]:0:$k}")
    for server in "${order[@]}"; do
      LATS[$server-$zone]+="$(latency_of "${LPORT[$server]}" "$WORK/$zone.q");"
    done
  done
  stop_all
  for server in "${servers[@]}"; do
    LAT[$server-$zone]=$(latency_summary "${LATS[$server-$zone]}")
    printf '  %-6s %-5s zone: latency at %d q/s p50/p99/p99.9: %s us (median of %d rounds: %s)\n' \
      "$server" "$zone" "$RATE" "${LAT[$server-$zone]}" "$LAT_ROUNDS" "${LATS[$server-$zone]%;}"
  done
  for other in nsd knot; do
    printf '  appnet vs %-4s %-5s zone: %s\n' "$other" "$zone" "$(p50_paired "${LATS[appnet-$zone]}" "${LATS[$other-$zone]}")"
  done
done

declare -A MEM LOADTIME
for server in appnet nsd knot; do
  port=$(free_port)
  t0=$(date +%s.%N)
  "start_$server" huge.test "$WORK/huge.test.zone" "$port"
  wait_ready "$port" huge.test 600
  t1=$(date +%s.%N)
  sleep 1
  MEM[$server]=$(pss_mib "$SERVER_PID")
  LOADTIME[$server]=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
  stop_all
  printf '  %-6s %d-record zone: %5s MiB (PSS), ready in %s s\n' "$server" "$HUGE" "${MEM[$server]}" "${LOADTIME[$server]}"
done

ratio() { python3 -c "a, b = float('$1' or 0), float('$2' or 0); print(f'{a / b:.2f}' if b else '-')"; }
echo
echo "| zone | appnet q/s | NSD q/s | Knot q/s | appnet/NSD | appnet/Knot | p50/p99/p99.9 µs at $RATE q/s, median of $LAT_ROUNDS rounds (appnet; NSD; Knot) |"
echo "|---|---|---|---|---|---|---|"
for zone in small big; do
  a=${QPS[appnet-$zone]}; n=${QPS[nsd-$zone]}; k=${QPS[knot-$zone]}
  echo "| $zone | $a | $n | $k | $(ratio "$a" "$n") | $(ratio "$a" "$k") | ${LAT[appnet-$zone]// //}; ${LAT[nsd-$zone]// //}; ${LAT[knot-$zone]// //} |"
done
echo
echo "| $HUGE-record zone | appnet | NSD | Knot | appnet/NSD |"
echo "|---|---|---|---|---|"
echo "| memory (PSS MiB) | ${MEM[appnet]} | ${MEM[nsd]} | ${MEM[knot]} | $(ratio "${MEM[appnet]}" "${MEM[nsd]}") |"
echo "| load time (s) | ${LOADTIME[appnet]} | ${LOADTIME[nsd]} | ${LOADTIME[knot]} | |"
