//! HTTP/3 0-RTT across runs: two clients that share nothing but a session file (each builds
//! its own TLS configuration, verifier and ticket store) — the second resumes and the server
//! accepts its GET as early data. A corrupt file is ignored and replaced. Early data a server
//! rejects (a ticket from another server) is sent again once the handshake is done.

mod common;
use appnet_web::h3::client::{Http3Client, Roots};
use common::*;
use std::os::unix::fs::PermissionsExt;

async fn h3_server(tag: &str) -> (TempDir, TempDir, appnet_netkit::harness::Running) {
    let ca = TempDir::new(&format!("{tag}-ca"));
    let (site, srv) = h3_server_of(tag, &ca).await;
    (site, ca, srv)
}

/// A server whose certificate comes from the lab CA in `ca` (made there if missing).
async fn h3_server_of(tag: &str, ca: &TempDir) -> (TempDir, appnet_netkit::harness::Running) {
    let site = site(tag);
    let mut cfg = config(site.path());
    cfg.tls = true;
    cfg.http3 = true;
    cfg.ca_dir = Some(ca.path().to_path_buf());
    let srv = serve(cfg).await;
    (site, srv)
}

/// One run of a client: connect with the session file, GET, close (which saves the file).
/// Returns (tried early data, server accepted it).
async fn run(srv: &appnet_netkit::harness::Running, ca: &TempDir, file: &std::path::Path) -> (bool, bool) {
    let roots = Roots::CaFile(ca.path().join("ca.pem"));
    let c = Http3Client::connect(srv.addr(), "localhost", roots, Some(file)).await.expect("connect");
    let (status, body) = c.get("/digits.txt").await.expect("GET");
    assert_eq!((status, body.as_slice()), (200, &b"0123456789"[..]));
    let verdict = (c.tried_0rtt(), c.used_0rtt());
    c.close().await;
    verdict
}

#[tokio::test]
async fn a_second_run_resumes_from_the_session_file_with_early_data() {
    let (_site, ca, srv) = h3_server("h3-session-file").await;
    let dir = TempDir::new("h3-session-file-store");
    let file = dir.join("cache/h3-sessions");

    assert_eq!(run(&srv, &ca, &file).await, (false, false), "no ticket yet: a full handshake");
    let text = std::fs::read_to_string(&file).expect("the session file is written on close");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let key = format!("ticket localhost {} ", srv.addr());
    assert!(text.lines().any(|l| l.starts_with(&key)), "a ticket for this server: {text}");

    assert_eq!(run(&srv, &ca, &file).await, (true, true), "resumed, and the server accepted the early data");
    // Tickets are used once; the resumed connection stored fresh ones for a third run.
    assert_eq!(run(&srv, &ca, &file).await, (true, true));

    std::fs::write(&file, "garbage\x00\n").unwrap();
    assert_eq!(run(&srv, &ca, &file).await, (false, false), "a corrupt file is ignored");
    assert!(std::fs::read_to_string(&file).unwrap().starts_with("# appnet HTTP/3 session tickets"));
    assert_eq!(run(&srv, &ca, &file).await, (true, true), "and replaced by a good one");
}

#[tokio::test]
async fn early_data_another_server_rejects_is_sent_again_after_the_handshake() {
    let (_site, ca, first) = h3_server("h3-0rtt-reject").await;
    let dir = TempDir::new("h3-0rtt-reject-store");
    let file = dir.join("sessions");
    assert_eq!(run(&first, &ca, &file).await, (false, false));
    // A second server with the same certificate authority but its own session state: the
    // ticket the first one issued is moved to the second's address, so the client resumes
    // with it and sends its GET as early data, which the second server cannot accept.
    let (_site2, second) = h3_server_of("h3-0rtt-reject-2", &ca).await;
    let text = std::fs::read_to_string(&file).unwrap();
    let (old, new) = (format!(" {} ", first.addr()), format!(" {} ", second.addr()));
    assert!(text.contains(&old), "a ticket for the first server: {text}");
    std::fs::write(&file, text.replace(&old, &new)).unwrap();
    assert_eq!(
        run(&second, &ca, &file).await,
        (true, false),
        "early data tried and rejected, and the GET still answered (checked in run)"
    );
    // The rejected connection stored the second server's own tickets: the next run resumes.
    assert_eq!(run(&second, &ca, &file).await, (true, true));
}
