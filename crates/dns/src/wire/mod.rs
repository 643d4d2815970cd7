//! The DNS wire format and zone-file text, and the only room that touches NLnet Labs' `domain`
//! crate (pinned `=0.12.3`), so its unstable API stays in one place.
//!
//! Everything outside this module sees plain data: names as uncompressed wire-format byte
//! strings (lower-cased when used as keys), record types as `u16`, record data as uncompressed
//! wire bytes. This module turns those into messages and zone text and back.
//!
//! - [`name`]: wire-format name helpers (lower-casing, parents, text).
//! - [`query`]: zero-copy parsing of an incoming request.
//! - [`response`]: building responses with name compression, EDNS and clean truncation.
//! - [`zonefile`]: RFC 1035 master files (via domain's scanner) with file:line errors.
//! - [`message`]: whole-message parsing and building for clients (queries, AXFR, NOTIFY).
//! - [`tcp`]: the two-byte length framing of DNS over TCP (RFC 1035 §4.2.2, RFC 7766).
//! - [`dnssec`]: DNSSEC keys (BIND files), DS, zone signing (domain's `unstable-sign`).
//! - [`update`]: RFC 2136 UPDATE messages (parsing).
//! - [`tsig`]: RFC 8945 transaction signatures (sign, verify, multi-message transfers).
//! - [`verify`]: DNSSEC verification primitives for the validating resolver (RRSIG, DS, NSEC3).

pub mod dnssec;
pub mod message;
pub mod name;
pub mod query;
pub mod response;
pub mod rrtype;
pub mod tcp;
pub mod tsig;
pub mod update;
pub mod verify;
pub mod zonefile;

pub use name::NameBuf;
