//! The STUN client: one Binding request, retransmitted (RFC 8489 §6.2.1), and the mapped address.

use crate::stun::attr::code;
use crate::stun::message::method;
use crate::stun::{Attr, Class, Message};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// What a Binding request learned.
#[derive(Debug, Clone)]
pub struct BindingResult {
    /// Our address as the server saw it (XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS).
    pub mapped: SocketAddr,
    /// The local address the request left from.
    pub local: SocketAddr,
    /// The server's OTHER-ADDRESS (RFC 5780), when it has a second address.
    pub other: Option<SocketAddr>,
    /// Where the answer came from (after a CHANGE-REQUEST, another address than the server's).
    pub from: SocketAddr,
}

/// Sends a Binding request to `server` from `socket` and waits for the answer; retransmits at
/// 500 ms, 1 s, 2 s ... until `timeout`.
pub async fn binding_on(
    socket: &UdpSocket,
    server: SocketAddr,
    timeout: Duration,
) -> std::io::Result<BindingResult> {
    binding_with(socket, server, Vec::new(), timeout).await
}

/// [`binding_on`] with extra attributes in the request (e.g. RFC 5780 CHANGE-REQUEST).
pub async fn binding_with(
    socket: &UdpSocket,
    server: SocketAddr,
    attrs: Vec<Attr>,
    timeout: Duration,
) -> std::io::Result<BindingResult> {
    let mut req = Message::new(Class::Request, method::BINDING);
    req.attrs = attrs;
    let raw = req.encode(None, true);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut rto = Duration::from_millis(500);
    let mut buf = vec![0u8; 2048];
    loop {
        socket.send_to(&raw, server).await?;
        let wait_until = (tokio::time::Instant::now() + rto).min(deadline);
        loop {
            match tokio::time::timeout_at(wait_until, socket.recv_from(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(e),
                Ok(Ok((n, from))) => {
                    let Ok(resp) = Message::decode(&buf[..n]) else { continue };
                    if resp.tid != req.tid || resp.method != method::BINDING {
                        continue;
                    }
                    if resp.class == Class::Error {
                        let why = match resp.get(code::ERROR_CODE) {
                            Some(Attr::ErrorCode(c, r)) => format!("{c} {r}"),
                            _ => "error response".into(),
                        };
                        return Err(std::io::Error::other(why));
                    }
                    let mapped = resp.attrs.iter().find_map(|a| match a {
                        Attr::XorMappedAddress(a) => Some(*a),
                        _ => None,
                    });
                    let mapped = mapped.or_else(|| {
                        resp.attrs.iter().find_map(|a| match a {
                            Attr::MappedAddress(a) => Some(*a),
                            _ => None,
                        })
                    });
                    let other = resp.attrs.iter().find_map(|a| match a {
                        Attr::OtherAddress(a) => Some(*a),
                        _ => None,
                    });
                    let Some(mapped) = mapped else {
                        return Err(std::io::Error::other("response without a mapped address"));
                    };
                    return Ok(BindingResult { mapped, local: socket.local_addr()?, other, from });
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer from the STUN server"));
        }
        rto *= 2;
    }
}

/// [`binding_on`] from a fresh socket on the wildcard address of `server`'s family.
pub async fn binding(server: SocketAddr, timeout: Duration) -> std::io::Result<BindingResult> {
    let bind: SocketAddr =
        if server.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
    let socket = UdpSocket::bind(bind).await?;
    binding_on(&socket, server, timeout).await
}
