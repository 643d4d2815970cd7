# Dovecot as the reference IMAP/POP3 server, shared by interop/mail-access.sh and
# bench/mail-imap.sh (sourced, not run: run-all.sh skips lib*.sh).
#
#   dovecot_config DIR ROOT IMAP_PORT POP3_PORT UID GID MAX_PER_USER_IP [fast]
#
# writes DIR/dovecot.conf: a private instance (base and state under DIR, log DIR/dovecot.log)
# serving ROOT/mail/<domain>/<user> Maildirs with the users file ROOT/users (appnet's format is
# Dovecot's passwd-file with SHA512-CRYPT), plain logins without TLS on 127.0.0.1, mail owned by
# UID:GID. With `fast`, the login processes serve many connections each (Dovecot's documented
# high-performance mode, for benchmarks).
dovecot_config() {
  local dir=$1 root=$2 imap=$3 pop=$4 uid=$5 gid=$6 maxconn=$7 fast=${8:-}
  local reuse=""
  [ "$fast" = fast ] && reuse="  service_count = 0"
  mkdir -p "$dir/run" "$dir/state"
  cat > "$dir/dovecot.conf" <<CONF
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
mail_location = maildir:$root/mail/%d/%n
namespace inbox {
  inbox = yes
  separator = .
}
passdb {
  driver = passwd-file
  args = scheme=SHA512-CRYPT username_format=%u $root/users
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$root/mail/%d/%n
}
service auth {
  user = $(id -un)
}
service auth-worker {
  user = $(id -un)
}
service imap-login {
  inet_listener imap {
    port = $imap
  }
  inet_listener imaps {
    port = 0
  }
$reuse
}
service pop3-login {
  inet_listener pop3 {
    port = $pop
  }
  inet_listener pop3s {
    port = 0
  }
$reuse
}
protocol imap {
  mail_max_userip_connections = $maxconn
}
protocol pop3 {
  mail_max_userip_connections = $maxconn
}
CONF
}
