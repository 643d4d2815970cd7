//! A small DNS client: one query over UDP (with retries, and a TCP retry when truncated) or TCP,
//! zone transfers (AXFR) for secondaries, and NOTIFY for primaries.

use crate::wire::message::{self, Parsed, Record, build_query};
use crate::wire::query::opcode;
use crate::wire::response::rcode;
use crate::wire::rrtype::code;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no answer from {0} within the timeout")]
    Timeout(SocketAddr),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("bad response from {server}: {reason}")]
    Bad { server: SocketAddr, reason: String },
    #[error("{server} answered {rcode}")]
    Rcode { server: SocketAddr, rcode: String },
}

/// Options for one query.
#[derive(Debug, Clone, Copy)]
pub struct QueryOpts {
    /// Use TCP from the start.
    pub tcp: bool,
    /// EDNS payload size and version (None: no EDNS).
    pub edns: Option<(u16, u8)>,
    /// Set RD (ask a resolver to recurse).
    pub recursion_desired: bool,
    /// Total time allowed (UDP retries three times within it).
    pub timeout: Duration,
    /// Retry over TCP when the UDP answer is truncated.
    pub tcp_on_truncation: bool,
}

impl Default for QueryOpts {
    fn default() -> Self {
        QueryOpts {
            tcp: false,
            edns: Some((1232, 0)),
            recursion_desired: false,
            timeout: Duration::from_secs(5),
            tcp_on_truncation: true,
        }
    }
}

/// The raw response and whether it came over TCP after a truncated UDP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub bytes: Vec<u8>,
    pub retried_over_tcp: bool,
    pub used_tcp: bool,
}

/// Sends one query for `qname` (wire format) / `qtype` to `server`.
pub async fn query(
    server: SocketAddr,
    qname: &[u8],
    qtype: u16,
    opts: QueryOpts,
) -> Result<Answer, ClientError> {
    let id: u16 = rand::random();
    let packet = build_query(id, opcode::QUERY, qname, qtype, opts.recursion_desired, opts.edns);
    if opts.tcp {
        let bytes = tcp_exchange(server, &packet, opts.timeout).await?;
        return Ok(Answer { bytes, retried_over_tcp: false, used_tcp: true });
    }
    let bytes = udp_exchange(server, &packet, id, opts.timeout).await?;
    if opts.tcp_on_truncation && bytes.len() > 2 && bytes[2] & 0x02 != 0 {
        let bytes = tcp_exchange(server, &packet, opts.timeout).await?;
        return Ok(Answer { bytes, retried_over_tcp: true, used_tcp: true });
    }
    Ok(Answer { bytes, retried_over_tcp: false, used_tcp: false })
}

/// One UDP request/response, retried three times within `timeout`; answers with another id or
/// from another address are ignored.
pub async fn udp_exchange(
    server: SocketAddr,
    packet: &[u8],
    id: u16,
    timeout: Duration,
) -> Result<Vec<u8>, ClientError> {
    let local: SocketAddr = if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let sock = UdpSocket::bind(local).await?;
    let per_try = timeout / 3;
    let mut buf = vec![0u8; 65535];
    for _ in 0..3 {
        sock.send_to(packet, server).await?;
        let deadline = tokio::time::Instant::now() + per_try;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => break,
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok((n, from))) => {
                    if from == server && n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                        buf.truncate(n);
                        return Ok(buf);
                    }
                }
            }
        }
    }
    Err(ClientError::Timeout(server))
}

/// One TCP request/response (two-byte length framing).
pub async fn tcp_exchange(
    server: SocketAddr,
    packet: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, ClientError> {
    tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect(server).await?;
        write_framed(&mut stream, packet).await?;
        read_framed(&mut stream).await
    })
    .await
    .map_err(|_| ClientError::Timeout(server))?
    .map_err(ClientError::Io)
}

/// Writes one length-prefixed message.
pub async fn write_framed<W: AsyncWriteExt + Unpin>(w: &mut W, msg: &[u8]) -> io::Result<()> {
    let len = u16::try_from(msg.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too long"))?;
    let mut frame = Vec::with_capacity(msg.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(msg);
    w.write_all(&frame).await
}

/// Reads one length-prefixed message.
pub async fn read_framed<R: AsyncReadExt + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    let len = r.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

/// The serial (and SOA record) a server has for `apex`, asked over UDP.
pub async fn soa(server: SocketAddr, apex: &[u8], timeout: Duration) -> Result<Record, ClientError> {
    let opts = QueryOpts { timeout, ..Default::default() };
    let ans = query(server, apex, code::SOA, opts).await?;
    let parsed = message::parse(&ans.bytes).map_err(|reason| ClientError::Bad { server, reason })?;
    check_rcode(server, &parsed)?;
    parsed
        .answer
        .into_iter()
        .find(|r| r.rtype == code::SOA)
        .ok_or_else(|| ClientError::Bad { server, reason: "no SOA in the answer".into() })
}

fn check_rcode(server: SocketAddr, parsed: &Parsed) -> Result<(), ClientError> {
    if parsed.rcode != rcode::NOERROR {
        return Err(ClientError::Rcode { server, rcode: rcode_name(parsed.rcode) });
    }
    Ok(())
}

/// The mnemonic of a response code.
pub fn rcode_name(rc: u16) -> String {
    match rc {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        9 => "NOTAUTH".into(),
        16 => "BADVERS".into(),
        n => format!("RCODE{n}"),
    }
}

/// Most records accepted in one transfer (a limit on what a primary can make us hold).
pub const MAX_XFR_RECORDS: usize = 5_000_000;

/// Transfers the zone `apex` from `server` with AXFR; returns its records (SOA first, the closing
/// SOA removed).
pub async fn axfr(server: SocketAddr, apex: &[u8], timeout: Duration) -> Result<Vec<Record>, ClientError> {
    let id: u16 = rand::random();
    let packet = build_query(id, opcode::QUERY, apex, code::AXFR, false, None);
    tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect(server).await?;
        write_framed(&mut stream, &packet).await?;
        let mut records: Vec<Record> = Vec::new();
        loop {
            let msg = read_framed(&mut stream).await?;
            let parsed = message::parse(&msg).map_err(|reason| ClientError::Bad { server, reason })?;
            if parsed.id != id {
                return Err(ClientError::Bad { server, reason: "answer with a different id".into() });
            }
            check_rcode(server, &parsed)?;
            for rec in parsed.answer {
                if records.is_empty() && rec.rtype != code::SOA {
                    return Err(ClientError::Bad {
                        server,
                        reason: "transfer does not start with the SOA".into(),
                    });
                }
                if !records.is_empty() && rec.rtype == code::SOA && rec.rdata == records[0].rdata {
                    return Ok(records);
                }
                records.push(rec);
                if records.len() > MAX_XFR_RECORDS {
                    return Err(ClientError::Bad {
                        server,
                        reason: "transfer larger than the record limit".into(),
                    });
                }
            }
        }
    })
    .await
    .map_err(|_| ClientError::Timeout(server))?
}

/// Sends a NOTIFY for `apex` (with its SOA in the answer section) and waits for the ack.
pub async fn notify(server: SocketAddr, apex: &[u8], timeout: Duration) -> Result<(), ClientError> {
    let id: u16 = rand::random();
    let packet = build_query(id, opcode::NOTIFY, apex, code::SOA, false, None);
    let bytes = udp_exchange(server, &packet, id, timeout).await?;
    let parsed = message::parse(&bytes).map_err(|reason| ClientError::Bad { server, reason })?;
    check_rcode(server, &parsed)
}
