#!/usr/bin/env bash
# STUN/TURN interop: coturn's clients against `appnet turn serve`, and `appnet stun` against
# coturn's turnserver. Loopback only; loopback peers are allowed explicitly (--allow-peer).
source "$(dirname "$0")/lib.sh"

printf '# test users\nalice:secret\nbob:hunter2\n' > "$WORK/users"

# turnutils_uclient -y runs, per -m client, two endpoints with an RTP and an RTCP session each
# (4 sessions for -m 1 or 2 here), each sending -n messages: the totals below are n*4.

# wait_stun PORT: polls the server with appnet's STUN client until it answers.
wait_stun() {
  local i
  for ((i = 0; i < 40; i++)); do
    "$APPNET" stun "127.0.0.1:$1" --timeout 0.5 >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "STUN server on $1 did not answer" >&2; return 1
}

PORT=$(free_port)
bg "$APPNET" turn serve --listen "127.0.0.1:$PORT" --realm lab --users "$WORK/users" \
  --ports 50200-50299 --allow-peer 127.0.0.0/8 --user-quota 50 --ip-quota 50
wait_stun "$PORT"

echo "turnutils_stunclient -> appnet STUN"
out=$(timeout 20 turnutils_stunclient -p "$PORT" 127.0.0.1 2>&1)
check "stunclient gets a reflexive address" 1 "$(grep -c 'UDP reflexive addr: 127.0.0.1:' <<<"$out" | awk '{print ($1 > 0)}')"

echo "turnutils_uclient -> appnet TURN (channels, client-to-client)"
out=$(timeout 60 turnutils_uclient -p "$PORT" -u alice -w secret -y -n 40 -m 2 -l 180 127.0.0.1 2>&1)
check "uclient channels: every message relayed" "tot_send_msgs=160, tot_recv_msgs=160" \
  "$(grep -o 'start_mclient: tot_send_msgs=[0-9]*, tot_recv_msgs=[0-9]*' <<<"$out" | tail -1 | sed 's/start_mclient: //')"
check "uclient channels: no loss" 1 "$(grep -c 'Total lost packets 0 ' <<<"$out")"

echo "turnutils_uclient -s -> appnet TURN (Send/Data indications)"
out=$(timeout 60 turnutils_uclient -s -p "$PORT" -u bob -w hunter2 -y -n 30 -m 1 -l 120 127.0.0.1 2>&1)
check "uclient indications: every message relayed" "tot_send_msgs=120, tot_recv_msgs=120" \
  "$(grep -o 'start_mclient: tot_send_msgs=[0-9]*, tot_recv_msgs=[0-9]*' <<<"$out" | tail -1 | sed 's/start_mclient: //')"

echo "wrong password is refused"
out=$(timeout 20 turnutils_uclient -p "$PORT" -u alice -w wrong -y -n 2 -m 1 127.0.0.1 2>&1 || true)
check "uclient with a wrong password relays nothing" 0 "$(grep -c 'tot_recv_msgs=[1-9]' <<<"$out" || true)"

echo "loopback peers are refused without --allow-peer"
PORT2=$(free_port)
bg "$APPNET" turn serve --listen "127.0.0.1:$PORT2" --realm lab --users "$WORK/users" --ports 50300-50399
wait_stun "$PORT2"
out=$(timeout 20 turnutils_uclient -p "$PORT2" -u alice -w secret -y -n 2 -m 1 127.0.0.1 2>&1 || true)
check "uclient gets 403 for a loopback peer" 1 "$(grep -c 'error 403' <<<"$out" | awk '{print ($1 > 0)}')"

echo "appnet stun -> coturn turnserver"
CPORT=$(free_port)
bg turnserver -n --listening-ip 127.0.0.1 --listening-port "$CPORT" --relay-ip 127.0.0.1 \
  --min-port 50400 --max-port 50499 --allow-loopback-peers --no-tls --no-dtls --no-cli \
  --lt-cred-mech --user alice:secret --realm lab --log-file stdout --pidfile "$WORK/turnserver.pid" \
  >"$WORK/turnserver.log" 2>&1
wait_stun "$CPORT"
mapped=$(timeout 10 "$APPNET" stun "127.0.0.1:$CPORT" 2>/dev/null)
check "appnet stun prints a loopback IP:PORT from coturn" 1 "$(grep -cE '^127\.0\.0\.1:[0-9]+$' <<<"$mapped")"


echo "RFC 5780: turnutils_natdiscovery -> appnet turn serve --alt-listen (loopback: no NAT)"
DPORT=$(free_port)
DALT=$(free_port)
bg "$APPNET" turn serve --listen "127.0.0.1:$DPORT" --alt-listen "127.0.0.2:$DALT" --realm lab \
  --users "$WORK/users" --ports 50500-50599
wait_stun "$DPORT"
out=$(timeout 30 turnutils_natdiscovery -m -f -p "$DPORT" 127.0.0.1 2>&1 || true)
check "natdiscovery: mapping is endpoint independent" 1 "$(grep -c 'NAT with Endpoint Independent Mapping\|No NAT' <<<"$out" | awk '{print ($1 > 0)}')"
check "natdiscovery: filtering is endpoint independent" 1 "$(grep -c 'Endpoint Independent Filtering' <<<"$out" | awk '{print ($1 > 0)}')"
out=$(timeout 20 "$APPNET" stun "127.0.0.1:$DPORT" 2>/dev/null)
check "appnet stun: mapping and filtering on loopback" "mapping: endpoint-independent filtering: endpoint-independent" \
  "$(grep -E '^(mapping|filtering):' <<<"$out" | tr '\n' ' ' | sed 's/ $//')"

echo "RFC 5780: appnet stun -> coturn turnserver with two listening IPs"
C2=$(free_port)
bg turnserver -n --listening-ip 127.0.0.1 --listening-ip 127.0.0.2 --listening-port "$C2" --relay-ip 127.0.0.1 \
  --min-port 50800 --max-port 50899 --no-tls --no-dtls --no-cli --lt-cred-mech --user alice:secret --realm lab \
  --log-file stdout --pidfile "$WORK/turnserver2.pid" >"$WORK/turnserver2.log" 2>&1
wait_stun "$C2"
out=$(timeout 20 "$APPNET" stun "127.0.0.1:$C2" 2>/dev/null)
check "appnet stun: coturn's OTHER-ADDRESS and CHANGE-REQUEST give the loopback behaviour" \
  "mapping: endpoint-independent filtering: endpoint-independent" \
  "$(grep -E '^(mapping|filtering):' <<<"$out" | tr '\n' ' ' | sed 's/ $//')"

# Real NATs: a client namespace behind a router namespace that masquerades (nftables) towards a
# "public" namespace where appnet's STUN server has two addresses. Everything lives in
# namespaces this script creates (100.64.0.0/10 inside them) and is removed at exit.
echo "RFC 5780 behind real NATs (network namespaces, nftables masquerade)"
if [ "$(id -u)" != 0 ]; then
  echo "FAIL: the NAT checks need root (ip netns, nft); run interop/nat.sh as root" >&2
  exit 1
fi
nsp=appnet-nat-i
remove_namespaces() { for ns in $(ip netns list | awk '{print $1}' | grep "^$nsp-" || true); do ip netns del "$ns" || true; done; }
trap 'cleanup; remove_namespaces' EXIT
remove_namespaces
pub=$nsp-pub
ip netns add "$pub"
ip -n "$pub" link set lo up
ip link add anati-pub netns "$pub" type bridge
ip -n "$pub" link set anati-pub up
ip -n "$pub" addr add 100.64.0.1/24 dev anati-pub
ip -n "$pub" addr add 100.64.0.2/24 dev anati-pub
printf 'alice:pw-a\nbob:pw-b\ncarol:pw-c\n' > "$WORK/skype-users"
ip netns exec "$pub" "$APPNET" turn serve --listen 100.64.0.1:3478 --alt-listen 100.64.0.2:3479 \
  --realm lab --users "$WORK/skype-users" --ports 50600-50699 --allow-peer 100.64.0.0/24 &
TURN_PID=$!; PIDS+=("$TURN_PID")
NS_PIDS=("$TURN_PID")

# nat_site N MODE: namespace $nsp-rtrN (100.64.0.1N outside, 10.N.0.1 inside, masquerade MODE,
# unsolicited inbound packets dropped) and $nsp-cliN (10.N.0.2) behind it.
nat_site() {
  local n=$1 mode=$2 rtr=$nsp-rtr$1 cli=$nsp-cli$1
  ip netns add "$rtr"; ip netns add "$cli"
  ip -n "$rtr" link set lo up; ip -n "$cli" link set lo up
  ip link add "anati-o$n" netns "$rtr" type veth peer name "anati-p$n" netns "$pub"
  ip -n "$pub" link set "anati-p$n" master anati-pub up
  ip -n "$rtr" addr add "100.64.0.1$n/24" dev "anati-o$n"
  ip -n "$rtr" link set "anati-o$n" up
  ip link add "anati-i$n" netns "$rtr" type veth peer name "anati-c$n" netns "$cli"
  ip -n "$rtr" addr add "10.$n.0.1/24" dev "anati-i$n"; ip -n "$rtr" link set "anati-i$n" up
  ip -n "$cli" addr add "10.$n.0.2/24" dev "anati-c$n"; ip -n "$cli" link set "anati-c$n" up
  ip -n "$cli" route add default via "10.$n.0.1"
  ip netns exec "$rtr" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$rtr" nft -f - <<NFT
table ip appnet_nat {
  chain post { type nat hook postrouting priority srcnat; oifname "anati-o$n" masquerade $mode; }
  # Unsolicited packets from outside die here, before conntrack confirms an entry for them:
  # otherwise the early check of a peer would claim the tuple and push our next mapping to
  # another port (Linux masquerade stays endpoint-independent only if nothing claimed it).
  chain in { type filter hook input priority filter; iifname "anati-o$n" ct state new drop; }
}
NFT
}
nat_site 1 ""
nat_site 2 "random"
nat_site 3 ""
for ((i = 0; i < 50; i++)); do
  ip netns exec "$nsp-cli1" "$APPNET" stun 100.64.0.1:3478 --timeout 0.3 >/dev/null 2>&1 && break
  sleep 0.1
done
out=$(ip netns exec "$nsp-cli1" timeout 20 "$APPNET" stun 100.64.0.1:3478 2>/dev/null)
check "behind masquerade: mapped to the router's address" 1 "$(grep -cE '^100\.64\.0\.11:[0-9]+$' <<<"$out")"
check "behind masquerade: endpoint-independent mapping, address-and-port-dependent filtering" \
  "mapping: endpoint-independent filtering: address-and-port-dependent" \
  "$(grep -E '^(mapping|filtering):' <<<"$out" | tr '\n' ' ' | sed 's/ $//')"
out=$(ip netns exec "$nsp-cli2" timeout 20 "$APPNET" stun 100.64.0.1:3478 2>/dev/null)
check "behind masquerade random: address-and-port-dependent (symmetric) mapping" \
  "mapping: address-and-port-dependent" "$(grep -E '^mapping:' <<<"$out")"
out=$(ip netns exec "$nsp-cli2" timeout 30 turnutils_natdiscovery -m -p 3478 100.64.0.1 2>&1 || true)
check "natdiscovery agrees: address and port dependent mapping" 1 \
  "$(grep -c 'Address and Port Dependent Mapping' <<<"$out" | awk '{print ($1 > 0)}')"
# Skype-style peers: a supernode in the public namespace; alice behind NAT 1 (masquerade),
# bob behind NAT 2 (masquerade random: symmetric), carol behind NAT 3 (masquerade). appnet's
# TURN relay first, then coturn's turnserver as the relay for dave and erin.
echo "appnet skype: calls through real NATs (direct fails behind the symmetric NAT -> relay; two EIM NATs -> hole punching)"
ip netns exec "$pub" "$APPNET" skype supernode --listen 100.64.0.1:33033 >"$WORK/sn.out" 2>&1 &
NS_PIDS+=($!); PIDS+=($!)
ip netns exec "$pub" turnserver -n --listening-ip 100.64.0.1 --listening-port 3480 --relay-ip 100.64.0.1 \
  --min-port 50700 --max-port 50799 --no-tls --no-dtls --no-cli --lt-cred-mech --user dave:pw-d \
  --user erin:pw-e --realm lab --log-file stdout --pidfile "$WORK/coturn-ns.pid" >"$WORK/coturn-ns.log" 2>&1 &
NS_PIDS+=($!); PIDS+=($!)
# start_peer USER SITE TURN-PORT: a peer in $nsp-cliSITE registered at the SN, relayed by TURN-PORT.
start_peer() {
  printf 'pw-%s\n' "${1:0:1}" > "$WORK/pw-$1"
  RUST_LOG=${RUST_LOG:-warn} ip netns exec "$nsp-cli$2" "$APPNET" skype peer --user "$1" --supernode 100.64.0.1:33033 \
    --turn "100.64.0.1:$3" --password-stdin --control "$WORK/$1.sock" <"$WORK/pw-$1" >"$WORK/$1.out" 2>&1 &
  NS_PIDS+=($!); PIDS+=($!)
}
# wait_file_line FILE PATTERN: waits up to 10 s for a line matching PATTERN in FILE.
wait_file_line() {
  for ((i = 0; i < 100; i++)); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "no line matching $2 in $1:" >&2; cat "$1" "$WORK"/*.out >&2; return 1
}
for ((i = 0; i < 50; i++)); do grep -q 'supernode on udp' "$WORK/sn.out" 2>/dev/null && break; sleep 0.1; done
start_peer alice 1 3478
start_peer bob 2 3478
start_peer carol 3 3478
for u in alice bob carol; do wait_file_line "$WORK/$u.out" 'registered at'; done
check "bob registered relayed and server-reflexive candidates" 1 \
  "$(grep -c 'ServerReflexive 100.64.0.12:[0-9]*, Relayed 100.64.0.1:50[0-9]*' "$WORK/bob.out")"
out=$(timeout 30 "$APPNET" skype message bob hello through the relay --control "$WORK/alice.sock")
echo "  $out"
check "alice -> bob (symmetric NAT): the direct pairs fail, a relayed path carries the message" 1 \
  "$(grep -c '^sent to bob, relayed' <<<"$out")"
wait_file_line "$WORK/bob.out" '^alice: hello through the relay$'
check "bob prints alice's message" 1 "$(grep -c '^alice: hello through the relay$' "$WORK/bob.out")"
out=$(timeout 30 "$APPNET" skype call bob --secs 2 --control "$WORK/alice.sock")
echo "  $out"
check "the voice stream through the relay: 100 packets sent, loss and delay reported" 1 \
  "$(grep -cE 'relayed.*sent 100 voice packets \(50/s of 160 bytes\), (9[0-9]|100) received, .* lost .*delay' <<<"$out")"
out=$(timeout 30 "$APPNET" skype message carol hello punched --control "$WORK/alice.sock")
echo "  $out"
check "alice -> carol (two EIM NATs): hole punching, a direct path between the NATs" 1 \
  "$(grep -cE '^sent to carol, direct from 10\.1\.0\.2:[0-9]+ to 100\.64\.0\.13:[0-9]+$' <<<"$out")"
wait_file_line "$WORK/carol.out" '^alice: hello punched$'
out=$(timeout 30 "$APPNET" skype call carol --secs 1 --control "$WORK/alice.sock")
echo "  $out"
check "the voice stream over the punched path" 1 "$(grep -cE 'direct.*sent 50 voice packets.*(4[5-9]|50) received' <<<"$out")"
out=$(timeout 10 "$APPNET" skype message nobody hi --control "$WORK/carol.sock" 2>&1 || true)
check "a message to an unknown name: the SN answers 404" 1 "$(grep -c '404 No Such User' <<<"$out")"

echo "appnet skype peers with coturn as their relay"
start_peer erin 1 3480
start_peer dave 2 3480
for u in erin dave; do wait_file_line "$WORK/$u.out" 'registered at'; done
check "dave got a relayed candidate from coturn" 1 "$(grep -c 'Relayed 100.64.0.1:507[0-9][0-9]' "$WORK/dave.out")"
out=$(timeout 30 "$APPNET" skype message dave hello via coturn --control "$WORK/erin.sock")
echo "  $out"
check "erin -> dave (symmetric NAT): relayed through coturn" 1 "$(grep -cE '^sent to dave, relayed.*100\.64\.0\.1:507[0-9]{2}' <<<"$out")"
wait_file_line "$WORK/dave.out" '^erin: hello via coturn$'
out=$(timeout 30 "$APPNET" skype call dave --secs 2 --control "$WORK/erin.sock")
echo "  $out"
check "the voice stream through coturn" 1 "$(grep -cE 'sent 100 voice packets \(50/s of 160 bytes\), (9[0-9]|100) received' <<<"$out")"

for pid in "${NS_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
for pid in "${NS_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
remove_namespaces
check "no namespace of ours is left" 0 "$(ip netns list | awk '{print $1}' | grep -c "^$nsp-" || true)"
check "no nftables table of ours in the host" 0 "$(nft list tables | grep -c appnet_nat || true)"

echo "nat: $CHECKS checks passed"
