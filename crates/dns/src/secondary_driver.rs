//! The tokio driver of secondary zones: owns the clock, the sockets (through [`crate::client`]),
//! the disk copy and the timer, and runs the sans-IO [`Secondary`] core of each zone: it
//! performs the core's actions (SOA query, IXFR/AXFR, install, expire) and feeds back results.

use crate::client::{self, Transferred};
use crate::journal;
use crate::secondary::{Action, Event, NotifyVerdict, Params, Secondary, TransferOutcome, Xfr};
use crate::served::Catalog;
use crate::store;
use crate::wire::message::Record;
use crate::wire::name::{self, NameBuf};
use crate::wire::tsig::Key;
use crate::wire::zonefile::{Location, ZoneRecord};
use crate::zone::{SoaInfo, Zone};
use appnet_netkit::Shutdown;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Transfer timeout.
const XFR_TIMEOUT: Duration = Duration::from_secs(60);
/// SOA query timeout.
const SOA_TIMEOUT: Duration = Duration::from_secs(3);

/// One secondary zone: its configuration, its core, and the wake-up for NOTIFY.
pub struct SecondaryState {
    pub apex: NameBuf,
    pub primary: SocketAddr,
    state_dir: Option<PathBuf>,
    /// Wakes the driver when a NOTIFY changed the core's timers.
    pub(crate) wake: tokio::sync::Notify,
    core: Mutex<Secondary>,
}

impl SecondaryState {
    /// A secondary for `apex` (lower-cased) transferring from `primary`.
    pub fn new(
        apex: NameBuf,
        primary: SocketAddr,
        state_dir: Option<PathBuf>,
        params: Params,
    ) -> SecondaryState {
        SecondaryState {
            apex,
            primary,
            state_dir,
            wake: tokio::sync::Notify::new(),
            core: Mutex::new(Secondary::new(Instant::now(), primary, params)),
        }
    }

    fn name(&self) -> String {
        name::to_text(&self.apex)
    }

    fn core(&self) -> std::sync::MutexGuard<'_, Secondary> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The copy kept on disk, if any; its data counts as confirmed when the file was written
    /// (the core serves it until SOA expire after that).
    pub fn load_persisted(&self, journal_max_bytes: usize, params: Params) -> Option<Zone> {
        let file = store::zone_path(self.state_dir.as_ref()?, &self.apex);
        if !file.exists() {
            return None;
        }
        match Zone::load_file(&file, &self.name()) {
            Ok(zone) => {
                let age = std::fs::metadata(&file)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .unwrap_or_default();
                *self.core() = Secondary::restored(Instant::now(), self.primary, params, zone.soa(), age);
                tracing::info!(zone = %self.name(), serial = zone.soa().serial, "secondary zone loaded from {}", file.display());
                // Its journal, if it leads to this version: our own secondaries can still IXFR.
                let dir = self.state_dir.as_deref()?;
                Some(store::with_stored_journal(zone, dir, journal_max_bytes))
            }
            Err(e) => {
                tracing::warn!(zone = %self.name(), "ignoring the stored copy {}: {e}", file.display());
                None
            }
        }
    }

    /// A NOTIFY for this zone from `from`: handed to the core, and the driver woken.
    pub(crate) fn on_notify(&self, from: IpAddr, serial: Option<u32>) -> NotifyVerdict {
        let verdict = self.core().on_notify(Instant::now(), from, serial);
        self.wake.notify_one();
        verdict
    }

    /// Writes the zone, then its journal (`NAME.zone.journal`), to disk crash-safely. A journal
    /// that does not lead to the stored zone is ignored when loading, so a crash between the two
    /// writes is harmless.
    fn persist(&self, zone: &Zone) -> std::io::Result<()> {
        let Some(dir) = &self.state_dir else { return Ok(()) };
        store::write_atomically(&store::zone_path(dir, &self.apex), zone.to_text().as_bytes())?;
        store::save_journal(&store::journal_path(dir, &self.apex), zone)
    }

    fn log(&self, e: Event) {
        if e.is_warning() {
            tracing::warn!(zone = %self.name(), primary = %self.primary, "{e}");
        } else {
            tracing::info!(zone = %self.name(), primary = %self.primary, "{e}");
        }
    }
}

/// What the driver of one secondary zone needs from its server: the zone set to install into,
/// the TSIG key for its primary, and the journal bound. Given by value, so the driver does not
/// depend on the server's own state.
pub(crate) struct Env {
    /// The server's zone set.
    pub catalog: Arc<Catalog>,
    /// The key the primary wants on SOA queries and transfers, if any.
    pub key: Option<Arc<Key>>,
    /// Most bytes of IXFR journal kept per zone.
    pub max_journal: usize,
}

/// Asks the primary for its SOA.
async fn query_soa(env: &Env, state: &SecondaryState) -> Option<SoaInfo> {
    match client::soa(state.primary, &state.apex, SOA_TIMEOUT, env.key.as_ref()).await {
        Ok(rec) => SoaInfo::from_rdata(&rec.rdata),
        Err(e) => {
            tracing::debug!(zone = %state.name(), primary = %state.primary, "SOA query: {e}");
            None
        }
    }
}

/// Runs one transfer and builds the zone it brings (checked like a zone file, successor of the
/// zone served now so its journal continues).
async fn transfer(env: &Env, state: &SecondaryState, xfr: Xfr) -> (TransferOutcome, Option<Zone>) {
    let current = env.catalog.served().zone(&state.apex).cloned();
    let max_journal = env.max_journal;
    let ours = match xfr {
        Xfr::Ixfr { .. } => current.as_deref().and_then(journal::soa_record),
        Xfr::Axfr => None,
    };
    if matches!(xfr, Xfr::Ixfr { .. }) && ours.is_none() {
        return (TransferOutcome::Failed, None);
    }
    let got =
        client::transfer(state.primary, &state.apex, ours.as_ref(), XFR_TIMEOUT, env.key.as_ref()).await;
    let built = match got {
        Ok(Transferred::UpToDate) => return (TransferOutcome::UpToDate, None),
        Ok(Transferred::Incremental(steps)) => {
            let Some(cur) = current else { return (TransferOutcome::Failed, None) };
            let n = steps.len();
            match tokio::task::spawn_blocking(move || journal::apply(&cur, &steps, max_journal)).await {
                Ok(Ok(z)) => {
                    tracing::info!(zone = %state.name(), steps = n, "applied an incremental transfer");
                    Some(z)
                }
                Ok(Err(e)) => {
                    tracing::warn!(zone = %state.name(), "IXFR not applicable: {e}");
                    None
                }
                Err(_) => None,
            }
        }
        Ok(Transferred::Full(records)) => build(state, records, current, max_journal).await,
        Err(e) => {
            tracing::warn!(zone = %state.name(), "transfer failed: {e}");
            None
        }
    };
    match built {
        Some(z) => (TransferOutcome::Ready(z.soa()), Some(z)),
        None => (TransferOutcome::Failed, None),
    }
}

/// A zone from the records of a full transfer.
async fn build(
    state: &SecondaryState,
    records: Vec<Record>,
    current: Option<Arc<Zone>>,
    max_journal: usize,
) -> Option<Zone> {
    let from: Arc<str> = format!("AXFR from {}", state.primary).into();
    let records: Vec<ZoneRecord> = records
        .into_iter()
        .map(|r| ZoneRecord {
            owner: name::to_lower(&r.owner),
            rtype: r.rtype,
            ttl: r.ttl,
            rdata: r.rdata,
            at: Location { file: from.clone(), line: 0 },
        })
        .collect();
    let apex = state.apex.clone();
    let built = tokio::task::spawn_blocking(move || {
        Zone::from_records(&apex, records).map(|z| journal::successor(current.as_deref(), z, max_journal))
    })
    .await;
    match built {
        Ok(Ok(z)) => Some(z),
        Ok(Err(e)) => {
            tracing::warn!(zone = %state.name(), "transferred zone rejected: {e}");
            None
        }
        Err(_) => None,
    }
}

/// The driver loop of one secondary zone: perform the core's actions, sleep until its timer or
/// a NOTIFY, until shutdown.
pub(crate) async fn run(env: Env, state: Arc<SecondaryState>, shutdown: Shutdown) {
    // The zone a transfer brought, until the core says to install it.
    let mut ready: Option<Zone> = None;
    loop {
        state.core().handle_timeout(Instant::now());
        loop {
            let action = state.core().poll_action();
            let Some(action) = action else { break };
            match action {
                Action::QuerySoa { .. } => {
                    let soa = tokio::select! {
                        _ = shutdown.wait() => return,
                        soa = query_soa(&env, &state) => soa,
                    };
                    state.core().on_soa(Instant::now(), soa);
                }
                Action::Transfer { xfr, .. } => {
                    let (outcome, zone) = tokio::select! {
                        _ = shutdown.wait() => return,
                        got = transfer(&env, &state, xfr) => got,
                    };
                    ready = zone;
                    state.core().on_transfer(Instant::now(), outcome);
                }
                Action::Install { serial } => {
                    let Some(zone) = ready.take().filter(|z| z.soa().serial == serial.0) else { continue };
                    let zone = Arc::new(zone);
                    crate::memory::release_free_memory();
                    if let Err(e) = state.persist(&zone) {
                        tracing::warn!(zone = %state.name(), "cannot store the zone on disk: {e}");
                    }
                    env.catalog.update(|c| c.with_zone(zone));
                }
                Action::Expire => env.catalog.update(|c| c.with_expired(&state.apex)),
                Action::Log(e) => state.log(e),
            }
        }
        ready = None;
        let deadline = state.core().poll_timeout();
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = state.wake.notified() => {}
            _ = sleep => {}
        }
    }
}
