//! Three supernodes on loopback joined into one overlay under a shared secret: peers attached to
//! different SNs register, find each other and exchange offers through the SNs; an SN dies and
//! the survivors still answer for every entry.

mod common;

use appnet_nat::skype::client;
use appnet_nat::skype::wire::{self, Candidate, CandidateKind, Msg};
use appnet_netkit::harness;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

const T: Duration = Duration::from_secs(5);

async fn peer(sn: SocketAddr, user: &str) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let host = Candidate { kind: CandidateKind::Host, addr: s.local_addr().unwrap() };
    assert_eq!(client::register(&s, sn, user, &format!("pw-{user}"), vec![host], T).await.unwrap(), 120);
    s
}

/// Whether `user` is found online at `sn` with its own socket's address.
async fn found(asker: &UdpSocket, sn: SocketAddr, user: &str, at: SocketAddr) -> bool {
    matches!(client::lookup(asker, sn, user, Duration::from_millis(800)).await,
        Ok(f) if f.online && f.candidates.first().map(|c| c.addr) == Some(at))
}

#[tokio::test]
async fn peers_on_three_sns_find_and_reach_each_other_and_survive_an_sn() {
    let (_dir, [a, b, c]) = common::three_sns("skype-overlay", |_| {}).await;
    let sns = [a.addr(), b.addr(), c.addr()];
    // Membership converges within a couple of gossip rounds; until then an SN answers alone,
    // and what it stored is handed to the owners when the ring changes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alice = peer(sns[0], "alice").await;
    let bob = peer(sns[1], "bob").await;
    let carol = peer(sns[2], "carol").await;
    let users = [
        ("alice", alice.local_addr().unwrap()),
        ("bob", bob.local_addr().unwrap()),
        ("carol", carol.local_addr().unwrap()),
    ];
    let asker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let all_found = |sns: Vec<SocketAddr>, users: Vec<(&'static str, SocketAddr)>| {
        let asker = &asker;
        async move {
            for sn in &sns {
                for (u, at) in &users {
                    if !found(asker, *sn, u, *at).await {
                        return false;
                    }
                }
            }
            true
        }
    };
    assert!(
        harness::wait_until(Duration::from_secs(15), Duration::from_millis(200), || all_found(
            sns.to_vec(),
            users.to_vec()
        ))
        .await,
        "every SN answers for every user"
    );

    // alice (on A) offers to bob (on B): the Deliver reaches bob from B, the SN he is attached to.
    let offer = Msg::Forward { from: "alice".into(), to: "bob".into(), payload: b"offer".to_vec() };
    assert_eq!(client::request(&alice, sns[0], &offer, T).await.unwrap(), Msg::Forwarded);
    let mut buf = [0u8; 1500];
    let (n, src) = tokio::time::timeout(T, bob.recv_from(&mut buf)).await.unwrap().unwrap();
    assert_eq!(src, sns[1]);
    assert_eq!(
        wire::decode(&buf[..n]).unwrap().1,
        Msg::Deliver { from: "alice".into(), payload: b"offer".to_vec() }
    );
    // bob answers through B to carol on C.
    let answer = Msg::Forward { from: "bob".into(), to: "carol".into(), payload: b"answer".to_vec() };
    assert_eq!(client::request(&bob, sns[1], &answer, T).await.unwrap(), Msg::Forwarded);
    let (n, src) = tokio::time::timeout(T, carol.recv_from(&mut buf)).await.unwrap().unwrap();
    assert_eq!(src, sns[2]);
    assert_eq!(
        wire::decode(&buf[..n]).unwrap().1,
        Msg::Deliver { from: "bob".into(), payload: b"answer".to_vec() }
    );
    // Only from the caller's registered address; unknown callees are 404 from any SN.
    assert!(matches!(
        client::request(&asker, sns[2], &offer, T).await,
        Err(client::SnError::Refused(403, _))
    ));
    let nobody = Msg::Forward { from: "alice".into(), to: "nobody".into(), payload: Vec::new() };
    assert!(matches!(
        client::request(&alice, sns[0], &nobody, T).await,
        Err(client::SnError::Refused(404, _))
    ));
    // The first registration binds the name across SNs: a wrong password at another SN is 401.
    let mallory = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert!(matches!(
        client::register(&mallory, sns[2], "alice", "guess", Vec::new(), T).await,
        Err(client::SnError::Refused(401, _))
    ));

    // C dies: after the survivors drop it, A and B still answer for alice and bob (each entry
    // had a copy on a second SN, re-replicated to the next one).
    c.stop().await.unwrap();
    let survivors = vec![sns[0], sns[1]];
    let kept = vec![users[0], users[1]];
    assert!(
        harness::wait_until(Duration::from_secs(25), Duration::from_millis(500), || all_found(
            survivors.clone(),
            kept.clone()
        ))
        .await
    );
    // And keep answering after the ring has settled.
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(all_found(survivors, kept).await);
    let offer = Msg::Forward { from: "bob".into(), to: "alice".into(), payload: b"again".to_vec() };
    assert_eq!(client::request(&bob, sns[1], &offer, T).await.unwrap(), Msg::Forwarded);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
