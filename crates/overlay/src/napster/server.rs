//! The directory server: a thin tokio driver around [`Directory`]. One task per connection
//! reads bounded lines, asks the core, writes the reply; when the connection goes, so do the
//! peer's entries (the deck's "drops a peer's entries when its connection goes").

use super::config::DirectoryConfig;
use super::directory::{Directory, DirectoryLimits, PeerId};
use super::wire::{Command, Reply};
use appnet_netkit::accept::{Accepted, Acceptor, ConnSlot};
use appnet_netkit::lines::{Line, read_line_bounded};
use appnet_netkit::listen::{ListenOpts, bind_tcp};
use appnet_netkit::metrics::{Counter, Gauge, Registry};
use appnet_netkit::{BoxError, Service, Shutdown};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Malformed lines one connection may send before it is closed.
const MAX_ERRORS: u32 = 16;

/// The directory's counters.
#[derive(Clone)]
struct Stats {
    registry: Registry,
    searches: Counter,
    announced: Counter,
    refused: Counter,
    peers: Gauge,
    entries: Gauge,
}

impl Stats {
    fn new() -> Stats {
        let r = Registry::new();
        Stats {
            searches: r.counter("napster_searches_total", "SEARCH commands answered.", &[]),
            announced: r.counter("napster_entries_added_total", "Entries announced with ADD.", &[]),
            refused: r.counter("napster_refused_total", "Commands refused (syntax, order, caps, busy).", &[]),
            peers: r.gauge("napster_peers", "Sharing peers registered now.", &[]),
            entries: r.gauge("napster_entries", "Directory entries held now.", &[]),
            registry: r,
        }
    }
}

/// A bound, not yet running directory server.
pub struct DirectoryServer {
    listener: TcpListener,
    config: DirectoryConfig,
    stats: Stats,
}

struct Shared {
    config: DirectoryConfig,
    directory: Mutex<Directory>,
    stats: Stats,
    next_id: AtomicU64,
}

impl DirectoryServer {
    /// Binds the listener.
    pub async fn bind(config: DirectoryConfig) -> io::Result<DirectoryServer> {
        let listener = bind_tcp(config.listen, &ListenOpts::default())?;
        Ok(DirectoryServer { listener, config, stats: Stats::new() })
    }

    /// The server's Prometheus counters.
    pub fn metrics(&self) -> Registry {
        self.stats.registry.clone()
    }
}

impl Service for DirectoryServer {
    fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        let acceptor = Acceptor::with_limits(self.listener, self.config.conn_limits());
        let limits = DirectoryLimits {
            max_entries_per_peer: self.config.max_entries_per_peer,
            max_entries: self.config.max_entries,
            max_results: self.config.max_results.max(1),
        };
        let shared = Arc::new(Shared {
            directory: Mutex::new(Directory::new(limits)),
            config: self.config,
            stats: self.stats,
            next_id: AtomicU64::new(1),
        });
        while let Some(accepted) = acceptor.next(&shutdown).await {
            match accepted {
                Accepted::Conn(stream, peer, slot) => {
                    let (shared, sd) = (shared.clone(), shutdown.clone());
                    shutdown.spawn(async move {
                        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                        if let Err(e) = serve(stream, peer, id, &slot, &shared, &sd).await {
                            tracing::debug!(%peer, "directory connection ended: {e}");
                        }
                        let gone = {
                            let mut d = shared.directory.lock().unwrap_or_else(|p| p.into_inner());
                            let gone = d.remove_peer(id);
                            shared.stats.peers.set(d.peers() as i64);
                            shared.stats.entries.set(d.entries() as i64);
                            gone
                        };
                        if gone > 0 {
                            tracing::info!(%peer, entries = gone, "peer left; its entries are dropped");
                        }
                    });
                }
                Accepted::OverCap(mut stream, peer) => {
                    shared.stats.refused.inc();
                    tracing::info!(%peer, "connection cap reached; refusing");
                    shutdown.spawn(async move {
                        let line = format!("{}\r\n", Reply::Err(503, "busy, try later".into()));
                        let _ =
                            tokio::time::timeout(Duration::from_secs(1), stream.write_all(line.as_bytes()))
                                .await;
                    });
                }
            }
        }
        drop(acceptor);
        shutdown.drain(Duration::from_secs(5)).await;
        Ok(())
    }
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    id: PeerId,
    slot: &ConnSlot,
    shared: &Shared,
    shutdown: &Shutdown,
) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    let mut errors = 0;
    loop {
        let got = tokio::select! {
            got = read_line_bounded(&mut reader, &mut line, shared.config.max_line) => got?,
            reason = slot.closed() => {
                tracing::debug!(%peer, ?reason, "closing a silent directory connection");
                return Ok(());
            }
            _ = shutdown.wait() => return Ok(()),
        };
        slot.busy();
        let mut out = String::new();
        match got {
            Line::Eof => return Ok(()),
            Line::TooLong => {
                shared.stats.refused.inc();
                let reply = Reply::Err(400, format!("line longer than {} bytes", shared.config.max_line));
                write.write_all(format!("{reply}\r\n").as_bytes()).await?;
                return Ok(());
            }
            Line::Complete => match Command::parse(&line) {
                Ok(Command::Quit) => {
                    write.write_all(b"OK bye\r\n").await?;
                    return Ok(());
                }
                Ok(cmd) => answer(cmd, peer, id, shared, &mut out),
                Err(e) => {
                    shared.stats.refused.inc();
                    errors += 1;
                    out = format!("{}\r\n", Reply::Err(400, e.to_string()));
                }
            },
        }
        write.write_all(out.as_bytes()).await?;
        if errors >= MAX_ERRORS {
            return Ok(());
        }
        slot.idle();
    }
}

/// Runs one command against the directory and renders its reply lines into `out`.
fn answer(cmd: Command, peer: SocketAddr, id: PeerId, shared: &Shared, out: &mut String) {
    use std::fmt::Write;
    let mut d = shared.directory.lock().unwrap_or_else(|p| p.into_inner());
    let reply = match cmd {
        Command::Hello(mut addr) => {
            // An unspecified IP ("0.0.0.0:6699") means the address the peer connects from.
            if addr.ip().is_unspecified() {
                addr.set_ip(peer.ip());
            }
            match d.register(id, addr) {
                Ok(()) => {
                    tracing::info!(%peer, listen = %addr, "peer registered");
                    Reply::Ok(format!("registered {addr}"))
                }
                Err(e) => Reply::Err(403, e.to_string()),
            }
        }
        Command::Add { size, sha1, name } => match d.add(id, size, sha1, name) {
            Ok(()) => {
                shared.stats.announced.inc();
                Reply::Ok("added".into())
            }
            Err(e @ super::directory::DirectoryError::NotRegistered) => Reply::Err(403, e.to_string()),
            Err(e) => Reply::Err(413, e.to_string()),
        },
        Command::Search(words) => {
            shared.stats.searches.inc();
            let hits = d.search(&words);
            for h in &hits {
                let _ = write!(out, "{}\r\n", Reply::Hit(h.clone()));
            }
            Reply::End(hits.len())
        }
        Command::Ping => Reply::Pong,
        Command::Quit => Reply::Ok("bye".into()),
    };
    if matches!(reply, Reply::Err(..)) {
        shared.stats.refused.inc();
    }
    shared.stats.peers.set(d.peers() as i64);
    shared.stats.entries.set(d.entries() as i64);
    let _ = write!(out, "{reply}\r\n");
}
