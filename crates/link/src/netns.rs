//! Network namespaces for the link: created with `ip netns add` (so `ip netns exec NAME ...`
//! works for users), entered by a thread with setns(2), and removed with everything in them.

use crate::error::LinkError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<(), LinkError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| LinkError::Setup(format!("ip {}: {e} (is iproute2 installed?)", args.join(" "))))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LinkError::Setup(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The network namespaces that exist now (`ip netns list`).
pub fn list() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Deletes the namespace `name` if it exists (and with it its devices); true if it existed.
pub fn delete(name: &str) -> bool {
    list().iter().any(|n| n == name) && ip(&["netns", "del", name]).is_ok()
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `f` on a new thread that has joined the network namespace `ns`: sockets and devices `f`
/// creates belong to that namespace (and stay usable from any thread afterwards).
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T, LinkError> {
    let path = PathBuf::from("/var/run/netns").join(ns);
    let name = ns.to_string();
    std::thread::Builder::new()
        .name(format!("netns-{ns}"))
        .spawn(move || -> Result<T, LinkError> {
            enter(&path)
                .map_err(|e| LinkError::Setup(format!("cannot enter network namespace {name}: {e}")))?;
            Ok(f())
        })
        .map_err(LinkError::Io)?
        .join()
        .map_err(|_| LinkError::Setup(format!("the thread in namespace {ns} panicked")))?
}

/// Moves the calling thread into the network namespace `ns` for good (for a thread that will
/// run a whole runtime there, e.g. the experiment's client side).
pub fn enter_named(ns: &str) -> Result<(), LinkError> {
    enter(&PathBuf::from("/var/run/netns").join(ns))
        .map_err(|e| LinkError::Setup(format!("cannot enter network namespace {ns}: {e}")))
}

/// Reads the sysctl `key` inside the network namespace `ns`.
pub fn sysctl_get(ns: &str, key: &str) -> Result<String, LinkError> {
    let path = PathBuf::from("/proc/sys").join(key);
    let shown = path.display().to_string();
    in_netns(ns, move || std::fs::read_to_string(&path))?
        .map(|v| v.trim().to_string())
        .map_err(|e| LinkError::Setup(format!("{shown} in namespace {ns}: {e}")))
}

fn enter(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)?;
    // SAFETY: `file` is an open namespace descriptor; setns only affects the calling thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
