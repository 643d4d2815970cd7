#!/usr/bin/env bash
# SMTP benchmark (a report, not a test): smtp-source (from Postfix) sends MESSAGES messages of
# 4 KB over 20 parallel sessions (one message per connection, like MTAs deliver) to appnet and
# then to Postfix, each receiving for a local Maildir user, pinned to the same CPUs. The clock
# stops when every message is in the Maildir: appnet delivers before its 250, Postfix queues
# then delivers with its virtual(8) agent; both fsync (appnet: the Maildir file and directory;
# Postfix: its queue file and the Maildir file). Prints messages/s and the appnet/Postfix ratio.
#
#   bench/mail-smtp.sh                      # release build of appnet, 2000 messages
#   MESSAGES=500 SESSIONS=10 bench/mail-smtp.sh
#   APPNET=target/release/appnet bench/mail-smtp.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
MESSAGES=${MESSAGES:-2000}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-4096}
ROUNDS=${ROUNDS:-2}
NCPU=$(nproc)
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-$((NCPU - 1))}
for tool in smtp-source postfix postconf python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install postfix)" >&2; exit 1; }
done
source "$here/lib.sh"
source "$here/../interop/lib-postfix.sh"
release_appnet

count() { find "$1" -type f 2>/dev/null | wc -l; }
# run NAME PORT MAILDIR: sends the load, waits until MAILDIR holds every message; prints msg/s.
run() {
  local name=$1 port=$2 dir=$3 before t0 t1 n
  before=$(count "$dir")
  t0=$(date +%s.%N)
  taskset -c "$CLIENT_CPUS" smtp-source -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" -f bench@client.example \
    -t bob@hamburger.edu -M client.example "127.0.0.1:$port"
  for _ in $(seq 6000); do
    n=$(( $(count "$dir") - before ))
    [ "$n" -ge "$MESSAGES" ] && break
    sleep 0.01
  done
  t1=$(date +%s.%N)
  [ "$n" -ge "$MESSAGES" ] || { echo "bench: $name delivered only $n of $MESSAGES" >&2; exit 1; }
  python3 -c "print(f'{$MESSAGES / ($t1 - $t0):.0f}')"
}

# --- appnet ---------------------------------------------------------------------------------
ROOT=$WORK/appnet
printf 'pw\n' | "$APPNET" mail user add bob@hamburger.edu --root "$ROOT" --password-stdin >/dev/null
ap=$(free_port)
TOKIO_WORKER_THREADS=1 taskset -c "$SERVER_CPUS" "$APPNET" mail serve --domain hamburger.edu --root "$ROOT" \
  --smtp "127.0.0.1:$ap" --submission off --max-per-ip $((SESSIONS + 16)) >/dev/null 2>"$WORK/appnet.err" &
PIDS+=($!); wait_port "$ap"

# --- Postfix: a private instance delivering hamburger.edu to a Maildir ------------------------
PF=$WORK/postfix
pp=$(free_port)
postfix_config "$PF" "$pp" mail.hamburger.edu hamburger.edu bob "smtpd_peername_lookup = no"
taskset -c "$SERVER_CPUS" postfix -c "$PF/conf" start >/dev/null 2>&1 || { cat "$PF/maillog" >&2; exit 1; }
trap 'postfix -c "$PF/conf" stop >/dev/null 2>&1 || true; stop_all; rm -rf "$WORK"' EXIT
wait_port "$pp"

echo "SMTP: $MESSAGES messages of $SIZE bytes, $SESSIONS sessions (smtp-source), server on CPU $SERVER_CPUS, client on CPU $CLIENT_CPUS"
printf "%-8s %12s %12s %8s\n" round appnet postfix ratio
for r in $(seq "$ROUNDS"); do
  a=$(run appnet "$ap" "$ROOT/mail/hamburger.edu/bob/new")
  p=$(run postfix "$pp" "$PF/vmail/hamburger.edu/bob/new")
  printf "%-8s %10s/s %10s/s %8s\n" "$r" "$a" "$p" "$(python3 -c "print(f'{$a / $p:.2f}')")"
done
