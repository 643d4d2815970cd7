//! The queue's driver: keeps every queued message's next attempt, runs up to
//! `queue_concurrency` attempts at once (MX lookup, then each exchanger in turn with the SMTP
//! client), writes the outcome back to the spool, bounces final failures to the sender, and
//! wakes for new messages, `mail queue --flush` and due retries.

use super::dsn;
use super::mx::{self, MxError};
use super::schedule::{self, Policy};
use super::spool::{QueuedEnvelope, Spool};
use crate::config::MailConfig;
use crate::local::deliver_local;
use crate::smtp::client::{self, ClientOptions, Outcome};
use crate::users::Users;
use appnet_netkit::Shutdown;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// Something that wants to see the queue's SMTP dialogues (the lab's tour).
pub type TraceSink = Arc<dyn Fn(String) + Send + Sync>;

/// The queue shared by the SMTP sessions (which add to it) and the runner (which empties it).
pub struct Queue {
    spool: Spool,
    inbox: Mutex<Vec<String>>,
    wake: Notify,
    trace: Mutex<Option<TraceSink>>,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Queue {
    /// Opens the spool under `root/queue/`.
    pub fn open(root: &std::path::Path) -> io::Result<Arc<Queue>> {
        Ok(Arc::new(Queue {
            spool: Spool::open(root)?,
            inbox: Mutex::new(Vec::new()),
            wake: Notify::new(),
            trace: Mutex::new(None),
        }))
    }

    /// The spool.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Durably queues `data` from `from` to `rcpts` under `id` (blocking file I/O: call it
    /// from a blocking context), and wakes the runner.
    pub fn enqueue(&self, id: &str, from: &str, rcpts: &[String], data: &[u8]) -> io::Result<()> {
        let now = unix_now();
        let env = QueuedEnvelope {
            id: id.to_string(),
            from: from.to_string(),
            rcpts: rcpts.to_vec(),
            created: now,
            attempts: 0,
            next_attempt: now,
            last_error: String::new(),
        };
        self.spool.add(&env, data)?;
        self.inbox.lock().unwrap_or_else(|p| p.into_inner()).push(id.to_string());
        self.wake.notify_one();
        Ok(())
    }

    /// Sends every SMTP line the runner exchanges to `sink` (or stops, with `None`).
    pub fn set_trace(&self, sink: Option<TraceSink>) {
        *self.trace.lock().unwrap_or_else(|p| p.into_inner()) = sink;
    }

    fn trace(&self) -> Option<TraceSink> {
        self.trace.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn take_inbox(&self) -> Vec<String> {
        std::mem::take(&mut *self.inbox.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Runs the queue until `shutdown`; attempts in flight are abandoned then (their messages stay
/// queued and are retried at the next start).
pub async fn run(queue: Arc<Queue>, config: Arc<MailConfig>, shutdown: Shutdown) {
    let mut due: HashMap<String, u64> = HashMap::new();
    match queue.spool.list() {
        Ok(list) => {
            if !list.is_empty() {
                tracing::info!("queue: {} messages waiting", list.len());
            }
            due.extend(list.into_iter().map(|e| (e.id, e.next_attempt)));
        }
        Err(e) => tracing::error!("queue: cannot read {}: {e}", queue.spool.dir().display()),
    }
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut tasks: JoinSet<(String, Option<u64>)> = JoinSet::new();
    let limit = config.queue_concurrency.max(1);
    loop {
        for id in queue.take_inbox() {
            due.insert(id, 0);
        }
        if queue.spool.take_flush() {
            tracing::info!("queue: flush requested");
            if let Ok(list) = queue.spool.list() {
                for e in list {
                    due.insert(e.id, 0);
                }
            }
        }
        let now = unix_now();
        let mut ready: Vec<(u64, String)> = due
            .iter()
            .filter(|(id, t)| **t <= now && !in_flight.contains(*id))
            .map(|(id, t)| (*t, id.clone()))
            .collect();
        ready.sort();
        for (_, id) in ready.into_iter().take(limit.saturating_sub(in_flight.len())) {
            due.remove(&id);
            in_flight.insert(id.clone());
            let (q, c) = (queue.clone(), config.clone());
            tasks.spawn(async move {
                let next = attempt(&q, &c, &id).await;
                (id, next)
            });
        }
        let next_due = due.values().min().copied();
        let wait = match next_due {
            Some(t) if t > now => Duration::from_secs((t - now).min(1)),
            Some(_) if in_flight.len() < limit => Duration::from_millis(10),
            _ => Duration::from_secs(1),
        };
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = queue.wake.notified() => {}
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok((id, next)) = done {
                    in_flight.remove(&id);
                    if let Some(t) = next {
                        due.insert(id, t);
                    }
                } else {
                    in_flight.clear();
                    tracing::error!("queue: a delivery task failed");
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
    tasks.abort_all();
}

fn policy(config: &MailConfig) -> Policy {
    Policy {
        initial: config.retry_initial_secs,
        max: config.retry_max_secs,
        lifetime: config.queue_lifetime_secs,
    }
}

/// One delivery attempt of message `id`; its next attempt time if recipients remain.
async fn attempt(queue: &Queue, config: &MailConfig, id: &str) -> Option<u64> {
    let (env, data) = match (queue.spool.envelope(id), queue.spool.message(id)) {
        (Ok(e), Ok(d)) => (e, d),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("queue: cannot read message {id}: {e}");
            return None;
        }
    };
    let mut by_domain: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &env.rcpts {
        let domain = r.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
        by_domain.entry(domain).or_default().push(r.clone());
    }
    let mut outcomes = Vec::new();
    for (domain, rcpts) in by_domain {
        let results = deliver_domain(queue, config, &env, &domain, &rcpts, &data).await;
        outcomes.extend(rcpts.into_iter().zip(results));
    }
    for (r, o) in &outcomes {
        match o {
            Outcome::Delivered(reply) => tracing::info!("queue: {id} to <{r}>: delivered ({reply})"),
            Outcome::Temporary(why) => tracing::info!("queue: {id} to <{r}>: deferred ({why})"),
            Outcome::Permanent(why) => tracing::info!("queue: {id} to <{r}>: failed ({why})"),
        }
    }
    let attempts = env.attempts.saturating_add(1);
    let now = unix_now();
    let plan = schedule::plan(env.created, attempts, outcomes, now, &policy(config));
    if !plan.bounced.is_empty() {
        if env.from.is_empty() {
            tracing::info!("queue: {id} is a bounce itself; not bouncing it");
        } else {
            let arrival = UNIX_EPOCH + Duration::from_secs(env.created);
            let msg = dsn::bounce(
                &config.hostname(),
                &env.from,
                id,
                arrival,
                &plan.bounced,
                &data,
                SystemTime::now(),
            );
            send_bounce(queue, config, id, attempts, &env.from, &msg);
        }
    }
    match plan.next_attempt {
        None => {
            if let Err(e) = queue.spool.remove(id) {
                tracing::warn!("queue: cannot remove {id}: {e}");
            }
            None
        }
        Some(next) => {
            let last_error = plan.remaining.first().map(|(_, e)| e.clone()).unwrap_or_default();
            let updated = QueuedEnvelope {
                rcpts: plan.remaining.into_iter().map(|(r, _)| r).collect(),
                attempts,
                next_attempt: next,
                last_error,
                ..env
            };
            if let Err(e) = queue.spool.update(&updated) {
                tracing::warn!("queue: cannot update {id}: {e}");
            }
            Some(next)
        }
    }
}

fn send_bounce(queue: &Queue, config: &MailConfig, id: &str, attempts: u32, sender: &str, msg: &[u8]) {
    let domain = sender.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    if config.is_local_domain(domain) {
        let users = Users::load(&config.root).unwrap_or_default();
        match deliver_local(&config.root, &users, sender, msg) {
            Ok(_) => tracing::info!("queue: bounce for {id} delivered to <{sender}>"),
            Err(e) => tracing::warn!("queue: cannot deliver the bounce for {id} to <{sender}>: {e}"),
        }
        return;
    }
    let bounce_id = format!("{id}B{attempts}");
    match queue.enqueue(&bounce_id, "", &[sender.to_string()], msg) {
        Ok(()) => tracing::info!("queue: bounce {bounce_id} for {id} queued to <{sender}>"),
        Err(e) => tracing::warn!("queue: cannot queue the bounce for {id}: {e}"),
    }
}

/// Tries the exchangers of `domain` in order; one outcome per recipient.
async fn deliver_domain(
    queue: &Queue,
    config: &MailConfig,
    env: &QueuedEnvelope,
    domain: &str,
    rcpts: &[String],
    data: &[u8],
) -> Vec<Outcome> {
    let timeout = Duration::from_secs(config.remote_timeout_secs.max(1));
    let all = |o: Outcome| vec![o; rcpts.len()];
    let trace = queue.trace();
    let dns_timeout = timeout.min(Duration::from_secs(10));
    let dests =
        match mx::destinations(config.resolver_addr(), domain, config.remote_smtp_port, dns_timeout).await {
            Ok(d) => d,
            Err(MxError::Permanent(why)) => return all(Outcome::Permanent(format!("5.1.2 {why}"))),
            Err(MxError::Temporary(why)) => return all(Outcome::Temporary(format!("4.4.3 {why}"))),
        };
    if let Some(t) = &trace {
        let list: Vec<String> = dests.iter().map(|(h, a)| format!("{h} ({a})")).collect();
        t(format!("(MX for {domain}: {})", list.join(", ")));
    }
    let mut last = String::from("no mail exchanger answered");
    let tls = if config.outbound_tls { crate::smtp::opportunistic::client_config().ok() } else { None };
    for (host, addr) in dests {
        let mut with_tls = tls.is_some();
        loop {
            let mut opts = ClientOptions::new(config.hostname());
            opts.source = config.source_address;
            opts.timeout = timeout;
            opts.data_timeout = timeout.max(Duration::from_secs(1)) * 2;
            if with_tls {
                opts.tls = tls.clone().map(|c| (c, host.clone()));
            }
            if let Some(t) = trace.clone() {
                opts.trace = Some(Box::new(move |line: &str| t(line.to_string())));
            }
            match client::deliver(addr, &mut opts, &env.from, rcpts, data).await {
                Ok(outcomes) => {
                    return outcomes
                        .into_iter()
                        .map(|o| match o {
                            Outcome::Permanent(w) => Outcome::Permanent(format!("{host}[{addr}] said: {w}")),
                            Outcome::Temporary(w) => Outcome::Temporary(format!("{host}[{addr}] said: {w}")),
                            d => d,
                        })
                        .collect();
                }
                Err(e) if e.is_permanent() => {
                    return all(Outcome::Permanent(format!("{host}[{addr}] said: {e}")));
                }
                Err(e) if opts.tls_attempted && with_tls => {
                    tracing::info!(
                        "queue: STARTTLS with {host}[{addr}] failed ({e}); trying again in the clear"
                    );
                    with_tls = false;
                }
                Err(e) => {
                    last = format!("{host}[{addr}]: {e}");
                    break;
                }
            }
        }
    }
    all(Outcome::Temporary(format!("4.4.1 {last}")))
}
