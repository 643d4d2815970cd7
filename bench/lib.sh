# Shared setup of the benchmarks (source it; it is not a benchmark itself): a work directory
# removed at exit, every process in PIDS killed at exit, free loopback ports and readiness waits.
WORK=$(mktemp -d)
chmod 755 "$WORK"   # nginx, h2o and squid workers drop root privileges and must read files here
PIDS=()
# stop_all: kills and reaps every process recorded in PIDS.
stop_all() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  PIDS=()
}
trap 'stop_all; rm -rf "$WORK"' EXIT
# free_port: a port on 127.0.0.1 free for both TCP and UDP right now (DNS servers take both).
free_port() {
  python3 -c 'import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass
    finally: u.close(); t.close()'
}
# wait_port PORT: waits (10 s at most) until 127.0.0.1:PORT accepts connections.
wait_port() {
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "port $1 not ready" >&2; return 1
}
# cpu_ticks PID: the CPU time (user + system, in clock ticks) used so far by PID and every
# process below it (nginx's workers are child processes; a process's threads are in its count).
cpu_ticks() {
  python3 -c '
import os, sys
total, todo = 0, [sys.argv[1]]
while todo:
    pid = todo.pop()
    try:
        total += sum(map(int, open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[11:13]))
        for t in os.listdir(f"/proc/{pid}/task"):
            todo += open(f"/proc/{pid}/task/{t}/children").read().split()
    except OSError:
        pass
print(total)' "$1"
}
# thread_ticks PID: "TID=TICKS" for every thread of PID and of every process below it, so that a
# benchmark can tell how many of a server's threads did the work (busy_threads).
thread_ticks() {
  python3 -c '
import os, sys
out, todo = [], [sys.argv[1]]
while todo:
    pid = todo.pop()
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            f = open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()
            out.append("%s=%d" % (t, int(f[11]) + int(f[12])))
            todo += open(f"/proc/{pid}/task/{t}/children").read().split()
    except OSError:
        pass
print(" ".join(out))' "$1"
}
# busy_threads "BEFORE" "AFTER": each thread's share (%) of the CPU time that all of them used
# between two thread_ticks snapshots, largest first, joined by ":", leaving out threads under a
# tenth ("100" means one thread did all the work, "52:48" two did it about equally).
busy_threads() {
  python3 -c '
import sys
a, b = ({t: int(n) for t, n in (x.split("=") for x in s.split())} for s in sys.argv[1:])
d = sorted((n - a.get(t, 0) for t, n in b.items()), reverse=True)
total = sum(d)
print(":".join("%d" % round(100 * x / total) for x in d if x * 10 >= total) if total else "-")' "$1" "$2"
}
# release_appnet: sets APPNET to a fresh release build unless the caller gave one.
release_appnet() {
  if [ -z "${APPNET:-}" ]; then
    cargo build --release --quiet --bin appnet
    APPNET=$PWD/target/release/appnet
  fi
}
# write_site DIR NAME BYTES: DIR/small.html of 612 bytes (h2o's published benchmark size) and
# DIR/NAME of BYTES random bytes.
write_site() {
  mkdir -p "$1"
  python3 - "$1" "$2" "$3" <<'PY'
import sys, os
d, name, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
head = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome!</title>\n</head>\n<body>\n<h1>Welcome!</h1>\n<p>"
tail = "</p>\n</body>\n</html>\n"
open(os.path.join(d, "small.html"), "w").write(head + "x" * (612 - len(head) - len(tail)) + tail)
open(os.path.join(d, name), "wb").write(os.urandom(size))
PY
  [ "$(stat -c %s "$1/small.html")" = 612 ]
}
