//! `appnet web serve|get`: the static-site web server and a small client.

use super::set;
use crate::context::Context;
use anyhow::Context as _;
use appnet_netkit::{Service, Shutdown};
use appnet_web::client::{self, Proto};
use appnet_web::{WebConfig, WebServer};
use clap::{Args, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The web server and client.
#[derive(Subcommand, Debug)]
#[command(after_help = "Try it:\n  appnet web serve --root ./site &\n  curl -i http://127.0.0.1:8080/")]
pub enum WebCmd {
    /// Serve static sites over HTTP/1.0, HTTP/1.1 and HTTP/2 (h2c, or h2 over TLS).
    #[command(after_help = "Examples:\n  \
        appnet web serve --root ./site                         http://127.0.0.1:8080/\n  \
        appnet web serve --root ./a --vhost www.foo.com=./foo   virtual hosts by Host header\n  \
        appnet web serve --root ./site --tls --listen 127.0.0.1:8443\n                                                          \
        HTTPS with a lab-CA certificate (prints the curl --cacert line)\n  \
        appnet web serve --root ./site --cert cert.pem --key key.pem\n  \
        appnet web serve --root ./site --allow-write            PUT and DELETE files\n\n\
        Built in: /cart (a cookie shopping cart) and /echo (shows your request); --no-apps turns them off.\n\
        Config: a [web] table in --config (cache rules, redirects, push lists, limits); flags override it.")]
    Serve(ServeArgs),
    /// Fetch a URL and print the body (-i: the status line and headers too).
    #[command(after_help = "Examples:\n  \
        appnet web get http://127.0.0.1:8080/\n  \
        appnet web get -i --http1.0 http://127.0.0.1:8080/index.html\n  \
        appnet web get --http2 http://127.0.0.1:8080/            h2c with prior knowledge\n  \
        appnet web get --http2 https://localhost:8443/ --cacert ~/.local/share/appnet/lab-ca/ca.pem")]
    Get(GetArgs),
    /// A caching HTTP proxy: forward (clients use it with curl -x) or reverse (--reverse URL).
    #[command(after_help = "Examples:\n  \
        appnet web proxy                                       forward proxy on 127.0.0.1:3128\n  \
        curl -x http://127.0.0.1:3128 http://example.com/      (CONNECT for https:// too)\n  \
        appnet web proxy --reverse http://127.0.0.1:8080 --listen 127.0.0.1:6081\n  \
        appnet web proxy --reverse http://origin:80 --cache-dir /var/cache/appnet --disk-size 10GiB\n  \
        appnet web proxy --reverse https://origin.example --tls --listen 127.0.0.1:6443\n                                                          \
        HTTPS on both sides (lab-CA certificate; prints the curl --cacert line)\n  \
        curl -X PURGE http://127.0.0.1:6081/page.html          drop a cached object (--purge-allow)\n  \
        curl http://127.0.0.1:6081/metrics                     hits, misses, revalidations, hit ratio\n\n\
        Responses carry X-Cache (HIT, MISS, REVALIDATED, STALE, PASS) and Cache-Status (RFC 9211).\n\
        Config: a [proxy] table in --config (every flag, plus origins per host); flags override it.")]
    Proxy(Box<super::proxy::ProxyArgs>),
    /// The CDN's DNS: answers a CDN name with the nearest healthy replica for each resolver.
    #[command(after_help = "Examples:\n  \
        appnet web cdn --listen 127.0.0.1:10053 \\\n      \
          --replica east=127.0.20.1@127.0.20.1:8080 --replica west=127.0.20.2@127.0.20.2:8080 \\\n      \
          --network 127.0.4.0/24=east,west --network 127.0.5.0/24=west,east\n  \
        dig @127.0.0.1 -p 10053 a128.g.akamai.net           the replica nearest to the asker\n\n\
        Replicas are usually appnet web proxy --reverse instances; dead ones (failed HTTP health\n\
        checks) are not handed out. Config: a [cdn] table in --config; flags override it.")]
    Cdn(super::proxy::CdnArgs),
    /// CDN push: make replicas (appnet web proxy --push-secret-file) fetch and store objects
    /// before anyone asks; prints per replica and URL: stored, not-stored (and why) or failed.
    #[command(after_help = "Examples:\n  \
        head -c 32 /dev/urandom | base64 > push.secret           shared with every replica\n  \
        appnet web proxy --reverse http://127.0.0.1:8080 --listen 127.0.0.1:6081 --push-secret-file push.secret\n  \
        appnet web push http://www.example.com:6081/logo.png --replica 127.0.0.1:6081 --secret-file push.secret\n\n\
        Each push is an HMAC-SHA256 of the timestamp and the URL list (X-Appnet-Push-Timestamp,\n\
        X-Appnet-Push-Signature); replicas refuse bad, expired (--push-window) and replayed pushes.")]
    Push(super::proxy::PushArgs),
}

/// Flags for `web serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    options: WebOptions,
}

/// The service flags of `web serve`; each overrides the `[web]` table of --config.
#[derive(Args, Debug, Default)]
pub struct WebOptions {
    /// The default site's directory [default: .].
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// A virtual host: NAME=DIR (repeatable); chosen by the Host header or :authority.
    #[arg(long, value_name = "NAME=DIR")]
    vhost: Vec<String>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Serve HTTPS (h2 and http/1.1 by ALPN); without --cert/--key the lab CA mints a certificate.
    #[arg(long)]
    tls: bool,
    /// Also serve HTTP/3 over QUIC on the same IP and port (UDP) with the same certificate
    /// (needs --tls); HTTP/1.1 and HTTP/2 responses advertise it with Alt-Svc.
    #[arg(long)]
    http3: bool,
    /// PEM certificate chain (implies --tls).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Allow PUT uploads and DELETE inside the site directories.
    #[arg(long)]
    allow_write: bool,
    /// Largest request body accepted, e.g. 1MiB [default: 10MiB].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size)]
    max_body: Option<u64>,
    /// Most connections at once; when full, the one waiting longest without a request is
    /// closed for a newcomer [default: 10000].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Most connections from one client address [default: max-connections/8, 1 to 64].
    #[arg(long, value_name = "N")]
    max_per_ip: Option<usize>,
    /// Close keep-alive connections idle this many seconds [default: 60].
    #[arg(long, value_name = "SECS")]
    idle_timeout: Option<u64>,
    /// Seconds a client gets to send a whole request head, and a new connection its whole
    /// first request [default: 10].
    #[arg(long, value_name = "SECS")]
    header_timeout: Option<u64>,
    /// Most /cart sessions kept; the least recently used go first [default: 10000].
    #[arg(long, value_name = "N")]
    cart_sessions: Option<usize>,
    /// New /cart sessions one client address may create per second (burst 10x) [default: 2].
    #[arg(long, value_name = "N")]
    cart_session_rate: Option<u64>,
    /// No generated directory listings.
    #[arg(long)]
    no_listing: bool,
    /// Turn off the built-in /cart and /echo apps.
    #[arg(long)]
    no_apps: bool,
    /// Turn off HTTP/2 server push.
    #[arg(long)]
    no_push: bool,
    /// No access log on stdout.
    #[arg(long)]
    quiet: bool,
    /// Serve the counters (Prometheus text format) at this path, e.g. /server-metrics.
    #[arg(long, value_name = "PATH")]
    metrics_path: Option<String>,
    /// Worker threads, each with its own event loop accepting on the port (like nginx's
    /// worker_processes auto); 0 serves on the main runtime [default: the CPUs this process
    /// may run on].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
}

impl WebOptions {
    /// Puts the flags given over `config` (the `[web]` table); absent flags keep its values,
    /// `--vhost` adds to the configured hosts.
    pub fn apply(self, config: &mut WebConfig) -> anyhow::Result<()> {
        set(&mut config.root, self.root);
        for v in &self.vhost {
            let (name, dir) = v.split_once('=').with_context(|| format!("--vhost {v}: expected NAME=DIR"))?;
            anyhow::ensure!(!name.is_empty() && !dir.is_empty(), "--vhost {v}: expected NAME=DIR");
            config.vhosts.insert(name.to_ascii_lowercase(), PathBuf::from(dir));
        }
        set(&mut config.listen, self.listen);
        config.tls |= self.tls || self.cert.is_some();
        config.http3 |= self.http3;
        anyhow::ensure!(!config.http3 || config.tls, "--http3 needs --tls (QUIC always encrypts)");
        if self.cert.is_some() {
            config.cert = self.cert;
            config.key = self.key;
        }
        config.allow_write |= self.allow_write;
        set(&mut config.max_body, self.max_body);
        set(&mut config.max_connections, self.max_connections);
        set(&mut config.max_per_ip, self.max_per_ip.map(Some));
        set(&mut config.cart_max_sessions, self.cart_sessions);
        if let Some(n) = self.cart_session_rate {
            config.cart_new_per_sec = n;
            config.cart_new_burst = n.saturating_mul(10);
        }
        set(&mut config.idle_timeout_secs, self.idle_timeout);
        set(&mut config.header_timeout_secs, self.header_timeout);
        config.listing &= !self.no_listing;
        config.apps &= !self.no_apps;
        config.push &= !self.no_push;
        config.access_log &= !self.quiet;
        set(&mut config.workers, self.workers);
        if let Some(p) = self.metrics_path {
            anyhow::ensure!(p.starts_with('/'), "--metrics-path must start with /");
            config.metrics_path = Some(p);
        }
        Ok(())
    }
}

/// Flags for `web get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// The URL (http:// or https://).
    url: String,
    /// Speak HTTP/1.0.
    #[arg(long = "http1.0", conflicts_with_all = ["http2", "http3"])]
    http10: bool,
    /// Speak HTTP/2 (ALPN h2 over TLS, prior knowledge over cleartext).
    #[arg(long, conflicts_with = "http3")]
    http2: bool,
    /// Speak HTTP/3 over QUIC (https only; never falls back to TCP).
    #[arg(long)]
    http3: bool,
    /// With --http3: keep session tickets in a file (see --session-file), so that the next
    /// run resumes and sends its GET as 0-RTT early data; says on stderr whether it did and
    /// whether the server accepted it.
    #[arg(long = "0rtt", requires = "http3")]
    zero_rtt: bool,
    /// With --0rtt: the session file (0600; holds resumption secrets)
    /// [default: $XDG_CACHE_HOME/appnet/h3-sessions or ~/.cache/appnet/h3-sessions].
    #[arg(long, value_name = "PATH", requires = "zero_rtt")]
    session_file: Option<PathBuf>,
    /// Print the status line and headers before the body.
    #[arg(short = 'i', long)]
    include: bool,
    /// CA certificate file for https [default: the lab CA].
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Seconds to wait for the whole response.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    timeout: f64,
    /// Resolve the URL's host through this DNS resolver (ADDR:PORT) instead of the system's,
    /// e.g. the lab's dns.poly.edu: --resolver 127.0.4.1:10053.
    #[arg(long, value_name = "ADDR")]
    resolver: Option<std::net::SocketAddr>,
}

/// Runs a `web` subcommand.
pub async fn run(cmd: WebCmd, ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        WebCmd::Serve(args) => serve(args, ctx).await,
        WebCmd::Get(args) => get(args).await,
        WebCmd::Proxy(args) => super::proxy::run(*args, ctx).await,
        WebCmd::Cdn(args) => super::proxy::run_cdn(args, ctx).await,
        WebCmd::Push(args) => super::proxy::run_push(args).await,
    }
}

async fn serve(args: ServeArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut config: WebConfig = ctx.section("web")?;
    // The command's default, unlike the library's (0, the caller's runtime): one worker per
    // CPU this process may run on, as nginx's `worker_processes auto` and h2o's `num-threads`.
    if config.workers == 0 {
        config.workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    }
    args.options.apply(&mut config)?;
    let listen = config.listen;
    let server = WebServer::bind(config).await.with_context(|| format!("cannot serve on {listen}"))?;
    let scheme = if server.is_tls() { "https" } else { "http" };
    eprintln!("appnet web: serving {scheme}://{} (Ctrl-C to stop)", server.local_addr());
    if let Some(udp) = server.http3_addr() {
        eprintln!("appnet web: HTTP/3 on udp {udp}");
    }
    if let Some(note) = server.tls_note() {
        eprintln!("appnet web: {note}");
    }
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    server.run(shutdown).await.map_err(|e| anyhow::anyhow!(e))
}

async fn get(args: GetArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.timeout > 0.0 && args.timeout.is_finite(), "--timeout must be a positive number");
    let proto = if args.http10 {
        Proto::Http10
    } else if args.http2 {
        Proto::Http2
    } else {
        Proto::Http11
    };
    let address = match args.resolver {
        Some(server) => Some(appnet_resolver::lookup::lookup_url(&args.url, server).await?),
        None => None,
    };
    let timeout = Duration::from_secs_f64(args.timeout);
    let resp = if args.http3 {
        let sessions = match (args.zero_rtt, args.session_file) {
            (false, _) => None,
            (true, Some(path)) => Some(path),
            (true, None) => Some(appnet_web::h3::session_file::default_path().context(
                "--0rtt: no session file (neither XDG_CACHE_HOME nor HOME is set): pass --session-file PATH",
            )?),
        };
        let (head, body, early) = appnet_web::h3::client::get_url(
            &args.url,
            args.cacert.as_deref(),
            timeout,
            address,
            sessions.as_deref(),
        )
        .await?;
        if let Some(file) = &sessions {
            let file = file.display();
            match early {
                Some(true) => eprintln!("appnet web: 0-RTT accepted (session resumed from {file})"),
                Some(false) => eprintln!(
                    "appnet web: 0-RTT not accepted (resumed from {file}; GET sent again after the handshake)"
                ),
                None => eprintln!(
                    "appnet web: 0-RTT not tried: no session for this server in {file} yet (the next run resumes)"
                ),
            }
        }
        head.map(|()| body)
    } else {
        client::get_at(&args.url, proto, args.cacert.as_deref(), timeout, address).await?
    };
    let mut out = std::io::stdout().lock();
    if args.include {
        writeln!(out, "{:?} {}", resp.version(), resp.status())?;
        for (name, value) in resp.headers() {
            writeln!(out, "{name}: {}", String::from_utf8_lossy(value.as_bytes()))?;
        }
        writeln!(out)?;
    }
    out.write_all(resp.body())?;
    out.flush()?;
    anyhow::ensure!(
        !resp.status().is_server_error() && !resp.status().is_client_error(),
        "server answered {}",
        resp.status()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_and_absent_flags_keep_it() {
        let mut config = WebConfig { max_connections: 5, ..WebConfig::default() };
        let options = WebOptions {
            max_body: Some(1 << 20),
            vhost: vec!["WWW.Foo.com=./foo".into()],
            no_push: true,
            ..WebOptions::default()
        };
        options.apply(&mut config).unwrap();
        assert_eq!((config.max_body, config.max_connections, config.push), (1 << 20, 5, false));
        assert_eq!(config.vhosts.get("www.foo.com"), Some(&PathBuf::from("./foo")));
        let before = format!("{config:?}");
        WebOptions::default().apply(&mut config).unwrap();
        assert_eq!(format!("{config:?}"), before);
        let bad = WebOptions { metrics_path: Some("metrics".into()), ..WebOptions::default() };
        assert!(bad.apply(&mut config).is_err());
    }
}
