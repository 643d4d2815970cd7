//! The authoritative server: a thin tokio driver around [`crate::respond`].
//!
//! UDP: worker threads ([`crate::udp`]) sleeping in `recvmmsg` on a few sockets sharing the port
//! (SO_REUSEPORT, the kernel spreads clients), each reusing its receive and send buffers, so
//! answering a query allocates nothing.
//! TCP on the same port: two-byte length framing, many queries per connection, an idle timeout
//! and a connection cap; zone transfers are streamed here. The zone set is swapped atomically on
//! reload or transfer; workers notice through a generation counter and pick up the new one.

use crate::acl::{ServerKeys, TransferAcl};
use crate::answer::Kind;
use crate::clock::unix_now;
use crate::config::{DnsConfig, zone_name_for};
use crate::respond::{Outcome, Policy, Transport, canonical, handle_at, notify_reply};
use crate::secondary::NotifyVerdict;
use crate::secondary_driver::{self, SecondaryState};
use crate::serial::Serial;
use crate::served::{Catalog, ServedZones};
use crate::store;
use crate::wire::name::{self, NameBuf};
use crate::wire::query::Header;
use crate::wire::response::rcode;
use crate::wire::tcp::{self, read_message, write_message};
use crate::wire::tsig::Verified;
use crate::zone::{Zone, ZoneError};
use appnet_netkit::accept::{Accepted, Acceptor, CloseReason, ConnSlot};
use appnet_netkit::listen::{ListenOpts, bind_udp_group_std_and_tcp};
use appnet_netkit::metrics::{Counter, Gauge, Registry};
use appnet_netkit::{BoxError, Service, Shutdown};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long in-flight TCP connections get after shutdown.
const DRAIN_DEADLINE: Duration = Duration::from_secs(3);
/// Largest message in a zone transfer.
const XFR_MESSAGE_SIZE: usize = 16 * 1024;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("zone {zone}: {source}")]
    Zone { zone: String, source: ZoneError },
    #[error("{0}")]
    Config(String),
    #[error("cannot listen: {0}")]
    Io(#[from] io::Error),
}

/// Counters in Prometheus text format.
#[derive(Clone)]
pub(crate) struct Stats {
    pub registry: Registry,
    answers: Counter,
    nxdomain: Counter,
    nodata: Counter,
    referrals: Counter,
    refused: Counter,
    errors: Counter,
    pub rrl_dropped: Counter,
    pub rrl_slipped: Counter,
    pub transfers: Counter,
    pub tcp_open: Gauge,
    pub tcp_refused: Counter,
    pub tcp_evicted: Counter,
    pub tcp_timed_out: Counter,
}

impl Stats {
    fn new() -> Stats {
        let r = Registry::new();
        let c = |kind: &str| r.counter("dns_responses_total", "Responses sent, by kind.", &[("kind", kind)]);
        Stats {
            answers: c("answer"),
            nxdomain: c("nxdomain"),
            nodata: c("nodata"),
            referrals: c("referral"),
            refused: c("refused"),
            errors: c("error"),
            rrl_dropped: r.counter("dns_rrl_dropped_total", "Responses dropped by rate limiting.", &[]),
            rrl_slipped: r.counter(
                "dns_rrl_slipped_total",
                "Responses sent truncated by rate limiting.",
                &[],
            ),
            transfers: r.counter("dns_transfers_total", "Outgoing zone transfers.", &[]),
            tcp_open: r.gauge("dns_tcp_connections", "TCP connections open now.", &[]),
            tcp_refused: r.counter("dns_tcp_refused_total", "TCP connections closed at the cap.", &[]),
            tcp_evicted: r.counter(
                "dns_tcp_evicted_total",
                "Idle TCP connections closed to make room for a newcomer.",
                &[],
            ),
            tcp_timed_out: r.counter(
                "dns_tcp_timed_out_total",
                "TCP connections closed because a whole query did not arrive in time.",
                &[],
            ),
            registry: r,
        }
    }

    /// Adds per-kind counts indexed by `Kind as usize`.
    pub(crate) fn add(&self, counts: &[u64; 6]) {
        let all = [&self.answers, &self.nodata, &self.nxdomain, &self.referrals, &self.refused, &self.errors];
        let kinds = [Kind::Answer, Kind::NoData, Kind::NxDomain, Kind::Referral, Kind::Refused, Kind::Error];
        for (counter, kind) in all.iter().zip(kinds) {
            let n = counts[kind as usize];
            if n > 0 {
                counter.add(n);
            }
        }
    }

    fn count(&self, kind: Kind) {
        match kind {
            Kind::Answer => self.answers.inc(),
            Kind::NoData => self.nodata.inc(),
            Kind::NxDomain => self.nxdomain.inc(),
            Kind::Referral => self.referrals.inc(),
            Kind::Refused => self.refused.inc(),
            Kind::Error => self.errors.inc(),
        }
    }
}

/// Reads a zone file and, with online signing configured, signs it at `now` (keys re-read
/// each time, so a key added to the directory is used from the next load). `after`: the serial
/// served so far; a signed zone must go past it even if the file's serial did not move.
fn load_zone(
    f: &FileZone,
    signer: Option<&(std::path::PathBuf, crate::online::SignPolicy)>,
    after: Option<u32>,
    now: u64,
) -> Result<Zone, ZoneError> {
    let zone = Zone::load_file(&f.file, &f.name)?;
    let Some((dir, policy)) = signer else { return Ok(zone) };
    let keys = crate::wire::dnssec::load_keys_dir(dir).map_err(|e| ZoneError::Signing(e.to_string()))?;
    let mut records = crate::online::zone_records(&zone);
    if let Some(old) = after
        && !Serial(zone.soa().serial).is_newer_than(Serial(old))
    {
        records = crate::online::with_serial(zone.apex(), records, old.wrapping_add(1));
    }
    crate::online::sign_records(zone.apex(), &records, &keys, *policy, now)
        .map_err(|e| ZoneError::Signing(e.to_string()))
}

/// Whether the zone name `text` (as configured) names the zone `apex`.
fn zone_name_is(text: &str, apex: &[u8]) -> bool {
    name::from_text(text).is_ok_and(|n| name::to_lower(&n) == name::to_lower(apex))
}

/// A zone loaded from a file, remembered for reloads.
#[derive(Debug, Clone)]
struct FileZone {
    name: String,
    file: std::path::PathBuf,
}

/// State shared by all tasks of one server.
pub(crate) struct Shared {
    pub config: DnsConfig,
    pub policy: Policy,
    catalog: Arc<Catalog>,
    files: Vec<FileZone>,
    pub secondaries: Vec<Arc<SecondaryState>>,
    pub stats: Stats,
    /// The TSIG key for each remote server (primaries, NOTIFY targets).
    pub server_keys: ServerKeys,
    /// RFC 2136 updates are applied one at a time.
    update_lock: tokio::sync::Mutex<()>,
}

impl Shared {
    /// The current zone set.
    pub fn served(&self) -> Arc<ServedZones> {
        self.catalog.served()
    }

    /// Swaps in the records of an accepted update of `apex` made against serial `base`
    /// (re-signed when signing online, journaled for IXFR, saved to the state directory,
    /// announced with NOTIFY). False when the zone changed meanwhile, signing failed or it
    /// could not be stored: the client gets SERVFAIL and may retry; nothing changed.
    pub async fn apply_update(
        &self,
        apex: NameBuf,
        base: u32,
        records: Vec<crate::wire::zonefile::ZoneRecord>,
    ) -> bool {
        let _one_at_a_time = self.update_lock.lock().await;
        let current = self.served();
        let Some(old) = current.zone(&apex).cloned() else { return false };
        if old.soa().serial != base {
            return false;
        }
        let signer = self.config.sign_policy();
        let max_journal = self.config.journal_max_bytes;
        let built = tokio::task::spawn_blocking(move || {
            let zone = match &signer {
                Some((dir, policy)) => {
                    let keys = crate::wire::dnssec::load_keys_dir(dir).map_err(|e| e.to_string())?;
                    crate::online::sign_records(&apex, &records, &keys, *policy, unix_now())
                        .map_err(|e| e.to_string())?
                }
                None => Zone::from_records(&apex, records).map_err(|e| e.to_string())?,
            };
            Ok::<Zone, String>(crate::journal::successor(Some(&old), zone, max_journal))
        })
        .await;
        let zone = match built {
            Ok(Ok(z)) => Arc::new(z),
            Ok(Err(e)) => {
                tracing::error!("update refused at apply: {e}");
                return false;
            }
            Err(_) => return false,
        };
        let apex = NameBuf::from(zone.apex());
        // Durable (fsynced) before anyone is served it or the client hears back; when it
        // cannot be stored, nothing changes and the client gets SERVFAIL.
        if let Some(dir) = self.config.state_dir.clone() {
            let file = self.files.iter().find(|f| zone_name_is(&f.name, &apex)).map(|f| f.file.clone());
            let z = zone.clone();
            let stored = tokio::task::spawn_blocking(move || match file {
                Some(file) => store::save_update(&dir, &file, &z),
                None => store::save_journal(&store::journal_path(&dir, z.apex()), &z),
            })
            .await;
            if let Ok(Err(e)) | Err(e) = stored.map_err(std::io::Error::other) {
                tracing::error!(zone = %zone.name(), "update refused: cannot store it: {e}");
                return false;
            }
        }
        tracing::info!(zone = %zone.name(), serial = zone.soa().serial, "zone updated (RFC 2136)");
        self.update(|c| c.with_zone(zone.clone()));
        send_notifies(self, apex);
        true
    }

    /// Replaces the zone set with `f(current)` atomically.
    pub fn update(&self, f: impl FnOnce(&ServedZones) -> ServedZones) {
        self.catalog.update(f)
    }

    /// Bumped whenever the zone set is swapped (workers then pick up the new one).
    pub(crate) fn generation(&self) -> u64 {
        self.catalog.generation()
    }

    /// Answers a NOTIFY: accepted (and a refresh triggered) only for a secondary zone from its
    /// primary's address.
    pub(crate) fn on_notify(
        &self,
        apex: &[u8],
        peer: IpAddr,
        serial: Option<u32>,
        header: Header,
        qname: &[u8],
        tsig: Option<Verified>,
    ) -> Vec<u8> {
        let wanted = |s: &SecondaryState| self.server_keys.for_server(s.primary).map(|k| k.name.clone());
        let got = tsig.as_ref().map(|v| v.key.name.clone());
        let verdict = match self.secondaries.iter().find(|s| &*s.apex == apex) {
            Some(s)
                if canonical(s.primary.ip()) == canonical(peer)
                    && wanted(s).is_some()
                    && wanted(s) != got =>
            {
                tracing::warn!(zone = %name::to_text(apex), %peer, "NOTIFY not signed with the primary's TSIG key; refused");
                Some(rcode::REFUSED)
            }
            Some(s) => match s.on_notify(peer, serial) {
                NotifyVerdict::NotPrimary => Some(rcode::REFUSED),
                verdict => {
                    tracing::info!(zone = %name::to_text(apex), %peer, ?serial, ?verdict, "NOTIFY received");
                    None
                }
            },
            None => Some(rcode::NOTAUTH),
        };
        notify_reply(header, qname, verdict, tsig, unix_now())
    }
}

/// A handle for controlling a running server: reload its zone files, look at its zones.
#[derive(Clone)]
pub struct Control(Arc<Shared>);

/// What a reload did.
#[derive(Debug, Default, Clone)]
pub struct ReloadReport {
    /// Zones whose data changed, with old and new serials.
    pub changed: Vec<(String, Option<u32>, u32)>,
    /// Zones whose files were broken (old data kept), with the reason.
    pub failed: Vec<(String, String)>,
}

impl Control {
    /// The zones being served now.
    pub fn catalog(&self) -> Arc<ServedZones> {
        self.0.served()
    }

    /// The serial of zone `name` as served now.
    pub fn serial(&self, name: &str) -> Option<u32> {
        let apex = name::to_lower(&name::from_text(name).ok()?);
        self.0.served().zone(&apex).map(|z| z.soa().serial)
    }

    /// Counters in Prometheus text format.
    pub fn metrics(&self) -> String {
        self.0.stats.registry.render()
    }

    /// Re-reads every zone file. A broken file keeps its old data (and is logged); zones with a
    /// higher serial are swapped in atomically and announced with NOTIFY to the configured
    /// secondaries.
    pub async fn reload(&self) -> ReloadReport {
        let shared = self.0.clone();
        let files = shared.files.clone();
        let signer = shared.config.sign_policy();
        let served_now = shared.served();
        let loaded = tokio::task::spawn_blocking(move || {
            let now = crate::clock::unix_now();
            files
                .iter()
                .map(|f| {
                    let after = signer.as_ref().and_then(|_| {
                        let apex = name::to_lower(&name::from_text(&f.name).ok()?);
                        served_now.zone(&apex).map(|z| z.soa().serial)
                    });
                    (f.name.clone(), load_zone(f, signer.as_ref(), after, now))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut report = ReloadReport::default();
        let mut fresh = Vec::new();
        let current = shared.served();
        let max_journal = shared.config.journal_max_bytes;
        for (zone_name, result) in loaded {
            match result {
                Ok(zone) => {
                    let old = current.zone(zone.apex()).map(|z| z.soa().serial);
                    let new = zone.soa().serial;
                    if old == Some(new) {
                        continue;
                    }
                    if let Some(o) = old
                        && Serial(new) < Serial(o)
                    {
                        tracing::warn!(zone = %zone_name, old = o, new, "reloaded zone has a lower serial; serving it anyway, secondaries will not follow");
                    }
                    report.changed.push((zone_name, old, new));
                    // Keep the difference for IXFR (computed off the async threads).
                    let previous = current.zone(zone.apex()).cloned();
                    let zone = tokio::task::spawn_blocking(move || {
                        crate::journal::successor(previous.as_deref(), zone, max_journal)
                    })
                    .await;
                    let Ok(zone) = zone else { continue };
                    fresh.push(Arc::new(zone));
                }
                Err(e) => {
                    tracing::error!(zone = %zone_name, "reload failed, keeping the old data: {e}");
                    report.failed.push((zone_name, e.to_string()));
                }
            }
        }
        crate::memory::release_free_memory();
        if !fresh.is_empty() {
            let announce: Vec<NameBuf> = fresh.iter().map(|z| NameBuf::from(z.apex())).collect();
            shared.update(|c| fresh.iter().fold(c.clone(), |acc, z| acc.with_zone(z.clone())));
            for (zone_name, old, new) in &report.changed {
                tracing::info!(zone = %zone_name, ?old, new, "zone reloaded");
            }
            if let Some(dir) = shared.config.state_dir.clone() {
                save_journals(dir, fresh.clone()).await;
            }
            for apex in announce {
                send_notifies(&shared, apex);
            }
        }
        report
    }
}

/// Stores the journal of each reloaded zone in `dir` (crash-safely, off the async threads), so
/// IXFR survives a restart. A failure is logged: the zone is served anyway.
async fn save_journals(dir: std::path::PathBuf, zones: Vec<Arc<Zone>>) {
    let saved = tokio::task::spawn_blocking(move || {
        for zone in zones {
            let file = store::journal_path(&dir, zone.apex());
            match store::save_journal(&file, &zone) {
                Ok(()) => tracing::debug!(zone = %zone.name(), steps = zone.journal().len(), "IXFR journal stored in {}", file.display()),
                Err(e) => tracing::warn!(zone = %zone.name(), "cannot store the IXFR journal in {}: {e}", file.display()),
            }
        }
    })
    .await;
    if saved.is_err() {
        tracing::warn!("storing the IXFR journals failed");
    }
}

/// Sends NOTIFY for `apex` to each target in the background (three tries each), signed with
/// the target's TSIG key if it has one.
pub(crate) fn send_notifies(shared: &Shared, apex: NameBuf) {
    for &target in &shared.config.notify {
        let apex = apex.clone();
        let key = shared.server_keys.for_server(target).cloned();
        tokio::spawn(async move {
            for attempt in 1..=3 {
                match crate::client::notify(target, &apex, Duration::from_secs(2), key.as_ref()).await {
                    Ok(()) => {
                        tracing::info!(zone = %name::to_text(&apex), %target, "NOTIFY acknowledged");
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(zone = %name::to_text(&apex), %target, attempt, "NOTIFY failed: {e}")
                    }
                }
            }
            tracing::warn!(zone = %name::to_text(&apex), %target, "NOTIFY not acknowledged after 3 tries");
        });
    }
}

/// A bound authoritative server, ready to [`run`](Service::run).
pub struct DnsServer {
    udp: Vec<std::net::UdpSocket>,
    tcp: TcpListener,
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl DnsServer {
    /// Loads every zone (any error stops the start: never a half-loaded zone) and binds UDP and
    /// TCP on the configured address.
    pub async fn bind(config: DnsConfig) -> Result<DnsServer, StartError> {
        DnsServer::bind_with_zones(config, Vec::new()).await
    }

    /// Like [`bind`](Self::bind), also serving `zones` built in memory (e.g. with
    /// [`Zone::from_text`]); these are not re-read on reload.
    pub async fn bind_with_zones(config: DnsConfig, extra: Vec<Arc<Zone>>) -> Result<DnsServer, StartError> {
        let mut files = Vec::new();
        for source in &config.zones {
            let name = zone_name_for(source).map_err(StartError::Config)?;
            files.push(FileZone { name, file: source.file.clone() });
        }
        let to_load = files.clone();
        // Each zone with its journal from the state directory, if one leads to it (IXFR
        // survives a restart).
        let (state_dir, max_journal) = (config.state_dir.clone(), config.journal_max_bytes);
        let signer = config.sign_policy();
        let loaded = tokio::task::spawn_blocking(move || {
            let now = crate::clock::unix_now();
            let load = |f: &FileZone| {
                load_zone(f, signer.as_ref(), None, now).map(|z| match &state_dir {
                    Some(dir) => store::with_stored_updates(z, &f.file, dir, max_journal),
                    None => z,
                })
            };
            to_load.iter().map(|f| (f.name.clone(), load(f))).collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StartError::Config(e.to_string()))?;
        let mut zones = extra;
        for (zone, result) in loaded {
            let z = result.map_err(|source| StartError::Zone { zone: zone.clone(), source })?;
            tracing::info!(zone = %zone, serial = z.soa().serial, records = z.record_count(), "zone loaded");
            zones.push(Arc::new(z));
        }
        crate::memory::release_free_memory();
        let mut secondaries = Vec::new();
        for s in &config.secondaries {
            let apex = name::from_text(&s.name).map_err(StartError::Config)?;
            let params = config.secondary_params();
            let state =
                SecondaryState::new(name::to_lower(&apex), s.primary, config.state_dir.clone(), params);
            if let Some(z) = state.load_persisted(config.journal_max_bytes, params) {
                zones.push(Arc::new(z));
            }
            secondaries.push(Arc::new(state));
        }
        let keys = config.keyring().map_err(StartError::Config)?;
        let server_keys = ServerKeys::parse(&config.server_keys, &keys).map_err(StartError::Config)?;
        let policy = Policy {
            max_udp_payload: config.max_udp_payload.max(512),
            allow_transfer: TransferAcl::parse(&config.allow_transfer, &keys).map_err(StartError::Config)?,
            allow_update: config.update_acl(&keys).map_err(StartError::Config)?,
            keys,
        };
        let (udp, tcp) = bind_both(config.listen, crate::udp::sockets_for(config.workers()))?;
        let addr = tcp.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            policy,
            catalog: Arc::new(Catalog::new(ServedZones::new(zones))),
            files,
            secondaries,
            stats: Stats::new(),
            server_keys,
            update_lock: tokio::sync::Mutex::new(()),
        });
        Ok(DnsServer { udp, tcp, shared, addr })
    }

    /// A control handle (reload, zones, metrics) usable while the server runs.
    pub fn control(&self) -> Control {
        Control(self.shared.clone())
    }
}

/// Re-signs file zones whose signatures near expiry (checked every validity/16, 1 s to 60 s):
/// the next serial, journaled for IXFR, announced with NOTIFY.
async fn resign_loop(shared: Arc<Shared>, policy: crate::online::SignPolicy, shutdown: Shutdown) {
    let every = Duration::from_secs(u64::from(policy.validity_secs / 16).clamp(1, 60));
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let Some((dir, _)) = shared.config.sign_policy() else { return };
        let now = crate::clock::unix_now();
        let current = shared.served();
        let due: Vec<Arc<Zone>> = shared
            .files
            .iter()
            .filter_map(|f| current.zone(&name::to_lower(&name::from_text(&f.name).ok()?)).cloned())
            .filter(|z| crate::online::needs_resign(z, policy, now))
            .collect();
        if due.is_empty() {
            continue;
        }
        let max_journal = shared.config.journal_max_bytes;
        let done = tokio::task::spawn_blocking(move || {
            let keys = match crate::wire::dnssec::load_keys_dir(&dir) {
                Ok(k) => k,
                Err(e) => {
                    tracing::error!("re-signing: {e}");
                    return Vec::new();
                }
            };
            due.iter()
                .filter_map(|z| match crate::online::resign(z, &keys, policy, now) {
                    Ok(new) => Some(Arc::new(crate::journal::successor(Some(z), new, max_journal))),
                    Err(e) => {
                        tracing::error!(zone = %z.name(), "re-signing failed, keeping the old signatures: {e}");
                        None
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for z in &done {
            tracing::info!(zone = %z.name(), serial = z.soa().serial, "zone re-signed");
        }
        shared.update(|c| done.iter().fold(c.clone(), |acc, z| acc.with_zone(z.clone())));
        for z in done {
            send_notifies(&shared, NameBuf::from(z.apex()));
        }
    }
}

/// Binds the UDP group (with large socket buffers) and a TCP listener on the same port.
fn bind_both(addr: SocketAddr, workers: usize) -> io::Result<(Vec<std::net::UdpSocket>, TcpListener)> {
    let udp_opts = ListenOpts { recv_buffer: 4 << 20, send_buffer: 4 << 20, ..ListenOpts::default() };
    bind_udp_group_std_and_tcp(addr, workers, &udp_opts, &ListenOpts::default())
}

impl Service for DnsServer {
    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        let shared = self.shared;
        let threads = shared.config.workers();
        crate::udp::start(self.udp, threads, &shared, &shutdown)?;
        for state in &shared.secondaries {
            let env = secondary_driver::Env {
                catalog: shared.catalog.clone(),
                key: shared.server_keys.for_server(state.primary).cloned(),
                max_journal: shared.config.journal_max_bytes,
            };
            let (state, sd) = (state.clone(), shutdown.clone());
            shutdown.spawn(async move { secondary_driver::run(env, state, sd).await });
        }
        #[cfg(unix)]
        {
            let control = Control(shared.clone());
            let sd = shutdown.clone();
            if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            _ = sd.wait() => return,
                            got = hup.recv() => if got.is_none() { return },
                        }
                        tracing::info!("SIGHUP: reloading zone files");
                        let report = control.reload().await;
                        tracing::info!(
                            changed = report.changed.len(),
                            failed = report.failed.len(),
                            "reload done"
                        );
                    }
                });
            }
        }
        if let Some((_, policy)) = shared.config.sign_policy() {
            let (shared, sd) = (shared.clone(), shutdown.clone());
            shutdown.spawn(async move { resign_loop(shared, policy, sd).await });
        }
        serve_tcp(self.tcp, shared, shutdown.clone()).await;
        if !shutdown.drain(DRAIN_DEADLINE).await {
            tracing::warn!("some DNS tasks were still running after {DRAIN_DEADLINE:?}");
        }
        Ok(())
    }
}

/// The TCP side, through netkit's connection policy: a per-address cap, a deadline for each
/// whole query (RFC 7766 idle timeout; trickling bytes does not extend it), and, at the global
/// cap, the connection that has waited longest for a query gives its place to a newcomer.
async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>, shutdown: Shutdown) {
    let acceptor = Acceptor::with_limits(listener, shared.config.tcp_limits());
    while let Some(accepted) = acceptor.next(&shutdown).await {
        let (stream, peer, slot) = match accepted {
            Accepted::Conn(stream, peer, slot) => (stream, peer, slot),
            Accepted::OverCap(_, peer) => {
                shared.stats.tcp_refused.inc();
                tracing::info!(%peer, "TCP connection not admitted (per-address cap, or every connection busy); closing");
                continue;
            }
        };
        let (shared, sd) = (shared.clone(), shutdown.clone());
        shutdown.spawn(async move {
            shared.stats.tcp_open.inc();
            if let Err(e) = tcp_connection(stream, peer, &slot, &shared, &sd).await {
                tracing::debug!(%peer, "TCP connection ended: {e}");
            }
            shared.stats.tcp_open.dec();
            drop(slot);
        });
    }
}

async fn tcp_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    slot: &ConnSlot,
    shared: &Shared,
    shutdown: &Shutdown,
) -> io::Result<()> {
    let idle = shared.config.tcp_idle_timeout();
    let mut out = Vec::with_capacity(4096);
    loop {
        // Waiting for a whole query: the slot's deadline runs, and it may be evicted.
        let msg = tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            reason = slot.closed() => {
                match reason {
                    CloseReason::Evicted => shared.stats.tcp_evicted.inc(),
                    CloseReason::TimedOut => shared.stats.tcp_timed_out.inc(),
                }
                tracing::debug!(%peer, ?reason, "TCP connection closed while waiting for a query");
                return Ok(());
            }
            read = read_message(&mut stream, tcp::MAX_MESSAGE) => match read? {
                Some(msg) => msg,
                None => return Ok(()),
            },
        };
        slot.busy();
        let catalog = shared.served();
        match handle_at(
            &catalog,
            &shared.policy,
            &msg,
            Transport::Tcp,
            peer.ip(),
            unix_now,
            std::mem::take(&mut out),
        ) {
            Outcome::Reply { bytes, kind, .. } => {
                shared.stats.count(kind);
                tokio::time::timeout(idle, write_message(&mut stream, &bytes))
                    .await
                    .map_err(|_| io::ErrorKind::TimedOut)??;
                out = bytes;
            }
            Outcome::Notify { apex, serial, header, qname, tsig } => {
                let reply = shared.on_notify(&apex, peer.ip(), serial, header, &qname, tsig);
                tokio::time::timeout(idle, write_message(&mut stream, &reply))
                    .await
                    .map_err(|_| io::ErrorKind::TimedOut)??;
            }
            Outcome::Transfer(t) => {
                shared.stats.transfers.inc();
                let msgs = tokio::task::spawn_blocking(move || t.messages(XFR_MESSAGE_SIZE))
                    .await
                    .unwrap_or_default();
                for m in msgs {
                    tokio::time::timeout(idle * 3, write_message(&mut stream, &m))
                        .await
                        .map_err(|_| io::ErrorKind::TimedOut)??;
                }
            }
            Outcome::Update { apex, base, records, ok, fail } => {
                let reply = if shared.apply_update(apex, base, records).await { ok } else { fail };
                tokio::time::timeout(idle, write_message(&mut stream, &reply))
                    .await
                    .map_err(|_| io::ErrorKind::TimedOut)??;
            }
            Outcome::Ignore => return Ok(()),
        }
        slot.idle();
    }
}
