//! Per-path response policy from config: Cache-Control/Expires rules and redirects.

use serde::Deserialize;
use std::time::{Duration, SystemTime};

/// A Cache-Control rule: paths starting with `prefix` (or ending with `suffix`) get these headers.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CacheRule {
    /// URL path prefix the rule applies to (empty matches everything).
    pub prefix: String,
    /// File-name suffix the rule applies to, e.g. `.css` (empty matches everything).
    pub suffix: String,
    /// Freshness lifetime in seconds: `Cache-Control: max-age=N` and an `Expires` date.
    pub max_age: Option<u64>,
    /// Extra Cache-Control directives (`public`, `immutable`, `no-cache`, ...).
    pub directives: Vec<String>,
}

/// A configured redirect: requests for `from` (exact path) get `status` with `Location: to`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Redirect {
    /// The exact request path.
    pub from: String,
    /// The Location to send.
    pub to: String,
    /// 301 (default), 302, 307 or 308.
    pub status: Option<u16>,
}

/// Cache-Control and Expires values for `path` from the first matching rule, if any.
pub fn cache_headers(rules: &[CacheRule], path: &str, now: SystemTime) -> Option<(String, Option<String>)> {
    let rule = rules.iter().find(|r| path.starts_with(&r.prefix) && path.ends_with(&r.suffix))?;
    let mut parts: Vec<String> = rule.directives.clone();
    let mut expires = None;
    if let Some(age) = rule.max_age {
        parts.push(format!("max-age={age}"));
        expires = Some(httpdate::fmt_http_date(now + Duration::from_secs(age)));
    }
    if parts.is_empty() {
        return None;
    }
    Some((parts.join(", "), expires))
}

/// The redirect for `path`, if one is configured: (status, location).
pub fn redirect_for<'a>(redirects: &'a [Redirect], path: &str) -> Option<(u16, &'a str)> {
    redirects.iter().find(|r| r.from == path).map(|r| {
        let status = r.status.filter(|s| matches!(s, 301 | 302 | 303 | 307 | 308)).unwrap_or(301);
        (status, r.to.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn first_matching_rule_wins() {
        let rules = vec![
            CacheRule {
                prefix: "/static/".into(),
                max_age: Some(3600),
                directives: vec!["public".into()],
                ..Default::default()
            },
            CacheRule { suffix: ".html".into(), directives: vec!["no-cache".into()], ..Default::default() },
        ];
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (cc, exp) = cache_headers(&rules, "/static/a.css", now).unwrap();
        assert_eq!(cc, "public, max-age=3600");
        assert_eq!(exp.as_deref(), Some("Tue, 14 Nov 2023 23:13:20 GMT"));
        assert_eq!(cache_headers(&rules, "/index.html", now).unwrap(), ("no-cache".into(), None));
        assert_eq!(cache_headers(&rules, "/a.png", now), None);
    }

    #[test]
    fn redirects() {
        let r = vec![Redirect { from: "/old".into(), to: "/new".into(), status: Some(308) }];
        assert_eq!(redirect_for(&r, "/old"), Some((308, "/new")));
        assert_eq!(redirect_for(&r, "/other"), None);
    }
}
