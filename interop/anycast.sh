#!/usr/bin/env bash
# Anycast (appnet lab --netns, as root): curl and dig run inside the lab's client network
# namespaces. Both clients resolve www.anycast.lab to the same address (dig at the anycast DNS
# address) and curl reaches a different replica from each; after the lab stops (SIGINT, as
# Ctrl-C) no namespace of the lab is left. A namespace left by a killed lab is removed at start.
source "$(dirname "$0")/lib.sh"
if [ "$(id -u)" != 0 ]; then
  echo "FAIL: anycast needs root (ip netns); run interop/anycast.sh as root" >&2
  exit 1
fi
prefix=appnet-any
east=$prefix-client-east
west=$prefix-client-west
gone() { ip netns list | awk '{print $1}' | grep -c "^$prefix-" || true; }
remove_lab_namespaces() { for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix-" || true); do ip netns del "$ns" || true; done; }
trap 'cleanup; remove_lab_namespaces' EXIT

# A stale namespace, as a killed lab would leave.
ip netns add "$prefix-stale"
bg "$APPNET" lab --netns --dir "$WORK/lab" --web-port "$(free_port)" --dns-port "$(free_port)" >"$WORK/lab.out" 2>&1
lab=$LAST_PID
up=0
for ((i = 0; i < 300; i++)); do
  if ip netns exec "$east" curl -s --max-time 1 -o /dev/null http://198.19.0.1/ 2>/dev/null &&
    ip netns exec "$west" curl -s --max-time 1 -o /dev/null http://198.19.0.1/ 2>/dev/null; then up=1; break; fi
  kill -0 "$lab" 2>/dev/null || break
  sleep 0.1
done
check "the anycast network came up" "1" "$up"
check "the stale namespace was removed at start" "0" "$(ip netns list | awk '{print $1}' | grep -c "^$prefix-stale$" || true)"

echo "dig inside each client namespace"
check "client-east resolves www.anycast.lab" "198.19.0.1" "$(ip netns exec "$east" dig +short +time=2 +tries=2 @198.19.0.1 www.anycast.lab A)"
check "client-west resolves it to the same address" "198.19.0.1" "$(ip netns exec "$west" dig +short +time=2 +tries=2 @198.19.0.1 www.anycast.lab A)"
echo "curl inside each client namespace (same name, same address)"
a=$(ip netns exec "$east" curl -s --max-time 5 --resolve www.anycast.lab:80:198.19.0.1 http://www.anycast.lab/)
b=$(ip netns exec "$west" curl -s --max-time 5 --resolve www.anycast.lab:80:198.19.0.1 http://www.anycast.lab/)
check "client-east reaches replica-east" "1" "$(grep -c 'anycast replica replica-east ' <<<"$a")"
check "client-west reaches replica-west" "1" "$(grep -c 'anycast replica replica-west ' <<<"$b")"
check "the host's namespace has no 198.18/15 address" "0" "$(ip -4 addr | grep -cE 'inet 198\.1[89]\.' || true)"

# The anycast replicas answer before the rest of the lab has started: Ctrl-C is meant for a
# lab that says it is up.
for ((i = 0; i < 600; i++)); do grep -q "The lab is up" "$WORK/lab.out" && break; kill -0 "$lab" 2>/dev/null || break; sleep 0.1; done
check "the lab said it is up" "1" "$(grep -c "The lab is up" "$WORK/lab.out" || true)"
kill -INT "$lab"
for ((i = 0; i < 200; i++)); do kill -0 "$lab" 2>/dev/null || break; sleep 0.1; done
kill -0 "$lab" 2>/dev/null && tail -20 "$WORK/lab.out" >&2
check "the lab stopped on SIGINT" "stopped" "$(kill -0 "$lab" 2>/dev/null && echo running || echo stopped)"
check "no lab namespace is left" "0" "$(gone)"
echo "anycast: $CHECKS checks passed"
