//! A small DNS client: one query over UDP (with retries, and a TCP retry when truncated) or TCP,
//! zone transfers (AXFR, IXFR) for secondaries, and NOTIFY for primaries; each optionally
//! signed with a TSIG key (and the answers then verified).

use crate::clock::unix_now;
use crate::delta::Delta;
use crate::serial::Serial;
use crate::wire::message::{self, Parsed, Record, build_ixfr, build_query};
use crate::wire::query::opcode;
use crate::wire::response::rcode;
use crate::wire::rrtype::code;
use crate::wire::tcp;
use crate::wire::tsig::{Key, Verifier, sign_request, strip};
use crate::zone::SoaInfo;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
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
    #[error("TSIG with {server}: {reason}")]
    Tsig { server: SocketAddr, reason: String },
}

/// Signs `packet` with `key` (if any) and returns the verifier for the answers.
fn sign(packet: &mut Vec<u8>, key: Option<&Arc<Key>>) -> Option<Verifier> {
    key.map(|k| Verifier::new(k.clone(), sign_request(packet, k, unix_now())))
}

/// Verifies one answer (when we signed) and returns it without its TSIG record.
fn verified(
    server: SocketAddr,
    verifier: &mut Option<Verifier>,
    bytes: Vec<u8>,
) -> Result<Vec<u8>, ClientError> {
    match verifier {
        None => Ok(bytes),
        Some(v) => {
            v.check(&bytes, unix_now()).map_err(|e| ClientError::Tsig { server, reason: e.to_string() })?;
            Ok(strip(&bytes))
        }
    }
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
    query_signed(server, qname, qtype, opts, None).await
}

/// Like [`query`], signed with TSIG `key` when given; the answer must then be signed too (it is
/// returned with its TSIG record, verified).
pub async fn query_signed(
    server: SocketAddr,
    qname: &[u8],
    qtype: u16,
    opts: QueryOpts,
    key: Option<&Arc<Key>>,
) -> Result<Answer, ClientError> {
    let id: u16 = rand::random();
    let mut packet = build_query(id, opcode::QUERY, qname, qtype, opts.recursion_desired, opts.edns);
    let mut verifier = sign(&mut packet, key);
    let mut check = |bytes: Vec<u8>| -> Result<Vec<u8>, ClientError> {
        match &mut verifier {
            Some(v) => {
                v.check(&bytes, unix_now())
                    .map_err(|e| ClientError::Tsig { server, reason: e.to_string() })?;
                Ok(bytes)
            }
            None => Ok(bytes),
        }
    };
    if opts.tcp {
        let bytes = check(tcp_exchange(server, &packet, opts.timeout).await?)?;
        return Ok(Answer { bytes, retried_over_tcp: false, used_tcp: true });
    }
    let bytes = udp_exchange(server, &packet, id, opts.timeout).await?;
    if opts.tcp_on_truncation && bytes.len() > 2 && bytes[2] & 0x02 != 0 {
        let bytes = check(tcp_exchange(server, &packet, opts.timeout).await?)?;
        return Ok(Answer { bytes, retried_over_tcp: true, used_tcp: true });
    }
    Ok(Answer { bytes: check(bytes)?, retried_over_tcp: false, used_tcp: false })
}

/// Sends an RFC 2136 UPDATE (`packet`, from [`crate::wire::update::build`]) over TCP, signed
/// with `key` when given (the answer must then be signed too); returns the response code.
pub async fn update(
    server: SocketAddr,
    mut packet: Vec<u8>,
    key: Option<&Arc<Key>>,
    timeout: Duration,
) -> Result<u16, ClientError> {
    let mut verifier = sign(&mut packet, key);
    let bytes = tcp_exchange(server, &packet, timeout).await?;
    let parsed = crate::wire::message::parse(&bytes).map_err(|reason| ClientError::Bad { server, reason })?;
    if let Some(v) = &mut verifier
        && let Err(e) = v.check(&bytes, unix_now())
        && parsed.rcode == 0
    {
        // A success must be signed; errors (BADSIG, BADKEY) come back unsigned (RFC 8945 §5.2).
        return Err(ClientError::Tsig { server, reason: e.to_string() });
    }
    Ok(parsed.rcode)
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

/// Writes one length-prefixed message (see [`crate::wire::tcp::write_message`]).
pub async fn write_framed<W: AsyncWrite + Unpin>(w: &mut W, msg: &[u8]) -> io::Result<()> {
    tcp::write_message(w, msg).await
}

/// Reads one length-prefixed message; the stream ending before it is `UnexpectedEof` (see
/// [`crate::wire::tcp::read_message`], which tells a clean end apart).
pub async fn read_framed<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    tcp::read_message(r, tcp::MAX_MESSAGE).await?.ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
}

/// The serial (and SOA record) a server has for `apex`, asked over UDP (TCP if truncated),
/// signed with `key` if given.
pub async fn soa(
    server: SocketAddr,
    apex: &[u8],
    timeout: Duration,
    key: Option<&Arc<Key>>,
) -> Result<Record, ClientError> {
    let opts = QueryOpts { timeout, ..Default::default() };
    let bytes = strip(&query_signed(server, apex, code::SOA, opts, key).await?.bytes);
    let parsed = message::parse(&bytes).map_err(|reason| ClientError::Bad { server, reason })?;
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
        10 => "NOTZONE".into(),
        16 => "BADVERS".into(),
        n => format!("RCODE{n}"),
    }
}

/// Most records accepted in one transfer (a limit on what a primary can make us hold).
pub const MAX_XFR_RECORDS: usize = 5_000_000;

/// What a zone transfer brought.
#[derive(Debug, Clone)]
pub enum Transferred {
    /// The IXFR answer says we are current (its only record is an SOA not newer than ours).
    UpToDate,
    /// The whole zone (SOA first, the closing SOA removed): an AXFR, or an IXFR answered so.
    Full(Vec<Record>),
    /// The changes from our serial (IXFR, RFC 1995), oldest first.
    Incremental(Vec<Delta>),
}

impl Transferred {
    /// The records in the order a transfer carries them on the wire, for display: an AXFR
    /// ends with the SOA again; an IXFR is the new SOA, then per step the old SOA, the
    /// deletions, the new SOA and the additions (RFC 1995 §4), then the new SOA again. Up to
    /// date: no records.
    pub fn into_wire_records(self) -> Vec<Record> {
        match self {
            Transferred::UpToDate => Vec::new(),
            Transferred::Full(mut records) => {
                records.extend(records.first().cloned());
                records
            }
            Transferred::Incremental(steps) => {
                let newest = steps.last().map(|d| d.new_soa.clone());
                let mut records: Vec<Record> = newest.iter().cloned().collect();
                for d in steps {
                    records.push(d.old_soa);
                    records.extend(d.deleted);
                    records.push(d.new_soa);
                    records.extend(d.added);
                }
                records.extend(newest);
                records
            }
        }
    }
}

/// Transfers the zone `apex` from `server` with AXFR; returns its records (SOA first, the closing
/// SOA removed).
pub async fn axfr(
    server: SocketAddr,
    apex: &[u8],
    timeout: Duration,
    key: Option<&Arc<Key>>,
) -> Result<Vec<Record>, ClientError> {
    match transfer(server, apex, None, timeout, key).await? {
        Transferred::Full(records) => Ok(records),
        _ => Err(ClientError::Bad { server, reason: "not a full zone".into() }),
    }
}

/// Transfers `apex` from `server`: IXFR from `ours` (our SOA record) when given, else AXFR.
/// Signed with `key` when given; then every message of the answer is verified.
pub async fn transfer(
    server: SocketAddr,
    apex: &[u8],
    ours: Option<&Record>,
    timeout: Duration,
    key: Option<&Arc<Key>>,
) -> Result<Transferred, ClientError> {
    let id: u16 = rand::random();
    let mut packet = match ours {
        Some(soa) => build_ixfr(id, apex, soa.ttl, &soa.rdata),
        None => build_query(id, opcode::QUERY, apex, code::AXFR, false, None),
    };
    let mut verifier = sign(&mut packet, key);
    let bad = |reason: &str| ClientError::Bad { server, reason: reason.to_string() };
    tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect(server).await?;
        write_framed(&mut stream, &packet).await?;
        let mut reader = XfrReader::new(ours.and_then(|r| SoaInfo::from_rdata(&r.rdata)).map(|s| s.serial));
        loop {
            let msg = read_framed(&mut stream).await?;
            let msg = verified(server, &mut verifier, msg)?;
            let parsed = message::parse(&msg).map_err(|reason| ClientError::Bad { server, reason })?;
            if parsed.id != id {
                return Err(bad("answer with a different id"));
            }
            check_rcode(server, &parsed)?;
            let mut done = None;
            for rec in parsed.answer {
                if done.is_some() {
                    return Err(bad("records after the end of the transfer"));
                }
                done = reader.push(rec).map_err(&bad)?;
            }
            if done.is_none() {
                done = reader.end_of_message();
            }
            if let Some(result) = done {
                if let Some(v) = &verifier {
                    v.finish().map_err(|e| ClientError::Tsig { server, reason: e.to_string() })?;
                }
                return Ok(result);
            }
        }
    })
    .await
    .map_err(|_| ClientError::Timeout(server))?
}

/// Reads the records of an AXFR or IXFR answer one by one (they may span messages) and says
/// when the transfer is complete (RFC 5936 §2.2, RFC 1995 §4). Public so the fuzz target can
/// drive it with arbitrary answers.
pub struct XfrReader {
    /// Our serial, when we asked for IXFR.
    ours: Option<u32>,
    first: Option<Record>,
    records: Vec<Record>,
    incremental: bool,
    deltas: Vec<Delta>,
    current: Option<Delta>,
    in_additions: bool,
    count: usize,
}

fn serial(r: &Record) -> u32 {
    SoaInfo::from_rdata(&r.rdata).map(|s| s.serial).unwrap_or(0)
}

impl XfrReader {
    /// A reader for an AXFR (`ours` is `None`) or an IXFR from serial `ours`.
    pub fn new(ours: Option<u32>) -> XfrReader {
        XfrReader {
            ours,
            first: None,
            records: Vec::new(),
            incremental: false,
            deltas: Vec::new(),
            current: None,
            in_additions: false,
            count: 0,
        }
    }

    /// Takes the next record; `Some` when the transfer is complete.
    pub fn push(&mut self, rec: Record) -> Result<Option<Transferred>, &'static str> {
        self.count += 1;
        if self.count > MAX_XFR_RECORDS {
            return Err("transfer larger than the record limit");
        }
        let is_soa = rec.rtype == code::SOA;
        let Some(first) = &self.first else {
            if !is_soa {
                return Err("transfer does not start with the SOA");
            }
            self.first = Some(rec);
            return Ok(None);
        };
        let new_serial = serial(first);
        if self.count == 2 {
            if is_soa && self.ours.is_some() && serial(&rec) != new_serial {
                self.incremental = true;
                self.current = Some(Delta {
                    old_soa: rec.clone(),
                    new_soa: rec,
                    deleted: Vec::new(),
                    added: Vec::new(),
                });
                return Ok(None);
            }
            self.records.push(first.clone());
        }
        if !self.incremental {
            if is_soa && rec.rdata == first.rdata {
                return Ok(Some(Transferred::Full(std::mem::take(&mut self.records))));
            }
            self.records.push(rec);
            return Ok(None);
        }
        match (is_soa, self.in_additions, self.current.as_mut()) {
            (true, false, Some(cur)) => {
                cur.new_soa = rec;
                self.in_additions = true;
            }
            (true, true, Some(_)) => {
                self.deltas.extend(self.current.take());
                self.in_additions = false;
                if serial(&rec) == new_serial {
                    return Ok(Some(Transferred::Incremental(std::mem::take(&mut self.deltas))));
                }
                self.current = Some(Delta {
                    old_soa: rec.clone(),
                    new_soa: rec,
                    deleted: Vec::new(),
                    added: Vec::new(),
                });
            }
            (false, false, Some(cur)) => cur.deleted.push(rec),
            (false, true, Some(cur)) => cur.added.push(rec),
            (_, _, None) => return Err("malformed incremental transfer"),
        }
        Ok(None)
    }

    /// At the end of a message: an IXFR answer of just the SOA, not newer than ours, is complete.
    pub fn end_of_message(&self) -> Option<Transferred> {
        match (&self.first, self.ours) {
            (Some(first), Some(ours))
                if self.count == 1 && !Serial(ours).is_older_than(Serial(serial(first))) =>
            {
                Some(Transferred::UpToDate)
            }
            _ => None,
        }
    }
}

/// Sends a NOTIFY for `apex` and waits for the ack; signed with `key` when given (the ack must
/// then be signed too).
pub async fn notify(
    server: SocketAddr,
    apex: &[u8],
    timeout: Duration,
    key: Option<&Arc<Key>>,
) -> Result<(), ClientError> {
    let id: u16 = rand::random();
    let mut packet = build_query(id, opcode::NOTIFY, apex, code::SOA, false, None);
    let mut verifier = sign(&mut packet, key);
    let bytes = udp_exchange(server, &packet, id, timeout).await?;
    let bytes = verified(server, &mut verifier, bytes)?;
    let parsed = message::parse(&bytes).map_err(|reason| ClientError::Bad { server, reason })?;
    check_rcode(server, &parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::soa_with_serial;
    use crate::wire::name::from_text;

    fn soa(serial: u32) -> Record {
        soa_with_serial(&from_text("example.").unwrap(), serial)
    }

    fn a(owner: &str, last: u8) -> Record {
        let owner = from_text(owner).unwrap();
        Record { owner, rtype: code::A, class: 1, ttl: 60, rdata: vec![192, 0, 2, last] }
    }

    /// Feeds `records` to a reader as one message.
    fn read(ours: Option<u32>, records: Vec<Record>) -> Option<Transferred> {
        let mut reader = XfrReader::new(ours);
        for r in records {
            if let Some(done) = reader.push(r).unwrap() {
                return Some(done);
            }
        }
        reader.end_of_message()
    }

    #[test]
    fn soa_with_serial_carries_just_the_serial() {
        let r = soa(42);
        assert_eq!(r.rtype, code::SOA);
        let info = SoaInfo::from_rdata(&r.rdata).unwrap();
        assert_eq!((info.serial, info.refresh, info.retry, info.expire, info.minimum), (42, 0, 0, 0, 0));
    }

    #[test]
    fn wire_records_read_back_as_the_same_transfer() {
        // AXFR: SOA, records, SOA.
        let full = Transferred::Full(vec![soa(5), a("www.example.", 1), a("mail.example.", 2)]);
        let wire = full.clone().into_wire_records();
        assert_eq!(wire.len(), 4);
        assert_eq!(wire.first().map(|r| &r.rdata), wire.last().map(|r| &r.rdata));
        match read(None, wire) {
            Some(Transferred::Full(records)) => assert_eq!(records.len(), 3),
            other => panic!("{other:?}"),
        }
        // IXFR 1 -> 2 -> 3: new SOA, (old, deleted, new, added) per step, new SOA.
        let steps = vec![
            Delta {
                old_soa: soa(1),
                new_soa: soa(2),
                deleted: vec![a("www.example.", 1)],
                added: vec![a("www.example.", 2)],
            },
            Delta { old_soa: soa(2), new_soa: soa(3), deleted: vec![], added: vec![a("ftp.example.", 3)] },
        ];
        let wire = Transferred::Incremental(steps).into_wire_records();
        let serials: Vec<Option<u32>> = wire
            .iter()
            .map(|r| SoaInfo::from_rdata(&r.rdata).filter(|_| r.rtype == code::SOA).map(|s| s.serial))
            .collect();
        assert_eq!(serials, vec![Some(3), Some(1), None, Some(2), None, Some(2), Some(3), None, Some(3)]);
        match read(Some(1), wire) {
            Some(Transferred::Incremental(back)) => {
                assert_eq!(back.len(), 2);
                assert_eq!(back[0].deleted.len(), 1);
                assert_eq!(back[1].added.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(Transferred::UpToDate.into_wire_records().is_empty());
    }
}
