//! The SMTP client: one connection, one message, per-recipient results. The queue uses it to
//! deliver to remote mail exchangers and `appnet mail send` to submit (with AUTH PLAIN and
//! STARTTLS). Commands are pipelined when the server offers PIPELINING (RFC 2920); every
//! reply has a deadline (RFC 5321 §4.5.3.2); `trace` sees every line as `C: ` / `S: `.

use super::auth;
use super::wire::{Reply, ReplyParser, dot_stuff};
use appnet_netkit::lines::{Line, read_line_bounded};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Anything the client can talk over (TCP, or TLS over TCP).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A callback that sees each line of the dialogue.
pub type Trace = Box<dyn FnMut(&str) + Send>;

/// Longest reply line accepted.
const MAX_REPLY_LINE: usize = 4096;

/// How the client behaves.
pub struct ClientOptions {
    /// The name sent with EHLO/HELO.
    pub helo: String,
    /// Deadline for each reply (and the connection).
    pub timeout: Duration,
    /// Deadline for the reply to the final `.` (RFC 5321 §4.5.3.2.6: 10 minutes).
    pub data_timeout: Duration,
    /// AUTH PLAIN with this user and password.
    pub auth: Option<(String, String)>,
    /// STARTTLS when the server offers it, with this config and server name.
    pub tls: Option<(Arc<rustls::ClientConfig>, String)>,
    /// Fail when TLS is configured but the server does not offer STARTTLS.
    pub require_tls: bool,
    /// Called with every line sent (`C: ...`) and received (`S: ...`).
    pub trace: Option<Trace>,
    /// The local address to connect from.
    pub source: Option<std::net::IpAddr>,
    /// Set by [`deliver`] when STARTTLS was sent (so a failed handshake can be retried in the clear).
    pub tls_attempted: bool,
}

impl ClientOptions {
    /// Plain defaults: 5-minute replies, 10 minutes after the data, no AUTH, no TLS.
    pub fn new(helo: impl Into<String>) -> ClientOptions {
        ClientOptions {
            helo: helo.into(),
            timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            auth: None,
            tls: None,
            require_tls: false,
            trace: None,
            source: None,
            tls_attempted: false,
        }
    }
}

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server took responsibility for the message.
    Delivered(String),
    /// Try again later.
    Temporary(String),
    /// Do not try again: bounce.
    Permanent(String),
}

/// A failure of the whole session.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or talking failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A reply did not come in time.
    #[error("timed out waiting for the server")]
    Timeout,
    /// The server said something that is not SMTP.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server refused the session (greeting, EHLO, AUTH or MAIL FROM).
    #[error("{0}")]
    Refused(String, bool),
}

impl ClientError {
    /// Whether retrying cannot help (a 5xx to the session as a whole).
    pub fn is_permanent(&self) -> bool {
        matches!(self, ClientError::Refused(_, true))
    }
}

struct Conn {
    io: BufReader<Box<dyn Io>>,
    out: Vec<u8>,
    line: Vec<u8>,
}

impl Conn {
    fn send(&mut self, opts: &mut ClientOptions, line: &str) {
        if let Some(t) = opts.trace.as_mut() {
            let shown = if line.starts_with("AUTH ") { "AUTH PLAIN (credentials hidden)" } else { line };
            t(&format!("C: {shown}"));
        }
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.io.get_mut().write_all(&self.out).await?;
            self.io.get_mut().flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    async fn reply(&mut self, opts: &mut ClientOptions, timeout: Duration) -> Result<Reply, ClientError> {
        self.flush().await?;
        let mut parser = ReplyParser::default();
        let fut = async {
            loop {
                match read_line_bounded(&mut self.io, &mut self.line, MAX_REPLY_LINE).await? {
                    Line::Complete => {}
                    Line::Eof => return Err(ClientError::Protocol("connection closed by the server".into())),
                    Line::TooLong => return Err(ClientError::Protocol("reply line too long".into())),
                }
                if let Some(t) = opts.trace.as_mut() {
                    t(&format!("S: {}", String::from_utf8_lossy(&self.line)));
                }
                if let Some(r) = parser.push(&self.line).map_err(ClientError::Protocol)? {
                    return Ok(r);
                }
            }
        };
        tokio::time::timeout(timeout, fut).await.map_err(|_| ClientError::Timeout)?
    }
}

/// Connects to `addr`, from `source` when given.
async fn connect(addr: SocketAddr, source: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(ip) = source else { return TcpStream::connect(addr).await };
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

fn refused(stage: &str, r: &Reply) -> ClientError {
    ClientError::Refused(format!("{stage}: {}", r.text()), r.is_permanent())
}

/// Delivers one message to the server at `addr`: `from` (empty for a bounce) to `rcpts`.
/// Returns one outcome per recipient, in order, or an error for the whole session.
pub async fn deliver(
    addr: SocketAddr,
    opts: &mut ClientOptions,
    from: &str,
    rcpts: &[String],
    data: &[u8],
) -> Result<Vec<Outcome>, ClientError> {
    let stream = tokio::time::timeout(opts.timeout, connect(addr, opts.source))
        .await
        .map_err(|_| ClientError::Timeout)??;
    let _ = stream.set_nodelay(true);
    if let Some(t) = opts.trace.as_mut() {
        t(&format!("(connected to {addr})"));
    }
    let boxed: Box<dyn Io> = Box::new(stream);
    let mut conn = Conn { io: BufReader::new(boxed), out: Vec::new(), line: Vec::new() };
    let result = transact(&mut conn, opts, from, rcpts, data).await;
    if result.is_ok() || matches!(result, Err(ClientError::Refused(..))) {
        conn.send(opts, "QUIT");
        let _ = conn.reply(opts, Duration::from_secs(5).min(opts.timeout)).await;
    }
    result
}

async fn transact(
    conn: &mut Conn,
    opts: &mut ClientOptions,
    from: &str,
    rcpts: &[String],
    data: &[u8],
) -> Result<Vec<Outcome>, ClientError> {
    let t = opts.timeout;
    let greeting = conn.reply(opts, t).await?;
    if greeting.code != 220 {
        return Err(refused("greeting", &greeting));
    }
    let mut ehlo = hello(conn, opts).await?;
    if let Some((config, name)) = opts.tls.clone() {
        if ehlo.has_extension("STARTTLS") {
            conn.send(opts, "STARTTLS");
            opts.tls_attempted = true;
            let r = conn.reply(opts, t).await?;
            if r.code != 220 {
                // Never final: the caller may retry without TLS.
                return Err(ClientError::Refused(format!("STARTTLS: {}", r.text()), false));
            }
            let server_name = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|_| ClientError::Protocol(format!("{name:?} is not a valid TLS server name")))?;
            let old =
                std::mem::replace(&mut conn.io, BufReader::new(Box::new(tokio::io::empty()) as Box<dyn Io>));
            let inner = old.into_inner();
            let tls = tokio_rustls::TlsConnector::from(config).connect(server_name, inner);
            let tls = tokio::time::timeout(t, tls).await.map_err(|_| ClientError::Timeout)??;
            if let Some(tr) = opts.trace.as_mut() {
                tr("(TLS established)");
            }
            conn.io = BufReader::new(Box::new(tls));
            ehlo = hello(conn, opts).await?;
        } else if opts.require_tls {
            return Err(ClientError::Refused("the server does not offer STARTTLS".into(), false));
        }
    }
    if let Some((user, password)) = opts.auth.clone() {
        conn.send(opts, &format!("AUTH PLAIN {}", auth::plain_response(&user, &password)));
        let r = conn.reply(opts, t).await?;
        if r.code != 235 {
            return Err(refused("AUTH", &r));
        }
    }
    let pipelining = ehlo.has_extension("PIPELINING");
    let size = if ehlo.has_extension("SIZE") { format!(" SIZE={}", data.len()) } else { String::new() };
    let mail = format!("MAIL FROM:<{from}>{size}");
    let mut commands = vec![mail];
    commands.extend(rcpts.iter().map(|r| format!("RCPT TO:<{r}>")));
    commands.push("DATA".to_string());
    let mut replies = Vec::with_capacity(commands.len());
    if pipelining {
        for c in &commands {
            conn.send(opts, c);
        }
        for _ in &commands {
            replies.push(conn.reply(opts, t).await?);
        }
    } else {
        for (i, c) in commands.iter().enumerate() {
            let last = i + 1 == commands.len();
            let accepted_any = replies.iter().skip(1).any(Reply::is_positive);
            if last && !accepted_any {
                break;
            }
            conn.send(opts, c);
            let r = conn.reply(opts, t).await?;
            let stop = i == 0 && !r.is_positive();
            replies.push(r);
            if stop {
                break;
            }
        }
    }
    let mail_reply = &replies[0];
    if !mail_reply.is_positive() {
        return Err(refused("MAIL FROM", mail_reply));
    }
    let mut outcomes: Vec<Outcome> = rcpts
        .iter()
        .enumerate()
        .map(|(i, _)| match replies.get(i + 1) {
            Some(r) if r.is_positive() => Outcome::Delivered(String::new()),
            Some(r) if r.is_permanent() => Outcome::Permanent(r.text()),
            Some(r) => Outcome::Temporary(r.text()),
            None => Outcome::Temporary("not tried".into()),
        })
        .collect();
    let data_reply = replies.get(rcpts.len() + 1);
    match data_reply {
        Some(r) if r.code == 354 => {}
        _ => {
            if data_reply.is_some() && outcomes.iter().any(|o| matches!(o, Outcome::Delivered(_))) {
                let r = data_reply.map(Reply::text).unwrap_or_default();
                for o in outcomes.iter_mut().filter(|o| matches!(o, Outcome::Delivered(_))) {
                    *o = Outcome::Temporary(format!("DATA: {r}"));
                }
            }
            conn.send(opts, "RSET");
            let _ = conn.reply(opts, t).await;
            return Ok(outcomes);
        }
    }
    let stuffed = dot_stuff(data);
    if let Some(tr) = opts.trace.as_mut() {
        for line in String::from_utf8_lossy(&stuffed).lines() {
            tr(&format!("C: {line}"));
        }
    }
    conn.out.extend_from_slice(&stuffed);
    let final_reply = conn.reply(opts, opts.data_timeout).await?;
    for o in outcomes.iter_mut().filter(|o| matches!(o, Outcome::Delivered(_))) {
        *o = if final_reply.is_positive() {
            Outcome::Delivered(final_reply.text())
        } else if final_reply.is_permanent() {
            Outcome::Permanent(final_reply.text())
        } else {
            Outcome::Temporary(final_reply.text())
        };
    }
    Ok(outcomes)
}

async fn hello(conn: &mut Conn, opts: &mut ClientOptions) -> Result<Reply, ClientError> {
    let t = opts.timeout;
    let helo = opts.helo.clone();
    conn.send(opts, &format!("EHLO {helo}"));
    let r = conn.reply(opts, t).await?;
    if r.is_positive() {
        return Ok(r);
    }
    conn.send(opts, &format!("HELO {helo}"));
    let r = conn.reply(opts, t).await?;
    if !r.is_positive() {
        return Err(refused("HELO", &r));
    }
    Ok(r)
}
