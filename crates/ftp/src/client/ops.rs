//! What `appnet ftp ls|get|put` do with a session: log in from a URL, download into a file
//! crash-safely (a `.part` file renamed on 226, continued with REST by `--resume`), upload one.

use super::conn::{ClientConfig, ClientError, FtpClient};
use super::url::FtpUrl;
use std::path::{Path, PathBuf};

/// Connects to the URL's server, logs in (the URL's user with `password`, else anonymous)
/// and switches to binary transfers (TYPE I).
pub async fn open(
    url: &FtpUrl,
    password: Option<&str>,
    config: ClientConfig,
) -> Result<FtpClient, ClientError> {
    let mut client = FtpClient::connect_host(&url.host, url.port, config).await?;
    match &url.user {
        Some(user) => client.login(user, password.or(url.password.as_deref())).await?,
        None => client.login_anonymous().await?,
    }
    client.binary().await?;
    Ok(client)
}

/// How a download went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetOutcome {
    /// Bytes received on the data connection.
    pub received: u64,
    /// Where the download continued from (0: from the start).
    pub resumed_from: u64,
    /// The local file was already the server's size: nothing was transferred.
    pub already_complete: bool,
}

/// The partial download's name: `FILE.part` next to `FILE`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

fn file_error(what: String) -> impl FnOnce(std::io::Error) -> ClientError {
    move |source| ClientError::Io { what, source }
}

/// Opens the `.part` file: a new one (never over an existing file), or with `resume` the
/// existing one for appending; symlinks are refused either way (O_EXCL / O_NOFOLLOW).
fn open_part(part: &Path, resume: bool) -> Result<(std::fs::File, u64), ClientError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).custom_flags(libc::O_NOFOLLOW);
    if resume && part.exists() {
        let file = options
            .append(true)
            .open(part)
            .map_err(file_error(format!("cannot continue {}", part.display())))?;
        let len = file.metadata().map_err(file_error(format!("cannot read {}", part.display())))?.len();
        return Ok((file, len));
    }
    let file = options.create_new(true).open(part).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            ClientError::Io {
                what: format!(
                    "{} exists (an interrupted download?): continue it with --resume or remove it",
                    part.display()
                ),
                source: e,
            }
        } else {
            ClientError::Io { what: format!("cannot create {}", part.display()), source: e }
        }
    })?;
    Ok((file, 0))
}

/// Downloads `remote` into `dest`: received into `dest.part`, synced, renamed over `dest` after
/// the server's 226, so `dest` is never a torn file. With `resume`, an existing `dest.part` (or
/// a shorter `dest` than the server's file) is continued with REST from its length.
pub async fn get_to_file(
    client: &mut FtpClient,
    remote: &str,
    dest: &Path,
    resume: bool,
) -> Result<GetOutcome, ClientError> {
    let part = part_path(dest);
    if resume && !part.exists() && dest.is_file() {
        let have =
            std::fs::metadata(dest).map_err(file_error(format!("cannot read {}", dest.display())))?.len();
        match client.size(remote).await? {
            Some(size) if size == have => {
                return Ok(GetOutcome { received: 0, resumed_from: have, already_complete: true });
            }
            Some(size) if size < have => {
                return Err(ClientError::Io {
                    what: format!(
                        "{} ({have} bytes) is longer than the server's file ({size} bytes)",
                        dest.display()
                    ),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, "cannot resume"),
                });
            }
            _ => std::fs::rename(dest, &part)
                .map_err(file_error(format!("cannot move {} aside", dest.display())))?,
        }
    }
    let (file, offset) = open_part(&part, resume)?;
    let mut out = tokio::fs::File::from_std(file);
    let received = client.retr(remote, offset, &mut out).await?;
    out.sync_all().await.map_err(file_error(format!("cannot sync {}", part.display())))?;
    drop(out);
    std::fs::rename(&part, dest).map_err(file_error(format!(
        "cannot rename {} to {}",
        part.display(),
        dest.display()
    )))?;
    let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(GetOutcome { received, resumed_from: offset, already_complete: false })
}

/// Uploads the local file `local` as `remote` (STOR); returns the bytes sent.
pub async fn put_file(client: &mut FtpClient, local: &Path, remote: &str) -> Result<u64, ClientError> {
    let mut file =
        tokio::fs::File::open(local).await.map_err(file_error(format!("cannot open {}", local.display())))?;
    client.stor(remote, &mut file).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use appnet_netkit::harness::TempDir;

    #[test]
    fn part_files_sit_next_to_the_destination_and_never_replace_one() {
        let dir = TempDir::new("ftp-part");
        let dest = dir.join("notes.txt");
        assert_eq!(part_path(&dest), dir.join("notes.txt.part"));
        let (_, at) = open_part(&part_path(&dest), false).unwrap();
        assert_eq!(at, 0);
        let err = open_part(&part_path(&dest), false).unwrap_err().to_string();
        assert!(err.contains("--resume"), "{err}");
        std::fs::write(part_path(&dest), b"12345").unwrap();
        let (_, at) = open_part(&part_path(&dest), true).unwrap();
        assert_eq!(at, 5);
        let link = dir.join("link.part");
        std::os::unix::fs::symlink(dir.join("elsewhere"), &link).unwrap();
        assert!(open_part(&link, false).is_err());
        std::fs::write(dir.join("elsewhere"), b"x").unwrap();
        assert!(open_part(&link, true).is_err(), "a symlink is not followed");
        assert_eq!(std::fs::read(dir.join("elsewhere")).unwrap(), b"x");
    }
}
