//! The user agent end to end on loopback: a caller and an auto-answering phone talk
//! directly (the phone is the caller's outbound proxy), media flows both ways, BYE ends it;
//! a busy phone answers 486; a phone that never answers is cancelled.

use appnet_netkit::Shutdown;
use appnet_sip::rtp::tone;
use appnet_sip::ua::call::{CallConfig, CallError, call};
use appnet_sip::ua::phone::{Phone, PhoneConfig};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn phone_config(auto_answer: bool, busy: bool) -> PhoneConfig {
    PhoneConfig {
        user: "bob@umass.edu".into(),
        proxy: None,
        password: None,
        listen: "127.0.0.1:0".parse().unwrap(),
        auto_answer,
        busy,
        expires: 3600,
        max_calls: Some(1),
        on_call_end: None,
        trace: None,
    }
}

fn call_config(proxy: std::net::SocketAddr, trace: Arc<Mutex<Vec<String>>>) -> CallConfig {
    CallConfig {
        from: "alice@poly.edu".into(),
        to: "bob@umass.edu".into(),
        proxy,
        duration: Duration::from_millis(1000),
        password: None,
        audio: tone(440.0, 8000),
        ring_timeout: Duration::from_secs(2),
        trace: Some(Arc::new(move |l: &str| trace.lock().unwrap().push(l.to_string()))),
    }
}

#[tokio::test]
async fn direct_call_with_media_both_ways_and_bye() {
    let phone = Phone::bind(phone_config(true, false)).await.unwrap();
    let addr = phone.local_addr();
    let shutdown = Shutdown::new();
    let ph = tokio::spawn(phone.run(shutdown.clone()));
    let trace = Arc::new(Mutex::new(Vec::new()));
    let report = tokio::time::timeout(Duration::from_secs(20), call(call_config(addr, trace.clone())))
        .await
        .expect("call finishes")
        .expect("call succeeds");
    // 1 s of 20 ms packets: about 50 sent; the echo comes back for nearly all of them.
    assert!((40..=60).contains(&report.sent), "{report}");
    assert!(report.received >= report.sent - 10, "{report}");
    assert_eq!(report.lost, 0, "{report}");
    let phone_reports = tokio::time::timeout(Duration::from_secs(10), ph).await.unwrap().unwrap().unwrap();
    assert_eq!(phone_reports.len(), 1);
    assert!(phone_reports[0].received >= 40, "{}", phone_reports[0]);
    let lines = trace.lock().unwrap().join("\n");
    for step in ["INVITE", "180 Ringing (INVITE)", "200 OK (INVITE)", "ACK", "media", "BYE", "200 OK (BYE)"] {
        assert!(lines.contains(step), "{step} missing from\n{lines}");
    }
    shutdown.trigger();
}

#[tokio::test]
async fn busy_phone_answers_486() {
    let phone = Phone::bind(phone_config(true, true)).await.unwrap();
    let addr = phone.local_addr();
    let shutdown = Shutdown::new();
    let ph = tokio::spawn(phone.run(shutdown.clone()));
    let r = call(call_config(addr, Arc::default())).await;
    assert!(matches!(r, Err(CallError::Refused(486, _))), "{r:?}");
    shutdown.trigger();
    ph.await.unwrap().unwrap();
}

#[tokio::test]
async fn unanswered_call_is_cancelled_with_487() {
    let phone = Phone::bind(phone_config(false, false)).await.unwrap();
    let addr = phone.local_addr();
    let shutdown = Shutdown::new();
    let ph = tokio::spawn(phone.run(shutdown.clone()));
    let trace = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = call_config(addr, trace.clone());
    cfg.ring_timeout = Duration::from_millis(500);
    let r = call(cfg).await;
    assert!(matches!(r, Err(CallError::NoAnswer)), "{r:?}");
    let lines = trace.lock().unwrap().join("\n");
    assert!(lines.contains("CANCEL"), "{lines}");
    assert!(lines.contains("487 Request Terminated") || lines.contains("200 OK (CANCEL)"), "{lines}");
    shutdown.trigger();
    ph.await.unwrap().unwrap();
}
