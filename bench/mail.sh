#!/usr/bin/env bash
# The mail benchmark of issue 12 in one run: SMTP acceptance + Maildir delivery against Postfix
# (bench/mail-smtp.sh), then the IMAP session mix and POP3 RETR throughput against Dovecot
# (bench/mail-imap.sh). Each part prints its own table with appnet/anchor ratios; their
# variables (MESSAGES, SESSIONS, DURATION, CONC, APPNET, ...) pass through.
#
#   bench/mail.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
echo "### SMTP: appnet vs Postfix"
bash "$here/mail-smtp.sh"
echo
echo "### IMAP and POP3: appnet vs Dovecot"
bash "$here/mail-imap.sh"
