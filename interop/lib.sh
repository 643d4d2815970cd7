#!/usr/bin/env bash
# Shared helpers for interop scripts: source it. Provides free ports, readiness waits,
# process cleanup on exit, and check/fail reporting.
set -euo pipefail
: "${APPNET:?run through interop/run-all.sh or set APPNET to the appnet binary}"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# free_port: prints a currently unused TCP+UDP port on 127.0.0.1.
free_port() {
  python3 - <<'PY'
import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port)); print(port); break
    except OSError:
        pass
    finally:
        u.close(); t.close()
PY
}

# bg CMD...: starts CMD in the background, remembered for cleanup; sets $LAST_PID.
bg() { "$@" & LAST_PID=$!; PIDS+=("$LAST_PID"); }

# wait_tcp HOST PORT [SECONDS]: waits until a TCP connect succeeds.
wait_tcp() {
  local host=$1 port=$2 limit=${3:-20} i
  for ((i = 0; i < limit * 20; i++)); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "timed out waiting for $host:$port" >&2; return 1
}

CHECKS=0
# check NAME EXPECTED ACTUAL: compares and reports.
check() {
  CHECKS=$((CHECKS + 1))
  if [ "$2" == "$3" ]; then echo "  ok: $1"; else echo "  FAIL: $1: expected [$2], got [$3]" >&2; exit 1; fi
}
