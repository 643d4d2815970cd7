//! One entry point for the fuzzer (fuzz/fuzz_targets/mail_smtp.rs): arbitrary bytes as a
//! client's command stream through a whole server session (commands, DATA, AUTH), and as a
//! server's replies through the client's reply parser. Must never panic.

use super::session::{Action, Directory, Port, Session, SessionParams};
use super::wire::{ReplyParser, parse_command};
use std::time::SystemTime;

struct Nobody;

impl Directory for Nobody {
    fn is_local_domain(&self, domain: &str) -> bool {
        domain == "hamburger.edu"
    }
    fn user_exists(&self, address: &str) -> bool {
        address.starts_with("bob@")
    }
    fn verify(&self, _: &str, password: &str) -> bool {
        password == "pw"
    }
}

/// Feeds `data`, split into lines, to the command parser, to a submission session that allows
/// AUTH without TLS (so every state is reachable), and to the reply parser.
pub fn exercise(data: &[u8]) {
    let params = SessionParams {
        port: Port::Submission,
        hostname: "mail.hamburger.edu".into(),
        peer: [127, 0, 0, 1].into(),
        relay_allowed: data.first().is_some_and(|b| b & 1 == 1),
        tls_offered: true,
        allow_plain_auth: true,
        max_message_size: 4096,
        max_recipients: 4,
        max_errors: 1000,
        max_auth_failures: 1000,
        session_id: "F".into(),
    };
    let mut session = Session::new(params);
    let mut replies = ReplyParser::default();
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let _ = parse_command(line);
        let _ = replies.push(line);
        let actions = if line.len() > 998 {
            session.on_long_line()
        } else {
            session.on_line(line, SystemTime::UNIX_EPOCH, &Nobody)
        };
        for a in actions {
            match a {
                Action::Deliver(env) => {
                    let _ = session.delivered(&env.id, Ok(()));
                }
                Action::StartTls => session.tls_started(),
                Action::ReadChunk { size, last } => {
                    let chunk = &line[..size.min(line.len())];
                    for b in session.on_chunk(chunk, size > 4096, last, SystemTime::UNIX_EPOCH) {
                        if let Action::Deliver(env) = b {
                            let _ = session.delivered(&env.id, Ok(()));
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn junk_and_whole_dialogues_do_not_panic() {
        super::exercise(b"");
        super::exercise(b"\xff\xfe\x00\r\n\r\n....\n");
        super::exercise(b"EHLO x\r\nAUTH PLAIN AGJvYkBoYW1idXJnZXIuZWR1AHB3\r\nMAIL FROM:<a@b> SIZE=99999999999999999999\r\nMAIL FROM:<a@b>\r\nRCPT TO:<bob@hamburger.edu>\r\nRCPT TO:<\"q\\\"x\"@[1.2.3.4]>\r\nDATA\r\n..x\r\n.\r\nSTARTTLS\r\nAUTH LOGIN\r\n*\r\nBDAT 10 LAST\r\nQUIT\r\n");
        let long = vec![b'A'; 5000];
        super::exercise(&long);
        let mut seed = 1u64;
        for _ in 0..300 {
            let bytes: Vec<u8> = (0..200)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let b = (seed >> 33) as u8;
                    if b.is_multiple_of(7) { b'\n' } else { b }
                })
                .collect();
            super::exercise(&bytes);
        }
    }
}
