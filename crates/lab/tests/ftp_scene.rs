//! The tour's FTP scene on the lab's ftp.cs.umass.edu: one control connection for the whole
//! session, a new data connection for the listing and for each of three files (two passive, one
//! active), each with both ends shown.

mod common;

use appnet_ftp::client::DataMode;
use appnet_lab::Lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ftp_scene_shows_one_control_connection_and_a_data_connection_per_transfer() {
    let dir = appnet_netkit::harness::TempDir::new("lab-ftp");
    let mut topology = common::topology();
    // Only what the scene needs: the DNS (to find ftp.cs.umass.edu) and the FTP server on a free port.
    topology.chord = None;
    topology.swarm = None;
    topology.ftps[0].port = 0;
    let lab = Lab::start(topology, &dir).await.expect("lab starts");
    let directory = lab.directory();
    assert!(directory.contains("ftp.cs.umass.edu") && directory.contains("127.0.10.20"), "{directory}");
    let server = lab.addr_of("ftp.cs.umass.edu").unwrap();

    // What the browser page (lab --ui) would draw: the same exchanges on the event bus.
    let mut bus = appnet_lab::events::bus().subscribe();
    let mut printed = Vec::new();
    let result = appnet_lab::ftp_scene::run(&lab, &mut |line| printed.push(line)).await;
    let text = printed.join("\n");
    let facts = result.unwrap_or_else(|e| panic!("FTP scene failed: {e}\n{text}"));
    lab.stop().await;

    assert_eq!(facts.control.len(), 1, "{text}");
    assert_eq!(facts.control[0].1, server);
    assert_eq!(facts.control[0].0.ip().to_string(), "127.0.10.4", "sent from cis.poly.edu");
    let modes: Vec<_> = facts.data.iter().map(|d| d.mode).collect();
    assert_eq!(modes, [DataMode::Passive, DataMode::Passive, DataMode::Passive, DataMode::Active], "{text}");
    // The 256 KiB file came on the active connection, which the server opened to the client.
    assert_eq!(facts.data[3].bytes, Some(256 << 10), "{text}");
    let ports: std::collections::HashSet<_> = facts.data.iter().map(|d| d.local.port()).collect();
    assert_eq!(ports.len(), 4, "a new data connection (new client port) per transfer\n{text}");
    assert!(facts.commands.iter().any(|c| c.starts_with("PORT 127,0,10,4,")), "{text}");
    assert!(text.contains("C: USER anonymous") && text.contains("S: 226"), "{text}");
    assert!(text.contains("ch2-notes.txt"), "{text}");
    let mut published = Vec::new();
    while let Ok(e) = bus.try_recv() {
        published.push(e);
    }
    let ftp: Vec<_> = published.iter().filter(|e| e.protocol.starts_with("FTP")).collect();
    assert!(
        ftp.iter().any(|e| e.summary == "C: USER anonymous"
            && e.from.host == "cis.poly.edu"
            && e.to.host == "ftp.cs.umass.edu"),
        "{ftp:?}"
    );
    let data_opens =
        ftp.iter().filter(|e| e.protocol == "FTP-DATA" && e.summary.contains("data connection open")).count();
    assert_eq!(data_opens, 4, "{ftp:?}");
    assert!(
        ftp.iter()
            .any(|e| e.summary.contains("active: the server connected") && e.from.host == "ftp.cs.umass.edu")
    );
    println!("{text}");
}
