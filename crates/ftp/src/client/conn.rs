//! The client's tokio driver: one control connection that carries commands and replies and
//! keeps the session's state (login, current directory, TYPE), and a new data connection for
//! every listing or file, opened passively (the client connects to the port PASV/EPSV names)
//! or actively (PORT/EPRT name a port on the client, the server connects to it). With TLS
//! (RFC 4217 explicit FTPS) the control connection is upgraded by AUTH TLS and every data
//! connection is TLS too (PBSZ 0, PROT P).

use super::reply::{
    MAX_REPLY_LINE, Reply, ReplyError, ReplyParser, eprt_argument, parse_227, parse_229, port_argument,
};
use super::trace::{DataMode, TraceEvent, Tracer};
use appnet_netkit::lines::{Line, read_line_bounded};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, pki_types::ServerName};

/// Largest listing (LIST, NLST, MLSD) the client keeps in memory.
pub const MAX_LISTING: usize = 64 << 20;
/// The password sent for anonymous logins (RFC 1635 asks for an e-mail-like string).
pub const ANONYMOUS_PASSWORD: &str = "appnet@";
const COPY_BUF: usize = 256 << 10;

/// How the client talks to one server.
#[derive(Clone)]
pub struct ClientConfig {
    /// Passive (PASV/EPSV, the default: works through NAT and firewalls) or active (PORT/EPRT).
    pub mode: DataMode,
    /// Time allowed to connect, for each reply, for a data connection to open, and between
    /// two reads or writes of a transfer.
    pub timeout: Duration,
    /// The local address the control connection (and so every data connection) uses; the lab
    /// sends from a lab host's address. None: the system's choice.
    pub source: Option<IpAddr>,
    /// Where the control dialogue and the data connections are reported.
    pub trace: Option<Tracer>,
    /// Explicit FTPS (RFC 4217): AUTH TLS right after the greeting, then PBSZ 0 and PROT P
    /// after the login, so commands, passwords and every data connection are encrypted.
    /// None: plain FTP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            mode: DataMode::Passive,
            timeout: Duration::from_secs(30),
            source: None,
            trace: None,
            tls: None,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("mode", &self.mode)
            .field("timeout", &self.timeout)
            .field("source", &self.source)
            .field("trace", &self.trace.is_some())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Why an FTP operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A socket or file operation failed.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// Nothing happened within the configured time.
    #[error("timed out {0} (raise --timeout if the server is slow)")]
    Timeout(String),
    /// The server closed the control connection.
    #[error("the server closed the control connection")]
    Closed,
    /// The server's bytes are not FTP.
    #[error("bad reply from the server: {0}")]
    Protocol(String),
    /// The server refused a command (its reply says why).
    #[error("{command} refused: {reply}")]
    Refused { command: String, reply: Reply },
    /// The server wants a password and none was given.
    #[error("the server wants a password for {0}: give it with --password-stdin")]
    NeedPassword(String),
}

impl ClientError {
    /// The server's reply code when the server refused a command.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Refused { reply, .. } => Some(reply.code),
            _ => None,
        }
    }
}

impl From<ReplyError> for ClientError {
    fn from(e: ReplyError) -> Self {
        ClientError::Protocol(e.to_string())
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClientError {
    let what = what.into();
    move |source| ClientError::Io { what, source }
}

/// Which listing a data connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// LIST: `ls -l` style lines for people.
    List,
    /// NLST: bare names, one per line.
    Names,
    /// MLSD (RFC 3659): `fact=value;… name` lines for programs.
    Machine,
}

impl ListKind {
    fn verb(self) -> &'static str {
        match self {
            ListKind::List => "LIST",
            ListKind::Names => "NLST",
            ListKind::Machine => "MLSD",
        }
    }
}

/// A data connection on its way: connected (passive) or waiting for the server (active).
enum Pending {
    Passive(TcpStream),
    Active(TcpListener),
}

/// A byte stream the client talks over: plain TCP, or TLS over it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
type BoxStream = Box<dyn Stream>;

/// An open data connection and its two ends.
struct Data {
    io: BoxStream,
    local: SocketAddr,
    remote: SocketAddr,
}

/// One logged-in (or not yet) FTP session: the control connection and what it knows.
pub struct FtpClient {
    reader: BufReader<ReadHalf<BoxStream>>,
    writer: WriteHalf<BoxStream>,
    local: SocketAddr,
    remote: SocketAddr,
    config: ClientConfig,
    parser: ReplyParser,
    line: Vec<u8>,
    /// The server refused PASV once: use EPSV from then on.
    no_pasv: bool,
    /// The name the server's certificate must carry, once AUTH TLS succeeded.
    server_name: Option<ServerName<'static>>,
    /// PROT P is on: data connections are TLS.
    protected: bool,
}

async fn connect_from(source: Option<IpAddr>, to: SocketAddr) -> std::io::Result<TcpStream> {
    match source {
        None => TcpStream::connect(to).await,
        Some(ip) => {
            let socket = if ip.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(to).await
        }
    }
}

impl FtpClient {
    /// Connects to `host:port` (a name is looked up; each address is tried in turn) and reads
    /// the server's greeting.
    pub async fn connect_host(host: &str, port: u16, config: ClientConfig) -> Result<FtpClient, ClientError> {
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => timeout(config.timeout, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| ClientError::Timeout(format!("looking up {host}")))?
                .map_err(io(format!("cannot look up {host}")))?
                .collect(),
        };
        let mut last = None;
        for addr in addrs {
            match FtpClient::connect_named(addr, host, config.clone()).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Io {
            what: format!("cannot look up {host}"),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
        }))
    }

    /// Connects to `addr` and reads the greeting (220, perhaps after 120 "ready in n minutes");
    /// with TLS configured, the server's certificate must name the address.
    pub async fn connect(addr: SocketAddr, config: ClientConfig) -> Result<FtpClient, ClientError> {
        FtpClient::connect_named(addr, &addr.ip().to_string(), config).await
    }

    /// Connects to `addr`, reads the greeting, and with TLS configured upgrades the control
    /// connection (AUTH TLS) verifying the certificate against `host`.
    async fn connect_named(
        addr: SocketAddr,
        host: &str,
        config: ClientConfig,
    ) -> Result<FtpClient, ClientError> {
        let stream = timeout(config.timeout, connect_from(config.source, addr))
            .await
            .map_err(|_| ClientError::Timeout(format!("connecting to {addr}")))?
            .map_err(io(format!("cannot connect to {addr}")))?;
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().map_err(io("control connection"))?;
        let (r, w) = tokio::io::split(Box::new(stream) as BoxStream);
        let tls = config.tls.clone();
        let mut client = FtpClient {
            reader: BufReader::new(r),
            writer: w,
            local,
            remote: addr,
            config,
            parser: ReplyParser::new(),
            line: Vec::new(),
            no_pasv: false,
            server_name: None,
            protected: false,
        };
        client.trace(TraceEvent::ControlOpen { local, remote: addr });
        let mut greeting = client.read_reply().await?;
        while greeting.is_preliminary() {
            greeting = client.read_reply().await?;
        }
        if greeting.code != 220 {
            return Err(ClientError::Refused { command: "the connection".into(), reply: greeting });
        }
        match tls {
            Some(tls) => client.start_tls(tls, host).await,
            None => Ok(client),
        }
    }

    /// AUTH TLS (RFC 4217 §4): on 234, the TLS handshake runs on the control connection and
    /// every later command and reply is encrypted.
    async fn start_tls(
        mut self,
        tls: Arc<rustls::ClientConfig>,
        host: &str,
    ) -> Result<FtpClient, ClientError> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| ClientError::Protocol(format!("{host:?} is not a name TLS can verify")))?;
        let reply = self.command("AUTH TLS").await?;
        if reply.code != 234 {
            return Err(refused("AUTH TLS", reply));
        }
        if !self.reader.buffer().is_empty() {
            return Err(ClientError::Protocol(
                "the server sent more after 234, before the TLS handshake".into(),
            ));
        }
        let FtpClient { reader, writer, local, remote, config, parser, line, no_pasv, .. } = self;
        let stream = reader.into_inner().unsplit(writer);
        let tls_stream = timeout(config.timeout, TlsConnector::from(tls).connect(name.clone(), stream))
            .await
            .map_err(|_| ClientError::Timeout("in the control connection's TLS handshake".into()))?
            .map_err(io("TLS handshake on the control connection"))?;
        let version = tls_stream.get_ref().1.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
        let (r, w) = tokio::io::split(Box::new(tls_stream) as BoxStream);
        let client = FtpClient {
            reader: BufReader::new(r),
            writer: w,
            local,
            remote,
            config,
            parser,
            line,
            no_pasv,
            server_name: Some(name),
            protected: false,
        };
        client.trace(TraceEvent::TlsStarted { local, remote, version });
        Ok(client)
    }

    /// After a login over TLS: PBSZ 0 and PROT P, so data connections are TLS as well.
    async fn protect_data(&mut self) -> Result<(), ClientError> {
        if self.server_name.is_none() || self.protected {
            return Ok(());
        }
        self.command_ok("PBSZ 0").await?;
        self.command_ok("PROT P").await?;
        self.protected = true;
        Ok(())
    }

    /// The control connection's client end.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The control connection's server end.
    pub fn peer_addr(&self) -> SocketAddr {
        self.remote
    }

    /// Switches between passive and active data connections for the next transfers.
    pub fn set_mode(&mut self, mode: DataMode) {
        self.config.mode = mode;
    }

    fn trace(&self, event: TraceEvent) {
        if let Some(t) = &self.config.trace {
            t(&event);
        }
    }

    /// Reads one complete reply (all lines of a multi-line one).
    pub async fn read_reply(&mut self) -> Result<Reply, ClientError> {
        let limit = self.config.timeout;
        match timeout(limit, self.read_reply_inner()).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout("waiting for the server's reply".into())),
        }
    }

    async fn read_reply_inner(&mut self) -> Result<Reply, ClientError> {
        loop {
            let got = read_line_bounded(&mut self.reader, &mut self.line, MAX_REPLY_LINE)
                .await
                .map_err(io("reading the control connection"))?;
            match got {
                Line::Complete => {
                    if let Some(t) = &self.config.trace {
                        t(&TraceEvent::Received(String::from_utf8_lossy(&self.line).into_owned()));
                    }
                    if let Some(reply) = self.parser.push(&self.line)? {
                        return Ok(reply);
                    }
                }
                Line::Eof => return Err(ClientError::Closed),
                Line::TooLong => {
                    return Err(ClientError::Protocol(format!(
                        "a reply line longer than {MAX_REPLY_LINE} bytes"
                    )));
                }
            }
        }
    }

    /// Sends one command line (CR LF added); the password of PASS is traced as `****`.
    pub async fn send(&mut self, line: &str) -> Result<(), ClientError> {
        if line.contains(['\r', '\n']) {
            return Err(ClientError::Protocol(format!(
                "refusing to send a command with a line break: {line:?}"
            )));
        }
        let shown =
            if line.len() > 5 && line[..5].eq_ignore_ascii_case("PASS ") { "PASS ****" } else { line };
        self.trace(TraceEvent::Sent(shown.to_string()));
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        timeout(self.config.timeout, self.writer.write_all(&bytes))
            .await
            .map_err(|_| ClientError::Timeout("sending a command".into()))?
            .map_err(io("writing the control connection"))
    }

    /// Sends `line` and returns the server's reply, whatever it is.
    pub async fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        self.send(line).await?;
        self.read_reply().await
    }

    /// Sends `line` and requires a reply of class 2 (completed).
    async fn command_ok(&mut self, line: &str) -> Result<Reply, ClientError> {
        let reply = self.command(line).await?;
        if reply.is_completion() { Ok(reply) } else { Err(refused(line, reply)) }
    }

    /// Logs in: USER, then PASS when the server asks for one (331).
    pub async fn login(&mut self, user: &str, password: Option<&str>) -> Result<(), ClientError> {
        let reply = self.command(&format!("USER {user}")).await?;
        match reply.code {
            230 => return self.protect_data().await,
            331 => {}
            _ => return Err(refused(&format!("USER {user}"), reply)),
        }
        let password = password.ok_or_else(|| ClientError::NeedPassword(user.to_string()))?;
        let reply = self.command(&format!("PASS {password}")).await?;
        match reply.code {
            230 | 202 => self.protect_data().await,
            _ => Err(refused("PASS ****", reply)),
        }
    }

    /// Logs in as `anonymous` with [`ANONYMOUS_PASSWORD`].
    pub async fn login_anonymous(&mut self) -> Result<(), ClientError> {
        self.login("anonymous", Some(ANONYMOUS_PASSWORD)).await
    }

    /// TYPE I: files travel byte for byte.
    pub async fn binary(&mut self) -> Result<(), ClientError> {
        self.command_ok("TYPE I").await.map(|_| ())
    }

    /// CWD: the control connection remembers the new directory for later commands.
    pub async fn cwd(&mut self, dir: &str) -> Result<(), ClientError> {
        self.command_ok(&format!("CWD {dir}")).await.map(|_| ())
    }

    /// PWD: the current directory (the quoted name of the 257 reply).
    pub async fn pwd(&mut self) -> Result<String, ClientError> {
        let reply = self.command_ok("PWD").await?;
        let text = reply.first_text();
        let quoted = text.find('"').and_then(|s| text.rfind('"').filter(|e| *e > s).map(|e| &text[s + 1..e]));
        Ok(quoted.unwrap_or(text).replace("\"\"", "\""))
    }

    /// SIZE (RFC 3659): the file's size, or None when the server cannot tell.
    pub async fn size(&mut self, path: &str) -> Result<Option<u64>, ClientError> {
        let reply = self.command(&format!("SIZE {path}")).await?;
        Ok(if reply.code == 213 { reply.first_text().trim().parse().ok() } else { None })
    }

    /// Sets up the data connection for the next transfer command.
    async fn prepare_data(&mut self) -> Result<Pending, ClientError> {
        match self.config.mode {
            DataMode::Passive => {
                let port = if self.remote.is_ipv4() && !self.no_pasv {
                    let reply = self.command("PASV").await?;
                    if reply.code == 227 {
                        let named = parse_227(reply.first_text())
                            .ok_or_else(|| ClientError::Protocol(format!("no address in {reply}")))?;
                        // Only the port is taken: the data connection goes to the address the
                        // control connection reached (a 227 naming another host is how
                        // "passive bounce" redirects clients; NAT'ed servers name private ones).
                        named.port()
                    } else if reply.class() == 5 {
                        self.no_pasv = true;
                        self.epsv().await?
                    } else {
                        return Err(refused("PASV", reply));
                    }
                } else {
                    self.epsv().await?
                };
                let to = SocketAddr::new(self.remote.ip(), port);
                let stream = timeout(self.config.timeout, connect_from(Some(self.local.ip()), to))
                    .await
                    .map_err(|_| ClientError::Timeout(format!("opening the data connection to {to}")))?
                    .map_err(io(format!("cannot open the data connection to {to}")))?;
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().map_err(io("data connection"))?;
                self.trace(TraceEvent::DataOpen { local, remote: to, mode: DataMode::Passive });
                Ok(Pending::Passive(stream))
            }
            DataMode::Active => {
                let listener = TcpListener::bind(SocketAddr::new(self.local.ip(), 0))
                    .await
                    .map_err(io("cannot listen for the data connection"))?;
                let me = listener.local_addr().map_err(io("data listener"))?;
                let line = match port_argument(me) {
                    Some(arg) => format!("PORT {arg}"),
                    None => format!("EPRT {}", eprt_argument(me)),
                };
                self.command_ok(&line).await?;
                Ok(Pending::Active(listener))
            }
        }
    }

    async fn epsv(&mut self) -> Result<u16, ClientError> {
        let reply = self.command("EPSV").await?;
        if reply.code != 229 {
            return Err(refused("EPSV", reply));
        }
        parse_229(reply.first_text()).ok_or_else(|| ClientError::Protocol(format!("no port in {reply}")))
    }

    /// Sends a transfer command and returns its open data connection once the server has
    /// answered 1xx; None when the server completed it (2xx) without one. A `rest` offset is
    /// sent as REST just before the command (after PASV/PORT, as RFC 3659 §5.3 wants).
    async fn open_transfer(&mut self, line: &str, rest: u64) -> Result<Option<Data>, ClientError> {
        let pending = self.prepare_data().await?;
        if rest > 0 {
            let command = format!("REST {rest}");
            let reply = self.command(&command).await?;
            if reply.code != 350 {
                if let Pending::Passive(stream) = &pending {
                    self.traced_close_tcp(stream);
                }
                return Err(refused(&command, reply));
            }
        }
        match pending {
            Pending::Passive(stream) => {
                let reply = self.command(line).await?;
                if reply.is_preliminary() {
                    self.wrap_data(stream).await.map(Some)
                } else {
                    self.traced_close_tcp(&stream);
                    if reply.is_completion() { Ok(None) } else { Err(refused(line, reply)) }
                }
            }
            Pending::Active(listener) => {
                // The server may connect before or after its 150: wait for both at once.
                let server_ip = self.remote.ip();
                let tracer = self.config.trace.clone();
                let wait = self.config.timeout;
                let accept =
                    tokio::spawn(async move { accept_from(listener, server_ip, tracer, wait).await });
                let reply = match self.command(line).await {
                    Ok(r) => r,
                    Err(e) => {
                        accept.abort();
                        return Err(e);
                    }
                };
                if !reply.is_preliminary() {
                    accept.abort();
                    return if reply.is_completion() { Ok(None) } else { Err(refused(line, reply)) };
                }
                let stream = accept
                    .await
                    .map_err(|e| ClientError::Protocol(format!("data connection task: {e}")))??;
                self.wrap_data(stream).await.map(Some)
            }
        }
    }

    /// Reads the reply that ends a transfer (226 or 250).
    async fn finish_transfer(&mut self, line: &str) -> Result<(), ClientError> {
        let mut reply = self.read_reply().await?;
        while reply.is_preliminary() {
            reply = self.read_reply().await?;
        }
        if reply.is_completion() { Ok(()) } else { Err(refused(line, reply)) }
    }

    /// The data connection as the transfer uses it: TLS (a client handshake, after the 1xx
    /// reply as RFC 4217 servers expect) when PROT P is on, plain TCP otherwise.
    async fn wrap_data(&self, tcp: TcpStream) -> Result<Data, ClientError> {
        let local = tcp.local_addr().map_err(io("data connection"))?;
        let remote = tcp.peer_addr().map_err(io("data connection"))?;
        let (true, Some(tls), Some(name)) = (self.protected, &self.config.tls, &self.server_name) else {
            return Ok(Data { io: Box::new(tcp), local, remote });
        };
        let connect = TlsConnector::from(tls.clone()).connect(name.clone(), tcp);
        let stream = timeout(self.config.timeout, connect)
            .await
            .map_err(|_| ClientError::Timeout("in the data connection's TLS handshake".into()))?
            .map_err(io("TLS handshake on the data connection"))?;
        self.trace(TraceEvent::DataTls { local, remote });
        Ok(Data { io: Box::new(stream), local, remote })
    }

    fn traced_close(&self, data: &Data, bytes: u64) {
        self.trace(TraceEvent::DataClose { local: data.local, remote: data.remote, bytes });
    }

    fn traced_close_tcp(&self, stream: &TcpStream) {
        if let (Ok(local), Ok(remote)) = (stream.local_addr(), stream.peer_addr()) {
            self.trace(TraceEvent::DataClose { local, remote, bytes: 0 });
        }
    }

    /// Reads a data connection to its end into `out`; returns the bytes copied.
    async fn receive<W: AsyncWrite + Unpin>(
        &self,
        data: &mut Data,
        out: &mut W,
        max: Option<usize>,
    ) -> Result<u64, ClientError> {
        let mut buf = vec![0u8; COPY_BUF];
        let mut total = 0u64;
        loop {
            let n = match timeout(self.config.timeout, data.io.read(&mut buf)).await {
                Err(_) => return Err(ClientError::Timeout("waiting for data".into())),
                Ok(Ok(n)) => n,
                // A TLS peer that closes without close_notify: the 226 still says whether the
                // file was complete, as it does for plain connections.
                Ok(Err(e)) if self.protected && e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Ok(Err(e)) => return Err(io("reading the data connection")(e)),
            };
            if n == 0 {
                break;
            }
            total += n as u64;
            if max.is_some_and(|m| total > m as u64) {
                return Err(ClientError::Protocol(format!("a listing larger than {MAX_LISTING} bytes")));
            }
            timeout(self.config.timeout, out.write_all(&buf[..n]))
                .await
                .map_err(|_| ClientError::Timeout("writing what was received".into()))?
                .map_err(io("writing what was received"))?;
        }
        out.flush().await.map_err(io("writing what was received"))?;
        Ok(total)
    }

    /// A listing of the current directory, or of `arg`: LIST, NLST or MLSD.
    pub async fn list(&mut self, kind: ListKind, arg: Option<&str>) -> Result<Vec<u8>, ClientError> {
        let line = match arg {
            Some(a) if !a.is_empty() => format!("{} {a}", kind.verb()),
            _ => kind.verb().to_string(),
        };
        let mut out = Vec::new();
        if let Some(mut data) = self.open_transfer(&line, 0).await? {
            let got = self.receive(&mut data, &mut out, Some(MAX_LISTING)).await;
            self.traced_close(&data, out.len() as u64);
            drop(data);
            got?;
            self.finish_transfer(&line).await?;
        }
        Ok(out)
    }

    /// RETR `path` into `out`, from byte `offset` on (REST STREAM, RFC 3659 §5, when > 0);
    /// returns the bytes received.
    pub async fn retr<W: AsyncWrite + Unpin>(
        &mut self,
        path: &str,
        offset: u64,
        out: &mut W,
    ) -> Result<u64, ClientError> {
        let line = format!("RETR {path}");
        let Some(mut data) = self.open_transfer(&line, offset).await? else { return Ok(0) };
        let got = self.receive(&mut data, out, None).await;
        self.traced_close(&data, *got.as_ref().unwrap_or(&0));
        drop(data);
        let n = got?;
        self.finish_transfer(&line).await?;
        Ok(n)
    }

    /// STOR `path` with everything `input` yields; returns the bytes sent.
    pub async fn stor<R: AsyncRead + Unpin>(
        &mut self,
        path: &str,
        input: &mut R,
    ) -> Result<u64, ClientError> {
        let line = format!("STOR {path}");
        let Some(mut data) = self.open_transfer(&line, 0).await? else { return Ok(0) };
        let mut buf = vec![0u8; COPY_BUF];
        let mut total = 0u64;
        let sent: Result<(), ClientError> = async {
            loop {
                let n = input.read(&mut buf).await.map_err(io("reading the file to send"))?;
                if n == 0 {
                    break;
                }
                timeout(self.config.timeout, data.io.write_all(&buf[..n]))
                    .await
                    .map_err(|_| ClientError::Timeout("sending data".into()))?
                    .map_err(io("writing the data connection"))?;
                total += n as u64;
            }
            // The end of the file is the end of the data connection (MODE S).
            data.io.shutdown().await.map_err(io("closing the data connection"))
        }
        .await;
        self.traced_close(&data, total);
        drop(data);
        sent?;
        self.finish_transfer(&line).await?;
        Ok(total)
    }

    /// QUIT, then close the control connection.
    pub async fn quit(mut self) -> Result<(), ClientError> {
        let reply = self.command("QUIT").await;
        let _ = self.writer.shutdown().await;
        self.trace(TraceEvent::ControlClose { local: self.local, remote: self.remote });
        match reply {
            Ok(r) if r.is_completion() => Ok(()),
            Ok(r) => Err(refused("QUIT", r)),
            Err(ClientError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn refused(command: &str, reply: Reply) -> ClientError {
    ClientError::Refused { command: command.to_string(), reply }
}

/// Accepts the server's active-mode data connection: only one from the server's own address
/// (anyone else is turned away and the wait goes on), within `wait`.
async fn accept_from(
    listener: TcpListener,
    server: IpAddr,
    trace: Option<Tracer>,
    wait: Duration,
) -> Result<TcpStream, ClientError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (stream, from) = tokio::time::timeout_at(deadline, listener.accept())
            .await
            .map_err(|_| {
                ClientError::Timeout("waiting for the server's data connection (active mode)".into())
            })?
            .map_err(io("accepting the data connection"))?;
        if from.ip() == server {
            let _ = stream.set_nodelay(true);
            if let (Some(t), Ok(local)) = (&trace, stream.local_addr()) {
                t(&TraceEvent::DataOpen { local, remote: from, mode: DataMode::Active });
            }
            return Ok(stream);
        }
        if let Some(t) = &trace {
            t(&TraceEvent::DataRefused { from });
        }
    }
}
