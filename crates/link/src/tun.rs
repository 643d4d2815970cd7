//! A TUN device (layer 3, no packet-information header): each `read` returns one IP packet the
//! namespace's stack sent out of the device, each `write` hands one IP packet to that stack as
//! if it had arrived on the device. The device lives in the namespace of the thread that opened
//! it (see [`crate::netns::in_netns`]) and disappears when the descriptor is closed.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// `_IOW('T', 202, int)` from linux/if_tun.h.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags in the union.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open, non-blocking TUN device.
pub struct Tun {
    file: File,
    name: String,
}

impl Tun {
    /// Creates the device `name` (at most 15 bytes) in the calling thread's network namespace.
    pub fn create(name: &str) -> std::io::Result<Tun> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(std::io::Error::other(format!("device name {name:?} must be 1-15 bytes")));
        }
        let file =
            OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open("/dev/net/tun")?;
        let mut req =
            IfReq { name: [0; libc::IFNAMSIZ], flags: (libc::IFF_TUN | libc::IFF_NO_PI) as _, _pad: [0; 22] };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `IfReq` lays out (40 bytes).
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Tun { file, name: name.to_string() })
    }

    /// The device's name in its namespace.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one packet; `WouldBlock` when none is waiting.
    pub fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }

    /// Writes one packet.
    pub fn send(&mut self, packet: &[u8]) -> std::io::Result<()> {
        self.file.write(packet).map(|_| ())
    }

    /// The descriptor, for poll.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
