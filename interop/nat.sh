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

echo "nat: $CHECKS checks passed"
