//! The lab's mail servers and the tour's mail scene, "Alice sends a message to Bob", numbered
//! like the textbook's six steps: (1) Alice's user agent submits the message to her mail
//! server, mail.crepes.fr; (2) the message waits in its queue; (3) the server looks up
//! hamburger.edu's MX through the lab resolver and (4) opens SMTP to mail.hamburger.edu, the
//! dialogue printed line by line; (5) the server there puts it in Bob's Maildir; (6) Bob reads
//! it with POP3 and then with IMAP.

use crate::LabError;
use crate::events::{Endpoint, event, line_bytes, tell};
use crate::topology::Topology;
use appnet_mail::queue::{Queue, Spool};
use appnet_mail::smtp::client::{ClientOptions, Outcome};
use appnet_mail::{MailConfig, MailServer};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A mail server of the lab (`[[mail]]` in lab.toml).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MailSpec {
    /// Its host name, the target of the domain's MX record (`mail.hamburger.edu`).
    pub name: String,
    /// Its loopback address.
    pub addr: Ipv4Addr,
    /// The domain it receives mail for.
    pub domain: String,
    /// Its users, with their lab passwords (printed in the directory).
    #[serde(default)]
    pub users: Vec<MailUser>,
    /// SMTP port, the same on every lab mail server since MX records carry no port
    /// (0: one free port shared by all of them).
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    /// Submission port (0: a free one).
    #[serde(default = "default_submission_port")]
    pub submission_port: u16,
    /// POP3 port (0: a free one).
    #[serde(default = "default_pop3_port")]
    pub pop3_port: u16,
    /// IMAP port (0: a free one).
    #[serde(default = "default_imap_port")]
    pub imap_port: u16,
}

/// A lab mail user.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MailUser {
    /// `user@domain`.
    pub address: String,
    /// The lab password.
    pub password: String,
}

fn default_smtp_port() -> u16 {
    2525
}

fn default_submission_port() -> u16 {
    2587
}

fn default_pop3_port() -> u16 {
    2110
}

fn default_imap_port() -> u16 {
    2143
}

/// A running lab mail server, for the scene.
#[derive(Clone)]
pub struct MailHost {
    /// Its host name.
    pub name: String,
    /// Its domain.
    pub domain: String,
    /// SMTP address.
    pub smtp: SocketAddr,
    /// Submission address.
    pub submission: SocketAddr,
    /// POP3 address.
    pub pop3: Option<SocketAddr>,
    /// IMAP address.
    pub imap: Option<SocketAddr>,
    /// Its data directory.
    pub root: PathBuf,
    /// Its outbound queue.
    pub queue: Arc<Queue>,
    /// Its users.
    pub users: Vec<MailUser>,
}

/// A bound lab mail server: its name, SMTP address, what the directory says it serves.
pub type Started = (String, SocketAddr, String, MailServer);

/// Binds every `[[mail]]` server: users added, SMTP and submission on its address, the queue
/// asking the first lab resolver for MX records and delivering to the shared SMTP port.
pub async fn start(topology: &Topology, dir: &Path) -> Result<(Vec<Started>, Vec<MailHost>), LabError> {
    let mut members = Vec::new();
    let mut hosts = Vec::new();
    if topology.mails.is_empty() {
        return Ok((members, hosts));
    }
    let resolver = topology.resolvers.first().map(|r| SocketAddr::new(IpAddr::V4(r.addr), topology.dns_port));
    let port = shared_smtp_port(&topology.mails);
    for spec in &topology.mails {
        let root = dir.join("mail").join(&spec.name);
        let fail = |reason: String| LabError::Start {
            name: spec.name.clone(),
            addr: SocketAddr::new(IpAddr::V4(spec.addr), port),
            reason,
        };
        for u in &spec.users {
            appnet_mail::add_user(&root, &u.address, &u.password).map_err(|e| fail(e.to_string()))?;
        }
        let config = MailConfig {
            domains: vec![spec.domain.clone()],
            root: root.clone(),
            hostname: Some(spec.name.clone()),
            smtp: Some(SocketAddr::new(IpAddr::V4(spec.addr), port)),
            submission: Some(SocketAddr::new(IpAddr::V4(spec.addr), spec.submission_port)),
            pop3: Some(SocketAddr::new(IpAddr::V4(spec.addr), spec.pop3_port)),
            imap: Some(SocketAddr::new(IpAddr::V4(spec.addr), spec.imap_port)),
            resolver,
            remote_smtp_port: port,
            source_address: Some(IpAddr::V4(spec.addr)),
            allow_plain_auth: true,
            retry_initial_secs: 2,
            retry_max_secs: 30,
            ..MailConfig::default()
        };
        let server = MailServer::bind(config).await.map_err(|e| fail(e.to_string()))?;
        let (smtp, submission) = match (server.smtp_addr(), server.submission_addr()) {
            (Some(s), Some(u)) => (s, u),
            _ => return Err(fail("no listener".into())),
        };
        let logins: Vec<String> =
            spec.users.iter().map(|u| format!("{} / {}", u.address, u.password)).collect();
        let port_of = |a: Option<SocketAddr>| a.map_or("-".to_string(), |a| a.port().to_string());
        let serves = format!(
            "mail for {}: SMTP :{}, submission :{}, POP3 :{}, IMAP :{} (users: {})",
            spec.domain,
            smtp.port(),
            submission.port(),
            port_of(server.pop3_addr()),
            port_of(server.imap_addr()),
            logins.join(", ")
        );
        hosts.push(MailHost {
            name: spec.name.clone(),
            domain: spec.domain.clone(),
            smtp,
            submission,
            pop3: server.pop3_addr(),
            imap: server.imap_addr(),
            root,
            queue: server.queue(),
            users: spec.users.clone(),
        });
        members.push((spec.name.clone(), smtp, serves, server));
    }
    Ok((members, hosts))
}

/// The SMTP port all lab mail servers use: the configured one, or (0) a port free on every
/// mail server's address.
fn shared_smtp_port(specs: &[MailSpec]) -> u16 {
    let wanted = specs.iter().map(|s| s.smtp_port).find(|p| *p != 0);
    if let Some(p) = wanted {
        return p;
    }
    for _ in 0..50 {
        let Ok(first) = std::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(specs[0].addr), 0)) else {
            break;
        };
        let Ok(port) = first.local_addr().map(|a| a.port()) else { break };
        drop(first);
        if specs
            .iter()
            .all(|s| std::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(s.addr), port)).is_ok())
        {
            return port;
        }
    }
    default_smtp_port()
}

/// What the scene saw, for its test.
#[derive(Debug, Default)]
pub struct MailFacts {
    /// The submission dialogue (C:/S: lines).
    pub submission: Vec<String>,
    /// The queue's SMTP dialogue between the two servers (C:/S: lines, MX line).
    pub relay: Vec<String>,
    /// The message as it landed in Bob's Maildir.
    pub delivered: String,
    /// Where it landed.
    pub path: PathBuf,
    /// The message as Bob's agent fetched it over POP3 (RETR).
    pub pop3: String,
    /// The message as Bob's agent fetched it over IMAP (BODY.PEEK[]).
    pub imap: String,
}

fn new_files(root: &Path, domain: &str, user: &str) -> Vec<PathBuf> {
    let dir = root.join("mail").join(domain).join(user).join("new");
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// The host Alice's user agent runs on (it submits from this lab address).
pub const ALICE_HOST: (&str, &str) = ("alice's host", "127.0.10.30");
/// The host Bob's user agent reads his mail from (the fetches leave from the default source).
pub const BOB_HOST: (&str, &str) = ("bob's host", "127.0.0.1");

/// An SMTP command decoded for the page: the verb and its argument (RFC 5321 §4.1).
fn command_fields(line: &str) -> Vec<(String, String)> {
    // MAIL FROM: and RCPT TO: name their path after a two-word verb.
    let two_words = ["MAIL FROM:", "RCPT TO:"]
        .iter()
        .find(|p| line.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p)))
        .map(|p| (&line[..p.len() - 1], &line[p.len()..]));
    let (verb, arg) = two_words.or_else(|| line.split_once(' ')).unwrap_or((line, ""));
    let mut f = vec![("Command".to_string(), verb.to_string())];
    if !arg.is_empty() {
        f.push(("Argument".into(), arg.trim_start_matches(':').to_string()));
    }
    f
}

/// An SMTP reply line decoded for the page: code and its class (RFC 5321 §4.2.1), whether
/// more lines follow, the enhanced status code (RFC 3463) and the text.
fn reply_fields(line: &str) -> Vec<(String, String)> {
    let code = line.get(..3).unwrap_or(line);
    let class = match code.as_bytes().first() {
        Some(b'2') => "positive completion",
        Some(b'3') => "positive intermediate (send more)",
        Some(b'4') => "transient failure (try again later)",
        Some(b'5') => "permanent failure",
        _ => "not an SMTP reply",
    };
    let more = line.as_bytes().get(3) == Some(&b'-');
    let text = line.get(4..).unwrap_or("");
    let mut f = vec![
        ("Reply code".to_string(), format!("{code} ({class})")),
        ("Last line".to_string(), if more { "no (\"-\" follows the code)" } else { "yes" }.to_string()),
    ];
    let first = text.split(' ').next().unwrap_or("");
    if first.split('.').count() == 3
        && first.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        f.push(("Enhanced status".into(), first.to_string()));
    }
    f.push(("Text".into(), text.to_string()));
    f
}

/// Prints an SMTP dialogue traced as "C: "/"S: " lines and puts each command and each reply
/// line on the event bus as an arrow between the two hosts; the message itself (between
/// DATA's 354 and the lone ".") travels as one arrow, with its lines as fields.
fn dialogue(lines: &[String], client: &Endpoint, server: &Endpoint, say: &mut dyn FnMut(String)) {
    let mut body: Option<Vec<String>> = None;
    let message = |say: &mut dyn FnMut(String), lines: Vec<String>| {
        let text = format!("{}\r\n.\r\n", lines.join("\r\n"));
        let subject = lines.iter().find_map(|l| l.strip_prefix("Subject: ")).unwrap_or("");
        let summary = format!(
            "the message: {} lines, {} bytes (Subject: {subject}), ended by \".\"",
            lines.len(),
            text.len()
        );
        let fields = lines.iter().enumerate().map(|(i, l)| (format!("Line {}", i + 1), l.clone())).collect();
        tell(
            say,
            "   C: ",
            event(client.clone(), server.clone(), "SMTP", summary, fields, text.into_bytes(), None),
        );
    };
    for l in lines {
        if let Some(cmd) = l.strip_prefix("C: ") {
            if let Some(b) = body.as_mut() {
                if cmd == "." {
                    let done = std::mem::take(b);
                    body = None;
                    message(say, done);
                } else {
                    b.push(cmd.to_string());
                }
                continue;
            }
            // The trace hides AUTH's credentials: its bytes are not shown either.
            let bytes = if cmd.starts_with("AUTH ") { Vec::new() } else { line_bytes(cmd) };
            let e = event(
                client.clone(),
                server.clone(),
                "SMTP",
                cmd.to_string(),
                command_fields(cmd),
                bytes,
                None,
            );
            tell(say, "   C: ", e);
        } else if let Some(reply) = l.strip_prefix("S: ") {
            if reply.starts_with("354") {
                body = Some(Vec::new());
            }
            let e = event(
                server.clone(),
                client.clone(),
                "SMTP",
                reply.to_string(),
                reply_fields(reply),
                line_bytes(reply),
                None,
            );
            tell(say, "   S: ", e);
        } else if l.starts_with("(connected to ") {
            tell(
                say,
                "   ",
                event(client.clone(), server.clone(), "TCP", l.clone(), Vec::new(), Vec::new(), None),
            );
        } else {
            say(format!("   {l}"));
        }
    }
    if let Some(rest) = body.filter(|b| !b.is_empty()) {
        message(say, rest);
    }
}

/// Runs the scene: Alice (first user of the first mail server) writes to Bob (first user of
/// the second).
pub async fn run(lab: &crate::Lab, say: &mut dyn FnMut(String)) -> Result<MailFacts, String> {
    let (Some(from_host), Some(to_host)) = (lab.mail.first(), lab.mail.get(1)) else {
        return Err("the lab has fewer than two mail servers".into());
    };
    let (Some(alice), Some(bob)) = (from_host.users.first(), to_host.users.first()) else {
        return Err("the lab's mail servers have no users".into());
    };
    let (bob_user, bob_domain) = bob.address.split_once('@').ok_or("bad lab address")?;
    let before = new_files(&to_host.root, bob_domain, bob_user).len();
    let mut facts = MailFacts::default();

    say(format!("{} (Alice → Bob: {} → {})", crate::tour::heading(11), alice.address, bob.address));
    say(format!(
        "1) Alice's user agent submits the message to her mail server, {} (submission port {}),",
        from_host.name,
        from_host.submission.port()
    ));
    say("   logging in with AUTH PLAIN (C: what the agent sends, S: what the server answers):".into());
    let relay = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = relay.clone();
    from_host
        .queue
        .set_trace(Some(Arc::new(move |l: String| sink.lock().unwrap_or_else(|p| p.into_inner()).push(l))));
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = lines.clone();
    let mut opts = ClientOptions::new(from_host.domain.clone());
    opts.timeout = Duration::from_secs(10);
    opts.auth = Some((alice.address.clone(), alice.password.clone()));
    opts.source = ALICE_HOST.1.parse().ok();
    opts.trace =
        Some(Box::new(move |l: &str| seen.lock().unwrap_or_else(|p| p.into_inner()).push(l.to_string())));
    let message = format!(
        "From: Alice <{}>\r\nTo: Bob <{}>\r\nSubject: Ketchup?\r\n\r\nDo you like ketchup?\r\nHow about pickles?\r\n",
        alice.address, bob.address
    );
    let result = appnet_mail::smtp::client::deliver(
        from_host.submission,
        &mut opts,
        &alice.address,
        std::slice::from_ref(&bob.address),
        message.as_bytes(),
    )
    .await;
    let spool = Spool::open(&from_host.root).map_err(|e| e.to_string())?;
    let waiting = spool.list().unwrap_or_default();
    facts.submission = std::mem::take(&mut *lines.lock().unwrap_or_else(|p| p.into_inner()));
    let alice_host = Endpoint::new(ALICE_HOST.0, ALICE_HOST.1);
    let submission = Endpoint::new(&from_host.name, from_host.submission);
    dialogue(&facts.submission, &alice_host, &submission, say);
    match result {
        Ok(outcomes) if matches!(outcomes.first(), Some(Outcome::Delivered(_))) => {}
        Ok(outcomes) => return Err(format!("mail scene: submission refused: {outcomes:?}")),
        Err(e) => return Err(format!("mail scene: submission failed: {e}")),
    }
    say(format!("2) The message waits in {}'s queue ({}):", from_host.name, spool.dir().display()));
    match waiting.first() {
        Some(e) => say(format!("   {}  {} -> {}", e.id, e.from, e.rcpts.join(", "))),
        None => say("   (already on its way: the queue picked it up at once)".into()),
    }
    say(format!("3) {} asks the lab resolver for the MX record of {bob_domain}:", from_host.name));
    if let Some(r) = lab.topology.resolvers.first() {
        let resolver = SocketAddr::new(IpAddr::V4(r.addr), lab.topology.dns_port);
        let from_ip = from_host.smtp.ip();
        let x = crate::tour::ask_exchange(from_ip, resolver, bob_domain, appnet_dns::wire::rrtype::code::MX)
            .await?;
        let (reply, took) = (&x.reply, x.elapsed);
        let me = Endpoint::new(&from_host.name, from_ip);
        let dns = Endpoint::new(&r.name, resolver);
        let query_fields = appnet_dns::wire::message::parse(&x.query).map(|p| crate::tour::dns_fields(&p));
        crate::events::bus().emit(|| {
            event(
                me.clone(),
                dns.clone(),
                "DNS",
                format!("recursive query {bob_domain} MX"),
                query_fields.unwrap_or_default(),
                x.query.clone(),
                None,
            )
        });
        for rec in
            reply.answer.iter().filter(|r| r.rtype == appnet_dns::wire::rrtype::code::MX && r.rdata.len() > 2)
        {
            let pref = u16::from_be_bytes([rec.rdata[0], rec.rdata[1]]);
            let host = appnet_dns::wire::name::to_text(&rec.rdata[2..]);
            let summary = format!("answers in {} ms: {bob_domain} MX {pref} {host}", took.as_millis());
            let e = event(
                dns.clone(),
                me.clone(),
                "DNS",
                summary,
                crate::tour::dns_fields(reply),
                x.raw.clone(),
                Some(took.as_secs_f64() * 1000.0),
            );
            tell(say, &format!("   {} ({resolver}) ", r.name), e);
        }
    }
    let arrived =
        wait_for(|| new_files(&to_host.root, bob_domain, bob_user).len() > before, Duration::from_secs(15))
            .await;
    // The Maildir file is written before the 250 that ends DATA: the relay's dialogue is taken
    // once it has also read QUIT's 221 (bounded: a missing line only shortens what is shown).
    if arrived {
        let said_bye =
            || relay.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|l| l.starts_with("S: 221"));
        wait_for(said_bye, Duration::from_secs(5)).await;
    }
    from_host.queue.set_trace(None);
    facts.relay = std::mem::take(&mut *relay.lock().unwrap_or_else(|p| p.into_inner()));
    say(format!(
        "4) {} opens a TCP connection to {} port {} and the two servers speak SMTP:",
        from_host.name,
        to_host.name,
        to_host.smtp.port()
    ));
    let relay_client = Endpoint::new(&from_host.name, from_host.smtp.ip());
    let relay_server = Endpoint::new(&to_host.name, to_host.smtp);
    dialogue(&facts.relay, &relay_client, &relay_server, say);
    if !arrived {
        return Err(format!("mail scene: the message did not reach {}'s Maildir", bob.address));
    }
    let path = new_files(&to_host.root, bob_domain, bob_user).pop().ok_or("no message")?;
    facts.delivered = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    facts.path = path.clone();
    say(format!("5) {} puts the message in Bob's Maildir: {}", to_host.name, path.display()));
    say("   (note the Received: line each server added on the way):".into());
    for l in facts.delivered.lines() {
        say(format!("     | {l}"));
    }
    let (Some(pop3), Some(imap)) = (to_host.pop3, to_host.imap) else {
        return Err(format!("mail scene: {} runs no POP3 or IMAP server", to_host.name));
    };
    say(format!(
        "6) Bob's user agent pulls the message from {}: first with POP3 (port {}),",
        to_host.name,
        pop3.port()
    ));
    let fetch_err = |what: &str, e: appnet_mail::fetch::FetchError| format!("mail scene: {what}: {e}");
    let bob_host = Endpoint::new(BOB_HOST.0, BOB_HOST.1);
    let pop3_end = Endpoint::new(&to_host.name, pop3);
    let imap_end = Endpoint::new(&to_host.name, imap);
    // The fetch helpers keep their dialogues to themselves: each session is one arrow there
    // (the commands it sends, in order) and one arrow back per message it reports.
    let session = |to: &Endpoint, proto: &'static str, commands: &[&str]| {
        crate::events::bus().emit(|| {
            let fields =
                commands.iter().enumerate().map(|(i, c)| (format!("Command {}", i + 1), c.to_string()));
            event(
                bob_host.clone(),
                to.clone(),
                proto,
                commands.join(", "),
                fields.collect(),
                Vec::new(),
                None,
            )
        })
    };
    let summary_fields = |m: &appnet_mail::fetch::Summary| {
        vec![
            ("Message".to_string(), m.number.to_string()),
            ("Size".into(), format!("{} octets", m.size)),
            ("From".into(), m.from.clone()),
            ("Subject".into(), m.subject.clone()),
        ]
    };
    let user = format!("USER {}", bob.address);
    session(&pop3_end, "POP3", &[user.as_str(), "PASS (hidden)", "LIST", "TOP n 0 (each message)", "QUIT"]);
    let list = appnet_mail::fetch::pop3_list(pop3, &bob.address, &bob.password)
        .await
        .map_err(|e| fetch_err("POP3 LIST", e))?;
    for m in &list {
        let summary = format!(
            "POP3 LIST/TOP: {}  {} octets  From: {}  Subject: {}",
            m.number, m.size, m.from, m.subject
        );
        tell(
            say,
            "   ",
            event(pop3_end.clone(), bob_host.clone(), "POP3", summary, summary_fields(m), Vec::new(), None),
        );
    }
    let last = list.last().ok_or("mail scene: Bob's POP3 maildrop is empty")?;
    let retr = format!("RETR {}", last.number);
    session(&pop3_end, "POP3", &[user.as_str(), "PASS (hidden)", retr.as_str(), "QUIT"]);
    let got = appnet_mail::fetch::pop3_get(pop3, &bob.address, &bob.password, last.number)
        .await
        .map_err(|e| fetch_err("POP3 RETR", e))?;
    facts.pop3 = String::from_utf8_lossy(&got).into_owned();
    let summary = format!(
        "POP3 RETR {}: {} octets, the message above (left on the server: no DELE)",
        last.number,
        got.len()
    );
    tell(
        say,
        "   ",
        event(pop3_end.clone(), bob_host.clone(), "POP3", summary, summary_fields(last), got.clone(), None),
    );
    say(format!("   then with IMAP (port {}), where the message stays on the server in INBOX:", imap.port()));
    let login = format!("f1 LOGIN {} (password hidden)", bob.address);
    let head = "f3 FETCH 1:* (RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])";
    session(&imap_end, "IMAP", &[login.as_str(), "f2 EXAMINE INBOX", head, "f4 LOGOUT"]);
    let list = appnet_mail::fetch::imap_list(imap, &bob.address, &bob.password)
        .await
        .map_err(|e| fetch_err("IMAP FETCH", e))?;
    for m in &list {
        let summary =
            format!("IMAP INBOX {}: {} octets  From: {}  Subject: {}", m.number, m.size, m.from, m.subject);
        tell(
            say,
            "   ",
            event(imap_end.clone(), bob_host.clone(), "IMAP", summary, summary_fields(m), Vec::new(), None),
        );
    }
    let last = list.last().ok_or("mail scene: Bob's INBOX is empty over IMAP")?;
    let fetch = format!("f3 FETCH {} BODY.PEEK[]", last.number);
    session(&imap_end, "IMAP", &[login.as_str(), "f2 EXAMINE INBOX", fetch.as_str(), "f4 LOGOUT"]);
    let got = appnet_mail::fetch::imap_get(imap, &bob.address, &bob.password, last.number)
        .await
        .map_err(|e| fetch_err("IMAP BODY.PEEK[]", e))?;
    facts.imap = String::from_utf8_lossy(&got).into_owned();
    let summary = format!(
        "IMAP FETCH {} BODY.PEEK[]: {} octets, the same message (its \\Seen flag untouched)",
        last.number,
        got.len()
    );
    tell(
        say,
        "   ",
        event(imap_end.clone(), bob_host.clone(), "IMAP", summary, summary_fields(last), got, None),
    );
    Ok(facts)
}

async fn wait_for(mut check: impl FnMut() -> bool, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    check()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_lines_decode_for_the_page() {
        let f = command_fields("RCPT TO:<bob@hamburger.edu>");
        assert_eq!(f[0], ("Command".into(), "RCPT TO".into()));
        assert_eq!(f[1], ("Argument".into(), "<bob@hamburger.edu>".into()));
        assert_eq!(command_fields("EHLO mail.crepes.fr")[1].1, "mail.crepes.fr");
        assert_eq!(command_fields("DATA"), vec![("Command".to_string(), "DATA".to_string())]);
        let r = reply_fields("250 2.1.5 Ok");
        assert!(r.contains(&("Reply code".into(), "250 (positive completion)".into())), "{r:?}");
        assert!(r.contains(&("Enhanced status".into(), "2.1.5".into())), "{r:?}");
        assert!(r.contains(&("Last line".into(), "yes".into())), "{r:?}");
        assert!(
            reply_fields("250-PIPELINING")
                .contains(&("Last line".into(), "no (\"-\" follows the code)".into()))
        );
        // Junk does not panic (multi-byte text where the code should be).
        assert_eq!(reply_fields("é").len(), 3);
        assert_eq!(command_fields("ü").len(), 1);
    }
}
