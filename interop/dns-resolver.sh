#!/usr/bin/env bash
# The lab's recursive resolvers driven by third-party stub clients (dig, kdig), and Unbound
# resolving through the lab's root: both must give the same answers.
source "$(dirname "$0")/lib.sh"

# Unbound follows referrals to port 53 only, so the lab runs on the standard port (as root, as in
# CI); without root the lab gets a free port and the Unbound comparison is skipped.
if [ "$(id -u)" = 0 ]; then port=53; else port=$(free_port); fi
bg "$APPNET" lab --dns-port "$port" --dir "$WORK/lab"
resolver=127.0.4.1
ready=no
for _ in $(seq 1 100); do
  if dig @"$resolver" -p "$port" +time=1 +tries=1 +short localhost >/dev/null 2>&1; then ready=yes; break; fi
  sleep 0.1
done
check "lab resolver answers" yes "$ready"

q() { dig @"$resolver" -p "$port" +time=3 +tries=2 "$@"; }
check "dig: gaia.cs.umass.edu through root, edu, umass.edu, cs.umass.edu" "127.0.10.3" "$(q +short gaia.cs.umass.edu)"
check "dig: CNAME followed (www.ibm.com)" "servereast.backup2.ibm.com.|127.0.10.11" "$(q +short www.ibm.com | paste -sd'|')"
check "dig: three replicas (www.bbc.co.uk)" "127.0.10.7|127.0.10.8|127.0.10.9" "$(q +short www.bbc.co.uk | sort | paste -sd'|')"
check "dig: MX (hamburger.edu)" "10 mail.hamburger.edu." "$(q +short MX hamburger.edu)"
check "dig: NXDOMAIN" "NXDOMAIN" "$(q gaai.cs.umass.edu | sed -n 's/.*status: \([A-Z]*\).*/\1/p')"
check "dig: recursion available flag" "1" "$(q gaia.cs.umass.edu | grep -c 'flags: qr rd ra')"
check "dig: junk answered locally (printer.corp)" "NXDOMAIN" "$(q printer.corp | sed -n 's/.*status: \([A-Z]*\).*/\1/p')"
check "dig +tcp" "127.0.10.3" "$(q +tcp +short gaia.cs.umass.edu)"
check "kdig: the secondary's data through the resolver" "127.0.10.5" \
  "$(kdig @"$resolver" -p "$port" +short www.networkutopia.com)"
check "kdig: EDNS version 1 gets BADVERS" "BADVERS" \
  "$(kdig @"$resolver" -p "$port" +edns=1 gaia.cs.umass.edu | sed -n 's/.*status: \([A-Z]*\).*/\1/p' | head -1)"
check "appnet dns query --trace from the lab's root hints" "127.0.10.3" \
  "$("$APPNET" dns query gaia.cs.umass.edu A --trace --root-hints "$WORK/lab/root.hints" --upstream-port "$port" | sed -n 's/^gaia.cs.umass.edu. .* A //p')"

# The lab's web servers, found through the lab's DNS: appnet web get --resolver, and curl.
check "appnet web get through the lab resolver (CNAME www.ibm.com)" "<h1>www.ibm.com</h1>" \
  "$("$APPNET" web get "http://www.ibm.com:8080/" --resolver "$resolver:$port" | grep -o '<h1>.*</h1>')"
someschool=$(q +short www.someschool.edu)
check "curl: the textbook page references ten images" "10" \
  "$(curl -s --resolve "www.someschool.edu:8080:$someschool" http://www.someschool.edu:8080/someDepartment/home.index | grep -c '<img ')"
check "curl: a JPEG" "image/jpeg" \
  "$(curl -s -o /dev/null -w '%{content_type}' --resolve "www.someschool.edu:8080:$someschool" http://www.someschool.edu:8080/someDepartment/pic1.jpg)"

# Unbound, given the lab's root hints, must agree with appnet's resolver.
if [ "$port" != 53 ]; then
  echo "  skipped: the Unbound comparison needs the lab on port 53 (run as root)"
elif command -v unbound >/dev/null; then
  uport=$(free_port)
  mkdir -p "$WORK/unbound"
  cat > "$WORK/unbound/unbound.conf" <<CONF
server:
  interface: 127.0.0.1@$uport
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "$WORK/unbound"
  pidfile: "$WORK/unbound/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  module-config: "iterator"
  do-not-query-localhost: no
  qname-minimisation: no
  access-control: 127.0.0.0/8 allow
  root-hints: "$WORK/lab/root.hints"
CONF
  bg unbound -d -c "$WORK/unbound/unbound.conf"
  for _ in $(seq 1 100); do
    dig @127.0.0.1 -p "$uport" +time=1 +tries=1 +short localhost >/dev/null 2>&1 && break
    sleep 0.1
  done
  for name in gaia.cs.umass.edu www.ibm.com www.bbc.co.uk www.stanford.edu www.networkutopia.com mail.crepes.fr www.cl.cam.ac.uk; do
    ours=$(q +short "$name" | sort | paste -sd'|')
    theirs=$(dig @127.0.0.1 -p "$uport" +time=3 +tries=2 +short "$name" | sort | paste -sd'|')
    check "unbound agrees on $name" "$theirs" "$ours"
  done
  ours=$(q gaai.cs.umass.edu | sed -n 's/.*status: \([A-Z]*\).*/\1/p')
  theirs=$(dig @127.0.0.1 -p "$uport" +time=3 gaai.cs.umass.edu | sed -n 's/.*status: \([A-Z]*\).*/\1/p')
  check "unbound agrees on an NXDOMAIN" "$theirs" "$ours"
else
  echo "  FAIL: unbound is not installed (listed in .ci/apt.d/resolver.txt)" >&2; exit 1
fi
echo "dns-resolver: $CHECKS checks passed"
