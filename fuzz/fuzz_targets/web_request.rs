//! The web server's own handling of request input: the HTTP/1 gate's head checks and framing
//! state machine over arbitrary bytes, request-path cleaning, Range parsing against a length,
//! precondition evaluation, Accept-Encoding negotiation, the push-link scanner and the cart app's
//! form and cookie parsing. Must never panic; cleaned paths never hold `..`, and ranges stay
//! inside the representation.
#![no_main]

use appnet_web::files::conditional::{self, Preconditions, Validators};
use appnet_web::files::{encoding, path, range};
use appnet_web::http1_conn::{Activity, Http1Conn, Limits};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, UNIX_EPOCH};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_request_line: 256,
        max_header_bytes: 1024,
        max_headers: 16,
        header_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_millis(1),
    };
    let _ = appnet_web::http1_guard::check_head(data, &limits.head());

    // Split the input into fields for the pure cores.
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\n');
    let mut next = || fields.next().unwrap_or("");
    let (raw_path, range_value, inm, ims, im, ius, ir, ae) =
        (next(), next(), next(), next(), next(), next(), next(), next());
    if let Ok(clean) = path::clean(raw_path) {
        assert!(clean.segments.iter().all(|s| s != ".." && s != "." && !s.contains('/') && !s.contains('\0')));
    }
    let len = data.len() as u64 * 37;
    if let range::RangeRequest::Partial(rs) = range::parse(range_value, len) {
        assert!(rs.iter().all(|r| r.start <= r.end && r.end < len));
        let mp = range::Multipart::new("b".into(), "text/plain", &rs, len);
        let _ = mp.body_len();
    }
    let v = Validators::for_file(len, UNIX_EPOCH + Duration::from_secs(len), "");
    let pre = Preconditions {
        if_none_match: Some(inm).filter(|s| !s.is_empty()),
        if_modified_since: Some(ims).filter(|s| !s.is_empty()),
        if_match: Some(im).filter(|s| !s.is_empty()),
        if_unmodified_since: Some(ius).filter(|s| !s.is_empty()),
    };
    let _ = conditional::evaluate(&pre, &v, data.first().is_some_and(|b| b & 1 == 0));
    let _ = conditional::if_range_allows(ir, &v);
    let _ = encoding::acceptable(Some(ae));
    let _ = appnet_web::push::linked_resources(data, "/dir/page.html");
    // The cart app's query/form and Cookie input.
    let _ = appnet_web::apps::parse_op(&text);
    if let Some(id) = appnet_web::apps::session_from_cookie(&text) {
        assert_eq!(id.len(), 32);
    }

    // The gate's streaming state machine: the bytes arrive in small reads.
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    rt.block_on(async {
        use tokio::io::AsyncReadExt;
        let reader = tokio::io::BufReader::with_capacity(7, data);
        let mut gate = Http1Conn::new(reader, limits, Activity::default());
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(50), gate.read_to_end(&mut out)).await;
    });
});
