# Caddy as the reference HTTP/3 server, shared by interop/http3.sh and bench/http3.sh (sourced,
# not run: run-all.sh skips lib*.sh). The caller's PIDS array (interop/lib.sh, bench/lib.sh)
# gets caddy's pid, so the caller's exit trap stops it.
#
#   caddy_pki DIR CA_NAME
#
# writes a P-256 CA (DIR/ca.pem, DIR/ca.key) and a certificate for localhost and 127.0.0.1
# signed by it (DIR/cert.pem, DIR/key.pem), valid for two days; appnet and caddy serve the same
# certificate, so one --cacert serves every client.
#
#   caddy_start WORK PORT SITE PKI [WRAPPER...]
#
# writes WORK/Caddyfile (https://localhost:PORT serving SITE over HTTP/1.1, HTTP/2 and HTTP/3
# with PKI's certificate; no admin endpoint, no automatic HTTPS, state under WORK) and starts
# caddy in the background, prefixed by WRAPPER (e.g. `env GOMAXPROCS=1 taskset -c 0`), logging
# to WORK/caddy.log. It returns at once: caddy opens its UDP socket just after TCP, so wait for
# an HTTP/3 answer, not only for the TCP port.
caddy_pki() {
  local dir=$1 name=$2
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$name" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$dir/key.pem" -out "$dir/req.pem" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$dir/ext.cnf"
  openssl x509 -req -in "$dir/req.pem" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
    -extfile "$dir/ext.cnf" -out "$dir/cert.pem" 2>/dev/null
}

caddy_start() {
  local work=$1 port=$2 site=$3 pki=$4
  shift 4
  cat > "$work/Caddyfile" <<CADDY
{
	admin off
	auto_https off
	servers {
		protocols h1 h2 h3
	}
}
https://localhost:$port {
	tls $pki/cert.pem $pki/key.pem
	root * $site
	file_server
}
CADDY
  XDG_DATA_HOME=$work/caddy-data XDG_CONFIG_HOME=$work/caddy-config \
    "$@" caddy run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
  PIDS+=($!)
}
