//! The UDP worker threads: any worker count answers every query (one socket, several threads
//! sharing a socket, several sockets on one port), counts reach the metrics, and stopping the
//! server ends every worker thread promptly. One test in this binary, so the thread census
//! sees no other test's servers.

use appnet_dns::client::{self, QueryOpts};
use appnet_dns::wire::message::parse;
use appnet_dns::wire::name::from_text;
use appnet_dns::wire::rrtype::code;
use appnet_dns::zone::Zone;
use appnet_dns::{DnsConfig, DnsServer};
use appnet_netkit::harness::{any_loopback, start, wait_until};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ZONE: &str = "$ORIGIN w.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\nwww A 192.0.2.7\n";

/// Threads of this process named like the server's UDP workers.
fn udp_worker_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("dns-udp-"))
        .count()
}

fn answers_in(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("dns_responses_total{kind=\"answer\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_count_answers_and_stops_promptly() {
    let on_linux = cfg!(target_os = "linux");
    for workers in [1, 3, 6] {
        let zone = Arc::new(Zone::from_text("w.test", ZONE).unwrap());
        let config = DnsConfig { listen: any_loopback(), udp_workers: workers, ..Default::default() };
        let server = DnsServer::bind_with_zones(config, vec![zone]).await.expect("server starts");
        let control = server.control();
        let running = start(server);
        let addr = running.addr();
        // Many clients at once (each its own socket, so the port's sockets all get some).
        let opts = QueryOpts { timeout: Duration::from_secs(3), ..Default::default() };
        let asks = (0..40).map(|_| {
            tokio::spawn(async move {
                let ans = client::query(addr, &from_text("www.w.test").unwrap(), code::A, opts).await.ok()?;
                let p = parse(&ans.bytes).ok()?;
                p.answer.into_iter().find(|r| r.rtype == code::A).map(|r| r.rdata)
            })
        });
        for ask in asks.collect::<Vec<_>>() {
            assert_eq!(ask.await.unwrap(), Some(vec![192, 0, 2, 7]), "workers = {workers}");
        }
        if on_linux {
            // A thread names itself once it first runs.
            let all = wait_until(Duration::from_secs(10), Duration::from_millis(10), || async {
                udp_worker_threads() == workers
            })
            .await;
            assert!(all, "{} worker threads for {workers} workers", udp_worker_threads());
        }
        let counted = wait_until(Duration::from_secs(10), Duration::from_millis(10), || async {
            answers_in(&control.metrics()) >= 40
        })
        .await;
        assert!(counted, "workers = {workers}: {}", control.metrics());
        let t = Instant::now();
        running.stop().await.expect("clean stop");
        // The drain deadline is 3 s: a worker left asleep in recvmmsg would show here.
        assert!(t.elapsed() < Duration::from_secs(2), "stop took {:?}", t.elapsed());
        if on_linux {
            let gone = wait_until(Duration::from_secs(10), Duration::from_millis(10), || async {
                udp_worker_threads() == 0
            })
            .await;
            assert!(gone, "worker threads still running after stop");
        }
    }
}
