//! TSIG (RFC 8945): shared-secret signatures on DNS messages, for zone transfers and NOTIFY.
//!
//! Split by role: [`key`] (name, algorithm, secret; keyrings and key files), [`record`] (the
//! TSIG resource record: find, parse, emit, strip) and [`sign`] (the signing transaction: request
//! MAC → response MAC, multi-message TCP sequences, verification). Everything is re-exported
//! here, so `wire::tsig::X` paths keep working.
//!
//! Works on finished message bytes: [`sign_request`] and [`Signer`] append a TSIG record (and bumps ARCOUNT),
//! [`find`] locates and reads the one a received message carries, [`verify_request`] checks a
//! request on the server side, and [`Verifier`] checks a reply or a multi-message transfer on
//! the client side (RFC 8945 §5.3.1: every message after the first is digested with the
//! previous MAC and only the timers). Time is always passed in (`now`, seconds since the epoch).
//! HMAC comes from `ring` (already in the tree for TLS).

pub mod key;
pub mod record;
pub mod sign;

pub use key::{Algorithm, Key, Keyring, parse_key_file};
pub use record::{Malformed, TYPE_TSIG, TsigRecord, append_unsigned_error, error, find, record_size, strip};
pub use sign::{
    FUDGE, Rejected, Signer, TsigError, Verified, Verifier, error_name, sign_request, verify_request,
};
