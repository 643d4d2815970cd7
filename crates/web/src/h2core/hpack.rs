//! HPACK (RFC 7541) for the HTTP/2 core: decoding through `loona-hpack` (tables, Huffman),
//! and a small encoder of our own that never uses the dynamic table (indexed static entries,
//! literals without indexing), so the peer's SETTINGS_HEADER_TABLE_SIZE never matters.

use loona_hpack::Decoder as TableDecoder;

/// The static table's names (RFC 7541 Appendix A), index 1 first.
const STATIC_NAMES: [&str; 61] = [
    ":authority",
    ":method",
    ":method",
    ":path",
    ":path",
    ":scheme",
    ":scheme",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
];

/// Decodes header blocks; the dynamic table persists across blocks of one connection.
pub struct Decoder {
    inner: TableDecoder<'static>,
}

impl Default for Decoder {
    fn default() -> Self {
        let mut inner = TableDecoder::new();
        // Our SETTINGS_HEADER_TABLE_SIZE stays at the default 4096.
        inner.set_max_allowed_table_size(4096);
        Decoder { inner }
    }
}

/// A header block that cannot be decoded (a COMPRESSION_ERROR for the connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("undecodable header block")]
pub struct CompressionError;

impl Decoder {
    /// Decodes one complete header block, calling `field` with each name and value in order.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), CompressionError> {
        self.inner.decode_with_cb(block, |n, v| field(&n, &v)).map_err(|_| CompressionError)
    }
}

/// Appends `:status`.
pub fn encode_status(status: u16, out: &mut Vec<u8>) {
    let index = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => 0,
    };
    if index != 0 {
        out.push(0x80 | index);
    } else {
        let mut digits = [0u8; 3];
        let s = status.min(999);
        digits[0] = b'0' + (s / 100) as u8;
        digits[1] = b'0' + (s / 10 % 10) as u8;
        digits[2] = b'0' + (s % 10) as u8;
        // Literal without indexing, name :status (index 8).
        encode_int(8, 4, 0x00, out);
        encode_str(&digits, out);
    }
}

/// Appends a field as a literal without indexing (RFC 7541 §6.2.2), naming a static entry
/// where the name is in the static table. `name` must be lower case.
pub fn encode_field(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    match static_name(name) {
        Some(index) => encode_int(index, 4, 0x00, out),
        None => {
            out.push(0x00);
            encode_str(name, out);
        }
    }
    encode_str(value, out);
}

fn static_name(name: &[u8]) -> Option<usize> {
    STATIC_NAMES.iter().position(|n| n.as_bytes() == name).map(|i| i + 1)
}

fn encode_str(s: &[u8], out: &mut Vec<u8>) {
    encode_int(s.len(), 7, 0x00, out);
    out.extend_from_slice(s);
}

/// An HPACK integer with an `prefix`-bit prefix, the first byte's high bits from `flags`.
fn encode_int(mut value: usize, prefix: u8, flags: u8, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_encoding_decodes_to_the_same_fields() {
        let mut block = Vec::new();
        encode_status(200, &mut block);
        encode_status(418, &mut block);
        encode_field(b"content-type", b"text/html", &mut block);
        encode_field(b"x-long", &[b'a'; 300], &mut block);
        let mut got = Vec::new();
        Decoder::default().decode(&block, |n, v| got.push((n.to_vec(), v.to_vec()))).unwrap();
        assert_eq!(got[0], (b":status".to_vec(), b"200".to_vec()));
        assert_eq!(got[1], (b":status".to_vec(), b"418".to_vec()));
        assert_eq!(got[2], (b"content-type".to_vec(), b"text/html".to_vec()));
        assert_eq!(got[3], (b"x-long".to_vec(), vec![b'a'; 300]));
    }

    #[test]
    fn bad_blocks_are_compression_errors() {
        let mut d = Decoder::default();
        assert_eq!(d.decode(&[0x80], |_, _| {}), Err(CompressionError)); // index 0
        assert_eq!(d.decode(&[0xff, 0x7f], |_, _| {}), Err(CompressionError)); // beyond the tables
        assert_eq!(d.decode(&[0x3f, 0xe1, 0x1f], |_, _| {}), Err(CompressionError)); // size > 4096
    }
}
