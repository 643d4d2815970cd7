//! Peer failover: three supernodes under one secret, alice attached to C and bob to B. C dies;
//! alice notices its keepalives go unanswered, attaches to another SN it learnt (from its
//! configured list or the SNs' Pong answers), registers there again, and a message and a call
//! from bob still reach her.

mod common;

use appnet_nat::skype::peer::{Command, Peer, PeerConfig, SN_SILENT};
use appnet_netkit::Shutdown;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

fn cfg(user: &str, supernode: SocketAddr, fallback: Vec<SocketAddr>) -> PeerConfig {
    PeerConfig {
        user: user.into(),
        password: format!("{user}-password"),
        supernode,
        fallback,
        listen: "127.0.0.1:0".parse().unwrap(),
        stun: None,
        turn: None,
        promote: None,
    }
}

/// Sends `cmd` (built afresh each try) through `commands` until the answer starts with `ok`;
/// at most `tries` tries. Returns the last answer.
async fn until_ok(
    commands: &mpsc::Sender<(Command, oneshot::Sender<String>)>,
    cmd: impl Fn() -> Command,
    ok: &str,
    tries: usize,
) -> String {
    let mut last = String::new();
    for _ in 0..tries {
        let (reply, answer) = oneshot::channel();
        commands.send((cmd(), reply)).await.unwrap();
        last = tokio::time::timeout(Duration::from_secs(25), answer).await.unwrap().unwrap();
        if last.starts_with(ok) {
            break;
        }
    }
    last
}

#[tokio::test]
async fn a_peer_whose_sn_dies_reattaches_and_still_gets_messages_and_calls() {
    let (_dir, [a, b, c]) = common::three_sns("skype-failover", |_| {}).await;
    // alice knows only C: the others she learns from C's Pong answers.
    let alice = Peer::start(cfg("alice", c.addr(), Vec::new())).await.unwrap();
    let bob = Peer::start(cfg("bob", b.addr(), vec![a.addr()])).await.unwrap();
    let mut attached = alice.attached();
    assert_eq!(*attached.borrow(), c.addr());
    let mut known = alice.supernodes();

    let shutdown = Shutdown::new();
    let (_a_cmd, a_rx) = mpsc::channel::<(Command, oneshot::Sender<String>)>(4);
    let (a_lines, mut a_lines_rx) = mpsc::unbounded_channel();
    let (b_cmd, b_rx) = mpsc::channel(4);
    let (b_lines, _b_lines_rx) = mpsc::unbounded_channel::<String>();
    let ta = tokio::spawn(alice.run(a_rx, a_lines, shutdown.clone()));
    let tb = tokio::spawn(bob.run(b_rx, b_lines, shutdown.clone()));

    // alice learns the overlay's SNs from C's answers to her keepalives.
    let all = [a.addr(), b.addr(), c.addr()];
    let learnt =
        tokio::time::timeout(Duration::from_secs(20), known.wait_for(|k| all.iter().all(|s| k.contains(s))));
    assert!(learnt.await.is_ok(), "alice learns A and B from C: {:?}", *known.borrow());

    // C dies. alice's keepalives go unanswered; within SN_SILENT and a registration round she
    // is registered through another SN.
    let dead = c.addr();
    c.stop().await.unwrap();
    let limit = SN_SILENT + Duration::from_secs(20);
    let moved = tokio::time::timeout(limit, attached.wait_for(|sn| *sn != dead)).await.map(|r| r.map(|a| *a));
    let Ok(Ok(now_at)) = moved else { panic!("alice did not re-register elsewhere within {limit:?}") };
    assert!(now_at == a.addr() || now_at == b.addr(), "{now_at}");
    let line = tokio::time::timeout(Duration::from_secs(5), a_lines_rx.recv()).await.unwrap().unwrap();
    assert_eq!(line, format!("appnet skype: re-registered at supernode {now_at}"));

    // bob's first offer goes through the SNs to alice's new SN: message and call reach her.
    // The survivors may still be dropping C from the ring (7 s): retried, bounded.
    let msg = || Command::Message { to: "alice".into(), text: "after the failover".into() };
    let answer = until_ok(&b_cmd, msg, "sent to alice", 3).await;
    assert!(answer.starts_with("sent to alice"), "{answer}");
    let line = tokio::time::timeout(Duration::from_secs(5), a_lines_rx.recv()).await.unwrap().unwrap();
    assert_eq!(line, "bob: after the failover");
    let call = || Command::Call { to: "alice".into(), secs: 1 };
    let answer = until_ok(&b_cmd, call, "call with alice", 2).await;
    assert!(answer.contains("sent 50 voice packets"), "{answer}");
    assert!(answer.contains("50 received"), "{answer}");
    let line = tokio::time::timeout(Duration::from_secs(5), a_lines_rx.recv()).await.unwrap().unwrap();
    assert!(line.starts_with("bob: voice stream over: received 50 of 50"), "{line}");

    shutdown.trigger();
    ta.await.unwrap();
    tb.await.unwrap();
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
