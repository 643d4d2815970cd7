//! Accept-Encoding negotiation for precompressed siblings (`file.br`, `file.gz`).

/// A precompressed encoding we can serve from a sibling file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// Brotli, from `NAME.br`.
    Br,
    /// gzip, from `NAME.gz`.
    Gzip,
}

impl Coding {
    /// The Content-Encoding token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }

    /// The sibling file's suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Gzip => ".gz",
        }
    }
}

/// The codings the client accepts (q > 0), best first: br before gzip at equal weight.
pub fn acceptable(accept_encoding: Option<&str>) -> Vec<Coding> {
    let Some(value) = accept_encoding else { return Vec::new() };
    let mut found: Vec<(Coding, u32)> = Vec::new();
    let mut star: Option<u32> = None;
    for item in value.split(',').take(32) {
        let mut params = item.split(';');
        let name = params.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1000;
        for p in params {
            if let Some(v) = p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")) {
                q = parse_q(v).unwrap_or(0);
            }
        }
        match name.as_str() {
            "br" => found.push((Coding::Br, q)),
            "gzip" | "x-gzip" => found.push((Coding::Gzip, q)),
            "*" => star = Some(q),
            _ => {}
        }
    }
    if let Some(q) = star {
        for c in [Coding::Br, Coding::Gzip] {
            if !found.iter().any(|(f, _)| *f == c) {
                found.push((c, q));
            }
        }
    }
    found.retain(|(_, q)| *q > 0);
    found.sort_by(|a, b| b.1.cmp(&a.1).then((a.0 == Coding::Gzip).cmp(&(b.0 == Coding::Gzip))));
    found.into_iter().map(|(c, _)| c).collect()
}

/// Parses a qvalue into thousandths.
fn parse_q(v: &str) -> Option<u32> {
    let v = v.trim();
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u32 = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut f = 0u32;
    for (i, b) in frac.bytes().enumerate() {
        f += u32::from(b - b'0') * [100, 10, 1][i];
    }
    Some((whole + f).min(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(acceptable(Some("gzip, deflate, br")), vec![Coding::Br, Coding::Gzip]);
        assert_eq!(acceptable(Some("gzip;q=1.0, br;q=0.5")), vec![Coding::Gzip, Coding::Br]);
        assert_eq!(acceptable(Some("br;q=0, gzip")), vec![Coding::Gzip]);
        assert_eq!(acceptable(Some("identity")), vec![]);
        assert_eq!(acceptable(Some("*")), vec![Coding::Br, Coding::Gzip]);
        assert_eq!(acceptable(Some("*;q=0, gzip")), vec![Coding::Gzip]);
        assert_eq!(acceptable(None), vec![]);
        assert_eq!(acceptable(Some("gzip;q=2")), vec![]);
    }
}
