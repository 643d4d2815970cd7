#!/usr/bin/env bash
# `appnet lab --nat` (as root): the NAT namespaces come up, appnet's STUN client run inside
# Bob's namespace sees the symmetric NAT (mapped to Bob's router, address-and-port-dependent
# mapping), the host's ruleset gains no table, and SIGINT (Ctrl-C) removes every namespace.
# A namespace left by a killed lab is removed at start.
source "$(dirname "$0")/lib.sh"
if [ "$(id -u)" != 0 ]; then
  echo "FAIL: lab --nat needs root (ip netns, nft); run interop/lab-nat.sh as root" >&2
  exit 1
fi
names="appnet-nat-pub appnet-nat-rtr1 appnet-nat-alice appnet-nat-rtr2 appnet-nat-bob appnet-nat-rtr3 appnet-nat-carol"
ours() { ip netns list | awk '{print $1}' | grep -cxF -f <(tr ' ' '\n' <<<"$names") || true; }
remove_lab_namespaces() { for ns in $names; do ip netns del "$ns" 2>/dev/null || true; done; }
trap 'cleanup; remove_lab_namespaces' EXIT

ip netns add appnet-nat-bob   # stale, as a killed lab would leave it
bg "$APPNET" lab --nat --dir "$WORK/lab" --web-port "$(free_port)" --dns-port "$(free_port)" >"$WORK/lab.out" 2>&1
lab=$LAST_PID
for ((i = 0; i < 900; i++)); do grep -q "The lab is up" "$WORK/lab.out" && break; kill -0 "$lab" 2>/dev/null || break; sleep 0.1; done
check "the lab said it is up" "1" "$(grep -c "The lab is up" "$WORK/lab.out" || true)"
check "its directory lists the NATs" "1" "$(grep -c '^NATs (network namespaces): supernode 100.64.0.1:33033' "$WORK/lab.out" || true)"
check "ip netns shows the seven namespaces" "7" "$(ours)"
out=$(ip netns exec appnet-nat-bob timeout 20 "$APPNET" stun 100.64.0.1:3478 2>/dev/null || true)
check "STUN from Bob's namespace: mapped to his NAT router" "1" "$(grep -cE '^100\.64\.0\.12:[0-9]+$' <<<"$out")"
check "Bob's NAT is symmetric" "mapping: address-and-port-dependent" "$(grep -E '^mapping:' <<<"$out")"
check "no nftables table of the lab in the host" "0" "$(nft list tables | grep -c appnet_nat || true)"
kill -INT "$lab"
for ((i = 0; i < 200; i++)); do kill -0 "$lab" 2>/dev/null || break; sleep 0.1; done
kill -0 "$lab" 2>/dev/null && tail -20 "$WORK/lab.out" >&2
check "the lab stopped on SIGINT" "stopped" "$(kill -0 "$lab" 2>/dev/null && echo running || echo stopped)"
check "no namespace of the lab is left" "0" "$(ours)"
echo "lab-nat: $CHECKS checks passed"
