#!/usr/bin/env bash
# Runs every interop/*.sh against a freshly built appnet binary and reports each result.
# Each script gets $APPNET (the binary) and must clean up every process it starts.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
cargo build --quiet --bin appnet
# hostile.sh replays attacks against the optimised build: build it here, outside the per-script
# time limit (a cold release build with LTO takes minutes on 2 cores).
cargo build --release --quiet --bin appnet
export APPNET="$PWD/target/debug/appnet"
passed=0; failed=0; failures=()
for script in "$here"/*.sh; do
  name=$(basename "$script")
  [ "$name" = "run-all.sh" ] && continue
  [ "${name#lib}" != "$name" ] && continue   # lib*.sh are helpers, not tests
  echo "--- interop: $name"
  if timeout 900 bash "$script"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); failures+=("$name")
    echo "--- interop: $name FAILED"
  fi
done
echo "interop: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ] || { echo "failed: ${failures[*]}"; exit 1; }
