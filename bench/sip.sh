#!/usr/bin/env bash
# SIP benchmark (a report, not a test): appnet's registrar/proxy and Kamailio with the same
# worker count, in one run, each as a Digest registrar and a stateful record-routing proxy.
#  - REGISTER/s: sipp answering the 401 challenge (2 requests per registration) for 100 users
#    at a rate that saturates, for DURATION seconds; counts successful registrations.
#  - calls/s: sipp UAC -> proxy -> sipp UAS (interop/sip/uac-rr.xml, uas-rr.xml), rates
#    doubling from RATE0; the highest rate with under 1% failed calls over DURATION seconds.
#
#   bench/sip.sh                        # release build of appnet, 10 s per run, 1 worker
#   DURATION=5 RATE0=250 bench/sip.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
DURATION=${DURATION:-10}
RATE0=${RATE0:-250}
STEPS=${STEPS:-5}
WORKERS=${WORKERS:-1}     # appnet's UDP driver is one task; Kamailio gets as many UDP children
for tool in sipp kamailio python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install sip-tester kamailio)" >&2; exit 1; }
done
source "$here/lib.sh"
release_appnet
SIPDIR=$PWD/interop/sip
cd "$WORK"
: >users.txt
printf 'SEQUENTIAL\n' >reg.csv
for i in $(seq 100); do
  printf 'pw\n' | "$APPNET" sip user add "u$i@127.0.0.1" --users users.txt --password-stdin >/dev/null
  printf 'u%s;127.0.0.1:9;[authentication username=u%s password=pw]\n' "$i" "$i" >>reg.csv
done
printf 'pw\n' | "$APPNET" sip user add "bob@127.0.0.1" --users users.txt --password-stdin >/dev/null

# start_server NAME PORT: appnet or kamailio on 127.0.0.1:PORT.
start_server() {
  if [ "$1" = appnet ]; then
    # Completed transactions linger 32 s (timers J/K) and count towards the total cap (20,000
    # by default), which 2,000 calls/s would fill: lift it (Kamailio has none). The per-address
    # cap counts only live transactions and stays at its default although all load comes from
    # one address.
    "$APPNET" sip serve --domain 127.0.0.1 --listen "127.0.0.1:$2" --users users.txt \
      --max-transactions 2000000 >/dev/null 2>&1 &
  else
    sed -e "s/@KPORT@/$2/" -e "s/@WORKERS@/$WORKERS/" "$here/sip/kamailio.cfg" >kam.cfg
    mkdir -p kamrun
    kamailio -f kam.cfg -DD -E -Y "$WORK/kamrun" -m 256 >kam.log 2>&1 &
  fi
  PIDS+=("$!")
  sleep 1
}
# stat_of FILE COLUMN-NAME: the cumulative value of a sipp -trace_stat column.
stat_of() {
  python3 - "$1" "$2" <<'PY'
import sys, csv
rows = list(csv.reader(open(sys.argv[1]), delimiter=';'))
print(rows[-1][rows[0].index(sys.argv[2])])
PY
}

declare -A REG CPS
for server in appnet kamailio; do
  port=$(free_port)
  start_server "$server" "$port"
  # The callee: sipp UAS registered as bob.
  uas=$(free_port)
  sipp -sf "$SIPDIR/uas-rr.xml" -i 127.0.0.1 -p "$uas" -nostdin >/dev/null 2>&1 &
  UAS=$!; PIDS+=("$UAS")
  printf 'SEQUENTIAL\nbob;127.0.0.1:%s;[authentication username=bob password=pw]\n' "$uas" >bob.csv
  timeout 20 sipp -sf "$SIPDIR/register.xml" -inf bob.csv -i 127.0.0.1 -p "$(free_port)" -m 1 \
    "127.0.0.1:$port" -nostdin >/dev/null 2>&1 || { echo "bench: $server did not register bob" >&2; exit 1; }
  best=0; rate=$RATE0
  for _ in $(seq "$STEPS"); do
    rm -f calls.stat
    timeout $((DURATION + 30)) sipp -sf "$SIPDIR/uac-rr.xml" -s bob -i 127.0.0.1 -p "$(free_port)" \
      -r "$rate" -m $((rate * DURATION)) -l $((rate * 4)) -recv_timeout 5000 "127.0.0.1:$port" -nostdin \
      -trace_stat -stf calls.stat >/dev/null 2>&1 || true
    good=$(stat_of calls.stat 'SuccessfulCall(C)'); bad=$(stat_of calls.stat 'FailedCall(C)')
    echo "  $server: offered $rate calls/s: $good ok, $bad failed"
    if [ $((bad * 100)) -lt $((good + bad)) ] && [ "$good" -gt 0 ]; then best=$rate; else break; fi
    rate=$((rate * 2))
  done
  CPS[$server]=$best
  kill "$UAS" 2>/dev/null || true
  # REGISTER/s: 100 users, offered 4000/s, for DURATION seconds.
  rm -f reg.stat
  timeout $((DURATION + 20)) sipp -sf "$SIPDIR/register.xml" -inf reg.csv -i 127.0.0.1 -p "$(free_port)" \
    -r 4000 -l 2000 -timeout "${DURATION}s" -timeout_error -recv_timeout 2000 "127.0.0.1:$port" -nostdin \
    -trace_stat -stf reg.stat >/dev/null 2>&1 || true
  ok=$(stat_of reg.stat 'SuccessfulCall(C)')
  REG[$server]=$((ok / DURATION))
  stop_all
done
printf '\n%-10s %14s %14s\n' server REGISTER/s calls/s
for s in appnet kamailio; do printf '%-10s %14s %14s\n' "$s" "${REG[$s]}" "${CPS[$s]}"; done
python3 -c "import sys; a,b,c,d=map(float,sys.argv[1:]); print(f'appnet/kamailio: REGISTER {a/max(b,1):.2f}x, calls {c/max(d,1):.2f}x')" \
  "${REG[appnet]}" "${REG[kamailio]}" "${CPS[appnet]}" "${CPS[kamailio]}"
