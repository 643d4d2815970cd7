#!/usr/bin/env bash
# The link emulator (appnet link up, as root) measured by third-party tools inside its two
# namespaces: ping's RTT within 1 ms of --rtt, iperf3's TCP throughput within 10% of --rate,
# iperf3's UDP loss within 0.5 percentage points of --loss (1 point for bursty loss), kernel TCP
# retransmitting over a lossy link, and no namespace left behind after SIGINT or SIGTERM (a
# stale one from a killed emulator is removed at start).
source "$(dirname "$0")/lib.sh"
if [ "$(id -u)" != 0 ]; then
  echo "FAIL: the link emulator needs root (network namespaces, TUN); run interop/link.sh as root" >&2
  exit 1
fi
for tool in iperf3 ping ip python3; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (see .ci/apt.d/link.txt)" >&2; exit 1; }
done
name=aplnk$$
A=$name-a
B=$name-b
mine() { ip netns list | awk '{print $1}' | grep -c "^$name-[ab]$" || true; }
remove_mine() { for ns in $(ip netns list | awk '{print $1}' | grep "^$name-[ab]$" || true); do ip netns del "$ns" || true; done; }
trap 'cleanup; remove_mine' EXIT

LINK=
IPERF=
# link_up ARGS...: starts the emulator with ARGS and waits for its "ready" line.
link_up() {
  bg "$APPNET" link up --name "$name" "$@" >"$WORK/link.out" 2>"$WORK/link.err"
  LINK=$LAST_PID
  local i
  for ((i = 0; i < 200; i++)); do
    grep -q '^ready' "$WORK/link.out" 2>/dev/null && return 0
    kill -0 "$LINK" 2>/dev/null || break
    sleep 0.05
  done
  echo "FAIL: appnet link up $* did not come up:" >&2; cat "$WORK/link.err" >&2; exit 1
}
# link_down SIGNAL: stops the emulator with SIGNAL and waits for it to exit.
link_down() {
  if [ -n "$IPERF" ]; then kill "$IPERF" 2>/dev/null || true; wait "$IPERF" 2>/dev/null || true; IPERF=; fi
  kill "-$1" "$LINK"
  local i
  for ((i = 0; i < 200; i++)); do kill -0 "$LINK" 2>/dev/null || break; sleep 0.05; done
  wait "$LINK" 2>/dev/null || true
}
# within VALUE TARGET TOLERANCE: prints "yes" when |VALUE - TARGET| <= TOLERANCE.
within() { python3 -c "import sys; v,t,e=map(float,sys.argv[1:]); print('yes' if abs(v-t)<=e else 'no (%s vs %s)'%(v,t))" "$@"; }
# iperf3_json JSON FIELD: one figure from iperf3's JSON report.
iperf3_json() {
  python3 -c "
import json,sys
r=json.load(open(sys.argv[1]))['end']
f=sys.argv[2]
if f=='tcp_mbps': print(r['sum_received']['bits_per_second']/1e6)
elif f=='retransmits': print(r['sum_sent'].get('retransmits',0))
elif f=='udp_loss': print(r['sum']['lost_percent'])
elif f=='udp_packets': print(r['sum']['packets'])
" "$@"
}
iperf3_server() {
  bg ip netns exec "$B" iperf3 -s -B 198.18.0.2 -p 5201 >/dev/null 2>&1
  IPERF=$LAST_PID
  local i
  for ((i = 0; i < 100; i++)); do
    ip netns exec "$B" bash -c '(exec 3<>/dev/tcp/198.18.0.2/5201)' 2>/dev/null && return 0
    sleep 0.05
  done
  echo "FAIL: iperf3 server did not start" >&2; exit 1
}

echo "start: a stale namespace of the same name is removed"
ip netns add "$A"
link_up --rtt 40ms
check "both namespaces exist" "2" "$(mine)"
check "the emulator's device is in namespace A with 198.18.0.1" "1" "$(ip -n "$A" -4 addr show emu0 | grep -c 'inet 198.18.0.1/30')"
check "the host's namespace has no 198.18/15 address" "0" "$(ip -4 addr | grep -cE 'inet 198\.1[89]\.' || true)"

echo "ping: RTT 40 ms"
ip netns exec "$A" ping -c 3 -i 0.2 -W 2 198.18.0.2 >/dev/null
avg=$(ip netns exec "$A" ping -c 30 -i 0.05 -W 2 198.18.0.2 | awk -F/ '/^rtt|^round-trip/ {print $5}')
echo "  ping avg rtt $avg ms"
check "ping RTT within 1 ms of 40 ms" "yes" "$(within "$avg" 40 1)"
link_down INT
check "SIGINT removed both namespaces" "0" "$(mine)"

echo "iperf3 TCP: 10 Mbit/s, RTT 20 ms, queue 100 packets"
link_up --rtt 20ms --rate 10mbit --queue 100
iperf3_server
ip netns exec "$A" iperf3 -c 198.18.0.2 -p 5201 -t 6 -O 1 -J >"$WORK/tcp.json"
mbps=$(iperf3_json "$WORK/tcp.json" tcp_mbps)
echo "  iperf3 TCP $mbps Mbit/s"
check "TCP throughput within 10% of 10 Mbit/s" "yes" "$(within "$mbps" 10 1)"
link_down TERM
check "SIGTERM removed both namespaces" "0" "$(mine)"

echo "iperf3 UDP: 5% loss A->B"
link_up --a2b loss=5% --seed 7
iperf3_server
ip netns exec "$A" iperf3 -c 198.18.0.2 -p 5201 -u -b 20M -l 1000 -t 8 -J >"$WORK/udp.json"
loss=$(iperf3_json "$WORK/udp.json" udp_loss)
echo "  iperf3 UDP loss $loss% of $(iperf3_json "$WORK/udp.json" udp_packets) datagrams"
check "UDP loss within 0.5 points of 5%" "yes" "$(within "$loss" 5 0.5)"
link_down INT
grep 'A->B' "$WORK/link.out" | sed 's/^/  emulator: /'

echo "iperf3 UDP: bursty loss p=1% r=24% A->B (mean 4%)"
link_up --a2b burst=1%:24% --seed 3
iperf3_server
ip netns exec "$A" iperf3 -c 198.18.0.2 -p 5201 -u -b 20M -l 1000 -t 8 -J >"$WORK/burst.json"
loss=$(iperf3_json "$WORK/burst.json" udp_loss)
echo "  iperf3 UDP loss $loss%"
check "bursty UDP loss within 1 point of 4%" "yes" "$(within "$loss" 4 1)"
link_down INT

echo "iperf3 TCP over 2% loss each way: kernel TCP retransmits"
link_up --rtt 10ms --rate 20mbit --loss 2%
iperf3_server
ip netns exec "$A" iperf3 -c 198.18.0.2 -p 5201 -t 3 -J >"$WORK/lossy.json"
retr=$(iperf3_json "$WORK/lossy.json" retransmits)
echo "  $retr retransmissions, $(iperf3_json "$WORK/lossy.json" tcp_mbps) Mbit/s"
check "TCP retransmitted lost segments" "yes" "$( [ "${retr%.*}" -gt 0 ] && echo yes || echo no)"
link_down TERM
check "no namespace of this script is left" "0" "$(mine)"
echo "link: $CHECKS checks passed"
