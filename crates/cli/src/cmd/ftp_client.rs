//! `appnet ftp ls|get|put`: the FTP client. Each command opens one control connection, logs in
//! (anonymous unless the URL names a user), changes into the URL's directory and opens one data
//! connection per listing or file; `--trace` shows both kinds of connection.

use anyhow::Context as _;
use appnet_ftp::client::ops::{self, get_to_file, put_file};
use appnet_ftp::client::trace::stderr_tracer;
use appnet_ftp::client::{ClientConfig, ClientError, DataMode, FtpClient, FtpUrl, ListKind};
use appnet_netkit::tls::LabCa;
use appnet_netkit::tls_client::{Trust, client_config};
use clap::Args;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The flags every client command shares.
#[derive(Args, Debug, Clone)]
pub struct ClientFlags {
    /// Active mode: the server opens each data connection to a port of ours (PORT/EPRT)
    /// instead of us connecting to the port it names (PASV/EPSV, the default).
    #[arg(long)]
    active: bool,
    /// Print the control dialogue (C: sent, S: received) and each data connection's opening
    /// and closing with both ends, on stderr.
    #[arg(long)]
    trace: bool,
    /// Read the password from the first line of stdin (for the URL's user).
    #[arg(long)]
    password_stdin: bool,
    /// Seconds allowed to connect, for each reply, for a data connection to open, and between
    /// two reads or writes of a transfer.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    timeout: f64,
    /// Explicit FTPS (RFC 4217): AUTH TLS before logging in, then PROT P so every data
    /// connection is TLS too; fails rather than falling back to plain FTP.
    #[arg(long)]
    tls: bool,
    /// With --tls: also trust the CA certificates in this PEM file (the system's store and the
    /// lab CA of $APPNET_CA_DIR or ~/.local/share/appnet/lab-ca are trusted already).
    #[arg(long, value_name = "FILE", requires = "tls")]
    cacert: Option<PathBuf>,
}

/// Flags for `ftp ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// The directory (or file): ftp://[user@]host[:port]/dir/
    url: String,
    /// Names only (NLST) instead of the long listing (LIST).
    #[arg(long, conflicts_with = "mlsd")]
    names: bool,
    /// The machine-readable listing of RFC 3659 (MLSD: type, size, modify time per name).
    #[arg(long)]
    mlsd: bool,
    #[command(flatten)]
    flags: ClientFlags,
}

/// Flags for `ftp get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// The file: ftp://[user@]host[:port]/path/file
    url: String,
    /// Where to write it: a file, a directory, or "-" for stdout [default: the file's name in
    /// the current directory].
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Continue an interrupted download (FILE.part, or a FILE shorter than the server's) from
    /// where it stopped, with REST.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    flags: ClientFlags,
}

/// Flags for `ftp put`.
#[derive(Args, Debug)]
pub struct PutArgs {
    /// The local file to upload.
    file: PathBuf,
    /// Where: ftp://user@host[:port]/dir/ (keeps the file's name) or .../dir/newname
    url: String,
    #[command(flatten)]
    flags: ClientFlags,
}

fn read_password(flags: &ClientFlags) -> anyhow::Result<Option<String>> {
    if !flags.password_stdin {
        return Ok(None);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!password.is_empty(), "--password-stdin: stdin held no password line");
    Ok(Some(password))
}

/// Parses the URL, reads the password and logs in.
async fn connect(url: &str, flags: &ClientFlags) -> anyhow::Result<(FtpUrl, FtpClient)> {
    let url = FtpUrl::parse(url)?;
    anyhow::ensure!(flags.timeout > 0.0 && flags.timeout.is_finite(), "--timeout must be a positive number");
    if flags.password_stdin && url.user.is_none() {
        anyhow::bail!("--password-stdin needs a user in the URL (ftp://user@host/...)");
    }
    let password = read_password(flags)?;
    let tls = if flags.tls {
        let trust = Trust {
            system: true,
            lab_ca_dir: Some(LabCa::default_dir()),
            extra: flags.cacert.iter().cloned().collect(),
        };
        Some(client_config(&trust, &[]).context("--tls: cannot set up the trusted certificates")?)
    } else {
        None
    };
    let config = ClientConfig {
        mode: if flags.active { DataMode::Active } else { DataMode::Passive },
        timeout: Duration::from_secs_f64(flags.timeout),
        source: None,
        trace: flags.trace.then(stderr_tracer),
        tls,
    };
    let client = ops::open(&url, password.as_deref(), config)
        .await
        .with_context(|| format!("ftp://{}", url.authority()))?;
    Ok((url, client))
}

fn rate(bytes: u64, took: Duration) -> String {
    let secs = took.as_secs_f64().max(1e-6);
    format!("{bytes} bytes in {secs:.2} s ({:.1} MB/s)", bytes as f64 / secs / 1e6)
}

/// `ftp ls`: a listing on stdout (line ends as LF).
pub async fn ls(args: LsArgs) -> anyhow::Result<()> {
    let (url, mut client) = connect(&args.url, &args.flags).await?;
    let kind = match (args.names, args.mlsd) {
        (true, _) => ListKind::Names,
        (_, true) => ListKind::Machine,
        _ => ListKind::List,
    };
    let path = url.path.trim_end_matches('/');
    let mut target = None;
    if !path.is_empty() {
        match client.cwd(path).await {
            Ok(()) => {}
            // Not a directory (or not one we may enter): list it as a name instead.
            Err(ClientError::Refused { reply, .. }) if reply.class() == 5 => target = Some(path),
            Err(e) => return Err(e.into()),
        }
    }
    let listing = client.list(kind, target).await?;
    client.quit().await?;
    let text = String::from_utf8_lossy(&listing).replace("\r\n", "\n");
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `ftp get`: one file into a local file (via FILE.part) or stdout.
pub async fn get(args: GetArgs) -> anyhow::Result<()> {
    let (url, mut client) = connect(&args.url, &args.flags).await?;
    let name = url.file();
    anyhow::ensure!(
        !name.is_empty() && name != "." && name != "..",
        "{} names a directory, not a file: list it with `appnet ftp ls`",
        args.url
    );
    if !url.dir().is_empty() {
        client.cwd(url.dir()).await?;
    }
    let started = Instant::now();
    if args.output.as_deref() == Some(Path::new("-")) {
        anyhow::ensure!(!args.resume, "--resume needs a file to continue, not stdout");
        let mut stdout = tokio::io::stdout();
        client.retr(name, 0, &mut stdout).await?;
        client.quit().await?;
        return Ok(());
    }
    let dest = match args.output {
        // An existing directory receives the file under its own name, as cp does.
        Some(dir) if dir.is_dir() => dir.join(name),
        Some(file) => file,
        None => PathBuf::from(name),
    };
    let got = get_to_file(&mut client, name, &dest, args.resume).await?;
    client.quit().await?;
    if got.already_complete {
        eprintln!(
            "appnet ftp: {} is complete already ({} bytes): nothing to fetch",
            dest.display(),
            got.resumed_from
        );
    } else if got.resumed_from > 0 {
        eprintln!(
            "appnet ftp: {}: resumed at byte {}, {}",
            dest.display(),
            got.resumed_from,
            rate(got.received, started.elapsed())
        );
    } else {
        eprintln!("appnet ftp: {}: {}", dest.display(), rate(got.received, started.elapsed()));
    }
    Ok(())
}

/// `ftp put`: one local file to the server (STOR).
pub async fn put(args: PutArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.file.is_file(), "{} is not a file", args.file.display());
    let (url, mut client) = connect(&args.url, &args.flags).await?;
    let name = match url.file() {
        "" => args
            .file
            .file_name()
            .and_then(|n| n.to_str())
            .context("the local file's name is not UTF-8: name the remote file in the URL")?
            .to_string(),
        n => n.to_string(),
    };
    if !url.dir().is_empty() {
        client.cwd(url.dir()).await?;
    }
    let started = Instant::now();
    let sent = put_file(&mut client, &args.file, &name).await?;
    client.quit().await?;
    eprintln!("appnet ftp: {name}: {}", rate(sent, started.elapsed()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(clap::Subcommand)]
    enum Cmd {
        Ls(LsArgs),
        Get(GetArgs),
        Put(PutArgs),
    }

    #[test]
    fn the_issue_s_command_lines_parse() {
        let cli = Cli::try_parse_from([
            "ftp",
            "ls",
            "ftp://u@h:2121/d/",
            "--active",
            "--trace",
            "--password-stdin",
        ]);
        let Cmd::Ls(ls) = cli.unwrap().cmd else { panic!("ls") };
        assert!(ls.flags.active && ls.flags.trace && ls.flags.password_stdin && !ls.names);
        let cli = Cli::try_parse_from(["ftp", "get", "ftp://h/f", "-o", "out", "--resume"]).unwrap();
        let Cmd::Get(get) = cli.cmd else { panic!("get") };
        assert_eq!((get.output, get.resume, get.flags.timeout), (Some(PathBuf::from("out")), true, 30.0));
        assert!(
            Cli::try_parse_from(["ftp", "get", "ftp://h/f", "--cacert", "ca.pem"]).is_err(),
            "--cacert needs --tls"
        );
        let cli = Cli::try_parse_from(["ftp", "get", "ftp://h/f", "--tls", "--cacert", "ca.pem"]).unwrap();
        assert!(
            matches!(cli.cmd, Cmd::Get(g) if g.flags.tls && g.flags.cacert == Some(PathBuf::from("ca.pem")))
        );
        let cli = Cli::try_parse_from(["ftp", "put", "a.txt", "ftp://u@h/d/", "--trace"]).unwrap();
        assert!(matches!(cli.cmd, Cmd::Put(p) if p.flags.trace && p.file == Path::new("a.txt")));
        assert!(Cli::try_parse_from(["ftp", "ls", "ftp://h/", "--names", "--mlsd"]).is_err());
    }
}
