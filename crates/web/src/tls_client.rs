//! TLS towards servers the proxy connects to: the shared client config of
//! [`appnet_netkit::tls_client`], re-exported where the web crate has always had it.

pub use appnet_netkit::tls_client::{Trust, client_config, roots};
