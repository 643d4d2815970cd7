//! The steps of one resolution, recorded when asked for: what `appnet dns query --trace` and the
//! lab tour print, numbered like the textbook's figure.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// What one upstream exchange produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// A referral to the named zone's servers.
    Referral { zone: String, servers: Vec<String> },
    /// The answer records, in presentation format.
    Answer { records: Vec<String> },
    /// The name does not exist.
    NxDomain,
    /// The name exists without records of the type.
    NoData,
    /// No answer within the timeout (the next try backs off).
    Timeout { waited: Duration },
    /// A broken, mismatched, refused or failed answer.
    Failed(String),
    /// Answered from the cache: no upstream query.
    Cached,
    /// Answered locally (a junk or local-zone name).
    Local,
}

/// One exchange with an upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The name server asked (its name when known, else its address).
    pub server_name: String,
    /// The address asked.
    pub server: Option<SocketAddr>,
    /// The question, in presentation format.
    pub question: String,
    /// What came back.
    pub outcome: StepOutcome,
    /// Time from query to answer (or to giving up).
    pub rtt: Duration,
    /// The query as sent on the wire (empty for a step that sent none: cache, local, SERVFAIL).
    pub query: Vec<u8>,
    /// The reply as received (empty when none came: a timeout).
    pub reply: Vec<u8>,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.server.map(|a| format!(" ({a})")).unwrap_or_default();
        let ms = self.rtt.as_secs_f64() * 1000.0;
        match &self.outcome {
            StepOutcome::Referral { zone, servers } => write!(
                f,
                "ask {}{at} for {}: referral to {zone} servers [{}] ({ms:.1} ms)",
                self.server_name,
                self.question,
                servers.join(", ")
            ),
            StepOutcome::Answer { records } => write!(
                f,
                "ask {}{at} for {}: answer {} ({ms:.1} ms)",
                self.server_name,
                self.question,
                records.join("; ")
            ),
            StepOutcome::NxDomain => {
                write!(
                    f,
                    "ask {}{at} for {}: NXDOMAIN, no such name ({ms:.1} ms)",
                    self.server_name, self.question
                )
            }
            StepOutcome::NoData => write!(
                f,
                "ask {}{at} for {}: NODATA, the name has no such records ({ms:.1} ms)",
                self.server_name, self.question
            ),
            StepOutcome::Timeout { waited } => write!(
                f,
                "ask {}{at} for {}: TIMEOUT after {:.0} ms, trying again elsewhere",
                self.server_name,
                self.question,
                waited.as_secs_f64() * 1000.0
            ),
            StepOutcome::Failed(why) => {
                write!(f, "ask {}{at} for {}: {why}", self.server_name, self.question)
            }
            StepOutcome::Cached => write!(f, "{}: answered from the cache, no query sent", self.question),
            StepOutcome::Local => write!(f, "{}: answered locally, never sent upstream", self.question),
        }
    }
}
