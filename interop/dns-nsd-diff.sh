#!/usr/bin/env bash
# Differential checks of the authoritative DNS server against other implementations:
#  1. `appnet dns check-zone` against BIND's named-checkzone on the corpus of tricky zone files
#     in crates/dns/tests/zones: the same OK/rejected verdict, and for loaded zones the same
#     records (named-checkzone -D vs check-zone --print).
#  2. appnet and NSD serving the same zone (wildcards, empty non-terminals, delegations, CNAME
#     chains and loops, DNAMEs): a few hundred questions, rcode, AA and the answer and
#     authority RRsets compared. Both must end with zero mismatches.
source "$(dirname "$0")/lib.sh"
here=$(cd "$(dirname "$0")" && pwd)

PY=python3
$PY -c 'import dns.zone' 2>/dev/null || PY=/usr/bin/python3

echo "check-zone vs named-checkzone"
"$PY" "$here/dns-diff/checkzone.py" "$APPNET" example.com "$here"/../crates/dns/tests/zones/*.zone

echo "appnet vs NSD, the same zone and questions"
nsd_dir="$WORK/nsd"; mkdir -p "$nsd_dir"
cp "$here/dns-diff/diff.test.zone" "$nsd_dir/"
nsd_port=$(free_port)
port=$(free_port)
cat > "$nsd_dir/nsd.conf" <<CONF
server:
    ip-address: 127.0.0.1@$nsd_port
    port: $nsd_port
    username: ""
    chroot: ""
    zonesdir: "$nsd_dir"
    database: ""
    pidfile: "$nsd_dir/nsd.pid"
    xfrdfile: "$nsd_dir/xfrd.state"
    zonelistfile: "$nsd_dir/zone.list"
    xfrdir: "$nsd_dir"
    logfile: "$nsd_dir/nsd.log"
remote-control:
    control-enable: no
zone:
    name: diff.test
    zonefile: "diff.test.zone"
CONF
bg sh -c 'exec nsd -d -c "$1" >"$2" 2>&1' sh "$nsd_dir/nsd.conf" "$nsd_dir/stdout.log"
bg "$APPNET" dns serve --zone "diff.test=$here/dns-diff/diff.test.zone" --listen "127.0.0.1:$port" --no-rrl
wait_tcp 127.0.0.1 "$nsd_port"
wait_tcp 127.0.0.1 "$port"
# NSD answers once the zone is loaded: wait for its SOA.
for ((i = 0; i < 100; i++)); do
  [ -n "$(dig @127.0.0.1 -p "$nsd_port" +short +time=1 +tries=1 diff.test SOA 2>/dev/null)" ] && break
  sleep 0.1
done
"$PY" "$here/dns-diff/answers.py" diff.test "$port" "$nsd_port" "$here/dns-diff/diff.test.zone"
echo "dns-nsd-diff: all checks passed"
