#!/usr/bin/env bash
# FTP server benchmark (a report, not a test): appnet ftp serve and vsftpd in one run, each
# pinned to the same CPU, the load generator on the other, over the same anonymous read-only tree:
#   1. throughput: curl RETR of a 1 GiB file in passive mode (best of RUNS), MB/s;
#   2. many files: an lftp mirror of 1,000 small files (one session, a data connection each), s;
#   3. concurrency: SESSIONS concurrent sessions (Python asyncio), each logging in, LIST, RETR of a
#      small file, QUIT, repeated for DURATION seconds: sessions completed within the window per
#      second, p99 session time, and sessions that failed (30 s limit each).
# Prints the figures and the appnet/vsftpd ratios (higher is better for appnet everywhere).
#
#   bench/ftp.sh                            # release build of appnet
#   SIZE_MIB=256 SESSIONS=50 DURATION=5 bench/ftp.sh
#   APPNET=target/release/appnet bench/ftp.sh
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
# sessions: prints "SESSIONS_PER_SEC P99_MS FAILED".
sessions() {
  taskset -c "$CLIENT_CPUS" python3 - "$PORT" "$SESSIONS" "$DURATION" <<'PY'
import asyncio, sys, time
port, conc, duration = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])

async def reply(r):
    line = await r.readline()
    if len(line) < 4:
        raise ConnectionError("closed")
    code = line[:3]
    if line[3:4] == b"-":
        while True:
            line = await r.readline()
            if not line:
                raise ConnectionError("closed")
            if line[:3] == code and line[3:4] == b" ":
                break
    return int(code), line

async def cmd(r, w, text, want):
    w.write(text.encode() + b"\r\n")
    code, line = await reply(r)
    if code not in want:
        raise RuntimeError(f"{text}: {line!r}")
    return line

async def transfer(r, w, command):
    line = await cmd(r, w, "EPSV", (229,))
    dport = int(line.split(b"(")[1].split(b"|")[3])
    dr, dw = await asyncio.open_connection("127.0.0.1", dport)
    w.write(command.encode() + b"\r\n")
    code, _ = await reply(r)
    if code not in (125, 150):
        raise RuntimeError(command)
    n = 0
    while chunk := await dr.read(65536):
        n += len(chunk)
    dw.close()
    code, _ = await reply(r)
    if code != 226:
        raise RuntimeError(command)
    return n

async def session():
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reply(r)
        await cmd(r, w, "USER anonymous", (331, 230))
        await cmd(r, w, "PASS bench@", (230,))
        await cmd(r, w, "TYPE I", (200,))
        await transfer(r, w, "LIST")
        if await transfer(r, w, "RETR small.bin") != 4096:
            raise RuntimeError("short file")
        await cmd(r, w, "QUIT", (221,))
    finally:
        w.close()

async def worker(deadline, times, failed):
    while time.monotonic() < deadline:
        t = time.monotonic()
        try:
            await asyncio.wait_for(session(), 30)
            done = time.monotonic()
            if done <= deadline:
                times.append(done - t)
        except Exception as e:
            failed.append(type(e).__name__ + (": " + str(e)[:60] if str(e) else ""))

async def main():
    times, failed = [], []
    start = time.monotonic()
    deadline = start + duration
    await asyncio.gather(*(worker(deadline, times, failed) for _ in range(conc)))
    took = deadline - start   # sessions finished within the window, per second of it
    times.sort()
    p99 = times[int(len(times) * 0.99) - 1] * 1000 if times else float("nan")
    if failed:
        from collections import Counter
        for why, n in Counter(failed).most_common(3):
            print("  %d sessions failed: %s" % (n, why), file=sys.stderr)
    print("%.0f %.1f %d" % (len(times) / took, p99, len(failed)))

asyncio.run(main())
PY
}

declare -A R
echo "ftp bench: ${SIZE_MIB} MiB RETR (best of $RUNS), lftp mirror of $FILES files, $SESSIONS concurrent sessions for ${DURATION}s;"
echo "servers on CPU $SERVER_CPUS (appnet with one worker thread, vsftpd a process per session), load on CPU $CLIENT_CPUS"
for server in appnet vsftpd; do
  "start_$server"
  curl -s -o /dev/null "ftp://127.0.0.1:$PORT/small.bin"   # warm up
  R[$server,tput]=$(throughput)
  R[$server,mirror]=$(mirror)
  read -r sps p99 failed < <(sessions)
  R[$server,sps]=$sps; R[$server,p99]=$p99; R[$server,failed]=$failed
  [ "$failed" -eq 0 ] || echo "  warning: $server: $failed sessions failed" >&2
  stop_server
done

ratio() { python3 -c "import sys; a, b = map(float, sys.argv[1:]); print('%.2fx' % (a / b) if b else 'n/a')" "$1" "$2"; }
printf '\n%-40s %12s %12s %10s\n' test appnet vsftpd appnet/vsftpd
printf '%-40s %12s %12s %10s\n' "RETR ${SIZE_MIB} MiB, passive (MB/s)" "${R[appnet,tput]}" "${R[vsftpd,tput]}" "$(ratio "${R[appnet,tput]}" "${R[vsftpd,tput]}")"
printf '%-40s %12s %12s %10s\n' "lftp mirror, $FILES files (s; ratio=speed)" "${R[appnet,mirror]}" "${R[vsftpd,mirror]}" "$(ratio "${R[vsftpd,mirror]}" "${R[appnet,mirror]}")"
printf '%-40s %12s %12s %10s\n' "$SESSIONS sessions login+LIST+RETR (sess/s)" "${R[appnet,sps]}" "${R[vsftpd,sps]}" "$(ratio "${R[appnet,sps]}" "${R[vsftpd,sps]}")"
printf '%-40s %12s %12s %10s\n' "  p99 session time (ms; ratio=speed)" "${R[appnet,p99]}" "${R[vsftpd,p99]}" "$(ratio "${R[vsftpd,p99]}" "${R[appnet,p99]}")"
printf '%-40s %12s %12s\n' "  failed sessions" "${R[appnet,failed]}" "${R[vsftpd,failed]}"
