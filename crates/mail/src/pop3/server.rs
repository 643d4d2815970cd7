//! The POP3 server: netkit's accept loop (connection caps, deadlines) feeding one
//! [`Session`] per connection; storage and password work run on the blocking pool.

use std::sync::Arc;
use std::time::Instant;

use appnet_netkit::Shutdown;
use appnet_netkit::accept::ConnSlot;
use appnet_netkit::lines::{Line, read_line_bounded};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::maildrop::{MaildirBackend, MaildirDrop};
use super::session::{Action, Params, Session};
use crate::access::{self, AccessContext, MailStream};

/// Longest command line (RFC 2449 §4 allows 255 octets; SASL responses need more).
pub const MAX_LINE: usize = 2048;

/// Serves POP3 on `listener` until `shutdown` fires.
pub async fn serve_pop3(
    listener: TcpListener,
    ctx: Arc<AccessContext>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let idle = ctx.limits.pop3_idle_timeout;
    let busy: &[u8] = b"-ERR [SYS/TEMP] Too many connections, try again later\r\n";
    access::serve(listener, ctx, shutdown, "pop3", idle, busy, connection).await
}

async fn connection(stream: MailStream, slot: ConnSlot, ctx: Arc<AccessContext>) -> std::io::Result<()> {
    let params = Params {
        tls_available: ctx.tls.is_some(),
        tls_active: stream.is_tls(),
        allow_plain_auth: ctx.allow_plain_auth,
        max_errors: ctx.limits.max_errors,
        max_auth_failures: ctx.limits.max_auth_failures,
        hostname: ctx.hostname.clone(),
    };
    let backend = Arc::new(MaildirBackend { ctx: ctx.clone(), ip: slot.ip() });
    let mut session: Option<Session<MaildirDrop>> = Some(Session::new(params));
    let mut io = BufReader::new(stream);
    let greeting = session.as_ref().map(|s| s.greeting()).unwrap_or_default();
    io.get_mut().write_all(&greeting).await?;
    let mut line = Vec::with_capacity(256);
    loop {
        let Some(s) = session.as_ref() else { return Ok(()) };
        if s.is_authenticated() {
            slot.idle_for(ctx.limits.pop3_idle_timeout);
        }
        let read = tokio::select! {
            r = read_line_bounded(&mut io, &mut line, MAX_LINE) => r?,
            _ = slot.closed() => {
                let _ = io.get_mut().write_all(b"-ERR Disconnected for inactivity.\r\n").await;
                return Ok(());
            }
        };
        slot.busy();
        let action = match read {
            Line::Eof => return Ok(()),
            Line::TooLong => {
                skip_rest_of_line(&mut io).await?;
                session.as_mut().map(|s| s.on_long_line())
            }
            Line::Complete => {
                let mut s = session.take();
                let b = backend.clone();
                let l = std::mem::take(&mut line);
                let (s, a, l) = tokio::task::spawn_blocking(move || {
                    let a = s.as_mut().map(|s| s.on_line(&l, b.as_ref(), Instant::now()));
                    (s, a, l)
                })
                .await
                .map_err(std::io::Error::other)?;
                session = s;
                line = l;
                a
            }
        };
        match action {
            None => return Ok(()),
            Some(Action::Send(bytes)) => io.get_mut().write_all(&bytes).await?,
            Some(Action::SendDelayed(bytes)) => {
                tokio::time::sleep(ctx.limits.auth_failure_delay).await;
                io.get_mut().write_all(&bytes).await?
            }
            Some(Action::Close(bytes)) => {
                io.get_mut().write_all(&bytes).await?;
                let _ = io.get_mut().shutdown().await;
                // A lingering close: unread input would make the kernel reset the connection
                // and destroy the reply in flight.
                appnet_netkit::lines::discard_input(&mut io, 64 * 1024, std::time::Duration::from_secs(1))
                    .await;
                return Ok(());
            }
            Some(Action::StartTls(bytes)) => {
                io.get_mut().write_all(&bytes).await?;
                let Some(config) = ctx.tls.clone() else { return Ok(()) };
                // Anything the client pipelined after STLS is discarded (RFC 2595 §3.1).
                let plain = io.into_inner();
                let tls = plain.start_tls(config, ctx.limits.login_timeout).await?;
                io = BufReader::new(tls);
                if let Some(s) = session.as_mut() {
                    s.tls_started();
                }
            }
        }
    }
}

/// Reads and drops the remainder of an over-long line (bounded: it gives up after 1 MiB).
pub(crate) async fn skip_rest_of_line<R: tokio::io::AsyncBufRead + Unpin>(io: &mut R) -> std::io::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let mut skipped = 0usize;
    while skipped < 1 << 20 {
        let buf = io.fill_buf().await?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                io.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                skipped += n;
                io.consume(n);
            }
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "endless line"))
}
