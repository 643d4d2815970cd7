//! Secondary zones: transfer from the primary, follow the SOA refresh/retry/expire timers, react
//! to NOTIFY, keep a crash-safe copy on disk, and keep serving until the zone expires.

use crate::client::{self, Transferred};
use crate::journal;
use crate::server::Shared;
use crate::store;
use crate::wire::message::Record;
use crate::wire::name::{self, NameBuf};
use crate::wire::zonefile::{Location, ZoneRecord};
use crate::zone::{SoaInfo, Zone};
use appnet_netkit::Shutdown;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Transfer timeout.
const XFR_TIMEOUT: Duration = Duration::from_secs(60);
/// Bounds on the timers whatever the SOA says (seconds), so a bad SOA cannot stall or flood.
const MIN_INTERVAL: u32 = 1;
const MAX_INTERVAL: u32 = 86_400;

/// The timers of one secondary zone, sans-IO: when to check next and whether the data expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// The SOA of the data we hold (None: nothing yet).
    pub soa: Option<SoaInfo>,
    /// When the data was last confirmed current with the primary.
    pub confirmed: Option<Instant>,
}

impl Timers {
    /// Time to wait before the next check: `refresh` after a success, `retry` after a failure
    /// (a few seconds while we hold nothing).
    pub fn next_check(&self, last_attempt_ok: bool) -> Duration {
        let secs = match (self.soa, last_attempt_ok) {
            (Some(s), true) => s.refresh,
            (Some(s), false) => s.retry,
            (None, _) => 5,
        };
        Duration::from_secs(secs.clamp(MIN_INTERVAL, MAX_INTERVAL) as u64)
    }

    /// Whether the data is past its `expire` time without confirmation (stop serving it).
    pub fn expired(&self, now: Instant) -> bool {
        match (self.soa, self.confirmed) {
            (Some(s), Some(t)) => now.saturating_duration_since(t) > Duration::from_secs(s.expire as u64),
            _ => false,
        }
    }
}

/// One secondary zone's configuration and live state.
pub struct SecondaryState {
    pub apex: NameBuf,
    pub primary: SocketAddr,
    state_dir: Option<PathBuf>,
    pub(crate) refresh_now: tokio::sync::Notify,
    timers: Mutex<Timers>,
}

impl SecondaryState {
    /// A secondary for `apex` (lower-cased) transferring from `primary`.
    pub fn new(apex: NameBuf, primary: SocketAddr, state_dir: Option<PathBuf>) -> SecondaryState {
        SecondaryState {
            apex,
            primary,
            state_dir,
            refresh_now: tokio::sync::Notify::new(),
            timers: Mutex::new(Timers { soa: None, confirmed: None }),
        }
    }

    fn name(&self) -> String {
        name::to_text(&self.apex)
    }

    fn file(&self) -> Option<PathBuf> {
        Some(store::zone_path(self.state_dir.as_ref()?, &self.apex))
    }

    /// The copy kept on disk, if any; it counts as confirmed when the file was written.
    pub fn load_persisted(&self, journal_max_bytes: usize) -> Option<Zone> {
        let file = self.file()?;
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
                let confirmed = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                let mut t = self.timers.lock().unwrap_or_else(|p| p.into_inner());
                *t = Timers { soa: Some(zone.soa()), confirmed: Some(confirmed) };
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

    fn timers(&self) -> Timers {
        *self.timers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_timers(&self, t: Timers) {
        *self.timers.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }

    /// Writes the zone, then its journal (`NAME.zone.journal`), to disk crash-safely. A journal
    /// that does not lead to the stored zone is ignored when loading, so a crash between the two
    /// writes is harmless.
    fn persist(&self, zone: &Zone) -> std::io::Result<()> {
        let Some(dir) = &self.state_dir else { return Ok(()) };
        store::write_atomically(&store::zone_path(dir, &self.apex), zone.to_text().as_bytes())?;
        store::save_journal(&store::journal_path(dir, &self.apex), zone)
    }
}

/// Checks the primary once: transfers when its serial is newer than ours (IXFR first when we
/// hold a version, AXFR if that fails). Returns whether the primary answered.
async fn refresh_once(shared: &Shared, state: &SecondaryState) -> bool {
    let key = shared.server_keys.for_server(state.primary).cloned();
    let current = shared.catalog().zone(&state.apex).cloned();
    let ours = current.as_ref().map(|z| z.soa().serial);
    let theirs = match client::soa(state.primary, &state.apex, Duration::from_secs(3), key.as_ref()).await {
        Ok(rec) => SoaInfo::from_rdata(&rec.rdata).map(|s| s.serial),
        Err(e) => {
            tracing::warn!(zone = %state.name(), primary = %state.primary, "SOA check failed: {e}");
            return false;
        }
    };
    let Some(theirs) = theirs else { return false };
    let mut timers = state.timers();
    if ours.is_some_and(|o| !crate::serial::Serial(o).is_older_than(crate::serial::Serial(theirs))) {
        timers.confirmed = Some(Instant::now());
        state.set_timers(timers);
        return true;
    }
    let max_journal = shared.config.journal_max_bytes;
    let mut zone = None;
    if let Some(cur) = &current
        && let Some(our_soa) = journal::soa_record(cur)
    {
        tracing::info!(zone = %state.name(), ?ours, theirs, "IXFR from {}", state.primary);
        match client::transfer(state.primary, &state.apex, Some(&our_soa), XFR_TIMEOUT, key.as_ref()).await {
            Ok(Transferred::UpToDate) => {
                timers.confirmed = Some(Instant::now());
                state.set_timers(timers);
                return true;
            }
            Ok(Transferred::Incremental(steps)) => {
                let (cur, n) = (cur.clone(), steps.len());
                match tokio::task::spawn_blocking(move || journal::apply(&cur, &steps, max_journal)).await {
                    Ok(Ok(z)) => {
                        tracing::info!(zone = %state.name(), steps = n, "applied an incremental transfer");
                        zone = Some(z);
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(zone = %state.name(), "IXFR not applicable ({e}); trying AXFR")
                    }
                    Err(_) => return false,
                }
            }
            Ok(Transferred::Full(records)) => match build(state, records, current.clone(), max_journal).await
            {
                Some(z) => zone = Some(z),
                None => return false,
            },
            Err(e) => tracing::warn!(zone = %state.name(), "IXFR failed ({e}); trying AXFR"),
        }
    }
    let zone = match zone {
        Some(z) => Arc::new(z),
        None => {
            tracing::info!(zone = %state.name(), ?ours, theirs, "AXFR from {}", state.primary);
            let records = match client::axfr(state.primary, &state.apex, XFR_TIMEOUT, key.as_ref()).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(zone = %state.name(), "AXFR failed: {e}");
                    return false;
                }
            };
            match build(state, records, current, max_journal).await {
                Some(z) => Arc::new(z),
                None => return false,
            }
        }
    };
    crate::memory::release_free_memory();
    if let Err(e) = state.persist(&zone) {
        tracing::warn!(zone = %state.name(), "cannot store the zone on disk: {e}");
    }
    let serial = zone.soa().serial;
    state.set_timers(Timers { soa: Some(zone.soa()), confirmed: Some(Instant::now()) });
    shared.update(|c| c.with_zone(zone));
    tracing::info!(zone = %state.name(), serial, "secondary zone updated");
    true
}

/// A zone from the records of a full transfer (checked like a zone file), successor of
/// `current` (so its journal continues and we can serve IXFR to our own secondaries).
async fn build(
    state: &SecondaryState,
    records: Vec<Record>,
    current: Option<Arc<Zone>>,
    max_journal: usize,
) -> Option<Zone> {
    let from: std::sync::Arc<str> = format!("AXFR from {}", state.primary).into();
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

/// The secondary loop: refresh now, then on the timers or a NOTIFY, until shutdown.
pub(crate) async fn run(shared: Arc<Shared>, state: Arc<SecondaryState>, shutdown: Shutdown) {
    loop {
        let ok = refresh_once(&shared, &state).await;
        let timers = state.timers();
        if timers.expired(Instant::now()) && shared.catalog().zone(&state.apex).is_some() {
            tracing::error!(zone = %state.name(), "zone expired (primary unreachable past SOA expire); no longer served");
            shared.update(|c| c.without(&state.apex));
        }
        let wait = timers.next_check(ok);
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = state.refresh_now.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_follow_the_soa() {
        let soa = SoaInfo { serial: 1, refresh: 100, retry: 10, expire: 1000, minimum: 5, ttl: 60 };
        let t0 = Instant::now();
        let t = Timers { soa: Some(soa), confirmed: Some(t0) };
        assert_eq!(t.next_check(true), Duration::from_secs(100));
        assert_eq!(t.next_check(false), Duration::from_secs(10));
        assert!(!t.expired(t0 + Duration::from_secs(999)));
        assert!(t.expired(t0 + Duration::from_secs(1001)));
        let empty = Timers { soa: None, confirmed: None };
        assert_eq!(empty.next_check(false), Duration::from_secs(5));
        assert!(!empty.expired(t0 + Duration::from_secs(1_000_000)));
    }
}
