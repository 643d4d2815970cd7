#!/usr/bin/env bash
# Mailbox access benchmark (a report, not a test): appnet mail serve and Dovecot in one run,
# each pinned to the same CPU, on copies of the same Maildir++ tree, under the same load:
#  - IMAP session mix: LOGIN, SELECT a 1,000-message INBOX, FETCH every message's headers
#    (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE)]), FETCH 20 whole
#    bodies, two SEARCHes, STORE +FLAGS/-FLAGS on 100 messages, LOGOUT;
#  - POP3 RETR throughput: USER/PASS, RETR 1..100 (4 KB messages), QUIT.
# CONC client processes (bench/mail_access_load.py) run sessions back to back for DURATION s.
# Prints sessions/s and MB/s per server and the appnet/Dovecot ratios.
#
#   bench/mail-imap.sh                       # release build, 10 s per run, 4 clients
#   DURATION=5 CONC=2 APPNET=target/release/appnet bench/mail-imap.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
DURATION=${DURATION:-10}
CONC=${CONC:-4}
NCPU=$(nproc)
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1-$((NCPU - 1))}
[ "$NCPU" -lt 2 ] && CLIENT_CPUS=0
for tool in dovecot python3 taskset; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install dovecot-imapd dovecot-pop3d)" >&2; exit 1; }
done
source "$here/lib.sh"
source "$here/../interop/lib-dovecot.sh"
release_appnet
PW=benchpw
ROOT=$WORK/appnet-root
POP_USERS=pop1@bench.test,pop2@bench.test,pop3@bench.test,pop4@bench.test
for u in bench@bench.test ${POP_USERS//,/ }; do
  printf '%s\n' "$PW" | "$APPNET" mail user add "$u" --root "$ROOT" --password-stdin >/dev/null
done
# 1,000 messages of about 4 KB in bench's INBOX, 100 in each POP3 user's, as a deliverer writes
# them (Dovecot's name format with S= and W=).
python3 - "$ROOT" <<'PY'
import os, random, sys, time
root = sys.argv[1]
random.seed(7)
subjects = ["lunch on friday", "quarterly report", "re: your order", "meeting notes", "photos", "invoice"]
people = ["alice@crepes.fr", "bob@hamburger.edu", "carol@x.org", "dave@y.org"]
def message(i):
    body = "".join(f"line {j} of message {i}: " + "lorem ipsum dolor sit amet " * 2 + "\n" for j in range(55))
    return (f"From: {random.choice(people)}\nTo: bench@bench.test\nSubject: {random.choice(subjects)} {i}\n"
            f"Date: Mon, 1 Jan 2024 10:{i % 60:02d}:00 +0000\nMessage-ID: <{i}@bench.test>\n\n{body}").encode()
def fill(user, n):
    d = os.path.join(root, "mail", "bench.test", user)
    t0 = int(time.time()) - 86400
    for i in range(n):
        data = message(i)
        w = len(data) + data.count(b"\n")
        name = f"{t0 + i}.M{i}P1.bench,S={len(data)},W={w}:2," + ("S" if i % 3 == 0 else "")
        with open(os.path.join(d, "cur", name), "wb") as f:
            f.write(data)
        os.utime(os.path.join(d, "cur", name), (t0 + i, t0 + i))
fill("bench", 1000)
for u in ("pop1", "pop2", "pop3", "pop4"):
    fill(u, 100)
PY
DROOT=$WORK/dovecot-root
cp -a "$ROOT" "$DROOT"
if [ "$(id -u)" = 0 ]; then MUID=65534; MGID=65534; chown -R "$MUID:$MGID" "$DROOT/mail"; chmod 711 "$WORK" "$DROOT"; else MUID=$(id -u); MGID=$(id -g); fi

load() { # load imap|pop3 PORT USERS -> "sessions/s MB/s errors"
  taskset -c "$CLIENT_CPUS" python3 "$here/mail_access_load.py" "$1" "$2" "$DURATION" "$CONC" "$3" "$PW"
}
warm() { # one short unrecorded run (Dovecot builds its indexes on first access)
  taskset -c "$CLIENT_CPUS" python3 "$here/mail_access_load.py" "$1" "$2" 2 1 "$3" "$PW" >/dev/null
}

# --- appnet ------------------------------------------------------------------------------
ip=$(free_port); pp=$(free_port)
TOKIO_WORKER_THREADS=1 taskset -c "$SERVER_CPUS" "$APPNET" mail serve --domain bench.test --root "$ROOT" \
  --smtp off --submission off --imap "127.0.0.1:$ip" --pop3 "127.0.0.1:$pp" --allow-plain-auth \
  --max-per-ip 256 --auth-failure-delay 0 --login-lockout-failures 100000 >"$WORK/appnet.log" 2>&1 &
PIDS+=($!)
wait_port "$ip"; wait_port "$pp"
warm imap "$ip" bench@bench.test; warm pop3 "$pp" "$POP_USERS"
read -r a_imap a_imap_mb a_imap_err < <(load imap "$ip" bench@bench.test)
read -r a_pop a_pop_mb a_pop_err < <(load pop3 "$pp" "$POP_USERS")
stop_all

# --- Dovecot -----------------------------------------------------------------------------
di=$(free_port); dp=$(free_port)
dovecot_config "$WORK/dovecot" "$DROOT" "$di" "$dp" "$MUID" "$MGID" 256 fast
taskset -c "$SERVER_CPUS" dovecot -F -c "$WORK/dovecot/dovecot.conf" &
PIDS+=($!)
wait_port "$di"; wait_port "$dp"
warm imap "$di" bench@bench.test; warm pop3 "$dp" "$POP_USERS"
read -r d_imap d_imap_mb d_imap_err < <(load imap "$di" bench@bench.test)
read -r d_pop d_pop_mb d_pop_err < <(load pop3 "$dp" "$POP_USERS")
stop_all

ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.2f}' if b else 'n/a')" "$1" "$2"; }
echo
echo "mail access, $(date -u +%F), $NCPU CPUs (server on $SERVER_CPUS, clients on $CLIENT_CPUS), $CONC clients, ${DURATION}s per run"
printf '%-44s %12s %12s %8s\n' "workload" "appnet" "Dovecot" "ratio"
printf '%-44s %12s %12s %8s\n' "IMAP session mix (sessions/s)" "$a_imap" "$d_imap" "$(ratio "$a_imap" "$d_imap")"
printf '%-44s %12s %12s %8s\n' "IMAP session mix (MB/s to clients)" "$a_imap_mb" "$d_imap_mb" "$(ratio "$a_imap_mb" "$d_imap_mb")"
printf '%-44s %12s %12s %8s\n' "POP3 100 x RETR 4 KB (sessions/s)" "$a_pop" "$d_pop" "$(ratio "$a_pop" "$d_pop")"
printf '%-44s %12s %12s %8s\n' "POP3 RETR throughput (MB/s)" "$a_pop_mb" "$d_pop_mb" "$(ratio "$a_pop_mb" "$d_pop_mb")"
echo "errors (sessions that failed): appnet IMAP $a_imap_err POP3 $a_pop_err, Dovecot IMAP $d_imap_err POP3 $d_pop_err"
