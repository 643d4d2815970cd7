//! TLS for the web server: the shared lab CA and PEM loading of [`appnet_netkit::tls`], with the
//! web's ALPN (HTTP/2 first, then HTTP/1.1).

pub use appnet_netkit::tls::{LabCa, TlsError};
use std::path::Path;
use std::sync::Arc;

/// ALPN protocols offered: HTTP/2 first, then HTTP/1.1.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A rustls server config from a PEM certificate chain and key, offering [`ALPN`].
pub fn from_files(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    appnet_netkit::tls::from_files(cert, key, &ALPN)
}

/// The TLS config of `web serve --tls` and `web proxy --tls`: see
/// [`appnet_netkit::tls::listener_config`]; the note names the curl line that trusts the lab CA.
pub fn listener_config(
    cert: Option<&Path>,
    key: Option<&Path>,
    ca_dir: Option<&Path>,
    addr: std::net::SocketAddr,
    extra_names: &[String],
) -> Result<(Arc<rustls::ServerConfig>, Option<String>), TlsError> {
    let (cfg, note) = appnet_netkit::tls::listener_config(cert, key, ca_dir, addr, extra_names, &ALPN)?;
    let ca = ca_dir.map(Path::to_path_buf).unwrap_or_else(LabCa::default_dir);
    let note = note.map(|n| {
        format!(
            "{n}; e.g. curl --cacert {} https://localhost:{}/",
            LabCa::cert_path_in(&ca).display(),
            addr.port()
        )
    });
    Ok((cfg, note))
}
