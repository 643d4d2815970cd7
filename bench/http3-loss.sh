#!/usr/bin/env bash
# HTTP/2 vs HTTP/3 page-load times on a lossy emulated link (a report, not a test; root): runs
# `appnet experiment http` (appnet link between two namespaces, RTT 100 ms, 10 Mbit/s, loss
# 0/1/2/5 %), which prints the RTT scorecard and, per loss rate and congestion controller (CUBIC
# by default, each on both transports: kernel TCP set per socket, quinn for QUIC), the time to the
# first object and to the whole page for HTTP/2 over TLS and HTTP/3, median and 10th-90th
# percentiles; then the HTTP/3/HTTP/2 ratios of the medians. The requests/s and MB/s against
# caddy are bench/http3.sh.
#
#   sudo bench/http3-loss.sh                 # 30 page loads per protocol, loss rate and controller
#   QUICK=1 LOSSES=0,2,5 sudo bench/http3-loss.sh
#   CC=cubic,bbr sudo bench/http3-loss.sh    # BBR too (quinn's is experimental)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
if [ "$(id -u)" != 0 ]; then
  echo "bench: the emulated link needs root (network namespaces, TUN)" >&2; exit 1
fi
source "$here/lib.sh"
release_appnet
LOSSES=${LOSSES:-0,1,2,5}
CC=${CC:-cubic}
args=(--out "$WORK/http" --losses "$LOSSES" --cc "$CC")
[ -n "${QUICK:-}" ] && args+=(--quick)
"$APPNET" experiment http "${args[@]}" | tee "$WORK/http.txt"
echo
echo "HTTP/3 / HTTP/2 medians (below 1: HTTP/3 ahead)"
python3 - "$WORK/http.txt" <<'PY'
import re, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r'\s*(\d+)\s+(\S+)\s+HTTP/([23])\s+(\d+) \(\S+\)\s+(\d+) \(', line)
    if m:
        rows.setdefault((m.group(2), int(m.group(1))), {})[m.group(3)] = (float(m.group(4)), float(m.group(5)))
for (cc, loss), r in rows.items():
    if '2' in r and '3' in r and min(r['2']) > 0:
        (f2, p2), (f3, p3) = r['2'], r['3']
        print(f"  {cc:>8} loss {loss}%: page HTTP/3 {p3:.0f} ms, HTTP/2 {p2:.0f} ms, ratio {p3 / p2:.2f};"
              f" first object {f3:.0f} vs {f2:.0f} ms, ratio {f3 / f2:.2f}")
PY
