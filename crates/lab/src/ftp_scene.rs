//! The tour's FTP scene (RFC 959's design): a user at cis.poly.edu logs in to ftp.cs.umass.edu
//! anonymously, lists a directory and fetches two files in passive mode and one in active mode.
//! The control connection stays open for the whole session and carries every command and reply
//! (and the session's state: the login, the current directory); each listing and each file
//! travels on a new data connection that closes when the file ends. Every line of the dialogue
//! and every data connection, with both its ends, is printed as it happens.

use crate::run::Lab;
use appnet_ftp::client::{ClientConfig, DataMode, FtpClient, ListKind, TraceEvent};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The host the user sits at.
const CLIENT: (&str, &str) = ("cis.poly.edu", "127.0.10.4");
/// The directory of course material the scene works in.
const DIR: &str = "pub/kurose-ross";
/// The files fetched: two passively, the last actively.
const FILES: [(&str, DataMode); 3] = [
    ("ch2-notes.txt", DataMode::Passive),
    ("socket-programming/TCPServer.py", DataMode::Passive),
    ("trace-data.bin", DataMode::Active),
];

/// One data connection the scene saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataConn {
    /// The client's end.
    pub local: SocketAddr,
    /// The server's end.
    pub remote: SocketAddr,
    /// Who connected.
    pub mode: DataMode,
    /// Bytes it carried (known once it closed).
    pub bytes: Option<u64>,
}

/// What the scene saw, for its test.
#[derive(Debug, Default)]
pub struct FtpFacts {
    /// The control connection (client end, server end); one for the whole session.
    pub control: Vec<(SocketAddr, SocketAddr)>,
    /// Every data connection, in order.
    pub data: Vec<DataConn>,
    /// The commands sent, in order.
    pub commands: Vec<String>,
    /// The server's lab name (for the event bus).
    pub server_name: String,
}

/// Puts one trace event on the lab's event bus (for `lab --ui`): control lines as FTP messages
/// between the two hosts, data connections as FTP-DATA arrows from the side that connected.
fn publish(e: &TraceEvent, client: &str, server: &str, control: Option<(SocketAddr, SocketAddr)>) {
    crate::events::bus().emit(|| {
        let (c, s) =
            control.unwrap_or((SocketAddr::from(([0, 0, 0, 0], 0)), SocketAddr::from(([0, 0, 0, 0], 0))));
        let (from, to, protocol, bytes) = match e {
            TraceEvent::Sent(line) => ((client, c), (server, s), "FTP", format!("{line}\r\n").into_bytes()),
            TraceEvent::Received(line) => {
                ((server, s), (client, c), "FTP", format!("{line}\r\n").into_bytes())
            }
            TraceEvent::DataOpen { local, remote, mode: DataMode::Passive }
            | TraceEvent::DataTls { local, remote } => {
                ((client, *local), (server, *remote), "FTP-DATA", Vec::new())
            }
            TraceEvent::DataOpen { local, remote, .. } | TraceEvent::DataClose { local, remote, .. } => {
                ((server, *remote), (client, *local), "FTP-DATA", Vec::new())
            }
            TraceEvent::DataRefused { from } => ((client, *from), (client, c), "FTP-DATA", Vec::new()),
            TraceEvent::ControlOpen { local, remote }
            | TraceEvent::ControlClose { local, remote }
            | TraceEvent::TlsStarted { local, remote, .. } => {
                ((client, *local), (server, *remote), "FTP", Vec::new())
            }
        };
        let fields = vec![("event".to_string(), e.to_string())];
        crate::events::event(
            crate::events::Endpoint::new(from.0, from.1),
            crate::events::Endpoint::new(to.0, to.1),
            protocol,
            e.to_string(),
            fields,
            bytes,
            None,
        )
    });
}

/// Prints the events recorded since the last call, puts them on the lab's event bus, and files
/// them into `facts`.
fn flush(events: &Mutex<Vec<TraceEvent>>, facts: &mut FtpFacts, say: &mut dyn FnMut(String)) {
    let drained: Vec<TraceEvent> = std::mem::take(&mut *events.lock().unwrap_or_else(|p| p.into_inner()));
    for e in drained {
        let control = match &e {
            TraceEvent::ControlOpen { local, remote } => Some((*local, *remote)),
            _ => facts.control.first().copied(),
        };
        publish(&e, CLIENT.0, &facts.server_name, control);
        match &e {
            TraceEvent::ControlOpen { local, remote } => facts.control.push((*local, *remote)),
            TraceEvent::Sent(line) => facts.commands.push(line.clone()),
            TraceEvent::DataOpen { local, remote, mode } => {
                facts.data.push(DataConn { local: *local, remote: *remote, mode: *mode, bytes: None })
            }
            TraceEvent::DataClose { local, remote, bytes } => {
                if let Some(d) =
                    facts.data.iter_mut().rev().find(|d| d.local == *local && d.remote == *remote)
                {
                    d.bytes = Some(*bytes);
                }
            }
            _ => {}
        }
        match e {
            TraceEvent::DataOpen { .. } => say(format!("   {e}   [data connection {}]", facts.data.len())),
            _ => say(format!("   {e}")),
        }
    }
}

/// Runs the scene against the lab's first FTP server.
pub async fn run(lab: &Lab, say: &mut dyn FnMut(String)) -> Result<FtpFacts, String> {
    let spec = lab.topology.ftps.first().ok_or("the lab has no FTP server")?.clone();
    let server = lab.addr_of(&spec.name).ok_or(format!("{} is not running", spec.name))?;
    let client_ip: IpAddr = CLIENT.1.parse().map_err(|_| "bad client address")?;
    let tree = lab.dir.join("ftp").join(spec.addr.to_string());
    let mut facts = FtpFacts { server_name: spec.name.clone(), ..FtpFacts::default() };

    say(format!("{} ({} at {})", crate::tour::heading(12), spec.name, server));
    say("FTP sends its control information out of band: commands and replies on one TCP connection".into());
    say("that lasts the whole session and keeps its state (who logged in, the current directory);".into());
    say("every listing and every file on a new TCP connection of its own.".into());
    if let (Some(resolver), Some(r)) = (lab.addr_of("dns.poly.edu"), lab.topology.resolvers.first()) {
        let (reply, _) =
            crate::tour::ask_from(client_ip, resolver, &spec.name, appnet_dns::wire::rrtype::code::A).await?;
        let found = reply
            .answer
            .iter()
            .find(|a| a.rdata.len() == 4)
            .map(|a| IpAddr::from(<[u8; 4]>::try_from(&a.rdata[..]).expect("length checked")));
        if found != Some(IpAddr::V4(spec.addr)) {
            return Err(format!("FTP scene: {} resolved to {found:?}, not {}", spec.name, spec.addr));
        }
        say(format!("{} asks {} ({resolver}): {} is {}", CLIENT.0, r.name, spec.name, spec.addr));
    }

    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let config = ClientConfig {
        mode: DataMode::Passive,
        timeout: Duration::from_secs(10),
        source: Some(client_ip),
        tls: None,
        trace: Some(Arc::new(move |e: &TraceEvent| {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(e.clone())
        })),
    };
    let fail = |what: &str, e: appnet_ftp::client::ClientError| format!("FTP scene: {what}: {e}");

    say(format!(
        "{} opens the control connection to port {} and logs in as anonymous:",
        CLIENT.0,
        server.port()
    ));
    let mut client = FtpClient::connect(server, config).await.map_err(|e| fail("connect", e))?;
    client.login_anonymous().await.map_err(|e| fail("login", e))?;
    client.binary().await.map_err(|e| fail("TYPE I", e))?;
    client.cwd(DIR).await.map_err(|e| fail("CWD", e))?;
    let cwd = client.pwd().await.map_err(|e| fail("PWD", e))?;
    flush(&events, &mut facts, say);
    say(format!("   (the server now remembers, for this control connection only, that we are in {cwd})"));

    say("The listing (passive mode: PASV names a port on the server, the client connects to it):".into());
    let listing = client.list(ListKind::List, None).await.map_err(|e| fail("LIST", e))?;
    flush(&events, &mut facts, say);
    let text = String::from_utf8_lossy(&listing);
    for line in text.lines() {
        say(format!("     | {line}"));
    }
    if !text.contains("ch2-notes.txt") {
        return Err(format!("FTP scene: the listing of {DIR} does not show ch2-notes.txt:\n{text}"));
    }

    for (i, (file, mode)) in FILES.iter().enumerate() {
        client.set_mode(*mode);
        say(match mode {
            DataMode::Passive => format!("File {} in passive mode: {file}", i + 1),
            DataMode::Active => format!(
                "File {} in active mode: PORT names a port on {}, and the server connects to it: {file}",
                i + 1,
                CLIENT.0
            ),
        });
        let mut got = Vec::new();
        client.retr(file, 0, &mut got).await.map_err(|e| fail(&format!("RETR {file}"), e))?;
        flush(&events, &mut facts, say);
        let want = std::fs::read(tree.join(DIR).join(file))
            .map_err(|e| format!("FTP scene: the tree's {file}: {e}"))?;
        if got != want {
            return Err(format!(
                "FTP scene: {file} arrived as {} bytes, the server holds {}",
                got.len(),
                want.len()
            ));
        }
        say(format!(
            "   {} bytes, identical to the server's file; the data connection's close marked its end",
            got.len()
        ));
    }
    if let Some(active) = facts.data.iter().find(|d| d.mode == DataMode::Active)
        && active.remote.port() + 1 == server.port()
    {
        say(format!(
            "   (the server opened the active connection from port {}, its control port − 1: port 20 for 21)",
            active.remote.port()
        ));
    }
    client.quit().await.map_err(|e| fail("QUIT", e))?;
    flush(&events, &mut facts, say);
    check(&facts, server, client_ip)?;

    let (local, remote) = facts.control[0];
    say(format!(
        "One control connection ({local} → {remote}) for the whole session; {} data connections, one per",
        facts.data.len()
    ));
    say("listing or file, each opened for its transfer and closed at its end:".into());
    for (i, d) in facts.data.iter().enumerate() {
        let who = match d.mode {
            DataMode::Passive => "client connected",
            DataMode::Active => "server connected",
        };
        say(format!(
            "   data connection {}: {} ⇄ {} ({who}, {} bytes)",
            i + 1,
            d.local,
            d.remote,
            d.bytes.unwrap_or(0)
        ));
    }
    Ok(facts)
}

/// What the scene must have shown: one control connection, one data connection per transfer
/// (passive ones to a server port other than the control port, the active one from the server's
/// address to the client's), each closed with the file's bytes.
fn check(facts: &FtpFacts, server: SocketAddr, client: IpAddr) -> Result<(), String> {
    if facts.control.len() != 1 || facts.control[0].1 != server || facts.control[0].0.ip() != client {
        return Err(format!(
            "FTP scene: expected one control connection {client} → {server}, saw {:?}",
            facts.control
        ));
    }
    let modes: Vec<DataMode> = facts.data.iter().map(|d| d.mode).collect();
    let want = [DataMode::Passive, DataMode::Passive, DataMode::Passive, DataMode::Active];
    if modes != want {
        return Err(format!("FTP scene: expected data connections {want:?}, saw {modes:?}"));
    }
    for (i, d) in facts.data.iter().enumerate() {
        if d.bytes.is_none() {
            return Err(format!("FTP scene: data connection {} never closed", i + 1));
        }
        if d.local.ip() != client || d.remote.ip() != server.ip() || d.remote == server {
            return Err(format!("FTP scene: data connection {} is {} ⇄ {}", i + 1, d.local, d.remote));
        }
        if facts.data[..i].iter().any(|e| e.local == d.local && e.remote == d.remote) {
            return Err(format!("FTP scene: data connection {} reused a connection", i + 1));
        }
    }
    for verb in ["PASV", "PORT", "RETR", "LIST", "CWD", "QUIT"] {
        if !facts.commands.iter().any(|c| c.starts_with(verb)) {
            return Err(format!("FTP scene: no {verb} was sent"));
        }
    }
    Ok(())
}
