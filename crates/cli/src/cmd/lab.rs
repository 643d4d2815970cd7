//! `appnet lab`: the textbook's Internet on 127.0.0.0/8, its directory, and the guided tour.

use crate::context::Context;
use appnet_lab::{Lab, Topology};
use appnet_netkit::Shutdown;
use appnet_netkit::harness::TempDir;
use clap::Args;
use std::io::Write;

/// Flags for `appnet lab`; the `[lab]` table of --config replaces the embedded topology.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    appnet lab                       start everything, print the directory, run until Ctrl-C\n  \
    appnet lab --tour                run the textbook's scenes (DNS, Web, caches, CDN, torrent, Chord), then exit\n  \
    sudo appnet lab --dns-port 53    standard port, so any resolver can use the lab\n  \
    sudo appnet lab --netns --tour   also anycast: replicas in network namespaces sharing one address\n  \
    sudo appnet lab --tour --link rtt=40ms   the Web scene with cis.poly.edu behind an emulated 40 ms link\n  \
    dig @127.0.4.1 -p 10053 gaia.cs.umass.edu   ask the lab's local DNS server dns.poly.edu")]
pub struct LabArgs {
    /// Run the guided tour (DNS, the Web page, the institutional cache, the CDN, Alice joining a
    /// torrent, the Chord ring, FTP's control and data connections), then stop the lab.
    #[arg(long)]
    tour: bool,
    /// Also build the anycast network in Linux network namespaces (root only): replicas sharing
    /// one address, each client namespace routed to its nearest; all removed when the lab stops.
    #[arg(long)]
    netns: bool,
    /// Also build NATs in network namespaces (root only; without root the lab starts without
    /// them): a supernode and a TURN server, Alice and Carol behind endpoint-independent NATs,
    /// Bob behind a symmetric one (tour scene 16); all removed when the lab stops.
    #[arg(long)]
    nat: bool,
    /// Put cis.poly.edu behind the packet-level link emulator (root), e.g. `rtt=40ms,loss=0`
    /// (keys as `appnet link`): the Web scene (6) then fetches over it, so its times show the
    /// textbook's RTT counts; the namespaces stay up for your own tools while the lab runs.
    /// Without root the lab stays on loopback and says so.
    #[arg(long, value_name = "SPEC", value_parser = parse_link)]
    link: Option<appnet_link::LinkSpec>,
    /// Serve the lab's page (a map of the hosts and a live message-sequence chart of every
    /// exchange, with buttons for the scenes) on ADDR [default: 127.0.0.1:8000]; the lab then
    /// stays up until Ctrl-C, also after --tour (which waits up to 60 s for a page to attach).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8000")]
    ui: Option<std::net::SocketAddr>,
    /// Connections the page's server accepts in all [default: 64].
    #[arg(long, value_name = "N", default_value_t = 64)]
    ui_max_connections: usize,
    /// Connections the page's server accepts from one address [default: 32].
    #[arg(long, value_name = "N", default_value_t = 32)]
    ui_max_per_ip: usize,
    #[command(flatten)]
    options: LabOptions,
    /// Where to write (and keep) the generated zone files and root hints [default: a temporary
    /// directory removed when the lab stops].
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
}

/// The topology flags of `appnet lab`; each overrides the `[lab]` table of --config.
#[derive(Args, Debug, Default)]
pub struct LabOptions {
    /// The port every lab DNS server listens on [default: 10053; 53 needs root].
    #[arg(long, value_name = "N")]
    dns_port: Option<u16>,
    /// The port every lab web server listens on [default: 8080; 80 needs root].
    #[arg(long, value_name = "N")]
    web_port: Option<u16>,
    /// The control port of every lab FTP server [default: 2121; 21 needs root].
    #[arg(long, value_name = "N")]
    ftp_port: Option<u16>,
    /// Plain DNS: no zone signed, no validation, no registrar updates (the lab signs every zone
    /// and its resolvers validate by default).
    #[arg(long)]
    no_dnssec: bool,
}

impl LabOptions {
    /// Puts the flags given over `topology`; absent flags keep its values.
    pub fn apply(self, topology: &mut Topology) {
        super::set(&mut topology.dns_port, self.dns_port);
        super::set(&mut topology.web_port, self.web_port);
        if let Some(port) = self.ftp_port {
            topology.ftps.iter_mut().for_each(|f| f.port = port);
        }
        if self.no_dnssec {
            topology.dnssec = false;
        }
    }
}

/// How long `--tour --ui` waits for a page before it runs the tour unwatched.
const PAGE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `--link SPEC`: the emulator's settings (`rtt=40ms,loss=0`).
fn parse_link(text: &str) -> Result<appnet_link::LinkSpec, String> {
    appnet_link::LinkSpec::parse(text).map_err(|e| e.to_string())
}

/// `--link SPEC`: cis.poly.edu behind the emulated link (root), kept in `lab.link` so scene 6
/// runs over it; without root, a line saying the lab stays on loopback.
async fn link_up(lab: &mut appnet_lab::Lab, spec: appnet_link::LinkSpec) -> anyhow::Result<()> {
    if !appnet_lab::netns::is_root() {
        println!("--link needs root (network namespaces, TUN): the lab runs on loopback only (scene 6 too)");
        return Ok(());
    }
    let Some(web) = lab.topology.webs.iter().find(|w| w.name == "www.someschool.edu").cloned() else {
        anyhow::bail!("--link: the lab runs no www.someschool.edu for scene 6");
    };
    let dir = lab.dir.clone();
    let net = tokio::task::spawn_blocking(move || appnet_lab::link_scene::LinkNet::up(&spec, &web, &dir))
        .await?
        .map_err(|e| anyhow::anyhow!("--link: {e}"))?;
    println!("{}", net.directory());
    lab.link = Some(net);
    Ok(())
}

/// Runs `appnet lab`.
pub async fn run(args: LabArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut topology: Topology = ctx.section_or("lab", Topology::default)?;
    args.options.apply(&mut topology);
    // Without --dir the generated files live in a scratch directory removed when the lab stops.
    let scratch;
    let dir = match args.dir {
        Some(dir) => dir,
        None => {
            scratch = TempDir::new("lab");
            scratch.to_path_buf()
        }
    };
    // Anycast first (it removes stale namespaces and needs root): fail before starting the rest.
    let anycast = match (args.netns, topology.anycast.clone()) {
        (false, _) => None,
        (true, None) => anyhow::bail!("--netns: the topology has no [anycast] table"),
        (true, Some(spec)) => {
            let d = dir.clone();
            Some(
                tokio::task::spawn_blocking(move || appnet_lab::netns::AnycastNet::create(&spec, &d))
                    .await??,
            )
        }
    };
    // Removed (namespaces, nftables tables) when `nat` is dropped, on every way out.
    let nat = match args.nat {
        false => None,
        true if !appnet_lab::netns::is_root() => {
            println!("--nat needs root (network namespaces, nftables): the lab starts without the NATs");
            None
        }
        true => Some(appnet_lab::nat_lab::NatNet::create(&dir).await?),
    };
    let mut lab = Lab::start(topology, &dir).await?;
    println!("{}", lab.directory());
    if let Some(spec) = args.link.clone() {
        link_up(&mut lab, spec).await?;
    }
    if let Some(net) = &anycast {
        println!("{}", net.directory());
    }
    if let Some(net) = &nat {
        println!("{}", net.directory());
    }
    let ui = match args.ui {
        None => None,
        Some(listen) => {
            let config = appnet_lab::ui::UiConfig {
                listen,
                max_connections: args.ui_max_connections.max(1),
                max_per_ip: args.ui_max_per_ip.max(1),
                ..Default::default()
            };
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| anyhow::anyhow!("--ui: cannot listen on {listen}: {e}"))?;
            println!("The lab's page: http://{}/", listener.local_addr()?);
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            let stop = Shutdown::new();
            let json = appnet_lab::ui::page::lab_json(&lab);
            tokio::spawn(appnet_lab::ui::serve(listener, config, json, tx, stop.clone()));
            Some((rx, stop))
        }
    };
    if let Some((mut commands, stop)) = ui {
        let mut say = |line: String| {
            println!("{line}");
            let _ = std::io::stdout().flush();
        };
        let shutdown = Shutdown::new();
        shutdown.trigger_on_signals();
        if args.tour {
            // The tour waits (bounded) for a page, so the page draws it from the first exchange.
            println!(
                "Open the page to watch the tour: it starts when a page attaches, or in {} s anyway.",
                PAGE_WAIT.as_secs()
            );
            let _ = std::io::stdout().flush();
            tokio::select! {
                _ = appnet_lab::ui::wait_for_page(PAGE_WAIT) => {}
                _ = shutdown.wait() => {}
            }
            let r = tokio::select! {
                r = appnet_lab::tour::run(&mut lab, &mut say) => r,
                _ = shutdown.wait() => Ok(()),
            };
            if let Err(e) = r {
                println!("the tour stopped: {e}");
            }
        }
        println!("The lab is up with its page. Ctrl-C stops it.");
        let _ = std::io::stdout().flush();
        loop {
            let command = tokio::select! {
                c = commands.recv() => c,
                _ = shutdown.wait() => None,
            };
            let Some(command) = command else { break };
            let r = tokio::select! {
                r = appnet_lab::ui::commands::run(&mut lab, command, &mut say) => r,
                _ = shutdown.wait() => break,
            };
            if let Err(e) = r {
                say(format!("   (stopped: {e})"));
            }
        }
        stop.trigger();
        lab.stop().await;
        drop(anycast);
        return Ok(());
    }
    if args.tour {
        let mut say = |line: String| {
            println!("{line}");
            let _ = std::io::stdout().flush();
        };
        // Ctrl-C ends the tour too, so the namespaces are removed (`anycast` is dropped).
        let interrupted = Shutdown::new();
        interrupted.trigger_on_signals();
        let mut result = tokio::select! {
            r = appnet_lab::tour::run(&mut lab, &mut say) => r,
            _ = interrupted.wait() => Err("interrupted".to_string()),
        };
        if let (Ok(()), Some(net)) = (&result, &anycast) {
            let spec = net.spec().clone();
            let lines = tokio::task::spawn_blocking(move || {
                let mut lines = Vec::new();
                let r = appnet_lab::netns::scene(&spec, &mut |l| lines.push(l));
                (lines, r)
            });
            let (lines, r) = lines.await?;
            lines.into_iter().for_each(&mut say);
            result = r;
        }
        lab.stop().await;
        drop(anycast);
        return result.map_err(|e| anyhow::anyhow!("the tour stopped: {e}"));
    }
    println!("The lab is up. Ctrl-C stops it.");
    let _ = std::io::stdout().flush();
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    shutdown.wait().await;
    lab.stop().await;
    drop(anycast);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_topology_and_absent_flags_keep_it() {
        let mut topology = Topology::default();
        let web = topology.web_port;
        LabOptions { dns_port: Some(53), web_port: None, ftp_port: Some(21), no_dnssec: false }
            .apply(&mut topology);
        assert_eq!((topology.dns_port, topology.web_port, topology.ftps[0].port), (53, web, 21));
        LabOptions::default().apply(&mut topology);
        assert_eq!((topology.dns_port, topology.web_port, topology.ftps[0].port), (53, web, 21));
    }
}
