#!/usr/bin/env bash
# The attacks of the hostile review (issue 22), replayed against the release binary: each
# service's part lives in interop/hostile/<service>.sh and must pass on its own.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
# Limits are about what a real deployment does under load: test the optimised build.
cargo build --release --quiet --bin appnet
export APPNET="$PWD/target/release/appnet"
passed=0; failed=0; failures=()
for part in "$here"/hostile/*.sh; do
  name=$(basename "$part")
  echo "--- hostile: $name"
  if timeout 300 bash "$part"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); failures+=("$name")
    echo "--- hostile: $name FAILED"
  fi
done
echo "hostile: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ] || { echo "failed: ${failures[*]}"; exit 1; }
