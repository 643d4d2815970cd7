//! The tour's load-balancer scene on the lab's www.stanford.edu: one address (the balancer) in
//! front of three machines; a connection on each; one machine dies; only its connection breaks.

mod common;

use appnet_lab::Lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_three_machines_and_a_crash_breaks_only_its_connection() {
    let dir = appnet_netkit::harness::TempDir::new("lab-lb");
    let mut topology = common::topology();
    topology.chord = None;
    topology.swarm = None;
    let lb = topology.lbs.first().cloned().expect("the lab has a load balancer");
    assert_eq!(lb.name, "www.stanford.edu");
    assert_eq!(lb.replicas.len(), 3);
    let mut lab = Lab::start(topology, &dir).await.expect("lab starts");
    assert!(lab.directory().contains("load balancer"), "{}", lab.directory());

    let mut printed = Vec::new();
    let result = appnet_lab::lb_scene::run(&mut lab, &lb, &mut |line| printed.push(line)).await;
    let text = printed.join("\n");
    result.unwrap_or_else(|e| panic!("load-balancer scene failed: {e}\n{text}"));
    println!("{text}");
    lab.stop().await;
    assert_eq!(text.matches("(twice, same machine)").count(), 3, "{text}");
    assert_eq!(text.matches(": still served by 127.0.10.2").count(), 2, "{text}");
    assert_eq!(text.matches(": broken (its machine is gone)").count(), 1, "{text}");
    assert!(text.contains("% of the flow-key space moves (≈1/3)"), "{text}");
}
