#!/usr/bin/env bash
# Napster and Gnutella with tools that are not ours: the Napster steps 1-3 with the directory
# killed mid-download; a Gnutella overlay (2 ultrapeers, a plain pair, leaves) captured with
# tshark, whose Gnutella dissector must decode the handshakes and every descriptor type
# (Ping, Pong, Query, QueryHit, Push) without a malformed packet; downloads checked with curl
# (by URN, by index, byte ranges, path traversal refused); a Push answered with GIV.
source "$(dirname "$0")/lib.sh"
here=$(dirname "$0")

song=$WORK/bob/"Hey Jude.mp3"
mkdir -p "$WORK/bob" "$WORK/carol" "$WORK/alice" "$WORK/empty" "$WORK/out"
head -c 40000000 /dev/urandom > "$song"
cp "$song" "$WORK/carol/"
echo "let it be" > "$WORK/carol/Let It Be.mp3"
want=$(sha1sum "$song" | cut -d' ' -f1)

echo "Napster"
dport=$(free_port); bport=$(free_port); cport=$(free_port)
bg "$APPNET" napster server --listen "127.0.0.1:$dport"; dir_pid=$LAST_PID
wait_tcp 127.0.0.1 "$dport"
bg "$APPNET" napster share "$WORK/bob" --server "127.0.0.1:$dport" --listen "127.0.0.1:$bport" --keepalive 1
bg "$APPNET" napster share "$WORK/carol" --server "127.0.0.1:$dport" --listen "127.0.0.1:$cport" --keepalive 1
wait_tcp 127.0.0.1 "$bport"; wait_tcp 127.0.0.1 "$cport"
for _ in $(seq 100); do
  [ "$("$APPNET" napster search "hey jude" --server "127.0.0.1:$dport" 2>/dev/null | wc -l)" = 2 ] && break; sleep 0.1
done
hits=$("$APPNET" napster search "hey jude" --server "127.0.0.1:$dport")
check "step 2: both peers found" 2 "$(echo "$hits" | wc -l)"
check "hit lines carry the listen address" "127.0.0.1:$bport" "$(echo "$hits" | cut -f4 | grep -x "127.0.0.1:$bport")"
urn=$(echo "$hits" | head -1 | cut -f3)
check "raw directory protocol (nc-style) answers" "END 2" "$(python3 -c "
import socket; s=socket.create_connection(('127.0.0.1',$dport)); s.sendall(b'SEARCH hey jude\r\nQUIT\r\n')
d=b''
while b'END' not in d: d+=s.recv(4096)
print([l for l in d.decode().splitlines() if l.startswith('END')][0])")"
# Step 3 while the directory dies: kill it as soon as the transfer has started (40 MB from two
# peers takes long enough that the download is still running).
( "$APPNET" napster get "hey jude" --server "127.0.0.1:$dport" -o "$WORK/alice" > "$WORK/get.out" 2>&1; echo $? > "$WORK/get.rc" ) &
getpid=$!
for _ in $(seq 200); do ls -a "$WORK/alice" | grep -q part && break; [ -f "$WORK/get.rc" ] && break; sleep 0.01; done
kill "$dir_pid"; wait "$dir_pid" 2>/dev/null || true
check "the directory died while the download was running" no "$([ -f "$WORK/get.rc" ] && echo yes || echo no)"
wait "$getpid"
check "step 3: download survives the directory's death" 0 "$(cat "$WORK/get.rc")"
check "downloaded file verified" "$want" "$(sha1sum "$WORK/alice/Hey Jude.mp3" | cut -d' ' -f1)"
if "$APPNET" napster search "hey jude" --server "127.0.0.1:$dport" >/dev/null 2>&1; then dead=no; else dead=yes; fi
check "the directory is the single point of failure for searching" yes "$dead"
check "curl fetches by URN from a Napster peer" "$want" "$(curl -sf "http://127.0.0.1:$bport/uri-res/N2R?$urn" | sha1sum | cut -d' ' -f1)"

echo "Gnutella"
u1=$(free_port); u2=$(free_port); p1=$(free_port); p2=$(free_port); l1=$(free_port); l2=$(free_port)
cap=$WORK/gnutella.pcap
filter="tcp port $u1 or tcp port $u2 or tcp port $p1 or tcp port $p2 or tcp port $l1 or tcp port $l2"
bg tshark -i lo -f "$filter" -w "$cap" -q; tshark_pid=$LAST_PID
for _ in $(seq 100); do [ -s "$cap" ] && break; sleep 0.1; done
sleep 1
bg "$APPNET" gnutella node --share "$WORK/empty" --listen "127.0.0.1:$u1" --ultrapeer --keepalive 1
bg "$APPNET" gnutella node --share "$WORK/empty" --listen "127.0.0.1:$u2" --ultrapeer --connect "127.0.0.1:$u1" --keepalive 1
bg "$APPNET" gnutella node --share "$WORK/bob" --listen "127.0.0.1:$l1" --connect "127.0.0.1:$u1"
bg "$APPNET" gnutella node --share "$WORK/empty" --listen "127.0.0.1:$l2" --connect "127.0.0.1:$u2"
bg "$APPNET" gnutella node --share "$WORK/carol" --listen "127.0.0.1:$p1" --keepalive 1 --max-peers 1
bg "$APPNET" gnutella node --share "$WORK/empty" --listen "127.0.0.1:$p2" --connect "127.0.0.1:$p1" --keepalive 1
for p in $u1 $u2 $l1 $l2 $p1 $p2; do wait_tcp 127.0.0.1 "$p"; done
for _ in $(seq 100); do
  "$APPNET" gnutella search "hey jude" --node "127.0.0.1:$l2" --wait 1 2>/dev/null | grep -q "127.0.0.1:$l1" && break; sleep 0.1
done
gh=$("$APPNET" gnutella search "hey jude" --node "127.0.0.1:$l2" --wait 1.5)
check "leaf → ultrapeer → ultrapeer → leaf (QRP) finds Hey Jude at Bob's node" "127.0.0.1:$l1" "$(echo "$gh" | cut -f4 | head -1)"
for _ in $(seq 100); do
  "$APPNET" gnutella search "let it be" --node "127.0.0.1:$p2" --wait 1 2>/dev/null | grep -q "127.0.0.1:$p1" && break; sleep 0.1
done
check "plain flooding finds Let It Be" "127.0.0.1:$p1" "$("$APPNET" gnutella search "let it be" --node "127.0.0.1:$p2" --wait 1.5 | cut -f4 | head -1)"
if "$APPNET" gnutella search "let it be" --node "127.0.0.1:$p1" --wait 1 > "$WORK/full.out" 2>&1; then full=no; else full=yes; fi
check "--max-peers 1: a second neighbour is refused with 503" yes "$full$(grep -q 503 "$WORK/full.out" || echo ' (no 503 in the error)')"
gurn=$(echo "$gh" | head -1 | cut -f3)
"$APPNET" gnutella get "$gurn" --node "127.0.0.1:$l2" -o "$WORK/out" --wait 1.5 > /dev/null
check "gnutella get by urn verified" "$want" "$(sha1sum "$WORK/out/Hey Jude.mp3" | cut -d' ' -f1)"
check "Push through the overlay, GIV, GET on the pushed connection" "$want" "$(timeout 30 python3 "$here/overlay_push.py" 127.0.0.1 "$l2" "hey jude")"

echo "curl against a sharing node's HTTP side"
base="http://127.0.0.1:$l1"
check "by URN" "$want" "$(curl -sf "$base/uri-res/N2R?$gurn" | sha1sum | cut -d' ' -f1)"
check "by index and name" "$want" "$(curl -sf "$base/get/0/Hey%20Jude.mp3" | sha1sum | cut -d' ' -f1)"
check "a byte range" "$(tail -c +101 "$song" | head -c 100 | sha1sum | cut -d' ' -f1)" "$(curl -sf -r 100-199 "$base/uri-res/N2R?$gurn" | sha1sum | cut -d' ' -f1)"
check "range status" 206 "$(curl -s -o /dev/null -w '%{http_code}' -r 0-9 "$base/uri-res/N2R?$gurn")"
check "unsatisfiable range" 416 "$(curl -s -o /dev/null -w '%{http_code}' -r 999999999- "$base/uri-res/N2R?$gurn")"
check "path traversal refused" 404 "$(curl -s -o /dev/null -w '%{http_code}' --path-as-is "$base/get/0/../../../../etc/passwd")"

sleep 2  # keep-alive Pings (1 s) and their Pongs in the capture
kill "$tshark_pid"; wait "$tshark_pid" 2>/dev/null || true
decode=()
for p in $u1 $u2 $p1 $p2 $l1 $l2; do decode+=(-d "tcp.port==$p,gnutella"); done
tshark -r "$cap" "${decode[@]}" -Y gnutella -V > "$WORK/decoded.txt" 2>&1
# (TCP's own expert notes, e.g. window full during a 3 MB download, are not the dissector's.)
bad=$(tshark -r "$cap" "${decode[@]}" -Y '_ws.malformed || (gnutella && _ws.expert.severity >= warning && !tcp.analysis.flags)' 2>/dev/null || true)
[ -z "$bad" ] || { echo "$bad" >&2; cp "$cap" /tmp/overlay-malformed.pcap; }
check "no malformed packets, no Gnutella warnings" 0 "$(printf '%s' "$bad" | grep -c . || true)"
check "no 'Malformed Packet' in the decode" 0 "$(grep -c 'Malformed Packet' "$WORK/decoded.txt" || true)"
# The dissector shows the handshake's header blocks as the connection's text stream.
for line in 'GNUTELLA CONNECT/0.6' 'GNUTELLA/0.6 200 OK' 'GNUTELLA/0.6 503'; do
  n=$(tshark -r "$cap" "${decode[@]}" -Y "gnutella && !_ws.malformed && frame contains \"$line\"" 2>/dev/null | wc -l)
  check "handshake '$line' dissected as Gnutella" yes "$([ "$n" -gt 0 ] && echo yes || echo no)"
done
for t in Ping Pong Query QueryHit Push; do
  n=$(grep -cE "Payload: [0-9]+ \($t\)" "$WORK/decoded.txt" || true)
  check "tshark decodes $t descriptors" yes "$([ "$n" -gt 0 ] && echo yes || echo no)"
done
echo "overlay: $CHECKS checks passed"
