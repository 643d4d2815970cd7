//! `appnet lab --tour --link SPEC` (root): the Web scene (tour scene 6) again with the client
//! behind the packet-level link emulator, so the textbook's RTT counts show in the times: the
//! someschool.edu page and its ten images are served by a web server in namespace B, and
//! cis.poly.edu's fetches (non-persistent, persistent, pipelined) leave namespace A through the
//! emulated link. Every exchange goes on the event bus, as on loopback.

use crate::http_scene::{self, Mode};
use crate::topology::WebSpec;
use appnet_link::emulator::{ADDR_A, ADDR_B};
use appnet_link::{Link, LinkSpec};
use appnet_netkit::{Service, Shutdown};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// The link's name (namespaces `appnet-lab-link-a` and `-b`).
pub const LINK_NAME: &str = "appnet-lab-link";
const PAGE: &str = "/someDepartment/home.index";

/// Runs scene 6 over an emulated link with `spec` (blocking; root only). `web` is the lab's
/// www.someschool.edu, whose site is written again under `dir`.
/// Lines go to `say` as the fetches finish.
pub fn run(spec: &LinkSpec, web: &WebSpec, dir: &Path, say: &(dyn Fn(String) + Sync)) -> Result<(), String> {
    let root = crate::sites::write_site(web, &dir.join("link-site"), None).map_err(|e| e.to_string())?;
    let link = Link::up(LINK_NAME, spec, 1).map_err(|e| e.to_string())?;
    say(format!("6 again — the same page over an emulated link: {}", spec.a2b));
    say(format!(
        "   cis.poly.edu in namespace {} ({ADDR_A}), www.someschool.edu in {} ({ADDR_B})",
        link.ns_a(),
        link.ns_b()
    ));
    let shutdown = Shutdown::new();
    let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let (ns_b, sd) = (link.ns_b(), shutdown.clone());
    let server = std::thread::spawn(move || {
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
                    let _ = tx.send(Err(format!("web server in {}: {e}", LINK_NAME)));
                }
            }
        });
    });
    let ready = rx.recv().map_err(|_| "the web server thread ended early".to_string()).and_then(|r| r);
    let result = ready.and_then(|()| {
        let ns_a = link.ns_a();
        std::thread::scope(|scope| {
            scope
                .spawn(|| -> Result<(), String> {
                    appnet_link::netns::enter_named(&ns_a).map_err(|e| e.to_string())?;
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    rt.block_on(fetch_all(spec.rtt().as_secs_f64(), say))
                })
                .join()
                .map_err(|_| "the client thread panicked".to_string())?
        })
    });
    shutdown.trigger();
    let _ = server.join();
    drop(link);
    result
}

async fn fetch_all(rtt: f64, say: &(dyn Fn(String) + Sync)) -> Result<(), String> {
    say(format!(
        "   {:<14} {:>11} {:>8} {:>14} {:>10} {:>14}",
        "mode", "connections", "objects", "textbook RTTs", "measured", "measured RTTs"
    ));
    let server = SocketAddr::new(IpAddr::V4(ADDR_B), 80);
    for mode in [Mode::NonPersistent, Mode::Persistent, Mode::Pipelined] {
        let f = http_scene::fetch_page(IpAddr::V4(ADDR_A), server, "www.someschool.edu", PAGE, mode).await?;
        let ms = f.elapsed.as_secs_f64() * 1000.0;
        let rtts = if rtt > 0.0 { format!("{:.1}", f.elapsed.as_secs_f64() / rtt) } else { "-".into() };
        say(format!(
            "   {:<14} {:>11} {:>8} {:>14} {:>8.0}ms {:>14}",
            format!("{mode:?}"),
            f.connections,
            f.objects,
            f.rtts,
            ms,
            rtts
        ));
    }
    say("   Now each RTT costs what the link says: the measured RTTs follow the textbook's counts".into());
    say("   (plus transmission time and TCP's slow start for the pipelined burst).".into());
    Ok(())
}
