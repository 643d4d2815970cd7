//! The retry policy, sans I/O: after each attempt, which recipients are done, which bounce,
//! and when to try the rest again (exponential back-off from `initial` up to `max`, never past
//! the message's lifetime; at the end of its lifetime what is left bounces, RFC 5321 §4.5.4.1).
//! Times are Unix seconds, passed in.

use crate::smtp::client::Outcome;

/// Back-off and lifetime, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Wait before the first retry.
    pub initial: u64,
    /// Longest wait between attempts.
    pub max: u64,
    /// How long a message is retried before it bounces.
    pub lifetime: u64,
}

/// The wait after `attempts` failed attempts: initial, 2×, 4×, ... capped at `max`.
pub fn backoff(policy: &Policy, attempts: u32) -> u64 {
    let doublings = attempts.saturating_sub(1).min(32);
    policy.initial.max(1).saturating_mul(1u64 << doublings).min(policy.max.max(1))
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Recipients to try again, with the last error.
    pub remaining: Vec<(String, String)>,
    /// Recipients that failed for good (status code, diagnostic): they go into a bounce.
    pub bounced: Vec<Failure>,
    /// When to try again (`None` when nothing remains).
    pub next_attempt: Option<u64>,
}

/// One recipient that failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The recipient.
    pub rcpt: String,
    /// RFC 3463 status, e.g. `5.1.1`, `4.4.7`.
    pub status: String,
    /// What the remote server (or we) said.
    pub diagnostic: String,
}

/// Plans the next step for a message created at `created` after its `attempts`-th attempt
/// (counting this one) produced `outcomes`, at `now`.
pub fn plan(
    created: u64,
    attempts: u32,
    outcomes: Vec<(String, Outcome)>,
    now: u64,
    policy: &Policy,
) -> Plan {
    let mut remaining = Vec::new();
    let mut bounced = Vec::new();
    for (rcpt, outcome) in outcomes {
        match outcome {
            Outcome::Delivered(_) => {}
            Outcome::Permanent(diag) => {
                let status = status_of(&diag).unwrap_or_else(|| "5.0.0".to_string());
                bounced.push(Failure { rcpt, status, diagnostic: diag });
            }
            Outcome::Temporary(diag) => remaining.push((rcpt, diag)),
        }
    }
    let deadline = created.saturating_add(policy.lifetime);
    if !remaining.is_empty() && now >= deadline {
        for (rcpt, diag) in remaining.drain(..) {
            bounced.push(Failure {
                rcpt,
                status: "4.4.7".to_string(),
                diagnostic: format!("delivery time expired; last error: {diag}"),
            });
        }
    }
    let next_attempt = (!remaining.is_empty())
        .then(|| now.saturating_add(backoff(policy, attempts)).min(deadline.max(now + 1)));
    Plan { remaining, bounced, next_attempt }
}

/// The enhanced status code (`x.y.z`) in a reply text like `550 5.1.1 <bob@...>: unknown`.
pub fn status_of(text: &str) -> Option<String> {
    text.split_whitespace().find_map(|w| {
        let parts: Vec<&str> = w.split('.').collect();
        let ok = parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then(|| w.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy { initial: 60, max: 3600, lifetime: 5 * 86400 };

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let waits: Vec<u64> = (1..=9).map(|a| backoff(&P, a)).collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(backoff(&P, 1000), 3600);
    }

    #[test]
    fn outcomes_split_into_done_retry_and_bounce() {
        let outcomes = vec![
            ("a@x".to_string(), Outcome::Delivered("250 ok".into())),
            ("b@x".to_string(), Outcome::Temporary("451 4.3.0 later".into())),
            ("c@x".to_string(), Outcome::Permanent("550 5.1.1 <c@x>: unknown".into())),
        ];
        let p = plan(1000, 1, outcomes, 1010, &P);
        assert_eq!(p.remaining, vec![("b@x".to_string(), "451 4.3.0 later".to_string())]);
        assert_eq!(p.bounced.len(), 1);
        assert_eq!(p.bounced[0].status, "5.1.1");
        assert_eq!(p.next_attempt, Some(1070));
    }

    #[test]
    fn expiry_bounces_what_is_left_and_retries_never_pass_the_lifetime() {
        let short = Policy { initial: 10, max: 100, lifetime: 30 };
        let t = |d: &str| vec![("b@x".to_string(), Outcome::Temporary(d.into()))];
        assert_eq!(plan(0, 3, t("421"), 25, &short).next_attempt, Some(30));
        let p = plan(0, 4, t("421 busy"), 30, &short);
        assert!(p.remaining.is_empty() && p.next_attempt.is_none());
        assert_eq!(p.bounced[0].status, "4.4.7");
        assert!(p.bounced[0].diagnostic.contains("421 busy"));
        assert_eq!(
            plan(0, 1, vec![], 5, &short),
            Plan { remaining: vec![], bounced: vec![], next_attempt: None }
        );
    }

    #[test]
    fn status_codes_are_found_in_replies() {
        assert_eq!(status_of("550 5.1.1 nope").as_deref(), Some("5.1.1"));
        assert_eq!(status_of("550 no code"), None);
        assert_eq!(status_of("RCPT: 554 5.7.1 relay").as_deref(), Some("5.7.1"));
        assert_eq!(status_of("1.2.3.4 refused"), None);
    }
}
