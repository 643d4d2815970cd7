//! Bounces: RFC 3464 delivery status notifications. A `multipart/report;
//! report-type=delivery-status` message with a human-readable part, the machine-readable
//! `message/delivery-status` part (one block per failed recipient) and the original headers
//! (`text/rfc822-headers`), sent from the null reverse-path so it is never bounced itself.

use super::schedule::Failure;
use crate::headers::{header_section, rfc5322_date};
use std::time::SystemTime;

/// The bounce for `original` (queued as `id`, from `sender`) whose `failures` are final.
pub fn bounce(
    hostname: &str,
    sender: &str,
    id: &str,
    arrival: SystemTime,
    failures: &[Failure],
    original: &[u8],
    now: SystemTime,
) -> Vec<u8> {
    let boundary = format!("{id}.bounce/{hostname}");
    let date = rfc5322_date(now);
    let mut m = String::new();
    m.push_str(&format!("From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"));
    m.push_str(&format!("To: <{sender}>\r\n"));
    m.push_str("Subject: Undelivered Mail Returned to Sender\r\n");
    m.push_str(&format!("Date: {date}\r\n"));
    m.push_str(&format!("Message-ID: <{id}.bounce@{hostname}>\r\n"));
    m.push_str("Auto-Submitted: auto-replied\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
    ));
    m.push_str("This is a MIME-encapsulated message.\r\n\r\n");
    m.push_str(&format!("--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"));
    m.push_str(&format!("This is the mail system at host {hostname}.\r\n\r\n"));
    m.push_str("I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients.\r\n\r\n");
    for f in failures {
        m.push_str(&format!("<{}>: {}\r\n", f.rcpt, one_line(&f.diagnostic)));
    }
    m.push_str(&format!("\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"));
    m.push_str(&format!(
        "Reporting-MTA: dns; {hostname}\r\nX-Appnet-Queue-ID: {id}\r\nArrival-Date: {}\r\n",
        rfc5322_date(arrival)
    ));
    for f in failures {
        m.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\nDiagnostic-Code: smtp; {}\r\nLast-Attempt-Date: {date}\r\n",
            f.rcpt,
            final_status(&f.status),
            one_line(&f.diagnostic)
        ));
    }
    m.push_str(&format!("\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"));
    let mut out = m.into_bytes();
    let headers = header_section(original);
    out.extend_from_slice(headers);
    if !headers.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// A DSN's Status must be a failure (5.x.x) for Action: failed; 4.x.x from an expiry becomes 5.x.x.
fn final_status(status: &str) -> String {
    match status.strip_prefix("4.") {
        Some(rest) => format!("5.{rest}"),
        None => status.to_string(),
    }
}

fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounce_is_a_delivery_status_report() {
        let t = SystemTime::UNIX_EPOCH;
        let failures = vec![Failure {
            rcpt: "bob@x.example".into(),
            status: "4.4.7".into(),
            diagnostic: "expired\r\n421".into(),
        }];
        let b = String::from_utf8(bounce(
            "mail.crepes.fr",
            "alice@crepes.fr",
            "Q1",
            t,
            &failures,
            b"Subject: hi\r\n\r\nbody",
            t,
        ))
        .unwrap();
        assert!(b.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(
            b.contains("Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mail.crepes.fr")
        );
        assert!(b.contains("Final-Recipient: rfc822; bob@x.example\r\nAction: failed\r\nStatus: 5.4.7\r\n"));
        assert!(b.contains("Diagnostic-Code: smtp; expired  421"));
        assert!(b.contains("text/rfc822-headers\r\n\r\nSubject: hi\r\n"));
        assert!(!b.contains("body"));
        assert!(b.ends_with("--Q1.bounce/mail.crepes.fr--\r\n"));
    }
}
