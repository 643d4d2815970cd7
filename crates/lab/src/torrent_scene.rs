//! The BitTorrent scene: Alice joins a torrent. A real tracker and real appnet sessions (a
//! seeder and two peers, then Alice) on their own lab addresses; Alice's connections pass
//! through a wire tap that decodes every peer-wire message both ways, so the scene prints what
//! really went over the wire: the bitfields, her first requests (random first piece, then
//! rarest first), the choke/unchoke rounds (compressed in time), her uploads, and the finish.
//!
//! Announces are sent by the lab from each peer's own address (with the peer's id and port):
//! the tracker records the address an announce comes from, and the session's tracker client
//! does not bind a source address, so on loopback every announce would come from 127.0.0.1.

use crate::run::Lab;
use crate::topology::SwarmSpec;
use appnet_netkit::harness::{self, Running, wait_until};
use appnet_netkit::{Service, Shutdown};
use appnet_torrent::config::{ClientConfig, TrackerConfig};
use appnet_torrent::create::{CreateOptions, create};
use appnet_torrent::tracker::TrackerServer;
use appnet_torrent::tracker::proto::{Announce, AnnounceReply, Event};
use appnet_torrent::wire::Message;
use appnet_torrent::{Metainfo, Session, TorrentHandle};
use bytes::BytesMut;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the scene observed, for tests.
#[derive(Debug, Clone, Default)]
pub struct TorrentFacts {
    /// The peers the tracker listed for Alice (names).
    pub listed: Vec<String>,
    /// Pieces each peer had when its bitfield reached Alice.
    pub bitfields: Vec<(String, u32)>,
    /// Pieces Alice requested before she had one (the random first pieces).
    pub random_picks: u32,
    /// Her first six new pieces requested once she had one: (piece, peers holding it, fewest
    /// holders of any piece she lacked that the asked peer had), as seen on the wire.
    pub first_picks: Vec<(u32, u32, u32)>,
    /// When (seconds after she joined) Alice unchoked whom.
    pub unchokes: Vec<(f64, String)>,
    /// Payload bytes Alice sent before she had every piece.
    pub uploaded_while_downloading: u64,
    /// Payload bytes Alice sent in all (her session's counter).
    pub uploaded: u64,
    /// Whether Alice finished.
    pub complete: bool,
    /// How long Alice took.
    pub took: Duration,
}

/// One message seen by the tap.
#[derive(Debug, Clone)]
struct Seen {
    at: Duration,
    peer: String,
    /// Sent to Alice (else sent by her).
    to_alice: bool,
    msg: Msg,
}

/// The part of a message the scene needs (block data is not kept).
#[derive(Debug, Clone)]
enum Msg {
    Handshake,
    Bitfield(Vec<u32>),
    HaveAll,
    Have(u32),
    Request(u32),
    Piece,
    Bytes(u64),
    Choke,
    Unchoke,
    Interested,
    NotInterested,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn summary(m: &Message, pieces: u32) -> Vec<Msg> {
    match m {
        Message::Bitfield(bits) => {
            let set =
                (0..pieces).filter(|&i| bits.get(i as usize / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0));
            vec![Msg::Bitfield(set.collect())]
        }
        Message::HaveAll => vec![Msg::HaveAll],
        Message::Have(i) => vec![Msg::Have(*i)],
        Message::Request(b) => vec![Msg::Request(b.index)],
        Message::Piece { data, .. } => vec![Msg::Piece, Msg::Bytes(data.len() as u64)],
        Message::Choke => vec![Msg::Choke],
        Message::Unchoke => vec![Msg::Unchoke],
        Message::Interested => vec![Msg::Interested],
        Message::NotInterested => vec![Msg::NotInterested],
        _ => Vec::new(),
    }
}

/// Copies `from` to `to` unchanged, decoding the peer-wire messages on the way into `log`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    log: Log,
    peer: String,
    to_alice: bool,
    started: Instant,
    pieces: u32,
) {
    let mut buf = [0u8; 16 * 1024];
    let mut parse = BytesMut::new();
    let mut handshake = 68usize;
    let mut parsing = true;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        if !parsing {
            continue;
        }
        let skip = handshake.min(n);
        handshake -= skip;
        if skip > 0 && handshake == 0 {
            let seen = Seen { at: started.elapsed(), peer: peer.clone(), to_alice, msg: Msg::Handshake };
            log.lock().unwrap_or_else(|p| p.into_inner()).push(seen);
        }
        parse.extend_from_slice(&buf[skip..n]);
        loop {
            match Message::decode(&mut parse, 1 << 20) {
                Ok(Some(m)) => {
                    let at = started.elapsed();
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    for msg in summary(&m, pieces) {
                        log.push(Seen { at, peer: peer.clone(), to_alice, msg });
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    // Not ours to judge: keep relaying, stop decoding.
                    parsing = false;
                    parse.clear();
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// A wire tap for one peer: listens on the peer's address (another port); every connection
/// Alice makes to it is relayed to the peer from Alice's own address.
async fn tap(
    peer: String,
    target: SocketAddr,
    alice: IpAddr,
    log: Log,
    started: Instant,
    pieces: u32,
    stop: Shutdown,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(target.ip(), 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let inbound = tokio::select! {
                _ = stop.wait() => return,
                got = listener.accept() => match got { Ok((s, _)) => s, Err(_) => return },
            };
            let socket = match tokio::net::TcpSocket::new_v4() {
                Ok(s) => s,
                Err(_) => continue,
            };
            if socket.bind(SocketAddr::new(alice, 0)).is_err() {
                continue;
            }
            let Ok(Ok(outbound)) = tokio::time::timeout(Duration::from_secs(5), socket.connect(target)).await
            else {
                continue;
            };
            let (ar, aw) = inbound.into_split();
            let (pr, pw) = outbound.into_split();
            let stop2 = stop.clone();
            let (l1, l2, p1, p2) = (log.clone(), log.clone(), peer.clone(), peer.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop2.wait() => {}
                    _ = async {
                        tokio::join!(
                            pump(ar, pw, l1, p1, false, started, pieces),
                            pump(pr, aw, l2, p2, true, started, pieces)
                        )
                    } => {}
                }
            });
        }
    });
    Ok(addr)
}

/// One HTTP announce to the tracker from `from` (the peer's own address).
async fn announce_from(from: IpAddr, tracker: SocketAddr, a: &Announce) -> Result<AnnounceReply, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket.bind(SocketAddr::new(from, 0)).map_err(|e| format!("bind {from}: {e}"))?;
    let work = async {
        let mut s = socket.connect(tracker).await.map_err(|e| format!("tracker {tracker}: {e}"))?;
        let req = format!(
            "GET /announce?{} HTTP/1.1\r\nHost: {tracker}\r\nConnection: close\r\n\r\n",
            a.to_query()
        );
        s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut resp = Vec::new();
        (&mut s).take(1 << 20).read_to_end(&mut resp).await.map_err(|e| e.to_string())?;
        let split = resp.windows(4).position(|w| w == b"\r\n\r\n").ok_or("tracker sent no HTTP header")?;
        AnnounceReply::decode(&resp[split + 4..])
    };
    tokio::time::timeout(Duration::from_secs(5), work).await.map_err(|_| "tracker timed out".to_string())?
}

struct Member {
    name: String,
    ip: IpAddr,
    handle: TorrentHandle,
    running: Running,
}

fn client_config(spec: &SwarmSpec, ip: IpAddr, dir: std::path::PathBuf, stays: bool) -> ClientConfig {
    ClientConfig {
        listen: SocketAddr::new(ip, spec.port),
        dir,
        upload_rate: Some(spec.upload_kib * 1024),
        rechoke_secs: spec.rechoke_ms as f64 / 1000.0,
        optimistic_secs: spec.optimistic_ms as f64 / 1000.0,
        seed_time_secs: if stays { None } else { Some(0) },
        pex: false,
        dht: false,
        fsync: false,
        ..ClientConfig::default()
    }
}

async fn start_member(
    meta: &Metainfo,
    name: &str,
    ip: IpAddr,
    cfg: ClientConfig,
    seed: bool,
) -> Result<Member, String> {
    std::fs::create_dir_all(&cfg.dir).map_err(|e| format!("{}: {e}", cfg.dir.display()))?;
    let session = Session::bind(meta.clone(), cfg, seed).await.map_err(|e| format!("{name}: {e}"))?;
    let handle = session.handle();
    let running = harness::start(session);
    Ok(Member { name: name.into(), ip, handle, running })
}

fn announce_of(meta: &Metainfo, m: &Member, event: Event) -> Announce {
    let p = m.handle.progress();
    Announce {
        info_hash: meta.info_hash,
        peer_id: m.handle.peer_id(),
        port: m.running.addr().port(),
        uploaded: p.uploaded,
        downloaded: p.downloaded,
        left: p.left,
        event,
        numwant: Some(50),
        compact: true,
        no_peer_id: true,
        key: None,
    }
}

/// Runs the scene with the lab's `[swarm]`.
pub async fn run(lab: &Lab, say: &mut dyn FnMut(String)) -> Result<TorrentFacts, String> {
    let spec = lab.topology.swarm.clone().ok_or("the lab has no swarm")?;
    let dir = lab.dir.join("swarm");
    let files = |e: std::io::Error| format!("swarm files in {}: {e}", dir.display());
    std::fs::create_dir_all(dir.join("seeder")).map_err(files)?;
    let name = "lecture.mp4";
    let piece = spec.piece_kib * 1024;
    let data: Vec<u8> = (0..piece * spec.pieces as u64).map(|i| ((i * 2654435761) >> 7) as u8).collect();
    std::fs::write(dir.join("seeder").join(name), &data).map_err(files)?;
    let tracker_addr = SocketAddr::new(IpAddr::V4(spec.tracker), spec.tracker_port);
    let opts = CreateOptions {
        piece_length: piece,
        trackers: vec![format!("http://{tracker_addr}/announce")],
        ..CreateOptions::default()
    };
    let published = create(&dir.join("seeder").join(name), &opts).map_err(|e| e.to_string())?;
    // The sessions get the torrent without its tracker: the lab announces for them.
    let meta = Metainfo { announce: None, announce_list: Vec::new(), ..published.clone() };
    let tracker = TrackerServer::bind(TrackerConfig { listen: tracker_addr, ..TrackerConfig::default() })
        .await
        .map_err(|e| format!("tracker on {tracker_addr}: {e}"))?;
    let tracker_addr = tracker.local_addr();
    let tracker = harness::start(tracker);

    say(format!(
        "{} — {name}, {} pieces of {} KiB, tracker {tracker_addr}",
        crate::tour::heading(9),
        spec.pieces,
        spec.piece_kib
    ));
    say(format!(
        "Choker rounds compressed in time: tit-for-tat every {:.1} s (BitTorrent: 10 s), optimistic unchoke every {:.1} s (30 s); every peer uploads at most {} KiB/s.",
        spec.rechoke_ms as f64 / 1000.0,
        spec.optimistic_ms as f64 / 1000.0,
        spec.upload_kib
    ));
    let mut members: Vec<Member> = Vec::new();
    let result = async {
        let seeder_ip = IpAddr::V4(spec.seeder);
        let cfg = client_config(&spec, seeder_ip, dir.join("seeder"), true);
        members.push(start_member(&meta, "seeder", seeder_ip, cfg, true).await?);
        for (i, ip) in spec.peers.iter().enumerate() {
            let pname = format!("peer{}", i + 1);
            let ip = IpAddr::V4(*ip);
            let cfg = client_config(&spec, ip, dir.join(&pname), true);
            members.push(start_member(&meta, &pname, ip, cfg, false).await?);
        }
        for m in &members {
            let event = if m.name == "seeder" { Event::Completed } else { Event::Started };
            let reply = announce_from(m.ip, tracker_addr, &announce_of(&meta, m, event)).await?;
            let addrs: Vec<SocketAddr> = reply.peers.iter().map(|p| p.addr).collect();
            let handle = m.handle.clone();
            for a in addrs {
                handle.connect(a);
            }
        }
        // Let the two peers get part of the file so bitfields differ when Alice arrives.
        let quarter = spec.pieces / 4;
        let warm = wait_until(Duration::from_secs(30), Duration::from_millis(20), || async {
            members[1..].iter().all(|m| m.handle.progress().have >= quarter)
        })
        .await;
        if !warm {
            return Err("the swarm did not get going".to_string());
        }
        Ok(())
    }
    .await;
    let mut facts = TorrentFacts::default();
    let stop_taps = Shutdown::new();
    let outcome = match result {
        Err(e) => Err(e),
        Ok(()) => {
            let names: HashMap<SocketAddr, String> =
                members.iter().map(|m| (m.running.addr(), m.name.clone())).collect();
            alice(&spec, &meta, &dir, tracker_addr, &names, &members, &stop_taps, &mut facts, say).await
        }
    };
    stop_taps.trigger();
    for m in members {
        m.handle.stop();
        let _ = m.running.stop().await;
    }
    let _ = tracker.stop().await;
    outcome.map(|()| facts)
}

#[allow(clippy::too_many_arguments)]
async fn alice(
    spec: &SwarmSpec,
    meta: &Metainfo,
    dir: &std::path::Path,
    tracker: SocketAddr,
    names: &HashMap<SocketAddr, String>,
    others: &[Member],
    stop_taps: &Shutdown,
    facts: &mut TorrentFacts,
    say: &mut dyn FnMut(String),
) -> Result<(), String> {
    let ip = IpAddr::V4(spec.alice);
    let cfg = client_config(spec, ip, dir.join("alice"), false);
    let alice = start_member(meta, "alice", ip, cfg, false).await?;
    let started = Instant::now();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let result = async {
        for m in others {
            let p = m.handle.progress();
            say(format!("   {} ({}) has {}/{} pieces", m.name, m.running.addr(), p.have, p.pieces));
        }
        let request = announce_of(meta, &alice, Event::Started);
        let alice_end = crate::events::Endpoint::new("alice", alice.running.addr());
        let tracker_end = crate::events::Endpoint::new("tracker", tracker);
        let fields = vec![
            ("Request".to_string(), "GET /announce (HTTP)".to_string()),
            ("event".into(), "started".into()),
            ("port".into(), request.port.to_string()),
            ("left".into(), format!("{} bytes", request.left)),
            ("compact".into(), "1".into()),
        ];
        let query = format!(
            "GET /announce?{} HTTP/1.1\r\nHost: {tracker}\r\nConnection: close\r\n\r\n",
            request.to_query()
        );
        let sent = Instant::now();
        let reply = announce_from(ip, tracker, &request).await?;
        let summary = format!("announce started, left = {} bytes", meta.info.total_length());
        let e = crate::events::event(
            alice_end.clone(),
            tracker_end.clone(),
            "BitTorrent",
            summary,
            fields,
            query.into_bytes(),
            None,
        );
        crate::events::tell(say, &format!("1. alice ({}) → tracker: ", alice.running.addr()), e);
        let listed: Vec<String> = reply
            .peers
            .iter()
            .map(|p| format!("{} ({})", names.get(&p.addr).map_or("?", String::as_str), p.addr))
            .collect();
        let summary = format!(
            "{} seeders, {} leechers; peers [{}]",
            reply.complete,
            reply.incomplete,
            listed.join(", ")
        );
        let mut fields = vec![
            ("complete".to_string(), reply.complete.to_string()),
            ("incomplete".into(), reply.incomplete.to_string()),
        ];
        fields.extend(listed.iter().enumerate().map(|(i, p)| (format!("peer {}", i + 1), p.clone())));
        let ms = Some(sent.elapsed().as_secs_f64() * 1000.0);
        let e = crate::events::event(tracker_end, alice_end, "BitTorrent", summary, fields, Vec::new(), ms);
        crate::events::tell(say, "2. tracker → alice: ", e);
        facts.listed = reply.peers.iter().filter_map(|p| names.get(&p.addr).cloned()).collect();
        for p in &reply.peers {
            let Some(name) = names.get(&p.addr) else { continue };
            let t = tap(name.clone(), p.addr, ip, log.clone(), started, spec.pieces, stop_taps.clone())
                .await
                .map_err(|e| format!("tap for {name}: {e}"))?;
            alice.handle.connect(t);
        }
        say("3. alice connects to each (through the lab's wire tap, which prints what crosses it)".into());
        let done =
            tokio::time::timeout(Duration::from_secs(spec.max_secs), alice.handle.wait_complete()).await;
        facts.took = started.elapsed();
        facts.complete = done.is_ok();
        facts.uploaded = alice.handle.progress().uploaded;
        Ok::<(), String>(())
    }
    .await;
    let _ = alice.running.stop().await;
    result?;
    let seen = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    report(spec, &seen, facts, say);
    if !facts.complete {
        return Err(format!("alice did not finish within {} s", spec.max_secs));
    }
    Ok(())
}

/// A swarm member's endpoint by its scene name ("alice", "seeder", "peer1", ...).
fn endpoint(spec: &SwarmSpec, name: &str) -> crate::events::Endpoint {
    let ip = match name {
        "alice" => Some(spec.alice),
        "seeder" => Some(spec.seeder),
        _ => name
            .strip_prefix("peer")
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| spec.peers.get(n.wrapping_sub(1)).copied()),
    };
    crate::events::Endpoint::new(
        name,
        ip.map_or(String::new(), |ip| SocketAddr::new(IpAddr::V4(ip), spec.port).to_string()),
    )
}

/// Prints the story from the tapped messages and fills `facts`.
fn report(spec: &SwarmSpec, seen: &[Seen], facts: &mut TorrentFacts, say: &mut dyn FnMut(String)) {
    let n = spec.pieces;
    // Who has what, as Alice learns it.
    let mut holders: HashMap<String, Vec<bool>> = HashMap::new();
    let mut mine = vec![false; n as usize];
    let mut requested = vec![false; n as usize];
    let mut last_piece_in = Duration::ZERO;
    for s in seen {
        if s.to_alice && matches!(s.msg, Msg::Piece) {
            last_piece_in = s.at;
        }
    }
    let mut lines: Vec<(String, crate::events::Event)> = Vec::new();
    // One tapped message as the tour prints it and the page draws it.
    let wire = |s: &Seen, summary: String| {
        let (alice, peer) = (endpoint(spec, "alice"), endpoint(spec, &s.peer));
        let (from, to, arrow) = if s.to_alice {
            (peer, alice, format!("{} → alice", s.peer))
        } else {
            (alice, peer, format!("alice → {}", s.peer))
        };
        let kind = summary.split([' ', '(']).next().unwrap_or("").to_string();
        let fields = vec![
            ("Message".to_string(), kind),
            ("At".into(), format!("{:.3} s after alice started", s.at.as_secs_f64())),
        ];
        let e = crate::events::event(from, to, "BitTorrent", summary, fields, Vec::new(), None);
        (format!("   {:>5.2}s {arrow}: ", s.at.as_secs_f64()), e)
    };
    for s in seen {
        let bits = holders.entry(s.peer.clone()).or_insert_with(|| vec![false; n as usize]);
        match (&s.msg, s.to_alice) {
            (Msg::Bitfield(set), true) => {
                for &i in set {
                    if let Some(b) = bits.get_mut(i as usize) {
                        *b = true;
                    }
                }
                facts.bitfields.push((s.peer.clone(), set.len() as u32));
                lines.push(wire(s, format!("BITFIELD ({} of {n} pieces)", set.len())));
            }
            (Msg::HaveAll, true) => {
                bits.iter_mut().for_each(|b| *b = true);
                facts.bitfields.push((s.peer.clone(), n));
                lines.push(wire(s, format!("HAVE ALL ({n} of {n} pieces)")));
            }
            (Msg::Have(i), true) => {
                if let Some(b) = bits.get_mut(*i as usize) {
                    *b = true;
                }
            }
            (Msg::Have(i), false) => {
                if let Some(b) = mine.get_mut(*i as usize) {
                    *b = true;
                }
            }
            (Msg::Request(i), false) if (*i as usize) < requested.len() && !requested[*i as usize] => {
                requested[*i as usize] = true;
                let count = |p: usize| holders.values().filter(|h| h[p]).count() as u32;
                // Rarest first among what this peer can give her.
                let none = vec![false; n as usize];
                let offers = holders.get(&s.peer).unwrap_or(&none);
                let rarest = (0..n as usize).filter(|&p| !mine[p] && offers[p]).map(count).min().unwrap_or(0);
                let have = mine.iter().filter(|&&b| b).count();
                let held = count(*i as usize);
                let line = |why: &str| {
                    wire(
                        s,
                        format!(
                            "REQUEST piece {i:>2} (held by {held} of {} peers; the rarest piece {} has: by {rarest}; {why})",
                            holders.len(),
                            s.peer,
                        ),
                    )
                };
                if have == 0 {
                    facts.random_picks += 1;
                    if facts.random_picks <= 4 {
                        lines.push(line("alice has no piece yet: random first pieces"));
                    }
                } else if facts.first_picks.len() < 6 {
                    facts.first_picks.push((*i, held, rarest));
                    lines.push(line(&format!("alice has {have}: rarest first")));
                }
            }
            (Msg::Unchoke, false) => {
                facts.unchokes.push((s.at.as_secs_f64(), s.peer.clone()));
                lines.push(wire(s, "UNCHOKE".into()));
            }
            (Msg::Choke, false) => lines.push(wire(s, "CHOKE".into())),
            (Msg::Unchoke, true) => lines.push(wire(s, "UNCHOKE".into())),
            (Msg::Choke, true) => lines.push(wire(s, "CHOKE".into())),
            (Msg::Interested, false) => lines.push(wire(s, "INTERESTED".into())),
            (Msg::Interested, true) => lines.push(wire(s, "INTERESTED".into())),
            (Msg::NotInterested, false) => lines.push(wire(s, "NOT INTERESTED".into())),
            (Msg::NotInterested, true) => lines.push(wire(s, "NOT INTERESTED".into())),
            (Msg::Handshake, _) => lines
                .push(wire(s, "HANDSHAKE (BitTorrent protocol, the torrent's info_hash, peer id)".into())),
            (Msg::Bytes(b), false) if s.at <= last_piece_in => facts.uploaded_while_downloading += b,
            _ => {}
        }
    }
    say("4. on the wire (times since alice started):".into());
    for (prefix, e) in lines {
        crate::events::tell(say, &prefix, e);
    }
    let mut per_peer: Vec<(String, u64, u64)> = Vec::new();
    for s in seen {
        if let Msg::Bytes(b) = s.msg {
            let e = match per_peer.iter_mut().find(|(p, _, _)| *p == s.peer) {
                Some(e) => e,
                None => {
                    per_peer.push((s.peer.clone(), 0, 0));
                    per_peer.last_mut().expect("pushed")
                }
            };
            if s.to_alice { e.1 += b } else { e.2 += b }
        }
    }
    per_peer.sort();
    // The PIECE messages summed per peer (one arrow each way, not one per block).
    let blocks = |peer: &str, to_alice: bool| {
        seen.iter()
            .filter(|s| s.peer == peer && s.to_alice == to_alice && matches!(s.msg, Msg::Piece))
            .count()
    };
    for (p, down, up) in &per_peer {
        say(format!(
            "   {p}: alice downloaded {} KiB from it and uploaded {} KiB to it",
            down / 1024,
            up / 1024
        ));
        crate::events::bus().emit_all(|| {
            let (alice, peer) = (endpoint(spec, "alice"), endpoint(spec, p));
            let mut out = Vec::new();
            for (from, to, bytes, to_alice) in
                [(peer.clone(), alice.clone(), *down, true), (alice, peer, *up, false)]
            {
                let n = blocks(p, to_alice);
                if n == 0 {
                    continue;
                }
                let fields = vec![
                    ("PIECE messages".to_string(), n.to_string()),
                    ("Payload".into(), format!("{bytes} bytes")),
                ];
                let summary = format!("PIECE ×{n}: {} KiB of blocks", bytes / 1024);
                out.push(crate::events::event(from, to, "BitTorrent", summary, fields, Vec::new(), None));
            }
            out
        });
    }
    say(format!(
        "5. alice {} in {:.1} s; she uploaded {} KiB in all, {} KiB of it while still downloading (tit-for-tat at work)",
        if facts.complete { "has the whole file" } else { "did not finish" },
        facts.took.as_secs_f64(),
        facts.uploaded / 1024,
        facts.uploaded_while_downloading / 1024
    ));
}
