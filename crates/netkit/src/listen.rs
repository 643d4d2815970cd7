//! Listener binding with socket2, so every service gets the same socket options and port 0 works.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;

/// Socket options for a listening socket. `Default` suits a single-listener service.
#[derive(Debug, Clone, Copy)]
pub struct ListenOpts {
    /// SO_REUSEPORT: lets several sockets share one port (one per core) with kernel load balancing.
    pub reuse_port: bool,
    /// Accept backlog for TCP listeners.
    pub backlog: i32,
    /// For IPv6 addresses: accept only IPv6 (true) or also IPv4-mapped traffic (false).
    pub v6_only: bool,
    /// Receive buffer size in bytes for UDP sockets (0 keeps the kernel default).
    pub recv_buffer: usize,
    /// Send buffer size in bytes for UDP sockets (0 keeps the kernel default).
    pub send_buffer: usize,
}

impl Default for ListenOpts {
    fn default() -> Self {
        ListenOpts { reuse_port: false, backlog: 1024, v6_only: true, recv_buffer: 0, send_buffer: 0 }
    }
}

fn new_socket(addr: SocketAddr, ty: Type, proto: Protocol, opts: &ListenOpts) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    socket.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    if opts.reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(opts.v6_only)?;
    }
    if opts.recv_buffer > 0 {
        socket.set_recv_buffer_size(opts.recv_buffer)?;
    }
    if opts.send_buffer > 0 {
        socket.set_send_buffer_size(opts.send_buffer)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Binds a TCP listener on `addr` (port 0 picks a free port; read it with `local_addr`).
pub fn bind_tcp(addr: SocketAddr, opts: &ListenOpts) -> io::Result<tokio::net::TcpListener> {
    let socket = new_socket(addr, Type::STREAM, Protocol::TCP, opts)?;
    socket.set_tcp_nodelay(true)?; // inherited by accepted sockets on Linux
    socket.listen(opts.backlog)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// Sets kernel TCP's congestion control (`cubic`, `reno`, `bbr`, ...) of one socket (Linux
/// `TCP_CONGESTION`); connections accepted from a listener inherit it. Unlike the namespace's
/// `net.ipv4.tcp_congestion_control`, it works inside any network namespace for algorithms
/// outside `tcp_allowed_congestion_control` when the process has CAP_NET_ADMIN.
pub fn set_tcp_congestion<S: std::os::fd::AsFd>(socket: &S, algorithm: &str) -> io::Result<()> {
    socket2::SockRef::from(socket).set_tcp_congestion(algorithm.as_bytes()).map_err(|e| {
        let have = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control")
            .unwrap_or_default();
        io::Error::new(
            e.kind(),
            format!("TCP congestion control {algorithm:?}: {e} (this kernel has: {})", have.trim()),
        )
    })
}

/// Caps the bytes a TCP socket holds unsent (Linux `TCP_NOTSENT_LOWAT`): while more than
/// `bytes` wait unsent, writes take nothing and the socket does not poll writable. A server
/// multiplexing many responses on one connection keeps the rest in its own queue, where its
/// scheduler can still put something more urgent first, instead of committing the whole send
/// buffer (megabytes once autotuned) in the order it happened to write.
pub fn set_notsent_lowat<S: std::os::fd::AsFd>(socket: &S, bytes: u32) -> io::Result<()> {
    socket2::SockRef::from(socket).set_tcp_notsent_lowat(bytes)
}

/// Binds a UDP socket on `addr` (port 0 picks a free port).
pub fn bind_udp(addr: SocketAddr, opts: &ListenOpts) -> io::Result<tokio::net::UdpSocket> {
    tokio::net::UdpSocket::from_std(bind_udp_std(addr, opts)?)
}

/// Binds a UDP socket on `addr` for a thread of its own (non-blocking like the others; the
/// owner switches it to blocking with a read timeout if it wants to sleep in `recv`).
pub fn bind_udp_std(addr: SocketAddr, opts: &ListenOpts) -> io::Result<std::net::UdpSocket> {
    Ok(new_socket(addr, Type::DGRAM, Protocol::UDP, opts)?.into())
}

/// Binds `count` UDP sockets sharing one port with SO_REUSEPORT (one per worker thread).
/// With port 0 the first socket picks the port and the rest join it.
pub fn bind_udp_group(
    addr: SocketAddr,
    count: usize,
    opts: &ListenOpts,
) -> io::Result<Vec<tokio::net::UdpSocket>> {
    bind_udp_group_std(addr, count, opts)?.into_iter().map(tokio::net::UdpSocket::from_std).collect()
}

/// [`bind_udp_group`] for servers that run each socket on a thread of their own.
pub fn bind_udp_group_std(
    addr: SocketAddr,
    count: usize,
    opts: &ListenOpts,
) -> io::Result<Vec<std::net::UdpSocket>> {
    let opts = ListenOpts { reuse_port: count > 1 || opts.reuse_port, ..*opts };
    let first = bind_udp_std(addr, &opts)?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count.max(1) {
        sockets.push(bind_udp_std(bound, &opts)?);
    }
    Ok(sockets)
}

/// Binds `workers` UDP sockets (SO_REUSEPORT) and a TCP listener on one port, as DNS servers
/// need. With port 0 the UDP side picks the port; if that port's TCP side is taken, it tries
/// again with another (up to 20 times).
pub fn bind_udp_group_and_tcp(
    addr: SocketAddr,
    workers: usize,
    udp_opts: &ListenOpts,
    tcp_opts: &ListenOpts,
) -> io::Result<(Vec<tokio::net::UdpSocket>, tokio::net::TcpListener)> {
    let (udp, tcp) = bind_udp_group_std_and_tcp(addr, workers, udp_opts, tcp_opts)?;
    let udp = udp.into_iter().map(tokio::net::UdpSocket::from_std).collect::<io::Result<_>>()?;
    Ok((udp, tcp))
}

/// [`bind_udp_group_and_tcp`] with the UDP sockets left for threads of their own.
pub fn bind_udp_group_std_and_tcp(
    addr: SocketAddr,
    workers: usize,
    udp_opts: &ListenOpts,
    tcp_opts: &ListenOpts,
) -> io::Result<(Vec<std::net::UdpSocket>, tokio::net::TcpListener)> {
    let mut last_err = None;
    for _ in 0..20 {
        let udp = bind_udp_group_std(addr, workers, udp_opts)?;
        let port = udp[0].local_addr()?.port();
        match bind_tcp(SocketAddr::new(addr.ip(), port), tcp_opts) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no port free for both UDP and TCP")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn port_zero_reports_the_bound_port() {
        let tcp = bind_tcp("127.0.0.1:0".parse().unwrap(), &ListenOpts::default()).unwrap();
        assert_ne!(tcp.local_addr().unwrap().port(), 0);
        let udp = bind_udp("127.0.0.1:0".parse().unwrap(), &ListenOpts::default()).unwrap();
        assert_ne!(udp.local_addr().unwrap().port(), 0);
    }

    #[tokio::test]
    async fn a_group_shares_one_port() {
        let group = bind_udp_group("127.0.0.1:0".parse().unwrap(), 3, &ListenOpts::default()).unwrap();
        let port = group[0].local_addr().unwrap().port();
        assert!(group.iter().all(|s| s.local_addr().unwrap().port() == port));
        assert_eq!(group.len(), 3);
    }

    #[tokio::test]
    async fn udp_and_tcp_share_a_port() {
        let opts = ListenOpts::default();
        for _ in 0..20 {
            let (udp, tcp) = bind_udp_group_and_tcp("127.0.0.1:0".parse().unwrap(), 2, &opts, &opts).unwrap();
            assert_eq!(udp[0].local_addr().unwrap().port(), tcp.local_addr().unwrap().port());
        }
    }

    #[tokio::test]
    async fn ipv6_loopback_binds() {
        // Some sandboxes lack IPv6; only assert when ::1 exists.
        if let Ok(l) = bind_tcp("[::1]:0".parse().unwrap(), &ListenOpts::default()) {
            assert!(l.local_addr().unwrap().is_ipv6());
        }
    }
}
