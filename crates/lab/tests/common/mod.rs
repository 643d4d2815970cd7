//! Start-up shared by the lab's integration tests (each test file is its own crate; a file
//! uses what it needs).
#![allow(dead_code)]

use appnet_lab::Topology;

/// A port free on the lab's first address (the lab binds every DNS server to the same port).
pub fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.1.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    drop(s);
    port
}

/// The embedded topology on free DNS and web ports, so tests run side by side and next to a
/// running lab; tests then drop the parts their scene does not need.
pub fn topology() -> Topology {
    Topology { dns_port: free_port(), web_port: free_port(), ..Topology::default() }
}

/// Whether the test runs as root (namespaces, TUN devices); a test that needs it says why it
/// skips otherwise. CI runs as root, so such tests run there.
pub fn is_root() -> bool {
    appnet_lab::netns::is_root()
}
