//! The user agent's sending half (`appnet mail send`): builds an RFC 5322 message with
//! mail-builder (text body, attachments as MIME parts) and hands it to a submission server
//! (AUTH PLAIN, STARTTLS when asked) or, with `--direct`, straight to each recipient domain's
//! mail exchangers found through a resolver.

use crate::queue::mx;
use crate::smtp::client::{self, ClientError, ClientOptions, Outcome};
use mail_builder::MessageBuilder;
use std::net::SocketAddr;
use std::time::Duration;

/// A message to build.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    /// The author (`From:` and the reverse-path).
    pub from: String,
    /// `To:` recipients.
    pub to: Vec<String>,
    /// `Cc:` recipients.
    pub cc: Vec<String>,
    /// `Subject:`.
    pub subject: String,
    /// The text body.
    pub body: String,
    /// Attachments: file name, content type, bytes.
    pub attachments: Vec<(String, String, Vec<u8>)>,
}

impl Draft {
    /// Every envelope recipient (To and Cc).
    pub fn recipients(&self) -> Vec<String> {
        self.to.iter().chain(&self.cc).cloned().collect()
    }

    /// The RFC 5322 message (CRLF line ends, Date and Message-ID included).
    pub fn build(&self) -> std::io::Result<Vec<u8>> {
        let domain = self.from.rsplit_once('@').map(|(_, d)| d).unwrap_or("localhost");
        let id = format!("{:016x}.{}@{domain}", rand::random::<u64>(), std::process::id());
        let mut m = MessageBuilder::new()
            .from(self.from.as_str())
            .subject(self.subject.as_str())
            .message_id(id)
            .text_body(self.body.as_str());
        if !self.to.is_empty() {
            m = m.to(self.to.iter().map(String::as_str).collect::<Vec<_>>());
        }
        if !self.cc.is_empty() {
            m = m.cc(self.cc.iter().map(String::as_str).collect::<Vec<_>>());
        }
        for (name, ctype, bytes) in &self.attachments {
            m = m.attachment(ctype.as_str(), name.as_str(), bytes.as_slice());
        }
        m.write_to_vec()
    }
}

/// A content type for an attachment, from its file name's extension.
pub fn content_type_for(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "txt" | "md" | "log" => "text/plain",
        "html" | "htm" => "text/html",
        "csv" => "text/csv",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "zip" => "application/zip",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// Where the message goes.
#[derive(Debug, Clone, Copy)]
pub enum Route {
    /// A submission (or SMTP) server.
    Server(SocketAddr),
    /// Each recipient domain's mail exchangers, found through `resolver`, on `port`.
    Direct {
        /// The DNS resolver.
        resolver: SocketAddr,
        /// The SMTP port of the exchangers.
        port: u16,
    },
}

/// Sends `data` from `from` to `rcpts`; one outcome per recipient. `make_opts` gives the
/// client options for each connection (trace, TLS, AUTH).
pub async fn send(
    route: Route,
    make_opts: &mut dyn FnMut() -> ClientOptions,
    from: &str,
    rcpts: &[String],
    data: &[u8],
) -> Result<Vec<(String, Outcome)>, ClientError> {
    match route {
        Route::Server(addr) => {
            let mut opts = make_opts();
            let outcomes = client::deliver(addr, &mut opts, from, rcpts, data).await?;
            Ok(rcpts.iter().cloned().zip(outcomes).collect())
        }
        Route::Direct { resolver, port } => {
            let mut by_domain: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for r in rcpts {
                let d = r.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
                by_domain.entry(d).or_default().push(r.clone());
            }
            let mut out = Vec::new();
            for (domain, list) in by_domain {
                let all = |o: Outcome| list.iter().cloned().map(|r| (r, o.clone())).collect::<Vec<_>>();
                let dests = match mx::destinations(resolver, &domain, port, Duration::from_secs(10)).await {
                    Ok(d) => d,
                    Err(mx::MxError::Permanent(w)) => {
                        out.extend(all(Outcome::Permanent(w)));
                        continue;
                    }
                    Err(mx::MxError::Temporary(w)) => {
                        out.extend(all(Outcome::Temporary(w)));
                        continue;
                    }
                };
                let mut last = Outcome::Temporary(format!("no mail exchanger of {domain} answered"));
                let mut done = false;
                for (_, addr) in dests {
                    let mut opts = make_opts();
                    match client::deliver(addr, &mut opts, from, &list, data).await {
                        Ok(outcomes) => {
                            out.extend(list.iter().cloned().zip(outcomes));
                            done = true;
                            break;
                        }
                        Err(e) if e.is_permanent() => {
                            last = Outcome::Permanent(e.to_string());
                            break;
                        }
                        Err(e) => last = Outcome::Temporary(format!("{addr}: {e}")),
                    }
                }
                if !done {
                    out.extend(all(last));
                }
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_build_rfc5322_messages() {
        let d = Draft {
            from: "alice@crepes.fr".into(),
            to: vec!["bob@hamburger.edu".into()],
            cc: vec!["carol@crepes.fr".into()],
            subject: "Pickles".into(),
            body: "Do you like ketchup?\nHow about pickles?\n".into(),
            attachments: vec![("a.txt".into(), content_type_for("a.txt").into(), b"attached".to_vec())],
        };
        let m = String::from_utf8(d.build().unwrap()).unwrap();
        for needle in [
            "From: <alice@crepes.fr>",
            "To: <bob@hamburger.edu>",
            "Cc: <carol@crepes.fr>",
            "Subject: Pickles",
            "Message-ID: <",
            "Date: ",
            "multipart/mixed",
            "filename=\"a.txt\"",
        ] {
            assert!(m.contains(needle), "{needle} missing in {m}");
        }
        assert_eq!(d.recipients(), vec!["bob@hamburger.edu".to_string(), "carol@crepes.fr".to_string()]);
        assert_eq!(content_type_for("X.PNG"), "image/png");
        assert_eq!(content_type_for("noext"), "application/octet-stream");
    }
}
