//! Two peer agents, a supernode and appnet's TURN server on loopback: registration with all
//! three candidate kinds, an offer/answer through the SN, checks, a text message and a one
//! second voice stream with its report.

use appnet_nat::config::SupernodeConfig;
use appnet_nat::skype::Supernode;
use appnet_nat::skype::peer::{Command, Peer, PeerConfig};
use appnet_nat::skype::wire::CandidateKind;
use appnet_nat::{TurnConfig, TurnServer};
use appnet_netkit::Shutdown;
use appnet_netkit::harness::{self, TempDir};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_messages_and_calls_bob_through_the_supernode() {
    let sn = harness::start(
        Supernode::bind(SupernodeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..SupernodeConfig::default()
        })
        .await
        .unwrap(),
    );
    let dir = TempDir::new("skype-peer");
    let users = dir.path().join("users");
    std::fs::write(&users, "alice:ta\nbob:tb\n").unwrap();
    let turn = harness::start(
        TurnServer::bind(TurnConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            users: Some(users),
            ports: "51200-51299".into(),
            allow_peer: vec!["127.0.0.0/8".into()],
            ..TurnConfig::default()
        })
        .await
        .unwrap(),
    );
    let cfg = |user: &str, tu: &str, tp: &str| PeerConfig {
        user: user.into(),
        password: format!("{user}-password"),
        supernode: sn.addr(),
        fallback: Vec::new(),
        listen: "127.0.0.1:0".parse().unwrap(),
        stun: None,
        turn: Some((turn.addr(), tu.into(), tp.into())),
        promote: None,
    };
    let alice = Peer::start(cfg("alice", "alice", "ta")).await.unwrap();
    let bob = Peer::start(cfg("bob", "bob", "tb")).await.unwrap();
    assert!(alice.candidates().iter().any(|c| c.kind == CandidateKind::Relayed), "{:?}", alice.candidates());
    let shutdown = Shutdown::new();
    let (a_cmd, a_rx) = mpsc::channel(4);
    let (a_lines, _a_lines_rx) = mpsc::unbounded_channel();
    let (_b_cmd, b_rx) = mpsc::channel::<(Command, oneshot::Sender<String>)>(4);
    let (b_lines, mut b_lines_rx) = mpsc::unbounded_channel();
    let ta = tokio::spawn(alice.run(a_rx, a_lines, shutdown.clone()));
    let tb = tokio::spawn(bob.run(b_rx, b_lines, shutdown.clone()));

    let (reply, answer) = oneshot::channel();
    a_cmd.send((Command::Message { to: "bob".into(), text: "hello bob".into() }, reply)).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), answer).await.unwrap().unwrap();
    assert!(answer.starts_with("sent to bob"), "{answer}");
    let line = tokio::time::timeout(Duration::from_secs(5), b_lines_rx.recv()).await.unwrap().unwrap();
    assert_eq!(line, "alice: hello bob");

    let (reply, answer) = oneshot::channel();
    a_cmd.send((Command::Call { to: "bob".into(), secs: 1 }, reply)).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), answer).await.unwrap().unwrap();
    assert!(answer.contains("sent 50 voice packets"), "{answer}");
    assert!(answer.contains("50 received, 0 lost"), "{answer}");
    assert!(answer.contains("delay"), "{answer}");
    let line = tokio::time::timeout(Duration::from_secs(5), b_lines_rx.recv()).await.unwrap().unwrap();
    assert!(line.starts_with("alice: voice stream over: received 50 of 50"), "{line}");

    // An unknown user: the SN says so and the command fails instead of hanging.
    let (reply, answer) = oneshot::channel();
    a_cmd.send((Command::Message { to: "carol".into(), text: "hi".into() }, reply)).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), answer).await.unwrap().unwrap();
    assert_eq!(answer, "error: carol: 404 No Such User");
    shutdown.trigger();
    ta.await.unwrap();
    tb.await.unwrap();
}
