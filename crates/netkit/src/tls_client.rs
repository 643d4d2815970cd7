//! TLS towards servers we connect to (the caching proxy's `https://` origins, FTPS and mail
//! clients): a rustls client config trusting the system's roots, the lab CA and any extra PEM
//! files, with ALPN.

use crate::tls::{LabCa, TlsError};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which certificate authorities a client trusts.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// The operating system's store (`/etc/ssl/certs`; `SSL_CERT_FILE`/`SSL_CERT_DIR` override).
    pub system: bool,
    /// The lab CA in this directory, when its `ca.pem` exists (it is never created here).
    pub lab_ca_dir: Option<PathBuf>,
    /// Further PEM files, each with one or more CA certificates.
    pub extra: Vec<PathBuf>,
}

/// The trusted roots; an error when an extra file holds no certificate or when nothing at all
/// is trusted (a client that can verify nobody is a configuration mistake).
pub fn roots(trust: &Trust) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    if trust.system {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!("system certificate store: {e}");
        }
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!("system certificate store: {added} roots ({ignored} unusable)");
    }
    if let Some(dir) = &trust.lab_ca_dir {
        let pem = LabCa::cert_path_in(dir);
        if pem.exists() {
            add_pem(&mut roots, &pem)?;
        }
    }
    for file in &trust.extra {
        add_pem(&mut roots, file)?;
    }
    if roots.is_empty() {
        return Err(TlsError::Pem(PathBuf::from(
            "(trusted roots: the system store is empty; give a CA file)",
        )));
    }
    Ok(roots)
}

fn add_pem(roots: &mut rustls::RootCertStore, file: &Path) -> Result<(), TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
        .map_err(|_| TlsError::Pem(file.to_path_buf()))?
        .filter_map(Result::ok)
        .collect();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::Pem(file.to_path_buf()));
    }
    Ok(())
}

/// A client config (ring provider, safe default versions) trusting `trust`, offering `alpn`.
pub fn client_config(trust: &Trust, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(trust)?)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
