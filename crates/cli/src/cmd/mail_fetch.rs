//! `appnet mail fetch`: read a mailbox over POP3 or IMAP — list it, or print one message.

use anyhow::{Context as _, bail};
use appnet_mail::fetch;
use clap::Args;
use std::io::Write;
use std::net::SocketAddr;

/// Flags for `mail fetch`.
#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("server").required(true).args(["pop3", "imap"]))]
pub struct FetchArgs {
    /// A POP3 server (ADDR:PORT).
    #[arg(long, value_name = "ADDR")]
    pop3: Option<SocketAddr>,
    /// An IMAP server (ADDR:PORT); INBOX is read without changing any flag.
    #[arg(long, value_name = "ADDR")]
    imap: Option<SocketAddr>,
    /// The full address to log in as (user@domain).
    #[arg(long, value_name = "USER")]
    user: String,
    /// Read the password from the first line of stdin (the newline is not part of it).
    #[arg(long)]
    password_stdin: bool,
    /// List the messages: number, size, From, Subject (the default).
    #[arg(long, conflicts_with = "get")]
    list: bool,
    /// Print message N as it is stored (CRLF line endings).
    #[arg(long, value_name = "N")]
    get: Option<u32>,
}

/// Runs `mail fetch`.
pub async fn fetch(args: FetchArgs) -> anyhow::Result<()> {
    if !args.password_stdin {
        bail!("give the password on stdin with --password-stdin (it never goes on the command line)");
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("cannot read the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    let user = args.user.as_str();
    match (args.pop3, args.imap, args.get) {
        (Some(addr), _, Some(n)) => print_message(
            &fetch::pop3_get(addr, user, password, n).await.with_context(|| format!("POP3 {addr}"))?,
        ),
        (Some(addr), _, None) => {
            print_list(&fetch::pop3_list(addr, user, password).await.with_context(|| format!("POP3 {addr}"))?)
        }
        (None, Some(addr), Some(n)) => print_message(
            &fetch::imap_get(addr, user, password, n).await.with_context(|| format!("IMAP {addr}"))?,
        ),
        (None, Some(addr), None) => {
            print_list(&fetch::imap_list(addr, user, password).await.with_context(|| format!("IMAP {addr}"))?)
        }
        (None, None, _) => bail!("give --pop3 ADDR or --imap ADDR"),
    }
}

fn print_message(m: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(m)?;
    out.flush()?;
    Ok(())
}

fn print_list(list: &[fetch::Summary]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if list.is_empty() {
        writeln!(out, "no messages")?;
    }
    for s in list {
        writeln!(out, "{:>4}  {:>8}  {:<30}  {}", s.number, s.size, truncate(&s.from, 30), s.subject)?;
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}
