#!/usr/bin/env bash
# SIP: appnet's registrar/proxy and user agent against sipp (REGISTER with Digest, 1,000
# record-routed calls UAC -> proxy -> UAS), sipsak (OPTIONS, REGISTER with Digest, OPTIONS over
# TLS), sipp as the far end of appnet's phone and caller, Kamailio on either side of appnet's
# proxy (in front of it, and as the far domain appnet finds through NAPTR/SRV/A), baresip
# registering and calling through it, and tshark's SIP dissector over everything the proxy,
# phone and caller sent.
source "$(dirname "$0")/lib.sh"
SIPDIR="$(cd "$(dirname "$0")/sip" && pwd)"
for tool in sipp sipsak tshark kamailio baresip; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed (.ci/apt.d/sip.txt)" >&2; exit 1; }
done

# sipsak 0.9.8 cuts a port to four digits in the URIs it builds: give it a port < 10000.
low_port() {
  python3 - <<'PY'
import socket, random
for _ in range(500):
    port = random.randint(5100, 9900)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port)); print(port); break
    except OSError:
        pass
    finally:
        u.close()
PY
}
# wait_udp_line FILE PATTERN: waits (10 s at most) until FILE holds PATTERN.
wait_for() {
  local i
  for ((i = 0; i < 200; i++)); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; return 1
}

cd "$WORK"
printf 'pw-bob\n' | "$APPNET" sip user add bob@umass.edu --users users.txt --password-stdin >/dev/null
printf 'pw-carol\n' | "$APPNET" sip user add carol@umass.edu --users users.txt --password-stdin >/dev/null
printf 'pw-alice\n' | "$APPNET" sip user add alice@umass.edu --users users.txt --password-stdin >/dev/null
port=$(low_port)
bg "$APPNET" sip serve --domain umass.edu --listen "127.0.0.1:$port" --users users.txt
sleep 0.3

# tshark watches every datagram to and from the proxy from here on.
bg tshark -i lo -f "udp port $port" -w "$WORK/sip.pcapng" -q 2>"$WORK/tshark.err"
TSHARK=$LAST_PID
wait_for "$WORK/tshark.err" "Capturing on"

echo "sipsak"
out=$(timeout 10 sipsak -s "sip:127.0.0.1:$port" -vv 2>&1 || true)
check "sipsak OPTIONS to the server is answered 200" "yes" "$(grep -q 'SIP/2.0 200' <<<"$out" && echo yes || echo no)"
# usrloc mode: REGISTER, answer the 401, expect 200 (-u: sipsak's own username is "carol@").
ok() { "$@" >/dev/null 2>&1 && echo yes || echo no; }
check "sipsak REGISTER with Digest is accepted" "yes" \
  "$(ok timeout 20 sipsak -U -C "sip:carol@127.0.0.1:$((port + 1))" -s "sip:carol@127.0.0.1:$port" -u carol -a pw-carol -x 60)"
check "sipsak REGISTER with a wrong password is refused" "no" \
  "$(ok timeout 20 sipsak -U -C "sip:carol@127.0.0.1:$((port + 1))" -s "sip:carol@127.0.0.1:$port" -u carol -a wrong -x 60)"

echo "sipp: REGISTER with Digest, then 1,000 calls through the record-routing proxy"
uas=$(free_port)
bg sipp -sf "$SIPDIR/uas-rr.xml" -i 127.0.0.1 -p "$uas" -nostdin >/dev/null 2>&1
UAS=$LAST_PID
printf 'SEQUENTIAL\nbob;127.0.0.1:%s;[authentication username=bob password=pw-bob]\n' "$uas" >reg.csv
rc=0; timeout 30 sipp -sf "$SIPDIR/register.xml" -inf reg.csv -i 127.0.0.1 -p "$(free_port)" -m 1 \
  "127.0.0.1:$port" -nostdin -trace_err >/dev/null 2>&1 || rc=$?
check "sipp REGISTER answers the 401 challenge and gets 200" "0" "$rc"
printf 'SEQUENTIAL\nbob;127.0.0.1:%s;[authentication username=bob password=wrong]\n' "$uas" >bad.csv
rc=0; timeout 30 sipp -sf "$SIPDIR/register.xml" -inf bad.csv -i 127.0.0.1 -p "$(free_port)" -m 1 \
  -recv_timeout 3000 "127.0.0.1:$port" -nostdin >/dev/null 2>&1 || rc=$?
check "sipp REGISTER with a wrong password fails" "fails" "$([ "$rc" != 0 ] && echo fails || echo passed)"
rc=0; timeout 120 sipp -sf "$SIPDIR/uac-rr.xml" -s bob -i 127.0.0.1 -p "$(free_port)" -m 1000 -r 200 -l 200 \
  "127.0.0.1:$port" -nostdin -trace_err -trace_stat -stf uac.csv >/dev/null 2>&1 || rc=$?
check "sipp 1,000 calls UAC -> appnet proxy -> UAS, no failure" "0" "$rc"
check "sipp counted 1,000 successful and no failed call" "1000 0" "$(tail -1 uac.csv | awk -F';' '{print $16, $18}')"
kill "$UAS" 2>/dev/null || true

echo "appnet phone and caller through the proxy"
# A second capture holds only appnet's own messages: phone, caller and proxy.
bg tshark -i lo -f "udp port $port" -w "$WORK/ua.pcapng" -q 2>"$WORK/tshark2.err"
TSHARK2=$LAST_PID
wait_for "$WORK/tshark2.err" "Capturing on"
printf 'pw-bob\n' | "$APPNET" sip phone --user bob@umass.edu --proxy "127.0.0.1:$port" --password-stdin \
  --auto-answer --calls 1 --trace >phone.log 2>&1 &
PHONE=$!; PIDS+=("$PHONE")
wait_for phone.log "200 OK (REGISTER)"
timeout 30 "$APPNET" sip call --from alice@umass.edu --to bob@umass.edu --proxy "127.0.0.1:$port" \
  --duration 2 --trace >call.log 2>&1
cat call.log
flow=$(grep -oE '(INVITE|100 Trying \(INVITE\)|180 Ringing \(INVITE\)|200 OK \(INVITE\)|ACK|media|BYE|200 OK \(BYE\))$|media' call.log | paste -sd,)
check "the caller's trace is the deck's flow" "INVITE,100 Trying (INVITE),180 Ringing (INVITE),200 OK (INVITE),ACK,media,BYE,200 OK (BYE)" "$flow"
sent=$(grep -oE 'sent [0-9]+' call.log | awk '{print $2}')
recv=$(grep -oE 'received [0-9]+' call.log | awk '{print $2}')
check "caller sent about 100 packets in 2 s" "yes" "$([ "$sent" -ge 90 ] && [ "$sent" -le 110 ] && echo yes || echo "no ($sent)")"
check "caller got its echo back" "yes" "$([ "$recv" -ge $((sent - 10)) ] && echo yes || echo "no ($recv)")"
wait "$PHONE"
# dumpcap hands packets over in batches: stop the capture only once the call's last request
# is in the file (bounded), or the BYE at the very end can be cut off.
for _ in $(seq 50); do
  tshark -r "$WORK/ua.pcapng" -Y 'sip.Method == "BYE"' 2>/dev/null | grep -q . && break
  sleep 0.1
done
kill -INT "$TSHARK2"; wait "$TSHARK2" 2>/dev/null || true
check "the phone printed its side of the media" "yes" "$(grep -q 'call ended: packets sent [0-9]* received [0-9]* lost 0' phone.log && echo yes || echo no)"

echo "Kamailio as a peer: caller -> Kamailio -> appnet proxy -> phone, and back"
kport=$(free_port)
mkdir -p "$WORK/kamrun"
sed -e "s/@KPORT@/$kport/" -e "s/@APPNET@/$port/" "$SIPDIR/kamailio.cfg" >kamailio.cfg
kamailio -f kamailio.cfg -c >/dev/null 2>&1 || { echo "FAIL: kamailio rejects interop/sip/kamailio.cfg" >&2; kamailio -f kamailio.cfg -c >&2; exit 1; }
bg kamailio -f kamailio.cfg -DD -E -Y "$WORK/kamrun"
KAM=$LAST_PID
printf 'pw-bob\n' | "$APPNET" sip phone --user bob@umass.edu --proxy "127.0.0.1:$port" --password-stdin \
  --auto-answer --calls 1 --trace >phone3.log 2>&1 &
PHONE3=$!; PIDS+=("$PHONE3")
wait_for phone3.log "200 OK (REGISTER)"
rc=0; timeout 30 "$APPNET" sip call --from alice@poly.edu --to bob@umass.edu --proxy "127.0.0.1:$kport" \
  --duration 1 --trace >call3.log 2>&1 || rc=$?
check "a call from poly.edu through Kamailio to appnet's umass.edu proxy completes" "0" "$rc"
check "the answer came back through Kamailio (its 100 Trying)" "yes" "$(grep -q 'your call is important' call3.log && echo yes || echo no)"
check "media flowed both ways through the Kamailio-routed dialog" "yes" "$(grep -q 'lost 0' call3.log && echo yes || echo no)"
wait "$PHONE3" || true
kill "$KAM" 2>/dev/null || true

echo "sipp as the far end of appnet's user agent (no proxy)"
pport=$(free_port)
"$APPNET" sip phone --user bob@umass.edu --listen "127.0.0.1:$pport" --auto-answer >phone2.log 2>&1 &
PIDS+=("$!"); PHONE2=$!
wait_for phone2.log "on udp"
rc=0; timeout 60 sipp -sn uac -s bob -i 127.0.0.1 -p "$(free_port)" -m 20 -l 1 -r 10 "127.0.0.1:$pport" \
  -nostdin -trace_err >/dev/null 2>&1 || rc=$?
check "sipp's built-in uac places 20 calls to appnet's phone" "0" "$rc"
kill "$PHONE2" 2>/dev/null || true
uas2=$(free_port)
bg sipp -sn uas -i 127.0.0.1 -p "$uas2" -nostdin >/dev/null 2>&1
UAS2=$LAST_PID
sleep 0.3
rc=0; timeout 30 "$APPNET" sip call --from alice@poly.edu --to "bob@umass.edu" --proxy "127.0.0.1:$uas2" \
  --duration 1 >call2.log 2>&1 || rc=$?
check "appnet's caller completes a call to sipp's built-in uas" "0" "$rc"
kill "$UAS2" 2>/dev/null || true

# kam_zone FILE RECORDS: kam.lab's zone with RECORDS (NAPTR/SRV lines); sip.kam.lab is 127.0.0.1.
kam_zone() {
  { printf '$ORIGIN kam.lab.\n$TTL 60\n@ IN SOA ns admin 1 3600 600 86400 60\n@ IN NS ns\nns IN A 127.0.0.1\n'
    printf '%s\nsip IN A 127.0.0.1\n' "$2"; } >"$1"
}

# call_kam N PORT: bob@kam.lab registers with Kamailio and alice@poly.edu calls him through
# appnet's proxy on PORT; leaves phoneN.log and callN.log, sets rc (the call's exit) and PHONE.
call_kam() {
  "$APPNET" sip phone --user bob@kam.lab --proxy "127.0.0.1:$kport2" --auto-answer --calls 1 --trace >"phone$1.log" 2>&1 &
  PHONE=$!; PIDS+=("$PHONE")
  wait_for "phone$1.log" "200 OK (REGISTER)"
  rc=0; printf 'pw-alice\n' | timeout 40 "$APPNET" sip call --from alice@poly.edu --to bob@kam.lab \
    --proxy "127.0.0.1:$2" --password-stdin --duration 1 --trace >"call$1.log" 2>&1 || rc=$?
  cat "call$1.log"
}

echo "RFC 3263 and Kamailio as the far domain: caller -> appnet (407, NAPTR/SRV/A) -> Kamailio -> phone"
kport2=$(free_port)
dnsport=$(free_port)
kam_zone kam.lab.zone '@ IN NAPTR 20 10 "s" "SIP+D2T" "" _sip._tcp.kam.lab.
@ IN NAPTR 10 10 "s" "SIP+D2U" "" _sip._udp.kam.lab.
_sip._tcp IN SRV 10 10 '"$kport2"' sip
_sip._udp IN SRV 10 10 '"$kport2"' sip'
bg "$APPNET" dns serve --zone kam.lab.zone --listen "127.0.0.1:$dnsport"
sed -e "s/@KPORT@/$kport2/" "$SIPDIR/kamailio-registrar.cfg" >kamailio-registrar.cfg
kamailio -f kamailio-registrar.cfg -c >/dev/null 2>&1 || { echo "FAIL: kamailio rejects interop/sip/kamailio-registrar.cfg" >&2; kamailio -f kamailio-registrar.cfg -c >&2; exit 1; }
mkdir -p "$WORK/kamrun2"
bg kamailio -f kamailio-registrar.cfg -DD -E -Y "$WORK/kamrun2"
printf 'pw-alice\n' | "$APPNET" sip user add alice@poly.edu --users poly-users.txt --password-stdin >/dev/null
pport2=$(free_port)
bg "$APPNET" sip serve --domain poly.edu --listen "127.0.0.1:$pport2" --users poly-users.txt --resolver "127.0.0.1:$dnsport"
sleep 0.3
call_kam 4 "$pport2"
check "alice@poly.edu reaches bob@kam.lab: appnet locates Kamailio through NAPTR/SRV/A" "0" "$rc"
check "appnet's proxy asked alice for credentials first (407)" "yes" "$(grep -q '407 Proxy Authentication Required' call4.log && echo yes || echo no)"
check "the answer came back through Kamailio and appnet, media both ways" "yes" "$(grep -q 'lost 0' call4.log && echo yes || echo no)"
check "bob's phone behind Kamailio took the call and its BYE" "yes" "$(wait "$PHONE"; grep -q 'call ended' phone4.log && echo yes || echo no)"
rc=0; timeout 20 "$APPNET" sip call --from mallory@elsewhere.org --to bob@kam.lab --proxy "127.0.0.1:$pport2" \
  --duration 1 >call5.log 2>&1 || rc=$?
check "a stranger cannot relay through appnet to kam.lab" "yes" "$(grep -q '403' call5.log && echo yes || echo "no ($(cat call5.log))")"

echo "RFC 3263 over TCP: kam.lab offering only SIP+D2T (Kamailio on TCP), the first SRV target dead"
dnsport2=$(free_port)
deadport=$(free_port)
kam_zone kamtcp.lab.zone '@ IN NAPTR 10 10 "s" "SIP+D2T" "" _sip._tcp.kam.lab.
_sip._tcp IN SRV 10 10 '"$deadport"' sip
_sip._tcp IN SRV 20 10 '"$kport2"' sip'
bg "$APPNET" dns serve --zone kamtcp.lab.zone --listen "127.0.0.1:$dnsport2"
pport3=$(free_port)
bg "$APPNET" sip serve --domain poly.edu --listen "127.0.0.1:$pport3" --users poly-users.txt --resolver "127.0.0.1:$dnsport2"
sleep 0.3
call_kam 6 "$pport3"
check "alice@poly.edu reaches bob@kam.lab over TCP after the dead SRV target is refused" "0" "$rc"
check "media both ways through the TCP-forwarded call" "yes" "$(grep -q 'lost 0' call6.log && echo yes || echo no)"
check "bob's phone behind Kamailio took the TCP-forwarded call and its BYE" "yes" "$(wait "$PHONE"; grep -q 'call ended' phone6.log && echo yes || echo no)"

echo "SIP over TLS: sipsak OPTIONS with the lab CA's certificate"
tport=$(low_port)
tlsport=$(low_port)
# sipsak checks the certificate against the URI's host including any port: name the host
# (localhost, in the lab CA's certificate) and give the port with -r.
bg "$APPNET" sip serve --domain localhost --listen "127.0.0.1:$tport" --tls-listen "127.0.0.1:$tlsport" --ca-dir "$WORK/ca"
wait_tcp 127.0.0.1 "$tlsport"
out=$(timeout 10 sipsak -s "sip:localhost" -r "$tlsport" --transport tls --tls-ca-cert "$WORK/ca/ca.pem" -vv 2>&1 || true)
check "sipsak OPTIONS over TLS is answered 200 on the connection" "yes" "$(grep -q 'SIP/2.0 200' <<<"$out" && echo yes || echo "no: $out")"

echo "baresip: a real soft phone registers with appnet and calls an appnet phone through the proxy"
# baresip 1.0 (libre) gives up on a challenge whose algorithm it does not know instead of
# skipping it (RFC 8760 §2.4), so this server sends only the MD5 challenge.
bsrv=$(free_port)
bg "$APPNET" sip serve --domain umass.edu --listen "127.0.0.1:$bsrv" --users users.txt --md5-only
bsport=$(free_port)
mkdir -p baresip
cat >baresip/config <<CONF
module_path /usr/lib/baresip/modules
sip_listen 127.0.0.1:$bsport
audio_source ausine,440
ausrc_srate 48000
auplay_srate 48000
ausrc_channels 2
auplay_channels 2
audio_player aubridge,nowhere
audio_alert aubridge,nowhere
module g711.so
module ausine.so
module aubridge.so
module account.so
module menu.so
CONF
printf '<sip:carol@umass.edu>;auth_pass=pw-carol;outbound="sip:127.0.0.1:%s";regint=60\n' "$bsrv" >baresip/accounts
printf 'pw-bob\n' | "$APPNET" sip phone --user bob@umass.edu --proxy "127.0.0.1:$bsrv" --password-stdin \
  --auto-answer --calls 1 --trace >phone5.log 2>&1 &
PHONE5=$!; PIDS+=("$PHONE5")
wait_for phone5.log "200 OK (REGISTER)"
timeout 30 baresip -f "$WORK/baresip" -s -e "/dial sip:bob@umass.edu" -t 6 </dev/null >baresip.log 2>&1 || true
check "baresip registered with Digest (401, then 200)" "yes" \
  "$(grep -q 'SIP/2.0 401' baresip.log && grep -q 'carol@umass.edu: .*200 OK.*binding' baresip.log && echo yes || echo no)"
check "baresip's call reached bob's appnet phone through the proxy" "yes" "$(grep -q 'INVITE' phone5.log && echo yes || echo no)"
check "baresip's call was answered and hung up with BYE" "yes" "$(wait "$PHONE5"; grep -q 'call ended: packets sent [0-9]* received [1-9]' phone5.log && echo yes || echo no)"

echo "tshark's SIP dissector"
kill -INT "$TSHARK"; wait "$TSHARK" 2>/dev/null || true
total=$(tshark -r sip.pcapng -Y sip 2>/dev/null | wc -l)
check "tshark decoded the SIP traffic" "yes" "$([ "$total" -gt 4000 ] && echo yes || echo "no ($total)")"
# Display filters that fail to compile make tshark exit non-zero, and set -e stops here.
bad=$(tshark -r sip.pcapng -Y "sip && (_ws.malformed || _ws.expert.severity >= \"warning\") && udp.srcport == $port" \
  -T fields -e frame.number -e _ws.expert.message)
check "tshark: no malformed message or warning in what the proxy sent" "" "$bad"
# What matters is that every kind of message the call put on the wire was decoded as SIP (a
# count of frames would depend on how soon the capture started relative to the REGISTER).
ua_methods=$(tshark -r ua.pcapng -Y 'sip.Method' -T fields -e sip.Method | { grep -E '^(INVITE|ACK|BYE)$' || true; } | sort -u | paste -sd,)
check "tshark decoded the call's INVITE, ACK and BYE" "ACK,BYE,INVITE" "$ua_methods"
ua_codes=$(tshark -r ua.pcapng -Y 'sip.Status-Code' -T fields -e sip.Status-Code | { grep -E '^(100|180|200)$' || true; } | sort -u | paste -sd,)
check "tshark decoded the call's 100, 180 and 200 responses" "100,180,200" "$ua_codes"
bad=$(tshark -r ua.pcapng -Y 'sip && (_ws.malformed || _ws.expert.severity >= "warning")' -T fields -e frame.number -e _ws.expert.message)
check "tshark: no malformed message or warning in what the phone, caller and proxy sent" "" "$bad"
echo "sip: $CHECKS checks passed"
