//! A simulated network of authoritative servers for resolver tests: each address answers from
//! its own zones through appnet-dns's sans-IO responder, some addresses can be "down", one can
//! be a poisoner, and every query is logged.

#![allow(dead_code)]

use appnet_dns::catalog::Catalog;
use appnet_dns::respond::{self, Outcome, Policy};
use appnet_dns::wire::name::from_text;
use appnet_dns::wire::query;
use appnet_dns::wire::response::{self, Question, Reply, RrRef};
use appnet_dns::wire::rrtype::{code, pack_rdata};
use appnet_dns::zone::Zone;
use appnet_resolver::transport::Transport;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The simulated network (cheap to clone; clones share state).
#[derive(Clone, Default)]
pub struct FakeNet {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    servers: Mutex<HashMap<IpAddr, Catalog>>,
    dead: Mutex<HashSet<IpAddr>>,
    poisoners: Mutex<HashSet<IpAddr>>,
    edns_haters: Mutex<HashSet<IpAddr>>,
    /// Black holes: queries to them wait out their whole timeout (tokio time) unanswered.
    holes: Mutex<HashSet<IpAddr>>,
    /// Exchanges in progress per address, and the most seen at once.
    active: Mutex<HashMap<IpAddr, (usize, usize)>>,
    log: Mutex<Vec<(IpAddr, Vec<u8>)>>,
}

/// Counts one exchange in progress towards an address until dropped.
struct Active<'a>(&'a Inner, IpAddr);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.0.active.lock().unwrap().get_mut(&self.1) {
            e.0 -= 1;
        }
    }
}

impl FakeNet {
    pub fn serve(&self, ip: &str, zones: &[(&str, &str)]) {
        let zones = zones.iter().map(|(origin, text)| Arc::new(Zone::from_text(origin, text).expect(origin)));
        self.inner.servers.lock().unwrap().insert(ip.parse().unwrap(), Catalog::new(zones));
    }
    pub fn kill(&self, ip: &str) {
        self.inner.dead.lock().unwrap().insert(ip.parse().unwrap());
    }
    /// The server at `ip` answers FORMERR to any query carrying EDNS (an old middlebox's view).
    pub fn reject_edns(&self, ip: &str) {
        self.inner.edns_haters.lock().unwrap().insert(ip.parse().unwrap());
    }
    /// The server at `ip` swallows every query: each exchange waits its whole timeout.
    pub fn black_hole(&self, ip: &str) {
        self.inner.holes.lock().unwrap().insert(ip.parse().unwrap());
    }
    /// The most exchanges ever in progress at once towards `ip`.
    pub fn peak_concurrency(&self, ip: &str) -> usize {
        self.inner.active.lock().unwrap().get(&ip.parse().unwrap()).map_or(0, |e| e.1)
    }
    pub fn poison_from(&self, ip: &str) {
        self.inner.poisoners.lock().unwrap().insert(ip.parse().unwrap());
    }
    /// Queries sent so far, to `ip` or to anyone.
    pub fn queries_to(&self, ip: Option<&str>) -> usize {
        let log = self.inner.log.lock().unwrap();
        match ip {
            Some(ip) => {
                let ip: IpAddr = ip.parse().unwrap();
                log.iter().filter(|(a, _)| *a == ip).count()
            }
            None => log.len(),
        }
    }
}

impl Transport for FakeNet {
    async fn exchange(
        &self,
        server: SocketAddr,
        query: &[u8],
        tcp: bool,
        timeout: Duration,
    ) -> io::Result<Vec<u8>> {
        let ip = server.ip();
        self.inner.log.lock().unwrap().push((ip, query.to_vec()));
        let _active = {
            let mut active = self.inner.active.lock().unwrap();
            let e = active.entry(ip).or_default();
            e.0 += 1;
            e.1 = e.1.max(e.0);
            Active(&self.inner, ip)
        };
        if self.inner.holes.lock().unwrap().contains(&ip) {
            tokio::time::sleep(timeout).await;
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"));
        }
        self.answer(server, query, tcp)
    }
}

impl FakeNet {
    /// What the server at `server` replies to `query` right away (a dead server's "reply" is a
    /// timeout error). Synchronous, so sans-IO tests can use the same network in virtual time.
    pub fn answer(&self, server: SocketAddr, query: &[u8], tcp: bool) -> io::Result<Vec<u8>> {
        let ip = server.ip();
        if self.inner.dead.lock().unwrap().contains(&ip) {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"));
        }
        if self.inner.edns_haters.lock().unwrap().contains(&ip) {
            let q = query::parse(query).expect("a query");
            if q.edns.is_some() {
                let reply = Reply { rcode: appnet_dns::wire::response::rcode::FORMERR, ..Default::default() };
                let question = Question { qname: q.qname, qtype: q.qtype, qclass: q.qclass };
                return Ok(response::write(q.header(), Some(question), None, &reply, 512, Vec::new()));
            }
        }
        if self.inner.poisoners.lock().unwrap().contains(&ip) {
            return Ok(poisoned_reply(query));
        }
        let servers = self.inner.servers.lock().unwrap();
        let Some(catalog) = servers.get(&ip) else {
            return Err(io::Error::new(io::ErrorKind::ConnectionRefused, "nobody there"));
        };
        let transport = if tcp { respond::Transport::Tcp } else { respond::Transport::Udp };
        match respond::handle(catalog, &Policy::default(), query, transport, ip, Vec::new()) {
            Outcome::Reply { bytes, .. } => Ok(bytes),
            _ => Err(io::Error::other("no reply")),
        }
    }
}

/// An attacker's reply: answers any question with itself plus forged records for names it has
/// no authority over (www.umass.edu → 6.6.6.6), in the answer and additional sections.
fn poisoned_reply(packet: &[u8]) -> Vec<u8> {
    let q = query::parse(packet).expect("a query");
    let mut real = Vec::new();
    pack_rdata(&mut real, &[127, 0, 66, 66]);
    let mut forged = Vec::new();
    pack_rdata(&mut forged, &[6, 6, 6, 6]);
    let victim = from_text("www.umass.edu.").unwrap();
    let victim_ns = from_text("dns.umass.edu.").unwrap();
    let answer = [
        RrRef { owner: q.qname, rtype: code::A, ttl: 3600, rdata: &real },
        RrRef { owner: &victim, rtype: code::A, ttl: 86400, rdata: &forged },
    ];
    let additional = [RrRef { owner: &victim_ns, rtype: code::A, ttl: 86400, rdata: &forged }];
    let reply = Reply { rcode: 0, aa: true, answer: &answer, additional: &additional, ..Default::default() };
    let question = Question { qname: q.qname, qtype: q.qtype, qclass: q.qclass };
    response::write(q.header(), Some(question), None, &reply, 4096, Vec::new())
}

pub const ROOT: &str = "$TTL 86400
@ SOA a.root-servers.net. nstld.example. 1 1800 900 604800 86400
@ NS a.root-servers.net.
@ NS b.root-servers.net.
a.root-servers.net. A 127.0.1.1
b.root-servers.net. A 127.0.1.2
edu. NS a.edu-servers.net.
com. NS a.gtld-servers.net.
a.edu-servers.net. A 127.0.2.1
a.gtld-servers.net. A 127.0.2.2
";

pub const EDU: &str = "$TTL 86400
@ SOA a.edu-servers.net. nstld.example. 1 1800 900 604800 3600
@ NS a.edu-servers.net.
umass.edu. NS dns.umass.edu.
dns.umass.edu. A 127.0.3.1
stanford.edu. NS dns1.stanford.edu.
stanford.edu. NS dns2.stanford.edu.
dns1.stanford.edu. A 127.0.3.30
dns2.stanford.edu. A 127.0.3.31
poly.edu. NS dns.poly.edu.
dns.poly.edu. A 127.0.3.40
";

pub const COM: &str = "$TTL 86400
@ SOA a.gtld-servers.net. nstld.example. 1 1800 900 604800 3600
@ NS a.gtld-servers.net.
ibm.com. NS ns1.ibm.com.
ns1.ibm.com. A 127.0.3.10
evil.com. NS ns.evil.com.
ns.evil.com. A 127.0.3.66
glueless.com. NS dns2.umass.edu.
";

pub const UMASS: &str = "$TTL 3600
@ SOA dns.umass.edu. admin.umass.edu. 1 3600 600 86400 300
@ NS dns.umass.edu.
dns A 127.0.3.1
dns2 A 127.0.3.20
www A 127.0.10.1
cs NS dns.cs.umass.edu.
dns.cs A 127.0.3.3
";

pub const CS_UMASS: &str = "$TTL 3600
@ SOA dns.cs.umass.edu. admin.cs.umass.edu. 1 3600 600 86400 300
@ NS dns.cs.umass.edu.
dns A 127.0.3.3
gaia A 128.119.245.12
";

pub const STANFORD: &str = "$TTL 3600
@ SOA dns1.stanford.edu. admin.stanford.edu. 1 3600 600 86400 300
@ NS dns1.stanford.edu.
@ NS dns2.stanford.edu.
dns1 A 127.0.3.30
dns2 A 127.0.3.31
www A 171.64.64.64
";

pub const IBM: &str = "$TTL 3600
@ SOA ns1.ibm.com. admin.ibm.com. 1 3600 600 86400 300
@ NS ns1.ibm.com.
ns1 A 127.0.3.10
www CNAME servereast.backup2.ibm.com.
servereast.backup2 A 129.42.38.10
mirror CNAME www.umass.edu.
";

pub const GLUELESS: &str = "$TTL 3600
@ SOA dns2.umass.edu. admin.glueless.com. 1 3600 600 86400 300
@ NS dns2.umass.edu.
www A 192.0.2.80
";

/// The textbook hierarchy on the simulated network.
pub fn textbook_net() -> FakeNet {
    let net = FakeNet::default();
    net.serve("127.0.1.1", &[(".", ROOT)]);
    net.serve("127.0.1.2", &[(".", ROOT)]);
    net.serve("127.0.2.1", &[("edu.", EDU)]);
    net.serve("127.0.2.2", &[("com.", COM)]);
    net.serve("127.0.3.1", &[("umass.edu.", UMASS)]);
    net.serve("127.0.3.3", &[("cs.umass.edu.", CS_UMASS)]);
    net.serve("127.0.3.30", &[("stanford.edu.", STANFORD)]);
    net.serve("127.0.3.31", &[("stanford.edu.", STANFORD)]);
    net.serve("127.0.3.10", &[("ibm.com.", IBM)]);
    net.serve("127.0.3.20", &[("glueless.com.", GLUELESS)]);
    net.poison_from("127.0.3.66");
    net
}

/// The root hints for the simulated network.
pub fn roots() -> Vec<(Box<[u8]>, Vec<IpAddr>)> {
    vec![
        (from_text("a.root-servers.net.").unwrap(), vec!["127.0.1.1".parse().unwrap()]),
        (from_text("b.root-servers.net.").unwrap(), vec!["127.0.1.2".parse().unwrap()]),
    ]
}
