//! Anycast in network namespaces (root only; skipped with a printed reason otherwise — CI runs
//! as root): two clients resolve the same name to the same address and reach different
//! replicas; every namespace is gone after the network is dropped, and stale ones are removed.

use appnet_lab::Topology;
use appnet_lab::netns::{self, AnycastNet};
use appnet_netkit::harness::TempDir;

#[test]
fn two_clients_reach_different_replicas_at_one_address_and_everything_is_removed() {
    if !netns::is_root() {
        eprintln!("skipped: network namespaces need root (CI runs this test as root)");
        return;
    }
    let mut spec = Topology::default().anycast.expect("the default lab has [anycast]");
    // Its own prefix, so a lab running at the same time is not disturbed.
    spec.prefix = "appnet-anytest".into();
    // A namespace left by a killed run is removed at start.
    let stale = spec.ns("stale");
    let _ = std::process::Command::new("ip").args(["netns", "add", &stale]).status();
    let dir = TempDir::new("anycast");
    let net = AnycastNet::create(&spec, dir.path()).expect("anycast network");
    let names = net.namespaces().to_vec();
    assert_eq!(names.len(), 2 * spec.sites.len());
    assert!(!netns::list_namespaces().contains(&stale), "the stale namespace was removed");
    let east = netns::visit(&spec, &spec.sites[0].client).expect("east visit");
    let west = netns::visit(&spec, &spec.sites[1].client).expect("west visit");
    assert_eq!(east.resolved, west.resolved, "one name, one address");
    assert_eq!(east.resolved, std::net::IpAddr::V4(spec.address));
    assert!(east.page.contains(&spec.sites[0].replica), "{}", east.page);
    assert!(west.page.contains(&spec.sites[1].replica), "{}", west.page);
    let mut lines = Vec::new();
    netns::scene(&spec, &mut |l| lines.push(l)).expect("the tour scene");
    assert!(lines.iter().any(|l| l.contains(&spec.sites[1].replica)), "{lines:?}");
    drop(net);
    let left: Vec<String> =
        netns::list_namespaces().into_iter().filter(|n| n.starts_with("appnet-anytest-")).collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

#[test]
fn without_root_the_error_says_so() {
    if netns::is_root() {
        eprintln!("skipped: runs as root, so the refusal cannot be observed");
        return;
    }
    let spec = Topology::default().anycast.expect("the default lab has [anycast]");
    let dir = TempDir::new("anycast-noroot");
    let err = AnycastNet::create(&spec, dir.path()).err().expect("refused").to_string();
    assert!(err.contains("root"), "{err}");
}
