//! The resolver's two kinds of network input: a client's query (answered without I/O by
//! `Frontend::answer_now`) and an upstream server's reply (the fuzz data is returned, with the
//! query's ID patched in so the fuzzer reaches the referral/answer classification, for every
//! exchange of a resolution). Must never panic, and every resolution must end.
#![no_main]

use appnet_dns::wire::name::from_text;
use appnet_dns::wire::rrtype::code;
use appnet_resolver::admission::Gate;
use appnet_resolver::cache::CacheLimits;
use appnet_resolver::clients::Clients;
use appnet_resolver::driver::Resolver;
use appnet_resolver::iterate::{DEFAULT_MAX_QUERIES, Mode, Settings};
use appnet_resolver::local::LocalZones;
use appnet_resolver::respond::{Frontend, ServiceCounters, Via};
use appnet_resolver::transport::Transport;
use libfuzzer_sys::fuzz_target;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

struct Echo(Vec<u8>);

impl Transport for Echo {
    async fn exchange(&self, _: SocketAddr, query: &[u8], _: bool, _: Duration) -> io::Result<Vec<u8>> {
        let mut reply = self.0.clone();
        if reply.len() >= 2 && query.len() >= 2 {
            reply[..2].copy_from_slice(&query[..2]);
        }
        Ok(reply)
    }
}

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let settings = Settings {
        mode: Mode::Iterative {
            roots: vec![(from_text("a.root.").unwrap(), vec!["127.0.0.1".parse().unwrap()])],
        },
        upstream_port: 53,
        use_0x20: false,
        cache: CacheLimits::default(),
        max_in_flight_per_zone: 64,
        max_queries: DEFAULT_MAX_QUERIES,
        // Half the inputs also go through DNSSEC validation (the IANA anchor, upstream answers
        // for DS and DNSKEY from the same fuzz data).
        dnssec: data.first().is_some_and(|b| b & 1 == 1),
    };
    let frontend = Frontend {
        resolver: Resolver::new(settings, Echo(data.to_vec())),
        local: LocalZones::new(&[]).unwrap(),
        clients: Clients::new(&["127.0.0.0/8".into()], 0, false).unwrap(),
        counters: ServiceCounters::default(),
        per_client: Gate::new(64),
        in_flight: Arc::new(Semaphore::new(64)),
    };
    rt.block_on(async {
        let _ = frontend.answer(data, "127.0.0.1".parse().unwrap(), Via::Udp).await;
        let _ = frontend.resolver.resolve(&from_text("www.example.com.").unwrap(), code::A).await;
    });
});
