//! RFC 4648 base32 (alphabet `A–Z2–7`, no padding), the encoding of `urn:sha1:` URNs: a SHA-1
//! digest of 20 bytes is exactly 32 characters.

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Encodes `data` as upper-case base32 without `=` padding.
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes base32 (either case, trailing `=` padding tolerated). `None` on a character outside
/// the alphabet or non-zero leftover bits (a non-canonical encoding).
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    if bits >= 5 || acc != 0 {
        return None;
    }
    Some(out)
}

/// `urn:sha1:<base32>` for a SHA-1 digest.
pub fn sha1_urn(digest: &[u8; 20]) -> String {
    format!("urn:sha1:{}", encode(digest))
}

/// The digest named by a `urn:sha1:<base32>` (prefix matched case-insensitively), if well formed.
pub fn parse_sha1_urn(urn: &str) -> Option<[u8; 20]> {
    let rest = urn.get(..9).filter(|p| p.eq_ignore_ascii_case("urn:sha1:")).map(|_| &urn[9..])?;
    if rest.len() != 32 {
        return None;
    }
    decode(rest)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc4648_vectors() {
        // RFC 4648 section 10, without padding.
        let cases = [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ];
        for (plain, enc) in cases {
            assert_eq!(encode(plain.as_bytes()), enc);
            assert_eq!(decode(enc).unwrap(), plain.as_bytes());
            assert_eq!(decode(&enc.to_lowercase()).unwrap(), plain.as_bytes());
        }
        assert_eq!(decode("MZXW6YQ=").unwrap(), b"foob");
    }

    #[test]
    fn sha1_urn_of_empty_file() {
        // SHA-1("") = da39a3ee5e6b4b0d3255bfef95601890afd80709, the well-known URN of an empty file.
        let d: [u8; 20] = [
            0xda, 0x39, 0xa3, 0xee, 0x5e, 0x6b, 0x4b, 0x0d, 0x32, 0x55, 0xbf, 0xef, 0x95, 0x60, 0x18, 0x90,
            0xaf, 0xd8, 0x07, 0x09,
        ];
        let urn = sha1_urn(&d);
        assert_eq!(urn, "urn:sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ");
        assert_eq!(parse_sha1_urn(&urn), Some(d));
        assert_eq!(parse_sha1_urn("URN:SHA1:3i42h3s6nnfq2msvx7xzkyayscx5qbyj"), Some(d));
    }

    #[test]
    fn junk_is_rejected() {
        assert_eq!(decode("MZ1"), None);
        assert_eq!(decode("M"), None); // 5 leftover bits
        assert_eq!(decode("MY"), Some(b"f".to_vec()));
        assert_eq!(decode("MZ"), None); // non-zero leftover bits
        assert_eq!(decode("MR"), None); // non-zero leftover bits
        assert_eq!(parse_sha1_urn("urn:sha1:SHORT"), None);
        assert_eq!(parse_sha1_urn("urn:md5:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ"), None);
        assert_eq!(parse_sha1_urn("ü"), None);
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(decode(&encode(&data)).unwrap(), data);
        }

        #[test]
        fn decode_never_panics(s in "\\PC{0,40}") {
            let _ = decode(&s);
            let _ = parse_sha1_urn(&s);
        }
    }
}
