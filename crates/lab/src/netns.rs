//! Anycast with Linux network namespaces (`appnet lab --netns`, root only): replicas in
//! different namespaces share one anycast address on their loopback, and each client
//! namespace's static route reaches its nearest replica, so the same name and the same address
//! lead different clients to different machines ("same address from the DNS name but local
//! routes"). Each replica namespace runs a web server naming itself and an authoritative DNS
//! server for the anycast zone, both on the anycast address (as anycast root servers do).
//!
//! Only addresses of the benchmarking range 198.18.0.0/15 are used, and only inside the
//! namespaces created here: the veth pairs are created directly inside them, so nothing is
//! ever added to the host's namespace. [`AnycastNet`] removes every namespace it created when
//! dropped (on success, failure and Ctrl-C); [`cleanup_stale`] removes those a killed lab left.

use crate::error::LabError;
use appnet_netkit::{Service, Shutdown};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The `[anycast]` table of the topology.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AnycastSpec {
    /// Prefix of every namespace name the lab creates (stale ones with it are removed at start).
    pub prefix: String,
    /// The zone served on the anycast address.
    pub zone: String,
    /// The name clients resolve (in `zone`).
    pub name: String,
    /// The anycast address (in 198.18.0.0/15), on every replica's loopback.
    pub address: Ipv4Addr,
    /// One site per replica: the replica and the client network nearest to it.
    pub sites: Vec<AnycastSite>,
}

/// A replica namespace and the client namespace routed to it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AnycastSite {
    /// The replica's name (also its namespace's suffix and what its page says).
    pub replica: String,
    /// The client namespace's suffix.
    pub client: String,
    /// The /30 link between them (in 198.18.0.0/15): .1 the client, .2 the replica.
    pub link: Ipv4Addr,
}

/// Whether `a` is in 198.18.0.0/15 (RFC 2544's benchmarking range, never a real host's).
fn benchmarking(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 198 && (o[1] & 0xfe) == 18
}

impl AnycastSpec {
    /// Checks names and addresses (every address in 198.18.0.0/15, /30-aligned distinct links).
    pub fn validate(&self) -> Result<(), String> {
        if !benchmarking(self.address) {
            return Err(format!("anycast address {} is not in 198.18.0.0/15", self.address));
        }
        if self.prefix.is_empty() || !self.prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("anycast prefix {:?}: letters, digits and '-' only", self.prefix));
        }
        if self.sites.is_empty() {
            return Err("anycast needs at least one site".into());
        }
        let mut links = Vec::new();
        for s in &self.sites {
            for n in [&s.replica, &s.client] {
                if n.is_empty() || n.len() > 40 || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return Err(format!("anycast name {n:?}: 1-40 letters, digits and '-'"));
                }
            }
            if !benchmarking(s.link) || u32::from(s.link) % 4 != 0 {
                return Err(format!("anycast link {} is not a /30 network in 198.18.0.0/15", s.link));
            }
            if links.contains(&s.link) || (u32::from(self.address) & !3) == u32::from(s.link) {
                return Err(format!("anycast link {} is used twice", s.link));
            }
            links.push(s.link);
        }
        Ok(())
    }

    /// The namespace name of `suffix`.
    pub fn ns(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }
}

/// The address `n` of a /30 link (1: the client, 2: the replica).
fn host(link: Ipv4Addr, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(link) + n)
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e} (is iproute2 installed?)", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The network namespaces that exist now (`ip netns list`).
pub fn list_namespaces() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Removes namespaces named `prefix-...` (left by a lab that was killed); returns how many.
pub fn cleanup_stale(prefix: &str) -> usize {
    let stale: Vec<String> =
        list_namespaces().into_iter().filter(|n| n.starts_with(&format!("{prefix}-"))).collect();
    stale.iter().filter(|n| ip(&["netns", "del", n]).is_ok()).count()
}

/// Whether this process runs as root (network namespaces need CAP_SYS_ADMIN).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `f` on a new thread that has joined the network namespace `ns`: every socket `f`
/// creates belongs to that namespace. Returns `f`'s result.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let path = PathBuf::from("/var/run/netns").join(ns);
    let name = ns.to_string();
    std::thread::Builder::new()
        .name(format!("netns-{ns}"))
        .spawn(move || -> Result<T, String> {
            enter(&path).map_err(|e| format!("cannot enter network namespace {name}: {e}"))?;
            Ok(f())
        })
        .map_err(|e| e.to_string())?
        .join()
        .map_err(|_| format!("the thread in namespace {ns} panicked"))?
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)?;
    // SAFETY: `file` is an open namespace file descriptor; setns only affects this thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The anycast network: namespaces, links and routes, and the servers in the replica
/// namespaces. Dropping it stops the servers and deletes every namespace it created.
pub struct AnycastNet {
    spec: AnycastSpec,
    created: Vec<String>,
    servers: Vec<(Shutdown, std::thread::JoinHandle<()>)>,
}

impl AnycastNet {
    /// Builds the network and starts the servers (root only). Stale namespaces with the
    /// spec's prefix are removed first; on any failure everything created is removed again.
    pub fn create(spec: &AnycastSpec, dir: &Path) -> Result<AnycastNet, LabError> {
        let fail = LabError::Netns;
        if !is_root() {
            return Err(fail("network namespaces need root: run `sudo appnet lab --netns`".into()));
        }
        spec.validate().map_err(fail)?;
        let removed = cleanup_stale(&spec.prefix);
        if removed > 0 {
            tracing::info!("removed {removed} stale {}-* namespace(s)", spec.prefix);
        }
        let mut net = AnycastNet { spec: spec.clone(), created: Vec::new(), servers: Vec::new() };
        net.build(dir).map_err(fail)?;
        Ok(net)
    }

    fn build(&mut self, dir: &Path) -> Result<(), String> {
        let spec = self.spec.clone();
        let any = format!("{}/32", spec.address);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let zone_file = dir.join("anycast.zone");
        std::fs::write(&zone_file, zone_text(&spec)).map_err(|e| format!("{}: {e}", zone_file.display()))?;
        for (i, site) in spec.sites.iter().enumerate() {
            let (r, c) = (spec.ns(&site.replica), spec.ns(&site.client));
            for ns in [&r, &c] {
                ip(&["netns", "add", ns])?;
                self.created.push(ns.clone());
                ip(&["-n", ns, "link", "set", "lo", "up"])?;
            }
            // Created straight inside the two namespaces: the host's namespace is never touched.
            let (down, up) = (format!("down{i}"), "uplink".to_string());
            ip(&["link", "add", &up, "netns", &c, "type", "veth", "peer", "name", &down, "netns", &r])?;
            let (ca, ra) = (format!("{}/30", host(site.link, 1)), format!("{}/30", host(site.link, 2)));
            ip(&["-n", &c, "addr", "add", &ca, "dev", &up])?;
            ip(&["-n", &r, "addr", "add", &ra, "dev", &down])?;
            ip(&["-n", &c, "link", "set", &up, "up"])?;
            ip(&["-n", &r, "link", "set", &down, "up"])?;
            ip(&["-n", &r, "addr", "add", &any, "dev", "lo"])?;
            // The client's route to the anycast address: its own site's replica.
            ip(&["-n", &c, "route", "add", &any, "via", &host(site.link, 2).to_string()])?;
            let root = dir.join(format!("anycast-{}", site.replica));
            std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
            let page =
                format!("anycast replica {} (namespace {r}) answering for {}\n", site.replica, spec.address);
            std::fs::write(root.join("index.html"), page).map_err(|e| e.to_string())?;
            self.start_servers(&r, root, zone_file.clone())?;
        }
        Ok(())
    }

    /// Starts the web server (port 80) and the DNS server (port 53) on the anycast address in
    /// namespace `ns`, each on its own thread and runtime inside it.
    fn start_servers(&mut self, ns: &str, root: PathBuf, zone_file: PathBuf) -> Result<(), String> {
        let address = IpAddr::V4(self.spec.address);
        let zone = crate::zones::fqdn(&self.spec.zone);
        let shutdown = Shutdown::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let sd = shutdown.clone();
        let path = PathBuf::from("/var/run/netns").join(ns);
        let name = ns.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("netns-{ns}"))
            .spawn(move || {
                let started = (|| -> Result<_, String> {
                    enter(&path).map_err(|e| format!("cannot enter {name}: {e}"))?;
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    let servers = rt.block_on(async {
                        let web = appnet_web::WebConfig {
                            listen: SocketAddr::new(address, 80),
                            root,
                            access_log: false,
                            ..appnet_web::WebConfig::default()
                        };
                        let web = appnet_web::WebServer::bind(web)
                            .await
                            .map_err(|e| format!("web server in {name}: {e}"))?;
                        let dns = appnet_dns::DnsConfig {
                            listen: SocketAddr::new(address, 53),
                            udp_workers: 1,
                            zones: vec![appnet_dns::config::ZoneSource { name: Some(zone), file: zone_file }],
                            ..appnet_dns::DnsConfig::default()
                        };
                        let dns = appnet_dns::DnsServer::bind(dns)
                            .await
                            .map_err(|e| format!("DNS server in {name}: {e}"))?;
                        Ok::<_, String>((web, dns))
                    })?;
                    Ok((rt, servers))
                })();
                match started {
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                    Ok((rt, (web, dns))) => {
                        let _ = ready_tx.send(Ok(()));
                        rt.block_on(async {
                            let _ = tokio::join!(web.run(sd.clone()), dns.run(sd.clone()));
                        });
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        let ready = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| format!("the servers in {ns} did not start"))?;
        self.servers.push((shutdown, thread));
        ready
    }

    /// The spec it was built from.
    pub fn spec(&self) -> &AnycastSpec {
        &self.spec
    }

    /// The namespaces it created.
    pub fn namespaces(&self) -> &[String] {
        &self.created
    }

    /// Lines for the lab's directory.
    pub fn directory(&self) -> String {
        let mut out = format!(
            "Anycast (network namespaces): {} → {} on every replica's loopback\n",
            self.spec.name, self.spec.address
        );
        for s in &self.spec.sites {
            out.push_str(&format!(
                "  {:<28} routed to {:<28} try: ip netns exec {} curl http://{}/\n",
                self.spec.ns(&s.client),
                self.spec.ns(&s.replica),
                self.spec.ns(&s.client),
                self.spec.address
            ));
        }
        out
    }

    /// Stops the servers and removes the namespaces (also done on drop).
    pub fn remove(&mut self) {
        for (sd, _) in &self.servers {
            sd.trigger();
        }
        for (_, t) in self.servers.drain(..) {
            let _ = t.join();
        }
        for ns in self.created.drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                tracing::warn!("could not remove network namespace {ns}: {e}");
            }
        }
    }
}

impl Drop for AnycastNet {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The anycast zone: its name server and the anycast name, both at the anycast address.
pub fn zone_text(spec: &AnycastSpec) -> String {
    let zone = crate::zones::fqdn(&spec.zone);
    let name = crate::zones::fqdn(&spec.name);
    format!(
        "$ORIGIN {zone}\n$TTL 300\n@ IN SOA ns.{zone} hostmaster.{zone} 1 3600 600 86400 300\n@ IN NS ns.{zone}\nns.{zone} IN A {a}\n{name} IN A {a}\n",
        a = spec.address
    )
}

/// What one client saw: the address its name resolved to, and the page it got from there.
#[derive(Debug, Clone)]
pub struct Visit {
    /// The client namespace.
    pub client: String,
    /// The address the name resolved to (asking the DNS server at the anycast address).
    pub resolved: IpAddr,
    /// The page's first line (it names the replica).
    pub page: String,
}

/// From inside client namespace `client`: resolves the anycast name (asking the anycast DNS
/// address) and fetches `http://NAME/` from the address it got.
pub fn visit(spec: &AnycastSpec, client: &str) -> Result<Visit, String> {
    let ns = spec.ns(client);
    let url = format!("http://{}/", spec.name);
    let dns = SocketAddr::new(IpAddr::V4(spec.address), 53);
    let client_name = ns.clone();
    in_netns(&ns, move || {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let resolved =
                tokio::time::timeout(Duration::from_secs(5), appnet_resolver::lookup::lookup_url(&url, dns))
                    .await
                    .map_err(|_| format!("{dns} did not answer"))?
                    .map_err(|e| e.to_string())?;
            let resp = appnet_web::client::get_at(
                &url,
                appnet_web::client::Proto::Http11,
                None,
                Duration::from_secs(5),
                Some(resolved),
            )
            .await
            .map_err(|e| e.to_string())?;
            let page = String::from_utf8_lossy(resp.body()).lines().next().unwrap_or("").to_string();
            Ok(Visit { client: client_name, resolved, page })
        })
    })?
}

/// The anycast tour scene: two clients resolve the same name to the same address, and reach
/// different replicas. Blocking (threads in namespaces): call it from `spawn_blocking`.
pub fn scene(spec: &AnycastSpec, say: &mut dyn FnMut(String)) -> Result<(), String> {
    say(format!("\n== Anycast — {} is {} at every replica; local routes pick one", spec.name, spec.address));
    say("   (\"same address from the DNS name but local routes\"): each client namespace resolves the".into());
    say(format!(
        "   name at the anycast DNS address {}:53, then fetches http://{}/.",
        spec.address, spec.name
    ));
    let mut pages = Vec::new();
    for site in &spec.sites {
        let v = visit(spec, &site.client)?;
        say(format!("   {:<24} {} → {} → \"{}\"", v.client, spec.name, v.resolved, v.page));
        if v.resolved != IpAddr::V4(spec.address) {
            return Err(format!("anycast: {} resolved {} to {}", v.client, spec.name, v.resolved));
        }
        if !v.page.contains(&site.replica) {
            return Err(format!("anycast: {} reached {:?}, not {}", v.client, v.page, site.replica));
        }
        pages.push(v.page);
    }
    pages.dedup();
    if spec.sites.len() >= 2 && pages.len() < 2 {
        return Err("anycast: every client reached the same replica".into());
    }
    say("   Same name, same address, different machines: each network's routes lead to its nearest".into());
    say("   replica (the way anycast DNS root servers and CDNs spread load).".into());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AnycastSpec {
        crate::Topology::default().anycast.expect("the default lab has an anycast table")
    }

    #[test]
    fn the_default_spec_is_valid_and_in_the_benchmarking_range() {
        let s = spec();
        assert_eq!(s.validate(), Ok(()));
        assert!(s.sites.len() >= 2);
    }

    #[test]
    fn addresses_outside_the_range_and_reused_links_are_refused() {
        let mut s = spec();
        s.address = "10.0.0.1".parse().unwrap();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.sites[1].link = s.sites[0].link;
        assert!(s.validate().is_err());
        let mut s = spec();
        s.sites[0].link = "198.18.1.1".parse().unwrap();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.prefix = "bad name".into();
        assert!(s.validate().is_err());
    }

    #[test]
    fn the_zone_names_the_anycast_address() {
        let s = spec();
        let z = zone_text(&s);
        assert!(z.contains(&format!("{} IN A {}", crate::zones::fqdn(&s.name), s.address)), "{z}");
    }
}
