//! RFC 3261 §17 state machines driven by a fake clock: retransmission schedules, timeouts,
//! ACK generation and absorption of retransmitted requests.

use appnet_sip::transaction::{
    ClientState, ClientTransaction, Output, ServerState, ServerTransaction, Timers, key_of,
};
use appnet_sip::wire::{self, Message};
use std::time::{Duration, Instant};

fn req(method: &str) -> Message {
    let text = format!(
        "{method} sip:bob@umass.edu SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@poly.edu>;tag=a1\r\nTo: <sip:bob@umass.edu>\r\n\
         Call-ID: c1\r\nCSeq: 7 {method}\r\nRoute: <sip:p.umass.edu;lr>\r\n\r\n"
    );
    wire::parse(text.as_bytes()).unwrap()
}

fn sends(out: &[Output]) -> usize {
    out.iter().filter(|o| matches!(o, Output::Send(_))).count()
}

#[test]
fn invite_client_timer_a_doubles_and_b_times_out() {
    let t0 = Instant::now();
    let timers = Timers::default();
    let (mut tx, out) = ClientTransaction::start(req("INVITE"), false, timers, t0);
    assert_eq!(sends(&out), 1);
    // Retransmissions at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s: intervals double without a cap.
    let mut at = Vec::new();
    let mut now = t0;
    for _ in 0..1000 {
        let Some(d) = tx.deadline() else { break };
        now = d;
        let out = tx.on_tick(now);
        if out.contains(&Output::Timeout) {
            break;
        }
        if sends(&out) == 1 {
            at.push((now - t0).as_millis());
        }
    }
    assert_eq!(at, vec![500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(now - t0, Duration::from_secs(32), "timer B = 64*T1");
    assert_eq!(tx.state(), ClientState::Terminated);
}

#[test]
fn invite_client_acks_a_failure_and_absorbs_its_retransmission() {
    let t0 = Instant::now();
    let invite = req("INVITE");
    let (mut tx, _) = ClientTransaction::start(invite.clone(), false, Timers::default(), t0);
    let ringing = Message::response_to(&invite, 180, "Ringing", Some("b1"));
    let out = tx.on_response(ringing, t0);
    assert!(matches!(out[0], Output::Deliver(_)));
    assert_eq!(tx.state(), ClientState::Proceeding);
    assert_eq!(tx.on_tick(t0 + Duration::from_secs(10)), vec![], "no retransmission after 1xx");
    let busy = Message::response_to(&invite, 486, "Busy Here", Some("b1"));
    let out = tx.on_response(busy.clone(), t0);
    let Output::Send(ack) = &out[0] else { panic!("{out:?}") };
    assert_eq!(ack.method(), "ACK");
    assert_eq!(ack.uri(), Some("sip:bob@umass.edu"));
    assert_eq!(ack.cseq(), Some((7, "ACK")));
    assert_eq!(ack.to().unwrap().tag(), Some("b1"));
    assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bKabc"));
    assert_eq!(ack.header("Route"), Some("<sip:p.umass.edu;lr>"));
    assert!(matches!(out[1], Output::Deliver(_)));
    // The 486 again: the ACK again, nothing for the TU.
    let again = tx.on_response(busy, t0 + Duration::from_secs(1));
    assert_eq!(again.len(), 1);
    assert!(matches!(&again[0], Output::Send(m) if m.method() == "ACK"));
    // Timer D (32 s) ends it.
    assert_eq!(tx.deadline(), Some(t0 + Duration::from_secs(32)));
    assert_eq!(tx.on_tick(t0 + Duration::from_secs(32)), vec![Output::Terminated]);
}

#[test]
fn invite_client_2xx_terminates_at_once() {
    let t0 = Instant::now();
    let invite = req("INVITE");
    let (mut tx, _) = ClientTransaction::start(invite.clone(), true, Timers::default(), t0);
    assert_eq!(tx.deadline(), Some(t0 + Duration::from_secs(32)), "reliable: only timer B");
    let ok = Message::response_to(&invite, 200, "OK", Some("b1"));
    let out = tx.on_response(ok, t0);
    assert!(matches!(out[0], Output::Deliver(_)));
    assert_eq!(out[1], Output::Terminated);
}

#[test]
fn non_invite_client_timer_e_caps_at_t2_and_k_lingers() {
    let t0 = Instant::now();
    let bye = req("BYE");
    let (mut tx, _) = ClientTransaction::start(bye.clone(), false, Timers::default(), t0);
    let mut intervals = Vec::new();
    let mut last = t0;
    for _ in 0..8 {
        let d = tx.deadline().unwrap();
        assert_eq!(sends(&tx.on_tick(d)), 1);
        intervals.push((d - last).as_millis());
        last = d;
    }
    assert_eq!(intervals, vec![500, 1000, 2000, 4000, 4000, 4000, 4000, 4000]);
    let ok = Message::response_to(&bye, 200, "OK", None);
    let out = tx.on_response(ok, last);
    assert!(matches!(out[0], Output::Deliver(_)));
    assert_eq!(tx.state(), ClientState::Completed);
    assert_eq!(tx.deadline(), Some(last + Duration::from_secs(5)), "timer K = T4");
    assert_eq!(tx.on_tick(last + Duration::from_secs(5)), vec![Output::Terminated]);
}

#[test]
fn non_invite_client_timer_f() {
    let t0 = Instant::now();
    let (mut tx, _) = ClientTransaction::start(req("OPTIONS"), true, Timers::default(), t0);
    assert_eq!(tx.on_tick(t0 + Duration::from_secs(31)), vec![]);
    assert_eq!(tx.on_tick(t0 + Duration::from_secs(32)), vec![Output::Timeout, Output::Terminated]);
}

#[test]
fn invite_server_absorbs_retransmissions_and_retransmits_failure_until_ack() {
    let t0 = Instant::now();
    let invite = req("INVITE");
    let mut tx = ServerTransaction::new(&invite, false, Timers::default());
    assert_eq!(tx.on_request(&invite, t0), vec![], "nothing to resend yet");
    let trying = Message::response_to(&invite, 100, "Trying", None);
    assert_eq!(sends(&tx.respond(trying.clone(), t0)), 1);
    assert_eq!(tx.on_request(&invite, t0), vec![Output::Send(trying)]);
    let busy = Message::response_to(&invite, 486, "Busy Here", Some("x"));
    tx.respond(busy.clone(), t0);
    assert_eq!(tx.state(), ServerState::Completed);
    // A late 200 from the TU is dropped.
    assert_eq!(tx.respond(Message::response_to(&invite, 200, "OK", Some("x")), t0), vec![]);
    // Timer G: 0.5, 1, 2, 4, 4 s.
    let mut at = Vec::new();
    for _ in 0..5 {
        let d = tx.deadline().unwrap();
        assert_eq!(tx.on_tick(d), vec![Output::Send(busy.clone())]);
        at.push((d - t0).as_millis());
    }
    assert_eq!(at, vec![500, 1500, 3500, 7500, 11500]);
    let mut ack = req("ACK");
    ack.set("CSeq", "7 ACK");
    assert_eq!(key_of(&ack), key_of(&invite), "the ACK matches the INVITE's transaction");
    assert_eq!(tx.on_request(&ack, t0 + Duration::from_secs(12)), vec![]);
    assert_eq!(tx.state(), ServerState::Confirmed);
    assert_eq!(tx.on_tick(t0 + Duration::from_secs(17)), vec![Output::Terminated], "timer I = T4");
}

#[test]
fn invite_server_timer_h_without_ack() {
    let t0 = Instant::now();
    let invite = req("INVITE");
    let mut tx = ServerTransaction::new(&invite, true, Timers::default());
    tx.respond(Message::response_to(&invite, 404, "Not Found", Some("x")), t0);
    assert_eq!(tx.deadline(), Some(t0 + Duration::from_secs(32)), "reliable: no timer G");
    assert_eq!(tx.on_tick(t0 + Duration::from_secs(32)), vec![Output::Timeout, Output::Terminated]);
}

#[test]
fn non_invite_server_timer_j() {
    let t0 = Instant::now();
    let reg = req("REGISTER");
    let mut tx = ServerTransaction::new(&reg, false, Timers::default());
    assert_eq!(tx.state(), ServerState::Trying);
    let ok = Message::response_to(&reg, 200, "OK", Some("x"));
    tx.respond(ok.clone(), t0);
    assert_eq!(tx.on_request(&reg, t0), vec![Output::Send(ok)]);
    assert_eq!(tx.deadline(), Some(t0 + Duration::from_secs(32)));
    assert_eq!(tx.on_tick(t0 + Duration::from_secs(32)), vec![Output::Terminated]);
    let mut tcp = ServerTransaction::new(&reg, true, Timers::default());
    let out = tcp.respond(Message::response_to(&reg, 200, "OK", None), t0);
    assert_eq!(out.last(), Some(&Output::Terminated), "reliable: timer J is zero");
}

#[test]
fn keys_need_the_magic_cookie() {
    let mut r = req("OPTIONS");
    assert!(key_of(&r).is_some());
    r.set("Via", "SIP/2.0/UDP 1.2.3.4;branch=old-style");
    assert!(key_of(&r).is_none());
}
