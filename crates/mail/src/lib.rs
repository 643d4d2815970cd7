//! Mail: SMTP with MX delivery and a queue, submission, POP3 and IMAP over Maildir.
