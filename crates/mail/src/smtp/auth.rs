//! SASL for SMTP AUTH (RFC 4954): the PLAIN (RFC 4616) and LOGIN mechanisms' messages.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Decodes one base64 SASL message; `=` stands for an empty one (RFC 4954 §4).
pub fn decode(b64: &str) -> Option<Vec<u8>> {
    let b64 = b64.trim();
    if b64 == "=" {
        return Some(Vec::new());
    }
    STANDARD.decode(b64).ok()
}

/// Encodes `bytes` as base64.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The user and password of a PLAIN message `[authzid] NUL authcid NUL passwd`. An authzid
/// naming someone else (acting on behalf of another user) is refused.
pub fn parse_plain(message: &[u8]) -> Option<(String, String)> {
    let mut parts = message.split(|&b| b == 0);
    let authzid = parts.next()?;
    let authcid = parts.next()?;
    let passwd = parts.next()?;
    if parts.next().is_some() || authcid.is_empty() {
        return None;
    }
    if !authzid.is_empty() && authzid != authcid {
        return None;
    }
    Some((String::from_utf8(authcid.to_vec()).ok()?, String::from_utf8(passwd.to_vec()).ok()?))
}

/// A PLAIN message for `user` and `password`, base64-encoded (the client side).
pub fn plain_response(user: &str, password: &str) -> String {
    let mut m = Vec::with_capacity(user.len() + password.len() + 2);
    m.push(0);
    m.extend_from_slice(user.as_bytes());
    m.push(0);
    m.extend_from_slice(password.as_bytes());
    encode(&m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_round_trip_and_junk() {
        let r = plain_response("bob@hamburger.edu", "pw");
        assert_eq!(parse_plain(&decode(&r).unwrap()), Some(("bob@hamburger.edu".into(), "pw".into())));
        assert_eq!(parse_plain(b"bob\0bob\0pw"), Some(("bob".into(), "pw".into())));
        assert_eq!(parse_plain(b"eve\0bob\0pw"), None);
        assert_eq!(parse_plain(b"\0\0pw"), None);
        assert_eq!(parse_plain(b"no nuls"), None);
        assert_eq!(decode("=="), None);
        assert_eq!(decode("="), Some(vec![]));
        assert_eq!(decode("!!!"), None);
    }
}
