//! The IMAP server: netkit's accept loop feeding one [`Session`] per connection. Input goes
//! through imap-codec's fragmentizer, which splits lines and literals and caps a command's
//! size (APPEND included) before anything is parsed; synchronising literals are accepted with
//! `+` only when they fit. IDLE polls the mailbox every [`IDLE_POLL`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use appnet_netkit::Shutdown;
use appnet_netkit::accept::ConnSlot;
use imap_codec::fragmentizer::{FragmentInfo, Fragmentizer, LiteralAnnouncement};
use imap_codec::imap_types::core::LiteralMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::session::{Outcome, Session};
use super::wire;
use crate::access::{self, AccessContext, MailStream};

/// How often an idling session looks for new mail (RFC 2177).
pub const IDLE_POLL: Duration = Duration::from_secs(1);

/// Room for a command's own text around its literals.
const COMMAND_SLACK: usize = 64 * 1024;

/// Serves IMAP on `listener` until `shutdown` fires.
pub async fn serve_imap(
    listener: TcpListener,
    ctx: Arc<AccessContext>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let idle = ctx.limits.imap_idle_timeout;
    let busy: &[u8] = b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n";
    access::serve(listener, ctx, shutdown, "imap", idle, busy, connection).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Command,
    Sasl,
    Idle,
}

async fn connection(mut stream: MailStream, slot: ConnSlot, ctx: Arc<AccessContext>) -> std::io::Result<()> {
    let max = ctx.limits.max_message_size.saturating_add(COMMAND_SLACK).min(u32::MAX as usize);
    let mut session = Some(Session::new(ctx.clone(), slot.ip(), stream.is_tls()));
    let greeting = session.as_ref().map(Session::greeting).unwrap_or_default();
    stream.write_all(&greeting).await?;
    let mut frag = Fragmentizer::new(max as u32);
    let mut mode = Mode::Command;
    let mut literal_too_big = false;
    let mut buf = vec![0u8; 16 * 1024];
    let mut idle_tick = tokio::time::interval(IDLE_POLL);
    idle_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Handle every complete message already received.
        while let Some(info) = frag.progress() {
            if let FragmentInfo::Line {
                announcement: Some(LiteralAnnouncement { mode: lm, length }), ..
            } = info
            {
                let fits =
                    (length as usize) <= ctx.limits.max_message_size && !frag.is_max_message_size_exceeded();
                if !fits {
                    // A LITERAL+ literal arrives anyway: it is read and dropped, then refused.
                    literal_too_big = true;
                }
                if fits {
                    if lm == LiteralMode::Sync {
                        stream.write_all(b"+ Ready for literal data\r\n").await?;
                    }
                } else if lm == LiteralMode::Sync {
                    // The client waits for "+": refuse, and drop what was sent of the command.
                    let tag = wire::tag_of(frag.message_bytes()).unwrap_or_else(|| "*".into());
                    stream.write_all(format!("{tag} BAD [TOOBIG] Literal too large\r\n").as_bytes()).await?;
                    frag.skip_message();
                    literal_too_big = false;
                }
                continue;
            }
            if !frag.is_message_complete() {
                continue;
            }
            slot.busy();
            let bytes = frag.message_bytes().to_vec();
            let too_big = frag.is_max_message_size_exceeded() || std::mem::take(&mut literal_too_big);
            let Some(mut s) = session.take() else { return Ok(()) };
            let m = mode;
            let (s, outcome) = tokio::task::spawn_blocking(move || {
                let now = Instant::now();
                let outcome = match m {
                    Mode::Sasl => s.on_sasl_line(trim_crlf(&bytes), now),
                    Mode::Idle => s.idle_done(trim_crlf(&bytes)),
                    Mode::Command if too_big => {
                        let tag = wire::tag_of(&bytes);
                        s.on_bad(tag.as_deref(), "[TOOBIG] Command too large")
                    }
                    Mode::Command => match wire::decode_command(&bytes) {
                        Ok(cmd) => s.on_command(cmd, now),
                        Err(tag) => s.on_bad(tag.as_deref(), "Invalid command"),
                    },
                };
                (s, outcome)
            })
            .await
            .map_err(std::io::Error::other)?;
            session = Some(s);
            mode = Mode::Command;
            match outcome {
                Outcome::Send(b) => stream.write_all(&b).await?,
                Outcome::Delayed(b) => {
                    tokio::time::sleep(ctx.limits.auth_failure_delay).await;
                    stream.write_all(&b).await?
                }
                Outcome::SaslContinue(b) => {
                    stream.write_all(&b).await?;
                    mode = Mode::Sasl;
                }
                Outcome::Idle(b) => {
                    stream.write_all(&b).await?;
                    mode = Mode::Idle;
                    idle_tick.reset();
                }
                Outcome::Close(b) => {
                    stream.write_all(&b).await?;
                    let _ = stream.shutdown().await;
                    // A lingering close, so unread input does not reset the reply in flight.
                    appnet_netkit::lines::discard_input(&mut stream, 64 * 1024, Duration::from_secs(1)).await;
                    return Ok(());
                }
                Outcome::StartTls(b) => {
                    stream.write_all(&b).await?;
                    let Some(config) = ctx.tls.clone() else { return Ok(()) };
                    // Whatever the client pipelined after STARTTLS is discarded (RFC 3501 §6.2.1).
                    frag = Fragmentizer::new(max as u32);
                    stream = stream.start_tls(config, ctx.limits.login_timeout).await?;
                    if let Some(s) = session.as_mut() {
                        s.tls_started();
                    }
                }
            }
        }
        let authenticated = session.as_ref().is_some_and(Session::is_authenticated);
        slot.idle_for(if authenticated { ctx.limits.imap_idle_timeout } else { ctx.limits.login_timeout });
        tokio::select! {
            n = stream.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                frag.enqueue_bytes(&buf[..n]);
            }
            _ = idle_tick.tick(), if mode == Mode::Idle => {
                let Some(mut s) = session.take() else { return Ok(()) };
                let (s, updates) = tokio::task::spawn_blocking(move || {
                    let u = s.idle_poll();
                    (s, u)
                })
                .await
                .map_err(std::io::Error::other)?;
                session = Some(s);
                if !updates.is_empty() {
                    stream.write_all(&updates).await?;
                }
            }
            _ = slot.closed() => {
                let _ = stream.write_all(b"* BYE Autologout; idle for too long\r\n").await;
                return Ok(());
            }
        }
    }
}

fn trim_crlf(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}
