# The authoritative DNS servers the DNS benchmarks start (source it after bench/lib.sh; it is
# not a benchmark itself): appnet, NSD and Knot serving one zone file on a port of 127.0.0.1
# with $THREADS threads, and a readiness wait. Used by dns-auth.sh and dnssec.sh.

# start_SERVER NAME ZONEFILE PORT: starts the server in the background, sets SERVER_PID.
start_appnet() {
  "$APPNET" dns serve --zone "$1=$2" --listen "127.0.0.1:$3" --workers "$THREADS" >"$WORK/appnet.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
}
start_nsd() {
  local d="$WORK/nsd-$3"; mkdir -p "$d"
  # One CPU per server process, as Knot does for its UDP workers unconditionally and appnet
  # when it runs one worker per CPU (equal footing).
  local i n; n=$(nproc)
  local cpus="" pins=""
  for ((i = 0; i < THREADS; i++)); do
    ((i < n)) && cpus+=" $i"
    pins+="    server-$((i + 1))-cpu-affinity: $((i % n))"$'\n'
  done
  cat > "$d/nsd.conf" <<CONF
server:
    ip-address: 127.0.0.1@$3
    port: $3
    server-count: $THREADS
    cpu-affinity:$cpus
$pins    username: ""
    chroot: ""
    zonesdir: "$d"
    database: ""
    pidfile: "$d/nsd.pid"
    xfrdfile: "$d/xfrd.state"
    zonelistfile: "$d/zone.list"
    xfrdir: "$d"
    logfile: "$d/nsd.log"
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: $1
    zonefile: "$2"
CONF
  nsd -d -c "$d/nsd.conf" >"$d/stdout.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
}
start_knot() {
  local d="$WORK/knot-$3"; mkdir -p "$d"
  cat > "$d/knot.conf" <<CONF
server:
    listen: 127.0.0.1@$3
    rundir: "$d"
    udp-workers: $THREADS
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$d"
template:
  - id: default
    storage: "$d"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: $1
    file: "$2"
CONF
  knotd -c "$d/knot.conf" >"$d/stdout.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
}

wait_ready() { # PORT ZONE SECONDS
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    # dig prints connection errors on stdout too: wait for a real SOA (five numbers at the end).
    dig @127.0.0.1 -p "$1" +short +time=1 +tries=1 "$2" SOA 2>/dev/null \
      | grep -Eq '^[^;].* [0-9]+ [0-9]+ [0-9]+ [0-9]+ [0-9]+$' && return 0
    sleep 0.1
  done
  echo "server on port $1 did not serve $2 within $3 s" >&2; return 1
}
