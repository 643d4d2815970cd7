#!/usr/bin/env bash
# TURN relay benchmark (a report, not a test): coturn's turnutils_uclient drives the same load
# through appnet's TURN server and coturn's turnserver in one run: M client pairs (-y,
# client-to-client over channels), N messages of L bytes each, sent every Z ms. Prints relayed
# messages/s, throughput, loss and the appnet/coturn ratio.
#
#   bench/turn.sh                                  # release build of appnet
#   M=20 N=2000 L=500 Z=1 bench/turn.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
M=${M:-10}
N=${N:-1000}
L=${L:-200}
Z=${Z:-1}
for tool in turnutils_uclient turnserver python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install coturn)" >&2; exit 1; }
done
source "$here/lib.sh"
release_appnet
printf 'alice:secret\n' > "$WORK/users"

# wait_udp PORT: waits until appnet's STUN client gets an answer from 127.0.0.1:PORT.
wait_udp() {
  for _ in $(seq 100); do "$APPNET" stun "127.0.0.1:$1" --timeout 0.3 >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "no STUN answer on $1" >&2; return 1
}

# load NAME PORT: runs uclient against the server on PORT and prints one table row.
load() {
  local name=$1 port=$2 start end out sent recv lost
  start=$(date +%s.%N)
  out=$(turnutils_uclient -p "$port" -u alice -w secret -y -c -m "$M" -n "$N" -l "$L" -z "$Z" 127.0.0.1 2>&1)
  end=$(date +%s.%N)
  sent=$(grep -o 'tot_send_msgs=[0-9]*, tot_recv_msgs=[0-9]*' <<<"$out" | tail -1 | grep -o 'tot_send_msgs=[0-9]*' | cut -d= -f2)
  recv=$(grep -o 'tot_send_msgs=[0-9]*, tot_recv_msgs=[0-9]*' <<<"$out" | tail -1 | grep -o 'tot_recv_msgs=[0-9]*' | cut -d= -f2)
  lost=$(grep -o 'Total lost packets [0-9]* ([0-9.]*%)' <<<"$out" | tail -1)
  python3 - "$name" "$sent" "$recv" "$start" "$end" "$L" "$lost" <<'PY'
import sys
name, sent, recv, t0, t1, size, lost = sys.argv[1], int(sys.argv[2] or 0), int(sys.argv[3] or 0), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
secs = t1 - t0
print(f"{name:8} sent {sent:8} relayed {recv:8} in {secs:6.2f} s  {recv/secs:10.0f} msg/s  {recv*size*8/secs/1e6:8.2f} Mbit/s  {lost}")
PY
}

AP=$(free_port)
"$APPNET" turn serve --listen "127.0.0.1:$AP" --realm lab --users "$WORK/users" --ports 52000-52999 \
  --allow-peer 127.0.0.0/8 --user-quota 1000 --ip-quota 1000 >"$WORK/appnet.log" 2>&1 &
PIDS+=($!)
CP=$(free_port)
turnserver -n --listening-ip 127.0.0.1 --listening-port "$CP" --relay-ip 127.0.0.1 --min-port 53000 --max-port 53999 \
  --allow-loopback-peers --no-tls --no-dtls --no-cli --lt-cred-mech --user alice:secret --realm lab \
  --log-file "$WORK/coturn.log" --pidfile "$WORK/coturn.pid" --no-stdout-log --user-quota 1000 --total-quota 10000 >/dev/null 2>&1 &
PIDS+=($!)
wait_udp "$AP"
wait_udp "$CP"
echo "turnutils_uclient -y -c -m $M -n $N -l $L -z $Z  ($(date -u +%F), $(nproc) CPUs)"
a=$(load appnet "$AP"); echo "$a"
c=$(load coturn "$CP"); echo "$c"
python3 - "$a" "$c" <<'PY'
import sys, re
rate = lambda row: float(re.search(r"([0-9.]+) msg/s", row).group(1))
print(f"ratio appnet/coturn msg/s: {rate(sys.argv[1]) / max(rate(sys.argv[2]), 1e-9):.2f}")
PY
