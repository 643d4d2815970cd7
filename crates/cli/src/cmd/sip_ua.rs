//! `appnet sip phone` and `appnet sip call`: the user agent's two faces.

use anyhow::Context as _;
use appnet_netkit::Shutdown;
use appnet_sip::rtp;
use appnet_sip::ua::call::{CallConfig, MediaReport, TraceFn, call};
use appnet_sip::ua::phone::{Phone, PhoneConfig};
use clap::Args;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Flags for `sip phone`.
#[derive(Args, Debug)]
pub struct PhoneArgs {
    /// Address of record to register, e.g. bob@umass.edu.
    #[arg(long, value_name = "USER@DOMAIN")]
    user: String,
    /// Registrar/proxy to register with (none: no registration, callers dial this phone directly).
    #[arg(long, value_name = "ADDR")]
    proxy: Option<SocketAddr>,
    /// Read the Digest password from the first line of stdin.
    #[arg(long)]
    password_stdin: bool,
    /// SIP address to listen on [default: an ephemeral port on the address that reaches the proxy].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Answer each call (180 Ringing, then 200 OK) and echo its audio; without it the phone rings until cancelled.
    #[arg(long)]
    auto_answer: bool,
    /// Answer every call with 486 Busy Here.
    #[arg(long)]
    busy: bool,
    /// Registration lifetime to ask for, seconds (refreshed at half what the registrar grants) [default: 3600].
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    expires: u32,
    /// Exit after this many answered calls have ended.
    #[arg(long, value_name = "N")]
    calls: Option<u64>,
    /// Print each SIP message received and sent, one per line.
    #[arg(long)]
    trace: bool,
}

/// Flags for `sip call`.
#[derive(Args, Debug)]
pub struct CallArgs {
    /// Caller's address of record, e.g. alice@poly.edu.
    #[arg(long, value_name = "USER@DOMAIN")]
    from: String,
    /// Callee's address of record, e.g. bob@umass.edu.
    #[arg(long, value_name = "USER@DOMAIN")]
    to: String,
    /// Outbound proxy: every request goes there first.
    #[arg(long, value_name = "ADDR")]
    proxy: SocketAddr,
    /// Seconds of media before hanging up.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    duration: f64,
    /// Seconds to wait for an answer before CANCEL.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    ring_timeout: f64,
    /// Send this WAV file (16-bit PCM or µ-law, any rate; looped) instead of a 440 Hz tone.
    #[arg(long, value_name = "FILE")]
    wav: Option<PathBuf>,
    /// Read the Digest password (for a 401/407 to the INVITE) from the first line of stdin.
    #[arg(long)]
    password_stdin: bool,
    /// Print the message flow, one message per line, with who sent it to whom.
    #[arg(long)]
    trace: bool,
}

fn read_password(wanted: bool) -> anyhow::Result<Option<String>> {
    if !wanted {
        return Ok(None);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!password.is_empty(), "--password-stdin: stdin held no password line");
    Ok(Some(password))
}

fn printer() -> TraceFn {
    Arc::new(|line: &str| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    })
}

fn secs(v: f64, flag: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(v.is_finite() && v > 0.0 && v < 86_400.0, "{flag} must be a positive number of seconds");
    Ok(Duration::from_secs_f64(v))
}

/// `appnet sip phone`.
pub async fn phone(args: PhoneArgs) -> anyhow::Result<()> {
    let password = read_password(args.password_stdin)?;
    let user = args.user.clone();
    let cfg = PhoneConfig {
        user: args.user,
        proxy: args.proxy,
        password,
        listen: args.listen.unwrap_or_else(|| "0.0.0.0:0".parse().expect("literal")),
        auto_answer: args.auto_answer,
        busy: args.busy,
        expires: args.expires,
        max_calls: args.calls,
        on_call_end: Some(Arc::new(move |r: &MediaReport| {
            println!("call ended: {r}");
            let _ = std::io::stdout().flush();
        })),
        trace: args.trace.then(printer),
    };
    let phone = Phone::bind(cfg).await.context("cannot bind the phone's SIP socket")?;
    println!(
        "appnet sip phone: {user} on udp {}{} (Ctrl-C to stop)",
        phone.local_addr(),
        args.proxy.map(|p| format!(", registering with {p}")).unwrap_or_default()
    );
    let _ = std::io::stdout().flush();
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    phone.run(shutdown).await?;
    Ok(())
}

/// `appnet sip call`.
pub async fn place_call(args: CallArgs) -> anyhow::Result<()> {
    let audio = match &args.wav {
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            rtp::wav_samples(&bytes)
                .with_context(|| format!("{} is not a WAV file we can play", p.display()))?
        }
        None => rtp::tone(440.0, rtp::CLOCK_HZ as usize),
    };
    let cfg = CallConfig {
        from: args.from,
        to: args.to,
        proxy: args.proxy,
        duration: secs(args.duration, "--duration")?,
        password: read_password(args.password_stdin)?,
        audio,
        ring_timeout: secs(args.ring_timeout, "--ring-timeout")?,
        trace: args.trace.then(printer),
    };
    let report = call(cfg).await?;
    println!("call ended: {report}");
    Ok(())
}
