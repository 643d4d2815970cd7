# Postfix as the reference MTA, shared by interop/mail-smtp.sh and bench/mail-smtp.sh (sourced,
# not run: run-all.sh skips lib*.sh).
#
#   postfix_config DIR PORT MYHOSTNAME DOMAIN USER [EXTRA_MAIN_CF]
#
# prepares a private instance under DIR (conf/, spool/, data/, vmail/, the log DIR/maillog):
# smtpd on 127.0.0.1:PORT only, relaying for 127.0.0.0/8, delivering DOMAIN to the Maildir
# DIR/vmail/DOMAIN/USER/ (a virtual mailbox owned by the postfix user). EXTRA_MAIN_CF lines are
# appended to main.cf. Start it with `postfix -c DIR/conf start`, stop it with `... stop`.
postfix_config() {
  local pf=$1 port=$2 host=$3 domain=$4 user=$5 extra=${6:-}
  mkdir -p "$pf/conf" "$pf/spool" "$pf/data" "$pf/vmail"
  # Postfix's daemons run as the postfix user: they must be able to reach their directories.
  chown postfix:postfix "$pf/data" "$pf/vmail"
  cat > "$pf/conf/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $pf/spool
data_directory = $pf/data
command_directory = $(dirname "$(command -v postfix)")
daemon_directory = $(postconf -dh daemon_directory)
meta_directory = $(postconf -dh meta_directory)
shlib_directory = $(postconf -dh shlib_directory)
mail_owner = postfix
setgid_group = postdrop
myhostname = $host
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = $domain
virtual_mailbox_base = $pf/vmail
virtual_mailbox_maps = texthash:$pf/conf/vmailbox
virtual_uid_maps = static:$(id -u postfix)
virtual_gid_maps = static:$(id -g postfix)
maillog_file = $pf/maillog
maillog_file_prefixes = /tmp, /var, $pf
alias_maps =
alias_database =
biff = no
$extra
CONF
  echo "$user@$domain $domain/$user/" > "$pf/conf/vmailbox"
  cat > "$pf/conf/master.cf" <<CONF
127.0.0.1:$port inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
CONF
}
