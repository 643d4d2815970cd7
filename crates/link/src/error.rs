//! The emulator's errors, saying what to do about them.

/// Why the link could not be set up or a setting was refused.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A setting did not parse or is out of range.
    #[error("link setting: {0}")]
    Spec(String),
    /// Namespaces and TUN devices need CAP_NET_ADMIN and CAP_SYS_ADMIN.
    #[error("the link emulator needs root (network namespaces and TUN devices): run it with sudo")]
    NotRoot,
    /// A namespace or device operation failed.
    #[error("network setup: {0}")]
    Setup(String),
    /// An I/O error on a TUN device.
    #[error("TUN device: {0}")]
    Io(#[from] std::io::Error),
}
