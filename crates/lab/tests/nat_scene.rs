//! Tour scene 16 in real network namespaces: Alice's call to Bob (symmetric NAT) goes through
//! the TURN relay, her call to Carol (two endpoint-independent NATs) punches a hole, and nothing
//! is left afterwards. Needs root (CI runs as root); skipped with a reason otherwise.

use appnet_lab::nat_lab::{self, NatNet};

fn ours_left() -> Vec<String> {
    let names = nat_lab::namespace_names();
    appnet_lab::netns::list_namespaces().into_iter().filter(|n| names.contains(n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_is_reached_through_the_relay_and_carol_directly() {
    if !appnet_lab::netns::is_root() {
        eprintln!("skipped: the NAT scene needs root (network namespaces, nftables)");
        return;
    }
    let dir = appnet_netkit::harness::TempDir::new("nat-scene");
    let mut net = NatNet::create(&dir).await.expect("the NAT network starts");
    assert_eq!(net.namespaces().len(), 7, "{:?}", net.namespaces());
    let mut lines = Vec::new();
    let outcome = nat_lab::calls(&mut |l| lines.push(l)).await;
    net.remove();
    let outcome = outcome.unwrap_or_else(|e| panic!("{e}\n{}", lines.join("\n")));
    let text = lines.join("\n");
    println!("{text}");
    assert!(outcome.bob_relayed, "bob: {}\n{text}", outcome.bob_path);
    assert!(!outcome.carol_relayed, "carol: {}\n{text}", outcome.carol_path);
    assert!(outcome.carol_path.starts_with("direct"), "{text}");
    assert!(text.contains("sent 100 voice packets"), "{text}");
    assert!(ours_left().is_empty(), "left behind: {:?}", ours_left());
    drop(net);
    // Without the network the scene says what it needs and does not fail.
    let mut lines = Vec::new();
    nat_lab::scene(&mut |l| lines.push(l)).await.expect("the scene skips");
    assert!(lines.iter().any(|l| l.contains("appnet lab --nat")), "{lines:?}");
}
