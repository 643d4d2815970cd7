//! How the proxy finds origins' addresses: the system's resolver, or a recursive DNS server
//! (the lab's institutional cache resolves through the lab's local DNS server). Used by the
//! connector for every origin connection and by the forward proxy's destination check.

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

/// How origin host names become addresses: the system's resolver, or a given DNS server asked
/// recursively (an institutional cache in the lab resolves through the lab's local DNS server).
#[derive(Clone, Debug)]
pub struct OriginResolver {
    dns: Option<SocketAddr>,
    system: GaiResolver,
}

impl OriginResolver {
    /// `dns`: the recursive resolver to ask (`None`: the system's resolver).
    pub fn new(dns: Option<SocketAddr>) -> OriginResolver {
        OriginResolver { dns, system: GaiResolver::new() }
    }

    /// The addresses of `host` (port 0), for callers outside hyper's connector (CONNECT and
    /// the forward proxy's destination check).
    pub async fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, std::io::Error> {
        use std::str::FromStr;
        let name = Name::from_str(host).map_err(std::io::Error::other)?;
        let mut me = self.clone();
        tower_service::Service::call(&mut me, name).await.map(Iterator::collect)
    }
}

type Addrs = std::vec::IntoIter<SocketAddr>;

impl tower_service::Service<Name> for OriginResolver {
    type Response = Addrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addrs, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        self.system.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        match self.dns {
            Some(server) => Box::pin(async move { lookup(server, name.as_str()).await.map(Vec::into_iter) }),
            None => {
                let found = self.system.call(name);
                Box::pin(async move { Ok(found.await?.collect::<Vec<_>>().into_iter()) })
            }
        }
    }
}

/// The A and AAAA addresses of `host` from the recursive resolver `server` (port 0: the
/// connector sets the URL's port).
async fn lookup(server: SocketAddr, host: &str) -> Result<Vec<SocketAddr>, std::io::Error> {
    use appnet_dns::client::{QueryOpts, query};
    use appnet_dns::wire::rrtype::code;
    let name = appnet_dns::wire::name::from_text(host).map_err(std::io::Error::other)?;
    let opts = QueryOpts { recursion_desired: true, ..QueryOpts::default() };
    let mut out = Vec::new();
    for qtype in [code::A, code::AAAA] {
        let Ok(answer) = query(server, &name, qtype, opts).await else { continue };
        let Ok(parsed) = appnet_dns::wire::message::parse(&answer.bytes) else { continue };
        for r in parsed.answer.iter().filter(|r| r.rtype == qtype) {
            let ip = match r.rdata.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(&r.rdata[..]).expect("length checked")),
                16 => IpAddr::from(<[u8; 16]>::try_from(&r.rdata[..]).expect("length checked")),
                _ => continue,
            };
            out.push(SocketAddr::new(ip, 0));
        }
    }
    if out.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{server} has no address for {host}"),
        ));
    }
    Ok(out)
}
