//! `appnet lab --link` (root): the tour's scene 6 itself runs with cis.poly.edu behind the
//! link emulator, so its times are real round trips (never faster than the textbook's count of
//! RTTs), its exchanges go on the event bus between the link's addresses, and stopping the lab
//! removes the namespaces. Skips (saying why) when not root; CI runs it as root.

mod common;

use appnet_lab::link_scene::{LINK_NAME, LinkNet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scene_6_runs_behind_the_emulated_link_and_stopping_removes_it() {
    if !common::is_root() {
        eprintln!("skipped: --link needs root (network namespaces, TUN devices)");
        return;
    }
    let dir = appnet_netkit::harness::TempDir::new("lab-link");
    let mut topology = common::topology();
    topology.chord = None;
    topology.swarm = None;
    topology.overlay = None;
    let web =
        topology.webs.iter().find(|w| w.name == "www.someschool.edu").cloned().expect("the lab's web host");
    let mut lab = appnet_lab::Lab::start(topology, &dir).await.expect("lab starts");
    let spec = appnet_link::LinkSpec::parse("rtt=20ms,loss=0").unwrap();
    let d = dir.to_path_buf();
    let net =
        tokio::task::spawn_blocking(move || LinkNet::up(&spec, &web, &d)).await.unwrap().expect("link up");
    let names = appnet_link::netns::list();
    assert!(
        names.contains(&format!("{LINK_NAME}-a")) && names.contains(&format!("{LINK_NAME}-b")),
        "{names:?}"
    );
    assert!(net.directory().contains(&format!("ip netns exec {LINK_NAME}-a curl")), "{}", net.directory());
    lab.link = Some(net);

    let mut bus = appnet_lab::events::bus().subscribe();
    let mut printed = Vec::new();
    let result = appnet_lab::tour::run_scene(&mut lab, 6, &mut |line| printed.push(line)).await;
    let text = printed.join("\n");
    lab.stop().await;
    result.unwrap_or_else(|e| panic!("scene 6 over the link failed: {e}\n{text}"));
    println!("{text}");

    let names = appnet_link::netns::list();
    assert!(!names.iter().any(|n| n.starts_with(LINK_NAME)), "stopping the lab removes the link: {names:?}");

    // Each mode's line: mode, connections, objects, bytes, textbook RTTs, measured ms, measured RTTs.
    let row = |mode: &str| -> (usize, f64) {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(mode))
            .unwrap_or_else(|| panic!("{mode}: {text}"));
        let f: Vec<&str> = line.split_whitespace().collect();
        let rtts: usize = f[4].parse().unwrap();
        let ms: f64 = f[5].trim_end_matches("ms").parse().unwrap();
        (rtts, ms)
    };
    let (np, p, pl) = (row("NonPersistent"), row("Persistent"), row("Pipelined"));
    assert_eq!((np.0, p.0, pl.0), (22, 12, 3), "the textbook's counts\n{text}");
    // Physics: a round trip on this link takes 20 ms, so no fetch beats its count of RTTs.
    for (rtts, ms) in [np, p, pl] {
        assert!(ms >= rtts as f64 * 20.0 - 1.0, "{rtts} RTTs in {ms} ms at 20 ms each\n{text}");
    }
    assert!(np.1 > p.1 && p.1 > pl.1, "non-persistent > persistent > pipelined\n{text}");

    // The same exchanges on the bus, between the link's two addresses.
    let mut gets = 0;
    while let Ok(e) = bus.try_recv() {
        if e.protocol == "HTTP" && e.from.host == "198.18.0.1" && e.to.host == "198.18.0.2" {
            gets += 1;
        }
    }
    assert_eq!(gets, 33, "11 requests per mode on the bus, from 198.18.0.1 to 198.18.0.2\n{text}");
}
