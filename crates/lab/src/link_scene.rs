//! `appnet lab --link SPEC` (root): cis.poly.edu behind the packet-level link emulator, so the
//! tour's Web scene (scene 6) measures real round trips and the textbook's RTT counts show in
//! its times.
//!
//! [`LinkNet::up`] brings up the emulated link (namespaces `appnet-lab-link-a` and `-b`) and,
//! in namespace B, a web server for www.someschool.edu with the lab's site (the page and its
//! ten images). While the lab runs, scene 6 — in the tour, from the page's buttons, alone —
//! fetches from namespace A over the link ([`LinkNet::scene`]); every exchange goes on the
//! event bus as on loopback. Without the tour the namespaces stay up for the user
//! ([`LinkNet::directory`] prints the commands). Everything is removed when the `LinkNet` is
//! dropped (the lab stopping, an error, Ctrl-C or SIGTERM).

use crate::http_scene::{self, Fetch, Mode};
use crate::topology::WebSpec;
use appnet_link::emulator::{ADDR_A, ADDR_B};
use appnet_link::{Link, LinkSpec};
use appnet_netkit::{Service, Shutdown};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// The link's name (namespaces `appnet-lab-link-a` and `-b`).
pub const LINK_NAME: &str = "appnet-lab-link";

/// The page of scene 6.
pub const PAGE: &str = "/someDepartment/home.index";

/// The name of the host behind the link (the client of scene 6).
const CLIENT: &str = "cis.poly.edu";

/// The lab's emulated link with www.someschool.edu's site served across it. Dropping it stops
/// the server and removes the namespaces and devices.
pub struct LinkNet {
    spec: LinkSpec,
    shutdown: Shutdown,
    server: Option<std::thread::JoinHandle<()>>,
    link: Option<Link>,
}

impl LinkNet {
    /// Brings the link up with `spec` and serves `web`'s site (written again under `dir`) on
    /// 198.18.0.2:80 in namespace B (blocking; root only). Stale namespaces of the same name,
    /// left by a killed lab, are removed first.
    pub fn up(spec: &LinkSpec, web: &WebSpec, dir: &Path) -> Result<LinkNet, String> {
        let root = crate::sites::write_site(web, &dir.join("link-site"), None).map_err(|e| e.to_string())?;
        let link = Link::up(LINK_NAME, spec, 1).map_err(|e| e.to_string())?;
        let mut net =
            LinkNet { spec: spec.clone(), shutdown: Shutdown::new(), server: None, link: Some(link) };
        let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (ns_b, sd) = (net.ns_b(), net.shutdown.clone());
        let server = std::thread::Builder::new().name("lab-link-web".into()).spawn(move || {
            // A thread of its own: setns changes only this thread's namespace.
            let rt = appnet_link::netns::enter_named(&ns_b).map_err(|e| e.to_string()).and_then(|()| {
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())
            });
            let rt = match rt {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let config = appnet_web::WebConfig {
                    listen: SocketAddr::new(IpAddr::V4(ADDR_B), 80),
                    root,
                    access_log: false,
                    ..appnet_web::WebConfig::default()
                };
                match appnet_web::WebServer::bind(config).await {
                    Ok(s) => {
                        let _ = tx.send(Ok(()));
                        let _ = s.run(sd).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("web server in {ns_b}: {e}")));
                    }
                }
            });
        });
        net.server = Some(server.map_err(|e| e.to_string())?);
        // On an error `net` is dropped here, which removes the namespaces.
        rx.recv().map_err(|_| "the link's web server thread ended early".to_string())??;
        Ok(net)
    }

    /// The client's namespace (cis.poly.edu, 198.18.0.1).
    pub fn ns_a(&self) -> String {
        format!("{LINK_NAME}-a")
    }

    /// The server's namespace (www.someschool.edu's site, 198.18.0.2).
    pub fn ns_b(&self) -> String {
        format!("{LINK_NAME}-b")
    }

    /// The settings of the link.
    pub fn spec(&self) -> &LinkSpec {
        &self.spec
    }

    /// The settings as one line: the round trip, then each direction's impairments.
    fn settings(&self) -> String {
        let rtt = self.spec.rtt().as_secs_f64() * 1000.0;
        if self.spec.a2b == self.spec.b2a {
            format!("RTT {rtt:.0} ms; each way {}", self.spec.a2b)
        } else {
            format!("RTT {rtt:.0} ms; a→b {}, b→a {}", self.spec.a2b, self.spec.b2a)
        }
    }

    /// What the lab prints about the link: the namespaces and how to use them.
    pub fn directory(&self) -> String {
        format!(
            "emulated link ({}): {CLIENT} in namespace {} ({ADDR_A}), www.someschool.edu's site on {ADDR_B}:80 in {}\n\
             try: sudo ip netns exec {} curl -s -o /dev/null -w '%{{time_total}} s\\n' http://{ADDR_B}{PAGE}\n\
             \x20    sudo ip netns exec {} ping -c 3 {ADDR_B}\n",
            self.settings(),
            self.ns_a(),
            self.ns_b(),
            self.ns_a(),
            self.ns_a(),
        )
    }

    /// Fetches the page and its images from namespace A in `modes` order, handing each
    /// [`Fetch`] to `each` as it completes (the scene prints it at once).
    pub async fn fetch(&self, modes: &[Mode], mut each: impl FnMut(Fetch)) -> Result<(), String> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (ns_a, modes) = (self.ns_a(), modes.to_vec());
        // A fresh thread (never a pooled one): it joins namespace A for good.
        let client = std::thread::Builder::new()
            .name("lab-link-client".into())
            .spawn(move || {
                let run = || -> Result<(), String> {
                    appnet_link::netns::enter_named(&ns_a).map_err(|e| e.to_string())?;
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    let server = SocketAddr::new(IpAddr::V4(ADDR_B), 80);
                    rt.block_on(async {
                        for mode in modes {
                            let f = http_scene::fetch_page(
                                IpAddr::V4(ADDR_A),
                                server,
                                "www.someschool.edu",
                                PAGE,
                                mode,
                            )
                            .await?;
                            let _ = tx.send(Ok(f));
                        }
                        Ok(())
                    })
                };
                if let Err(e) = run() {
                    let _ = tx.send(Err(e));
                }
            })
            .map_err(|e| e.to_string())?;
        let mut result = Ok(());
        while let Some(got) = rx.recv().await {
            match got {
                Ok(f) => each(f),
                Err(e) => result = Err(e),
            }
        }
        let _ = tokio::task::spawn_blocking(move || client.join()).await;
        result
    }

    /// Scene 6 over the link: the three ways of fetching the page, each line printed as the
    /// fetch completes, with the textbook's RTT count next to the measured time in RTTs.
    pub async fn scene(&self, say: &mut dyn FnMut(String)) -> Result<(), String> {
        let rtt = self.spec.rtt().as_secs_f64();
        say(format!(
            "{CLIENT} ({ADDR_A}, namespace {}) fetches http://www.someschool.edu{PAGE} over the emulated link",
            self.ns_a()
        ));
        say(format!(
            "   ({}) from www.someschool.edu's site on {ADDR_B} (namespace {})",
            self.settings(),
            self.ns_b()
        ));
        say(format!(
            "   {:<14} {:>11} {:>8} {:>9} {:>14} {:>10} {:>14}",
            "mode", "connections", "objects", "bytes", "textbook RTTs", "measured", "measured RTTs"
        ));
        let mut objects = Vec::new();
        self.fetch(&[Mode::NonPersistent, Mode::Persistent, Mode::Pipelined], |f| {
            let rtts = if rtt > 0.0 { format!("{:.1}", f.elapsed.as_secs_f64() / rtt) } else { "-".into() };
            say(format!(
                "   {:<14} {:>11} {:>8} {:>9} {:>14} {:>8.0}ms {:>14}",
                format!("{:?}", f.mode),
                f.connections,
                f.objects,
                f.bytes,
                f.rtts,
                f.elapsed.as_secs_f64() * 1000.0,
                rtts
            ));
            objects.push(f.objects);
        })
        .await?;
        if let Some(n) = objects.iter().find(|&&n| n != 11) {
            return Err(format!("scene 6 fetched {n} objects, expected the page and ten images"));
        }
        say("   Each RTT now costs what the link says: the measured RTTs follow the textbook's counts —"
            .into());
        say("   2 per object without persistence, 1 per object with it, one for all ten images pipelined —"
            .into());
        say("   plus transmission time and TCP's slow start for the pipelined burst.".into());
        Ok(())
    }
}

impl Drop for LinkNet {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
        drop(self.link.take());
    }
}
