//! An HTTP/3 load generator for bench/http3.sh (Debian's h2load has no HTTP/3): `CONNS` QUIC
//! connections, each keeping `STREAMS` GETs of one path in flight, for `SECS` seconds; prints
//! requests/s, body MB/s and errors on one line. It uses appnet's [`Http3Client`] (quinn + h3),
//! so appnet and the anchor server are measured with the very same client.
//!
//! usage: h3load ADDR SERVER_NAME CA_FILE PATH [CONNS] [STREAMS] [SECS]

use appnet_web::h3::client::{Http3Client, Roots};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: h3load ADDR SERVER_NAME CA_FILE PATH [CONNS] [STREAMS] [SECS]");
        std::process::exit(2);
    }
    let addr: std::net::SocketAddr = args[0].parse().expect("ADDR as IP:PORT");
    let num = |i: usize, d: u64| args.get(i).map_or(d, |s| s.parse().expect("a number"));
    let (conns, streams, secs) = (num(4, 8), num(5, 16), num(6, 5));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let requests = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let mut clients = Vec::new();
        for _ in 0..conns {
            let c = Http3Client::connect(addr, &args[1], Roots::CaFile(args[2].clone().into()), None)
                .await
                .expect("connect");
            clients.push(Arc::new(c));
        }
        let start = Instant::now();
        let end = start + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for c in &clients {
            for _ in 0..streams {
                let (c, path) = (c.clone(), args[3].clone());
                let (requests, bytes, errors) = (requests.clone(), bytes.clone(), errors.clone());
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < end {
                        match c.get(&path).await {
                            Ok((200, body)) => {
                                requests.fetch_add(1, Ordering::Relaxed);
                                bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                            }
                            _ => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }));
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        let took = start.elapsed().as_secs_f64();
        let n = requests.load(Ordering::Relaxed);
        let b = bytes.load(Ordering::Relaxed);
        println!(
            "requests/s {:.0} MB/s {:.1} requests {} errors {}",
            n as f64 / took,
            b as f64 / took / 1e6,
            n,
            errors.load(Ordering::Relaxed)
        );
    });
}
