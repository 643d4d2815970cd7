//! `appnet napster server|share|search|get`: the centralized directory, a sharing peer, and
//! the client that asks the directory and fetches from a peer over HTTP.

use super::set;
use crate::context::Context;
use anyhow::Context as _;
use appnet_netkit::{Service, Shutdown};
use appnet_overlay::http::UploadConfig;
use appnet_overlay::http::download::DownloadOptions;
use appnet_overlay::napster::client;
use appnet_overlay::napster::wire::urn;
use appnet_overlay::napster::{DirectoryConfig, DirectoryServer, ShareConfig, Sharer};
use clap::{Args, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Napster: a directory of who shares what; files go peer to peer over HTTP.
#[derive(Subcommand, Debug)]
#[command(after_help = "Try it:\n  \
    appnet napster server &\n  \
    appnet napster share ~/Music --server 127.0.0.1:8888 --listen 127.0.0.1:6699 &\n  \
    appnet napster search 'hey jude' --server 127.0.0.1:8888\n  \
    appnet napster get 'hey jude' --server 127.0.0.1:8888 -o /tmp")]
pub enum NapsterCmd {
    /// Run the directory: peers announce (address, name, size, SHA-1); searches are answered
    /// from it; a peer's entries go when its connection does.
    Server(ServerArgs),
    /// Share DIR: inform the directory and serve the files over HTTP.
    Share(ShareArgs),
    /// Ask the directory; prints one line per hit: name, size, urn:sha1, peer IP:PORT.
    Search(SearchArgs),
    /// Search, pick the file most peers have, fetch it from all of them over HTTP, verify its SHA-1.
    Get(GetArgs),
}

/// Flags for `napster server`.
#[derive(Args, Debug)]
pub struct ServerArgs {
    #[command(flatten)]
    options: DirectoryOptions,
}

/// The directory's flags; each overrides the `[napster]` table of --config.
#[derive(Args, Debug, Default)]
pub struct DirectoryOptions {
    /// Address to listen on [default: 127.0.0.1:8888].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Most connections at once [default: 1024].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Most connections (peers and searchers) from one address [default: 16].
    #[arg(long, value_name = "N")]
    max_per_ip: Option<usize>,
    /// Entries one peer may announce [default: 10000].
    #[arg(long, value_name = "N")]
    max_entries_per_peer: Option<usize>,
    /// Entries in the whole directory [default: 1000000].
    #[arg(long, value_name = "N")]
    max_entries: Option<usize>,
    /// Hits one search returns [default: 100].
    #[arg(long, value_name = "N")]
    max_results: Option<usize>,
    /// Seconds a connection may stay silent; sharing peers PING within it [default: 60].
    #[arg(long, value_name = "SECS")]
    idle_timeout: Option<u64>,
    /// Seconds a new connection has to send its first line [default: 10].
    #[arg(long, value_name = "SECS")]
    request_timeout: Option<u64>,
    /// Longest command line, e.g. 1024, 4KiB [default: 1024].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size_usize)]
    max_line: Option<usize>,
}

impl DirectoryOptions {
    /// Puts the flags given over `config`; absent flags keep its values.
    pub fn apply(self, config: &mut DirectoryConfig) {
        set(&mut config.listen, self.listen);
        set(&mut config.max_connections, self.max_connections);
        set(&mut config.max_per_ip, self.max_per_ip);
        set(&mut config.max_entries_per_peer, self.max_entries_per_peer);
        set(&mut config.max_entries, self.max_entries);
        set(&mut config.max_results, self.max_results);
        set(&mut config.idle_timeout_secs, self.idle_timeout);
        set(&mut config.request_timeout_secs, self.request_timeout);
        set(&mut config.max_line, self.max_line);
    }
}

/// The HTTP upload side's flags (KaZaA tricks included), shared with `gnutella node`.
#[derive(Args, Debug, Default)]
pub struct UploadOptions {
    /// Files sent at once; more requests are queued [default: 4].
    #[arg(long, value_name = "N")]
    pub max_uploads: Option<usize>,
    /// Peers that may wait in the upload queue (503 with X-Queue) [default: 32].
    #[arg(long, value_name = "N")]
    pub max_queue: Option<usize>,
    /// Seconds a queued peer waits before asking again (X-Queue pollMin) [default: 5].
    #[arg(long, value_name = "SECS")]
    pub poll_min: Option<u64>,
    /// Seconds after which a queued peer that did not ask again loses its place [default: 60].
    #[arg(long, value_name = "SECS")]
    pub poll_max: Option<u64>,
    /// Most HTTP connections at once [default: 256].
    #[arg(long, value_name = "N")]
    pub max_http_connections: Option<usize>,
    /// Most HTTP connections from one address [default: 8].
    #[arg(long, value_name = "N")]
    pub max_http_per_ip: Option<usize>,
    /// Largest HTTP request head, e.g. 8KiB [default: 8KiB].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size_usize)]
    pub max_header: Option<usize>,
}

impl UploadOptions {
    /// Puts the flags given over `config`; absent flags keep its values.
    pub fn apply(self, config: &mut UploadConfig) {
        set(&mut config.max_uploads, self.max_uploads);
        set(&mut config.max_queue, self.max_queue);
        set(&mut config.poll_min_secs, self.poll_min);
        set(&mut config.poll_max_secs, self.poll_max);
        set(&mut config.max_connections, self.max_http_connections);
        set(&mut config.max_per_ip, self.max_http_per_ip);
        set(&mut config.max_header, self.max_header);
    }
}

/// Flags for `napster share`.
#[derive(Args, Debug)]
pub struct ShareArgs {
    /// The directory whose files are shared.
    dir: PathBuf,
    #[command(flatten)]
    options: ShareOptions,
}

/// The sharing peer's flags; each overrides the `[napster-share]` table of --config.
#[derive(Args, Debug, Default)]
pub struct ShareOptions {
    /// The directory server [default: 127.0.0.1:8888].
    #[arg(long, value_name = "ADDR")]
    server: Option<SocketAddr>,
    /// Address the HTTP side listens on and announces [default: 127.0.0.1:6699].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Seconds between keep-alive PINGs and directory reconnection attempts [default: 20].
    #[arg(long, value_name = "SECS")]
    keepalive: Option<u64>,
    #[command(flatten)]
    upload: UploadOptions,
}

impl ShareOptions {
    /// Puts the flags given over `config`; absent flags keep its values.
    pub fn apply(self, config: &mut ShareConfig) {
        set(&mut config.server, self.server);
        set(&mut config.upload.listen, self.listen);
        set(&mut config.keepalive_secs, self.keepalive);
        self.upload.apply(&mut config.upload);
    }
}

/// Flags for `napster search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Keywords; every one must be a word of the file name.
    keywords: String,
    /// The directory server.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8888")]
    server: SocketAddr,
    /// Seconds to wait for the answer.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout: u64,
}

/// Flags for `napster get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// Keywords of the file to fetch.
    keywords: String,
    /// The directory server.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8888")]
    server: SocketAddr,
    /// Directory to write the file into (an existing file is never replaced).
    #[arg(short = 'o', long = "out", value_name = "DIR", default_value = ".")]
    out: PathBuf,
    /// Seconds to wait for the directory and for each read from a peer.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    timeout: u64,
}

/// Runs a `napster` subcommand.
pub async fn run(cmd: NapsterCmd, ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        NapsterCmd::Server(args) => {
            let mut config: DirectoryConfig = ctx.section("napster")?;
            args.options.apply(&mut config);
            let listen = config.listen;
            let server =
                DirectoryServer::bind(config).await.with_context(|| format!("cannot listen on {listen}"))?;
            println!("appnet napster: directory on {} (Ctrl-C to stop)", server.local_addr());
            serve(server).await
        }
        NapsterCmd::Share(args) => {
            let mut config: ShareConfig = ctx.section("napster-share")?;
            args.options.apply(&mut config);
            let listen = config.upload.listen;
            let sharer = Sharer::bind(config.clone(), &args.dir)
                .await
                .with_context(|| format!("cannot share {} on {listen}", args.dir.display()))?;
            println!(
                "appnet napster: sharing {} files from {} over HTTP on {}, directory {}",
                sharer.index().len(),
                args.dir.display(),
                sharer.local_addr(),
                config.server
            );
            serve(sharer).await
        }
        NapsterCmd::Search(args) => {
            let hits =
                client::search(args.server, &args.keywords, Duration::from_secs(args.timeout.max(1))).await?;
            let mut out = std::io::stdout().lock();
            for h in &hits {
                writeln!(out, "{}\t{}\t{}\t{}", h.name, h.size, urn(&h.sha1), h.addr)?;
            }
            if hits.is_empty() {
                eprintln!("no hits for {:?}", args.keywords);
            }
            Ok(())
        }
        NapsterCmd::Get(args) => {
            let t = Duration::from_secs(args.timeout.max(1));
            let opts = DownloadOptions { io_timeout: t, ..DownloadOptions::default() };
            let (hit, done) = client::get(args.server, &args.keywords, &args.out, t, opts).await?;
            let from: Vec<String> = done.from.iter().map(|(a, n)| format!("{a} ({n} bytes)")).collect();
            println!("{}\t{}\t{}\tfrom {}", done.path.display(), hit.size, urn(&hit.sha1), from.join(", "));
            Ok(())
        }
    }
}

async fn serve<S: Service>(service: S) -> anyhow::Result<()> {
    let _ = std::io::stdout().flush();
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    service.run(shutdown).await.map_err(|e| anyhow::anyhow!(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_and_absent_flags_keep_it() {
        let mut config = ShareConfig::default();
        config.upload.max_queue = 3;
        let options = ShareOptions {
            keepalive: Some(2),
            upload: UploadOptions { max_uploads: Some(1), ..UploadOptions::default() },
            ..ShareOptions::default()
        };
        options.apply(&mut config);
        assert_eq!((config.keepalive_secs, config.upload.max_uploads, config.upload.max_queue), (2, 1, 3));
        let mut d = DirectoryConfig::default();
        DirectoryOptions { max_results: Some(5), ..DirectoryOptions::default() }.apply(&mut d);
        assert_eq!((d.max_results, d.max_per_ip), (5, 16));
    }
}
