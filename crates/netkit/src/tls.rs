//! TLS for every appnet server (HTTPS, FTPS, SMTP/IMAP/POP3 STARTTLS, ...): a rustls config
//! from PEM files, or from the lab CA, a small certificate authority (rcgen) kept on disk that
//! mints a server certificate at start-up, so clients trust the server with one `--cacert` flag.
//! One CA for all services: a learner trusts one file.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A PEM file held no usable certificate or key.
    #[error("{0}: no PEM certificate or private key found (expected PEM files)")]
    Pem(PathBuf),
    /// rustls refused the certificate and key.
    #[error("certificate and key do not fit together: {0}")]
    Rustls(#[from] rustls::Error),
    /// Certificate generation failed.
    #[error("cannot mint a certificate: {0}")]
    Mint(#[from] rcgen::Error),
}

/// A rustls server config from a PEM certificate chain and key, offering `alpn` (empty: none).
pub fn from_files(cert: &Path, key: &Path, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|_| TlsError::Pem(cert.to_path_buf()))?
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Pem(cert.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|_| TlsError::Pem(key.to_path_buf()))?;
    server_config(certs, key, alpn)
}

/// The TLS config of a listener, as `appnet web serve --tls` and every other `--tls` server set
/// it up: the PEM `cert` and `key` when given, else a certificate minted by the lab CA in
/// `ca_dir` (default [`LabCa::default_dir`]) for localhost, the loopback addresses, the listening
/// address and `extra_names`. With the lab CA, also a note telling clients how to trust it.
pub fn listener_config(
    cert: Option<&Path>,
    key: Option<&Path>,
    ca_dir: Option<&Path>,
    addr: std::net::SocketAddr,
    extra_names: &[String],
    alpn: &[&[u8]],
) -> Result<(Arc<rustls::ServerConfig>, Option<String>), TlsError> {
    if let (Some(cert), Some(key)) = (cert, key) {
        return Ok((from_files(cert, key, alpn)?, None));
    }
    let dir = ca_dir.map(Path::to_path_buf).unwrap_or_else(LabCa::default_dir);
    let ca = LabCa::open(&dir)?;
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let ip = addr.ip();
    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
    }
    names.extend(extra_names.iter().filter(|n| !n.is_empty()).cloned());
    let cfg = ca.server_config(&names, alpn)?;
    let note = format!(
        "certificate for {} minted by the appnet lab CA; clients trust it with the CA file {}",
        names.join(", "),
        ca.cert_path().display(),
    );
    Ok((cfg, Some(note)))
}

fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The lab certificate authority: `ca.pem` (give it to clients) and `ca.key` in one directory.
pub struct LabCa {
    dir: PathBuf,
    key: rcgen::KeyPair,
}

fn ca_params() -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "appnet lab CA");
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "appnet");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2044, 1, 1);
    params
}

fn file_err(path: &Path) -> impl FnOnce(io::Error) -> TlsError + '_ {
    move |source| TlsError::File { path: path.to_path_buf(), source }
}

impl LabCa {
    /// The default directory: `$APPNET_CA_DIR`, else `~/.local/share/appnet/lab-ca`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("APPNET_CA_DIR") {
            return PathBuf::from(dir);
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        home.join(".local/share/appnet/lab-ca")
    }

    /// Opens the CA in `dir`, creating it (key and self-signed certificate) the first time.
    /// Several processes may start at once on a new directory (a web server and a proxy with
    /// `--tls`): one creates the CA while holding `ca.lock`, the others wait for it (up to 10 s;
    /// a lock left by a creator that died is then taken over) and load the result.
    pub fn open(dir: &Path) -> Result<LabCa, TlsError> {
        if let Some(ca) = LabCa::load(dir)? {
            return Ok(ca);
        }
        std::fs::create_dir_all(dir).map_err(file_err(dir))?;
        let lock = dir.join("ca.lock");
        let mut deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut took_over = false;
        loop {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&lock) {
                Ok(_) => {
                    let made = match LabCa::load(dir) {
                        Ok(Some(ca)) => Ok(ca),
                        Ok(None) => LabCa::create(dir),
                        Err(e) => Err(e),
                    };
                    let _ = std::fs::remove_file(&lock);
                    return made;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if let Some(ca) = LabCa::load(dir)? {
                        return Ok(ca);
                    }
                    if std::time::Instant::now() >= deadline {
                        if took_over {
                            return Err(file_err(&lock)(io::Error::other(
                                "another process holds this lock; remove it if none is creating the CA",
                            )));
                        }
                        took_over = true;
                        let _ = std::fs::remove_file(&lock);
                        deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                        continue;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(file_err(&lock)(e)),
            }
        }
    }

    /// The CA in `dir` if both its files exist (each is written whole, then renamed).
    fn load(dir: &Path) -> Result<Option<LabCa>, TlsError> {
        let key_path = dir.join("ca.key");
        if !(key_path.exists() && dir.join("ca.pem").exists()) {
            return Ok(None);
        }
        let pem = std::fs::read_to_string(&key_path).map_err(file_err(&key_path))?;
        let key = rcgen::KeyPair::from_pem(&pem)?;
        Ok(Some(LabCa { dir: dir.to_path_buf(), key }))
    }

    fn create(dir: &Path) -> Result<LabCa, TlsError> {
        let key = rcgen::KeyPair::generate()?;
        let cert = ca_params().self_signed(&key)?;
        write_private(&dir.join("ca.key"), key.serialize_pem().as_bytes())?;
        write_atomic(&dir.join("ca.pem"), cert.pem().as_bytes())?;
        Ok(LabCa { dir: dir.to_path_buf(), key })
    }

    /// The CA certificate file clients should trust.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Where the CA certificate of a lab CA kept in `dir` is (whether or not it exists yet).
    pub fn cert_path_in(dir: &Path) -> PathBuf {
        dir.join("ca.pem")
    }

    /// Mints a server certificate for `names` (DNS names or IP addresses) and returns a rustls
    /// server config using it, offering `alpn`.
    pub fn server_config(
        &self,
        names: &[String],
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let issuer = rcgen::Issuer::new(ca_params(), &self.key);
        let mut params = rcgen::CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, names.first().cloned().unwrap_or_default());
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2044, 1, 1);
        let leaf_key = rcgen::KeyPair::generate()?;
        let leaf = params.signed_by(&leaf_key, &issuer)?;
        let ca_der = std::fs::read(self.cert_path()).map_err(file_err(&self.cert_path()))?;
        let mut chain = vec![leaf.der().clone()];
        chain.extend(CertificateDer::pem_slice_iter(&ca_der).filter_map(Result::ok));
        let key = PrivateKeyDer::try_from(leaf_key.serialize_der())
            .map_err(|_| TlsError::Pem(self.dir.join("(minted key)")))?;
        server_config(chain, key, alpn)
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    crate::files::write_atomic(path, data).map_err(file_err(path))
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    crate::files::write_private(path, data).map_err(file_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_opens_of_a_new_directory_share_one_ca() {
        let dir = std::env::temp_dir().join(format!("appnet-lab-ca-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let keys: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> =
                (0..8).map(|_| s.spawn(|| LabCa::open(&dir).unwrap().key.serialize_pem())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| k == &keys[0]), "every opener got the same CA key");
        assert_eq!(std::fs::read_to_string(dir.join("ca.key")).unwrap(), keys[0]);
        assert!(!dir.join("ca.lock").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
