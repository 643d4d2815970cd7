#!/usr/bin/env bash
# appnet lb driven by tools that are not ours: curl, wrk and python's http.client through the
# balancer to three `appnet web serve` replicas (each serves a different who.txt, so every answer
# names its replica); dig and dnsperf through it in UDP mode to two `appnet dns serve` replicas;
# nginx (listen ... proxy_protocol) checks the PROXY v1 and v2 headers; SIGHUP reloads the file.
source "$(dirname "$0")/lib.sh"
for tool in curl wrk dig dnsperf nginx python3; do
  command -v "$tool" >/dev/null || { echo "  FAIL: $tool is missing (see .ci/apt.d/lb.txt)" >&2; exit 1; }
done

# --- three web replicas ------------------------------------------------------------------
declare -a WPORT WPID
start_web() { # N
  mkdir -p "$WORK/site$1"; echo "replica$1" > "$WORK/site$1/who.txt"
  bg "$APPNET" web serve --root "$WORK/site$1" --listen "127.0.0.1:${WPORT[$1]}" --quiet --max-per-ip 256
  WPID[$1]=$LAST_PID
  wait_tcp 127.0.0.1 "${WPORT[$1]}"
}
for i in 1 2 3; do WPORT[$i]=$(free_port); start_web "$i"; done

lb=$(free_port); mport=$(free_port)
cat > "$WORK/lb.toml" <<TOML
[lb]
listen = "127.0.0.1:$lb"
backends = ["127.0.0.1:${WPORT[1]}", "127.0.0.1:${WPORT[2]}", "127.0.0.1:${WPORT[3]}"]
health = "http:/who.txt"
health_interval_ms = 200
rise = 2
fall = 2
slow_start_secs = 0
TOML
bg "$APPNET" --config "$WORK/lb.toml" lb --metrics "127.0.0.1:$mport" > "$WORK/lb.out"
LBPID=$LAST_PID
wait_tcp 127.0.0.1 "$lb"
wait_tcp 127.0.0.1 "$mport"
metric() { curl -s "http://127.0.0.1:$mport/metrics" | awk -v k="$1" '$1 == k {print $2}'; }

# curl: many connections spread over all three replicas.
seen=$(for _ in $(seq 1 30); do curl -s "http://127.0.0.1:$lb/who.txt"; done | sort -u | paste -sd' ')
check "curl: 30 connections reach all three replicas" "replica1 replica2 replica3" "$seen"
# curl: several requests on one keep-alive connection all hit one replica.
one=$(curl -s -w '%{num_connects}\n' "http://127.0.0.1:$lb/who.txt" "http://127.0.0.1:$lb/who.txt" \
  "http://127.0.0.1:$lb/who.txt" "http://127.0.0.1:$lb/who.txt")
check "curl: four requests reuse one connection" "1 0 0 0" "$(grep -v replica <<<"$one" | paste -sd' ')"
check "curl: ... and all four came from one replica" "1" "$(grep replica <<<"$one" | sort -u | wc -l)"

# wrk: keep-alive load through the balancer, no errors, every replica serving.
wout=$(wrk -t1 -c24 -d2s "http://127.0.0.1:$lb/who.txt")
reqs=$(awk '/requests in/ {print $1}' <<<"$wout")
check "wrk: requests completed" "yes" "$([ "${reqs:-0}" -gt 100 ] && echo yes || echo "no: $wout")"
check "wrk: no socket errors or non-2xx" "none" "$(grep -E 'Socket errors|Non-2xx' <<<"$wout" || echo none)"
for i in 1 2 3; do
  n=$(metric "lb_backend_connections_total{backend=\"127.0.0.1:${WPORT[$i]}\"}")
  check "metrics: replica$i got connections" "yes" "$([ "${n:-0}" -gt 0 ] && echo yes || echo "no ($n)")"
done

# Persistent connections with python's http.client: each connection sticks to one replica;
# SIGKILL replica2 mid-connection: only its connections fail; the health check ejects it.
python3 - "$lb" "${WPID[2]}" <<'PY'
import http.client, os, signal, sys, time
lb, victim = int(sys.argv[1]), int(sys.argv[2])
def who(c):
    c.request("GET", "/who.txt"); r = c.getresponse(); return r.read().decode().strip()
conns = []
for _ in range(18):
    c = http.client.HTTPConnection("127.0.0.1", lb, timeout=5)
    first = who(c)
    assert all(who(c) == first for _ in range(5)), "a keep-alive connection changed replica"
    conns.append((c, first))
assert any(n == "replica2" for _, n in conns), [n for _, n in conns]
print("  ok: python: 18 keep-alive connections x 6 requests, each on one replica")
os.kill(victim, signal.SIGKILL)
time.sleep(0.3)  # let the kernel close the dead replica's sockets
for c, name in conns:
    try:
        got = who(c)
    except (ConnectionError, http.client.HTTPException, OSError):
        got = None
    if name == "replica2":
        assert got is None, f"a connection to the killed replica answered {got}"
    else:
        assert got == name, f"a connection on {name} was disturbed: {got}"
print("  ok: python: replica2 killed: its connections failed, the other connections kept working")
PY
up2="lb_backend_up{backend=\"127.0.0.1:${WPORT[2]}\"}"
for _ in $(seq 1 100); do [ "$(metric "$up2")" = 0 ] && break; sleep 0.05; done
check "health check ejected replica2" "0" "$(metric "$up2")"
check "the balancer printed the ejection and the fraction moved" "yes" \
  "$(grep -qE "backend 127.0.0.1:${WPORT[2]} DOWN .*% of flows moved" "$WORK/lb.out" && echo yes || cat "$WORK/lb.out")"
seen=$(for _ in $(seq 1 20); do curl -s "http://127.0.0.1:$lb/who.txt"; done | sort -u | paste -sd' ')
check "new connections avoid the dead replica" "replica1 replica3" "$seen"
start_web 2
for _ in $(seq 1 100); do [ "$(metric "$up2")" = 1 ] && break; sleep 0.05; done
check "replica2 back: health check brings it up" "1" "$(metric "$up2")"
seen=$(for _ in $(seq 1 30); do curl -s "http://127.0.0.1:$lb/who.txt"; done | sort -u | paste -sd' ')
check "replica2 gets connections again" "replica1 replica2 replica3" "$seen"

# SIGHUP: the file now lists replicas 1 and 3 only; replica2 drains, new connections skip it.
sed -i "s/, \"127.0.0.1:${WPORT[2]}\"//" "$WORK/lb.toml"
kill -HUP "$LBPID"
for _ in $(seq 1 100); do grep -q reloaded "$WORK/lb.out" && break; sleep 0.05; done
check "SIGHUP reload printed with the fraction moved" "yes" \
  "$(grep -qE "reloaded: added \[\], removed \[127.0.0.1:${WPORT[2]}\].*% of flows moved" "$WORK/lb.out" && echo yes || cat "$WORK/lb.out")"
seen=$(for _ in $(seq 1 20); do curl -s "http://127.0.0.1:$lb/who.txt"; done | sort -u | paste -sd' ')
check "after the reload: replicas 1 and 3 only" "replica1 replica3" "$seen"

# --- PROXY protocol v1 and v2, received by nginx -------------------------------------------
np=$(free_port)
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<CONF
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body; proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi; uwsgi_temp_path $WORK/nginx/uwsgi; scgi_temp_path $WORK/nginx/scgi;
  server { listen 127.0.0.1:$np proxy_protocol; return 200 "\$proxy_protocol_addr \$proxy_protocol_port\n"; }
}
CONF
bg nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
wait_tcp 127.0.0.1 "$np"
for v in v1 v2; do
  pp=$(free_port)
  bg "$APPNET" lb --listen "127.0.0.1:$pp" --backend "127.0.0.1:$np" --proxy-protocol "$v" --health tcp
  wait_tcp 127.0.0.1 "$pp"
  sport=$(free_port)
  got=$(curl -s --local-port "$sport" "http://127.0.0.1:$pp/")
  check "PROXY $v: nginx sees the client's address and port" "127.0.0.1 $sport" "$got"
done
check "nginx logged no PROXY protocol errors" "" "$(grep -i 'proxy' "$WORK/nginx/error.log" || true)"

# --- UDP: dig and dnsperf through the balancer to two DNS replicas --------------------------
declare -a DPORT
for i in 1 2; do
  DPORT[$i]=$(free_port)
  cat > "$WORK/z$i.zone" <<ZONE
\$ORIGIN example.com.
\$TTL 300
@    IN SOA ns1 hostmaster ( 1 7200 3600 1209600 300 )
@    NS  ns1
ns1  A   127.0.0.1
who  A   10.0.0.$i
www  A   192.0.2.80
ZONE
  bg "$APPNET" dns serve --zone "$WORK/z$i.zone" --listen "127.0.0.1:${DPORT[$i]}"
  [ "$i" = 2 ] && DNS2=$LAST_PID
  wait_tcp 127.0.0.1 "${DPORT[$i]}"
done
ul=$(free_port)
bg "$APPNET" lb --udp --listen "127.0.0.1:$ul" --backend "127.0.0.1:${DPORT[1]},127.0.0.1:${DPORT[2]}" \
  --health tcp --health-interval 200 --fall 2 --udp-idle-timeout 60
sleep 0.3   # UDP has no connect to wait for; the first datagram below is retried by dig anyway
declare -A flow
for i in $(seq 1 16); do
  sp=$(free_port)
  a=$(dig -b "127.0.0.1#$sp" -p "$ul" @127.0.0.1 who.example.com +short +tries=3 +time=1)
  b=$(dig -b "127.0.0.1#$sp" -p "$ul" @127.0.0.1 who.example.com +short +tries=3 +time=1)
  [ "$a" = "$b" ] || { echo "  FAIL: dig from port $sp: a flow changed replica ($a then $b)" >&2; exit 1; }
  flow[$sp]=$a
done
check "dig: each source port (flow) sticks to one replica; 16 flows reach both" "10.0.0.1 10.0.0.2" \
  "$(printf '%s\n' "${flow[@]}" | sort -u | paste -sd' ')"
printf 'www.example.com A\nwho.example.com A\nexample.com SOA\n' > "$WORK/queries"
dout=$(dnsperf -s 127.0.0.1 -p "$ul" -d "$WORK/queries" -l 2 -c 4 -q 50 2>&1)
sent=$(awk '/Queries sent:/ {print $3}' <<<"$dout")
lost=$(awk '/Queries lost:/ {print $3}' <<<"$dout")
check "dnsperf: queries answered through the UDP balancer" "yes" "$([ "${sent:-0}" -gt 100 ] && echo yes || echo "no: $dout")"
check "dnsperf: no query lost" "0" "$lost"
# Kill DNS replica 2: the flows pinned to it move to replica 1; flows on replica 1 stay.
kill -9 "$DNS2"
for sp in "${!flow[@]}"; do
  # The datagram that meets the dead replica is lost (the ICMP error only tells us afterwards);
  # dig's retry is then pinned afresh.
  got=$(dig -b "127.0.0.1#$sp" -p "$ul" @127.0.0.1 who.example.com +short +tries=4 +time=1 | grep -v '^;;')
  check "flow $sp after replica 2 died (was ${flow[$sp]})" "10.0.0.1" "$got"
done
echo "lb interop: $CHECKS checks passed"
