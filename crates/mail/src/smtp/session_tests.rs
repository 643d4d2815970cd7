//! The session core driven line by line, without sockets.

use super::*;

struct Dir;

impl Directory for Dir {
    fn is_local_domain(&self, domain: &str) -> bool {
        domain.eq_ignore_ascii_case("hamburger.edu")
    }
    fn user_exists(&self, address: &str) -> bool {
        address.eq_ignore_ascii_case("bob@hamburger.edu")
    }
    fn verify(&self, address: &str, password: &str) -> bool {
        address == "bob@hamburger.edu" && password == "secret"
    }
}

fn params(port: Port) -> SessionParams {
    SessionParams {
        port,
        hostname: "mail.hamburger.edu".into(),
        peer: [192, 0, 2, 1].into(),
        relay_allowed: false,
        tls_offered: true,
        allow_plain_auth: false,
        max_message_size: 1000,
        max_recipients: 2,
        max_errors: 5,
        max_auth_failures: 2,
        session_id: "S1".into(),
    }
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)
}

/// Feeds `line`, returns the replies' text and whether anything else happened.
fn say(s: &mut Session, line: &str) -> (String, Vec<Action>) {
    let actions = s.on_line(line.as_bytes(), now(), &Dir);
    let mut text = String::new();
    let mut others = Vec::new();
    for a in actions {
        match a {
            Action::Reply(r) => text.push_str(&r),
            other => others.push(other),
        }
    }
    (text, others)
}

fn code(s: &mut Session, line: &str) -> String {
    say(s, line).0.chars().take(3).collect()
}

#[test]
fn the_textbook_dialogue_delivers_with_a_received_header() {
    let mut s = Session::new(params(Port::Smtp));
    assert!(s.greeting().starts_with("220 mail.hamburger.edu"));
    assert_eq!(say(&mut s, "HELO crepes.fr").0, "250 mail.hamburger.edu\r\n");
    assert_eq!(code(&mut s, "MAIL FROM: <alice@crepes.fr>"), "250");
    assert_eq!(code(&mut s, "RCPT TO: <bob@hamburger.edu>"), "250");
    assert_eq!(code(&mut s, "DATA"), "354");
    assert_eq!(s.expecting(), Expecting::Data);
    assert_eq!(say(&mut s, "Do you like ketchup?").0, "");
    assert_eq!(say(&mut s, "..How about pickles?").0, "");
    let (text, actions) = say(&mut s, ".");
    assert_eq!(text, "");
    let Some(Action::Deliver(env)) = actions.into_iter().next() else { panic!("no delivery") };
    assert_eq!(env.from, "alice@crepes.fr");
    assert_eq!(env.rcpts, vec![Recipient { address: "bob@hamburger.edu".into(), local: true }]);
    let data = String::from_utf8(env.data.clone()).unwrap();
    assert!(
        data.starts_with(
            "Received: from crepes.fr ([192.0.2.1])\r\n\tby mail.hamburger.edu (appnet) with SMTP id S101"
        ),
        "{data}"
    );
    assert!(data.ends_with("Do you like ketchup?\r\n.How about pickles?\r\n"), "{data}");
    assert!(!data.contains("Message-ID"), "SMTP (not submission) adds no Message-ID");
    assert_eq!(s.expecting(), Expecting::Delivery);
    let replies = s.delivered(&env.id, Ok(()));
    assert!(matches!(&replies[0], Action::Reply(r) if r.starts_with("250 2.0.0 Ok: queued as S101")));
    assert!(matches!(say(&mut s, "QUIT").1[..], [Action::Close]));
}

#[test]
fn no_open_relay_and_unknown_users() {
    let mut s = Session::new(params(Port::Smtp));
    say(&mut s, "EHLO client");
    assert_eq!(code(&mut s, "MAIL FROM:<x@example.com>"), "250");
    assert!(say(&mut s, "RCPT TO:<victim@example.org>").0.starts_with("554 5.7.1"));
    assert!(say(&mut s, "RCPT TO:<nobody@hamburger.edu>").0.starts_with("550 5.1.1"));
    assert!(say(&mut s, "RCPT TO:<bob@HAMBURGER.edu>").0.starts_with("250"));
    let mut relay = Session::new(SessionParams { relay_allowed: true, ..params(Port::Smtp) });
    say(&mut relay, "EHLO client");
    say(&mut relay, "MAIL FROM:<x@hamburger.edu>");
    assert!(say(&mut relay, "RCPT TO:<someone@example.org>").0.starts_with("250"));
}

#[test]
fn sequence_errors_size_and_recipient_caps() {
    let mut s = Session::new(params(Port::Smtp));
    assert!(say(&mut s, "MAIL FROM:<a@b.c>").0.starts_with("503"));
    say(&mut s, "EHLO c");
    assert!(say(&mut s, "RCPT TO:<bob@hamburger.edu>").0.starts_with("503"));
    assert!(say(&mut s, "DATA").0.starts_with("503"));
    assert!(say(&mut s, "MAIL FROM:<a@b.c> SIZE=5000").0.starts_with("552 5.3.4"));
    let mut s = Session::new(SessionParams { relay_allowed: true, ..params(Port::Smtp) });
    say(&mut s, "EHLO c");
    say(&mut s, "MAIL FROM:<a@b.c>");
    assert_eq!(code(&mut s, "RCPT TO:<x@a.example>"), "250");
    assert_eq!(code(&mut s, "RCPT TO:<y@a.example>"), "250");
    assert_eq!(code(&mut s, "RCPT TO:<z@a.example>"), "452");
    assert_eq!(code(&mut s, "DATA"), "354");
    say(&mut s, &"x".repeat(600));
    say(&mut s, &"y".repeat(600));
    assert!(say(&mut s, ".").0.starts_with("552 5.3.4"));
    assert_eq!(s.expecting(), Expecting::Command);
    assert_eq!(code(&mut s, "NOOP"), "250");
    assert_eq!(code(&mut s, "VRFY bob"), "252");
}

#[test]
fn long_lines_and_junk_count_as_errors_until_disconnect() {
    let mut s = Session::new(params(Port::Smtp));
    assert!(matches!(&s.on_long_line()[0], Action::Reply(r) if r.starts_with("500 5.5.2")));
    for _ in 0..3 {
        assert_eq!(code(&mut s, "\u{1}junk"), "500");
    }
    let (text, others) = say(&mut s, "BOGUS");
    assert!(text.contains("421 4.7.0"), "{text}");
    assert!(matches!(others[..], [Action::Close]));
}

#[test]
fn a_long_data_line_rejects_the_message_after_the_dot() {
    let mut s = Session::new(params(Port::Smtp));
    say(&mut s, "EHLO c");
    say(&mut s, "MAIL FROM:<>");
    say(&mut s, "RCPT TO:<bob@hamburger.edu>");
    say(&mut s, "DATA");
    assert!(s.on_long_line().is_empty());
    assert!(say(&mut s, ".").0.starts_with("500 5.5.2"));
}

#[test]
fn submission_needs_auth_and_auth_needs_tls() {
    let mut s = Session::new(params(Port::Submission));
    let ehlo = say(&mut s, "EHLO ua").0;
    assert!(ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"), "{ehlo}");
    assert!(say(&mut s, "AUTH PLAIN AGJvYkBoYW1idXJnZXIuZWR1AHNlY3JldA==").0.starts_with("538"));
    assert!(say(&mut s, "MAIL FROM:<bob@hamburger.edu>").0.starts_with("530"));
    let (text, others) = say(&mut s, "STARTTLS");
    assert!(text.starts_with("220") && matches!(others[..], [Action::StartTls]));
    s.tls_started();
    assert!(say(&mut s, "MAIL FROM:<bob@hamburger.edu>").0.starts_with("503"), "EHLO again after TLS");
    let ehlo = say(&mut s, "EHLO ua").0;
    assert!(ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(
        say(&mut s, &format!("AUTH PLAIN {}", auth::plain_response("bob@hamburger.edu", "secret")))
            .0
            .starts_with("235")
    );
    assert_eq!(s.auth_user(), Some("bob@hamburger.edu"));
    assert_eq!(code(&mut s, "MAIL FROM:<bob@hamburger.edu>"), "250");
    assert_eq!(code(&mut s, "RCPT TO:<alice@crepes.fr>"), "250");
    say(&mut s, "DATA");
    say(&mut s, "Subject: hi");
    say(&mut s, "");
    say(&mut s, "body");
    let Some(Action::Deliver(env)) = say(&mut s, ".").1.into_iter().next() else { panic!() };
    assert_eq!(env.rcpts[0], Recipient { address: "alice@crepes.fr".into(), local: false });
    let data = String::from_utf8(env.data).unwrap();
    assert!(
        data.contains("with ESMTPSA")
            && data.contains("\r\nDate: ")
            && data.contains("\r\nMessage-ID: <S101@mail.hamburger.edu>"),
        "{data}"
    );
}

#[test]
fn auth_login_and_failures_lock_the_session() {
    let mut s = Session::new(SessionParams { allow_plain_auth: true, ..params(Port::Submission) });
    say(&mut s, "EHLO ua");
    assert_eq!(say(&mut s, "AUTH LOGIN").0, "334 VXNlcm5hbWU6\r\n");
    assert_eq!(s.expecting(), Expecting::AuthResponse);
    assert_eq!(say(&mut s, &auth::encode(b"bob@hamburger.edu")).0, "334 UGFzc3dvcmQ6\r\n");
    let (text, others) = say(&mut s, &auth::encode(b"wrong"));
    assert!(text.starts_with("535") && matches!(others[..], [Action::AuthDelay]));
    assert!(say(&mut s, "AUTH PLAIN").0.starts_with("334"));
    assert!(say(&mut s, "!!!").0.starts_with("501"));
    assert!(say(&mut s, "AUTH CRAM-MD5").0.starts_with("504"));
    let (text, others) =
        say(&mut s, &format!("AUTH PLAIN {}", auth::plain_response("bob@hamburger.edu", "nope")));
    assert!(text.contains("421"), "{text}");
    assert!(matches!(others[..], [Action::AuthDelay, Action::Close]));
}

#[test]
fn the_smtp_port_offers_no_auth() {
    let mut s = Session::new(SessionParams { allow_plain_auth: true, ..params(Port::Smtp) });
    assert!(!say(&mut s, "EHLO x").0.contains("AUTH"));
    assert!(say(&mut s, "AUTH PLAIN AGEAYg==").0.starts_with("502"));
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut s = Session::new(SessionParams {
        relay_allowed: true,
        allow_plain_auth: true,
        ..params(Port::Submission)
    });
    let mut seed = 7u32;
    for i in 0..2000 {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let len = (seed >> 24) as usize % 40;
        let line: Vec<u8> = (0..len).map(|j| (seed.rotate_left(j as u32) ^ i) as u8).collect();
        for a in s.on_line(&line, now(), &Dir) {
            if let Action::Deliver(env) = a {
                s.delivered(&env.id, Ok(()));
            }
        }
    }
}

#[test]
fn bdat_chunks_make_one_message_and_refused_chunks_are_skipped() {
    let mut s = Session::new(params(Port::Smtp));
    assert!(say(&mut s, "EHLO c").0.contains("CHUNKING"));
    let (text, others) = say(&mut s, "BDAT 5");
    assert!(text.starts_with("503") && matches!(others[..], [Action::SkipChunk(5)]), "{text}");
    say(&mut s, "MAIL FROM:<a@b.example>");
    say(&mut s, "RCPT TO:<bob@hamburger.edu>");
    assert!(matches!(say(&mut s, "BDAT 6").1[..], [Action::ReadChunk { size: 6, last: false }]));
    let r = s.on_chunk(b"Hi Bob", false, false, now());
    assert!(matches!(&r[0], Action::Reply(t) if t.starts_with("250 2.0.0 Ok: 6 octets")));
    assert!(say(&mut s, "DATA").0.starts_with("503"), "no DATA in the middle of BDAT");
    assert!(matches!(say(&mut s, "BDAT 3 LAST").1[..], [Action::ReadChunk { size: 3, last: true }]));
    let Some(Action::Deliver(env)) = s.on_chunk(b"!\r\n", false, true, now()).into_iter().next() else {
        panic!()
    };
    assert!(env.data.ends_with(b"Hi Bob!\r\n"));
    s.delivered(&env.id, Ok(()));
    say(&mut s, "MAIL FROM:<a@b.example>");
    say(&mut s, "RCPT TO:<bob@hamburger.edu>");
    say(&mut s, "BDAT 2000 LAST");
    let r = s.on_chunk(&[], true, true, now());
    assert!(matches!(&r[0], Action::Reply(t) if t.starts_with("552 5.3.4")));
}
