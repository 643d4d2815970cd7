#!/usr/bin/env bash
# FTP server benchmark (a report, not a test): appnet ftp serve and vsftpd in one run, each
# pinned to the same CPU, the load generator on the other, over the same anonymous read-only tree:
#   1. throughput: curl RETR of a 1 GiB file in passive mode (best of RUNS), MB/s;
#   2. many files: an lftp mirror of 1,000 small files (one session, a data connection each), s;
#   3. concurrency: SESSIONS concurrent sessions, each logging in anonymously (both servers),
#      TYPE I, EPSV + LIST, EPSV + RETR of a 4 KiB file, QUIT, repeated for DURATION seconds:
#      sessions completed within the window per second, p50 and p99 session time, and sessions
#      that failed (30 s limit each). The load is crates/ftp/examples/ftpload.rs, one tokio
#      thread: the Python asyncio client used before spent ~0.7 ms of CPU per session, so on
#      one CPU it could not drive more than ~1,400 sessions/s and was near that limit against
#      vsftpd. The clients start spread over the first second (200 SYNs in one instant overflow
#      vsftpd's listen backlog of 32, and each connection lost in that burst idled a client for
#      the whole 30 s limit); the window begins after that ramp. Both servers have their
#      per-address session cap raised to SESSIONS*4 (appnet --max-sessions-per-ip, vsftpd
#      max_per_ip), so the cap is not what is measured.
# Prints the figures and the appnet/vsftpd ratios (higher is better for appnet everywhere).
#
#   bench/ftp.sh                            # release build of appnet
#   SIZE_MIB=256 SESSIONS=50 DURATION=5 bench/ftp.sh
#   APPNET=target/release/appnet FTPLOAD=target/release/examples/ftpload bench/ftp.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
SIZE_MIB=${SIZE_MIB:-1024}
FILES=${FILES:-1000}
SESSIONS=${SESSIONS:-200}
DURATION=${DURATION:-10}
RUNS=${RUNS:-3}
NCPU=$(nproc)
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1-$((NCPU - 1))}
[ "$NCPU" -lt 2 ] && CLIENT_CPUS=0
for tool in curl lftp vsftpd python3 taskset; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install curl lftp vsftpd python3)" >&2; exit 1; }
done
source "$here/lib.sh"
release_appnet
if [ -z "${FTPLOAD:-}" ]; then
  cargo build --release --quiet -p appnet-ftp --example ftpload
  FTPLOAD=$PWD/target/release/examples/ftpload
fi

# --- the tree ----------------------------------------------------------------------------
root=$WORK/root
mkdir -p "$root/many" "$WORK/empty"
head -c $((SIZE_MIB << 20)) /dev/zero > "$root/big.bin"
head -c 4096 /dev/urandom > "$root/small.bin"
python3 - "$root/many" "$FILES" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    open(os.path.join(d, "f%04d.txt" % i), "wb").write(os.urandom(512 + (i * 37) % 3584))
PY
chmod -R a+rX "$root"

# --- the servers -------------------------------------------------------------------------
start_appnet() {
  PORT=$(free_port)
  TOKIO_WORKER_THREADS=1 taskset -c "$SERVER_CPUS" "$APPNET" ftp serve --root "$root" --listen "127.0.0.1:$PORT" \
    --max-sessions $((SESSIONS * 4)) --max-sessions-per-ip $((SESSIONS * 4)) >"$WORK/appnet.log" 2>&1 &
  PIDS+=($!); SERVER_PID=$!; wait_port "$PORT"
}
start_vsftpd() {
  PORT=$(free_port)
  cat > "$WORK/vsftpd.conf" <<CONF
listen=YES
listen_address=127.0.0.1
listen_port=$PORT
background=NO
anonymous_enable=YES
local_enable=NO
write_enable=NO
anon_root=$root
no_anon_password=YES
run_as_launching_user=YES
seccomp_sandbox=NO
secure_chroot_dir=$WORK/empty
pasv_enable=YES
port_enable=YES
connect_from_port_20=NO
xferlog_enable=NO
max_clients=$((SESSIONS * 4))
max_per_ip=$((SESSIONS * 4))
vsftpd_log_file=$WORK/vsftpd.log
CONF
  taskset -c "$SERVER_CPUS" vsftpd "$WORK/vsftpd.conf" &
  PIDS+=($!); SERVER_PID=$!; wait_port "$PORT"
}
stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }

# --- the loads ---------------------------------------------------------------------------
# throughput: prints the best MB/s of RUNS downloads.
throughput() {
  local best=0 v
  for _ in $(seq "$RUNS"); do
    v=$(taskset -c "$CLIENT_CPUS" curl -s --max-time 300 -o /dev/null -w '%{speed_download}' "ftp://127.0.0.1:$PORT/big.bin")
    best=$(python3 -c "import sys; print(max(float(sys.argv[1]), float(sys.argv[2]) / 1e6))" "$best" "$v")
  done
  printf '%.1f\n' "$best"
}
# mirror: prints the seconds an lftp mirror of the FILES small files takes (one session).
mirror() {
  rm -rf "$WORK/mirror"
  local start end
  start=$(date +%s.%N)
  taskset -c "$CLIENT_CPUS" lftp -p "$PORT" -u anonymous, -e "set net:max-retries 1; set cmd:fail-exit yes; mirror --parallel=1 many $WORK/mirror; bye" 127.0.0.1 >/dev/null
  end=$(date +%s.%N)
  local got; got=$(find "$WORK/mirror" -type f | wc -l)
  [ "$got" -eq "$FILES" ] || echo "  warning: the mirror holds $got of $FILES files" >&2
  python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$start" "$end"
}
# sessions: prints "SESSIONS_PER_SEC P50_MS P99_MS FAILED" (failure reasons on stderr).
sessions() {
  taskset -c "$CLIENT_CPUS" "$FTPLOAD" "127.0.0.1:$PORT" "$SESSIONS" "$DURATION" small.bin 4096 1000
}

declare -A R
echo "ftp bench: ${SIZE_MIB} MiB RETR (best of $RUNS), lftp mirror of $FILES files, $SESSIONS concurrent sessions for ${DURATION}s;"
echo "servers on CPU $SERVER_CPUS (appnet with one worker thread, vsftpd a process per session), load on CPU $CLIENT_CPUS"
echo "(the sessions load: $FTPLOAD, clients started over 1 s, then a ${DURATION}s window)"
for server in appnet vsftpd; do
  "start_$server"
  curl -s -o /dev/null "ftp://127.0.0.1:$PORT/small.bin"   # warm up
  R[$server,tput]=$(throughput)
  R[$server,mirror]=$(mirror)
  read -r sps p50 p99 failed < <(sessions)
  R[$server,sps]=$sps; R[$server,p50]=$p50; R[$server,p99]=$p99; R[$server,failed]=$failed
  [ "$failed" -eq 0 ] || echo "  warning: $server: $failed sessions failed" >&2
  stop_server
done

ratio() { python3 -c "import sys; a, b = map(float, sys.argv[1:]); print('%.2fx' % (a / b) if b else 'n/a')" "$1" "$2"; }
printf '\n%-40s %12s %12s %10s\n' test appnet vsftpd appnet/vsftpd
printf '%-40s %12s %12s %10s\n' "RETR ${SIZE_MIB} MiB, passive (MB/s)" "${R[appnet,tput]}" "${R[vsftpd,tput]}" "$(ratio "${R[appnet,tput]}" "${R[vsftpd,tput]}")"
printf '%-40s %12s %12s %10s\n' "lftp mirror, $FILES files (s; ratio=speed)" "${R[appnet,mirror]}" "${R[vsftpd,mirror]}" "$(ratio "${R[vsftpd,mirror]}" "${R[appnet,mirror]}")"
printf '%-40s %12s %12s %10s\n' "$SESSIONS sessions login+LIST+RETR (sess/s)" "${R[appnet,sps]}" "${R[vsftpd,sps]}" "$(ratio "${R[appnet,sps]}" "${R[vsftpd,sps]}")"
printf '%-40s %12s %12s %10s\n' "  p50 session time (ms; ratio=speed)" "${R[appnet,p50]}" "${R[vsftpd,p50]}" "$(ratio "${R[vsftpd,p50]}" "${R[appnet,p50]}")"
printf '%-40s %12s %12s %10s\n' "  p99 session time (ms; ratio=speed)" "${R[appnet,p99]}" "${R[vsftpd,p99]}" "$(ratio "${R[vsftpd,p99]}" "${R[appnet,p99]}")"
printf '%-40s %12s %12s\n' "  failed sessions" "${R[appnet,failed]}" "${R[vsftpd,failed]}"
