//! SIP messages (RFC 3261 §7, §20, §25): a strict, bounded parser and a serialiser.
//!
//! Pure code, no I/O. `parse` refuses anything it cannot represent faithfully, so a proxy
//! never forwards a message it misread; every refusal is a `ParseError` the server turns
//! into `400 Bad Request`.

mod header;
mod message;
pub mod sdp;
mod uri;

pub use header::{NameAddr, Via, canonical_name, split_list};
pub use message::{
    Header, Limits, Message, ParseError, StartLine, frame_len, parse, parse_lenient, parse_with,
};
pub use uri::SipUri;

/// The methods this server knows (RFC 3261, 3262, 3265/6665, 3903, 3428).
pub const KNOWN_METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "MESSAGE",
    "INFO",
    "UPDATE",
    "PRACK",
    "REFER",
];

/// The magic cookie every RFC 3261 branch starts with (§8.1.1.7).
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// The fuzz target's body: parse arbitrary bytes; whatever parses must serialise to bytes
/// that parse, and serialising is stable from then on (Content-Length is normalised).
/// Panics only if the codec is inconsistent.
pub fn check_round_trip(data: &[u8]) {
    if let Ok(m) = parse(data) {
        let once = parse(&m.to_bytes())
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&m.to_bytes())));
        let twice = parse(&once.to_bytes()).expect("a serialised message parses");
        assert_eq!(once, twice);
        assert_eq!(m.body, once.body);
    }
}
