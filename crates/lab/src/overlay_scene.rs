//! The tour's unstructured P2P scene: "Hey Jude" found three ways. Napster's steps 1-3 (Bob
//! informs the directory, Alice queries it, Alice fetches from Bob over HTTP); the same search
//! by flooding the plain Gnutella overlay, with the hop count at which the Query reached every
//! peer and the reverse path of Bob's QueryHit; the same search in the two-tier overlay, where
//! ultrapeers forward to a leaf only on a QRP match (the messages saved are counted); and the
//! download over HTTP from both peers that have the file, by byte ranges, verified by SHA-1.

use crate::events::{Endpoint, line_bytes, tell};
use crate::overlay_lab::{OverlayRun, SONG, song};
use crate::run::Lab;
use appnet_overlay::gnutella::base32::sha1_urn;
use appnet_overlay::gnutella::client;
use appnet_overlay::gnutella::node::TraceEvent;
use appnet_overlay::http::Source;
use appnet_overlay::http::download::{DownloadOptions, download};
use appnet_overlay::napster::wire::Command;
use sha1::Digest;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// How long Alice collects QueryHits.
const WAIT: Duration = Duration::from_millis(1500);

/// What the scene saw, for its test.
#[derive(Debug, Default)]
pub struct OverlayFacts {
    /// Directory hits for "hey jude" (Bob and Carol).
    pub napster_hits: Vec<SocketAddr>,
    /// Peers reached by the flooded Query, with the hops it had on arrival.
    pub flat_reached: BTreeMap<SocketAddr, u8>,
    /// Query descriptors sent in the flat overlay for the one search.
    pub flat_queries: usize,
    /// The path Bob's QueryHit took back, from Bob's node to Alice's.
    pub reverse_path: Vec<SocketAddr>,
    /// Query descriptors sent in the two-tier overlay for the same search.
    pub tiered_queries: usize,
    /// Hits in the two-tier overlay.
    pub tiered_hits: Vec<SocketAddr>,
    /// Bytes of the final download per source.
    pub download_from: Vec<(SocketAddr, u64)>,
}

/// A lab name for an overlay address: the peer's name in the directory, the Napster directory,
/// or Alice's searching client (the only other party the overlay talks to).
fn peer_name(run: &OverlayRun, addr: SocketAddr) -> String {
    if let Some(i) = run.flat.iter().position(|a| *a == addr) {
        return format!("peer{i}-flat");
    }
    if let Some(i) = run.tiered.iter().position(|a| *a == addr) {
        return format!("peer{i}-tiered");
    }
    if addr == run.directory {
        return "napster-directory".into();
    }
    "alice's search client".into()
}

/// Puts the Gnutella descriptors a search moved on the event bus, hop by hop: every Query and
/// QueryHit a node received, as an arrow from the neighbour that sent it (TTL and hops as on
/// arrival, duplicates marked), and the QueryHits handed to Alice's searching client.
fn publish_descriptors(run: &OverlayRun, trace: &[TraceEvent]) {
    crate::events::bus().emit_all(|| {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for e in trace.iter().filter(|e| matches!(e.kind, "Query" | "QueryHit")) {
            let from_node = run.flat.contains(&e.neighbour) || run.tiered.contains(&e.neighbour);
            // A received descriptor is the arrow; a sent one only when the other end is not a
            // node (its receipt is not traced).
            let (from, to) = match (e.received, from_node) {
                (true, _) => (e.neighbour, e.node),
                (false, false) => (e.node, e.neighbour),
                (false, true) => continue,
            };
            let duplicate = e.received && e.kind == "Query" && !seen.insert((e.guid.0, e.node));
            let mut fields = vec![
                ("Descriptor".to_string(), e.kind.to_string()),
                ("GUID".into(), e.guid.to_string()),
                ("TTL".into(), e.ttl.to_string()),
                ("Hops".into(), e.hops.to_string()),
            ];
            if duplicate {
                fields.push(("Routing".into(), "duplicate GUID: dropped, not forwarded".into()));
            }
            let dup = if duplicate { " (duplicate: dropped)" } else { "" };
            out.push(crate::events::event(
                crate::events::Endpoint::new(peer_name(run, from), from),
                crate::events::Endpoint::new(peer_name(run, to), to),
                "Gnutella",
                format!("{} TTL={} hops={}{dup}", e.kind, e.ttl, e.hops),
                fields,
                Vec::new(),
                None,
            ));
        }
        out
    });
}

fn take_trace(run: &OverlayRun) -> Vec<TraceEvent> {
    std::mem::take(&mut *run.trace.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Runs the scene.
pub async fn run(lab: &Lab, say: &mut dyn FnMut(String)) -> Result<OverlayFacts, String> {
    let run = lab.overlay.clone().ok_or("the lab has no overlay")?;
    let spec = lab.topology.overlay.clone().ok_or("the lab has no [overlay]")?;
    let (bob, carol, alice) = (usize::from(spec.bob), usize::from(spec.carol), usize::from(spec.alice));
    let data = song();
    let sha1: [u8; 20] = sha1::Sha1::digest(&data).into();
    let urn = sha1_urn(&sha1);
    let out = run.dir.join("alice-downloads");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| format!("overlay scene: {e}"))?;
    let mut facts = OverlayFacts::default();

    say(format!("{} — a directory, query flooding, ultrapeers", crate::tour::heading(14)));
    say(format!("Napster: one directory server ({}) knows who shares what.", run.directory));
    let bob_http = run.sharers[0];
    let hello = Command::Hello(bob_http);
    let add = Command::Add { size: data.len() as u64, sha1, name: SONG.into() };
    say(format!(
        " 1. Bob ({}) informs the directory of his IP address and content:\n      {hello}\n      {add}",
        spec.peer_addr(spec.bob),
    ));
    let bob_end = Endpoint::new("napster-bob", bob_http);
    let dir_end = Endpoint::new("napster-directory", run.directory);
    let alice_end = Endpoint::new("alice's search client", spec.peer_addr(spec.alice));
    for c in [&hello, &add] {
        let line = c.to_string();
        crate::events::bus().emit(|| {
            let fields = vec![("Command".to_string(), line.clone())];
            crate::events::event(
                bob_end.clone(),
                dir_end.clone(),
                "Napster",
                line.clone(),
                fields,
                line_bytes(&line),
                None,
            )
        });
    }
    let mut hits = Vec::new();
    for _ in 0..100 {
        hits = appnet_overlay::napster::client::search(run.directory, "hey jude", Duration::from_secs(5))
            .await
            .map_err(|e| format!("Napster step 2: {e}"))?;
        if hits.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !hits.iter().any(|h| h.addr == bob_http) {
        return Err(format!("Napster: the directory does not list Bob's copy ({hits:?})"));
    }
    say(format!(" 2. Alice queries the directory for \"hey jude\": one request, {} answers:", hits.len()));
    crate::events::bus().emit(|| {
        let fields = vec![("Search".to_string(), "hey jude".to_string())];
        crate::events::event(
            alice_end.clone(),
            dir_end.clone(),
            "Napster",
            "SEARCH \"hey jude\"".into(),
            fields,
            Vec::new(),
            None,
        )
    });
    for h in &hits {
        let fields = vec![
            ("Name".to_string(), h.name.clone()),
            ("Size".into(), format!("{} bytes", h.size)),
            ("Hash".into(), sha1_urn(&h.sha1)),
            ("Sharer".into(), h.addr.to_string()),
        ];
        let summary = format!("{}  {} bytes  {}  at {}", h.name, h.size, sha1_urn(&h.sha1), h.addr);
        tell(
            say,
            "      ",
            crate::events::event(
                dir_end.clone(),
                alice_end.clone(),
                "Napster",
                summary,
                fields,
                Vec::new(),
                None,
            ),
        );
    }
    facts.napster_hits = hits.iter().map(|h| h.addr).collect();
    let napster_out = out.join("napster");
    std::fs::create_dir_all(&napster_out).map_err(|e| format!("overlay scene: {e}"))?;
    let got = download(
        &[Source::by_urn(bob_http, &sha1)],
        SONG,
        data.len() as u64,
        sha1,
        &napster_out,
        DownloadOptions::default(),
    )
    .await
    .map_err(|e| format!("Napster step 3: {e}"))?;
    let request = format!("GET /uri-res/N2R?{urn} HTTP/1.1");
    crate::events::bus().emit(|| {
        let fields = vec![("Request line".to_string(), request.clone())];
        crate::events::event(
            alice_end.clone(),
            bob_end.clone(),
            "HTTP",
            request.clone(),
            fields,
            Vec::new(),
            None,
        )
    });
    let fetched = got.from.iter().map(|(_, n)| n).sum::<u64>();
    crate::events::bus().emit(|| {
        let fields = vec![("Body".to_string(), format!("{fetched} bytes, SHA-1 verified"))];
        let summary = format!("200 OK: {fetched} bytes");
        crate::events::event(bob_end.clone(), alice_end.clone(), "HTTP", summary, fields, Vec::new(), None)
    });
    say(format!(
        " 3. Alice fetches it from Bob over HTTP, peer to peer: GET /uri-res/N2R?{urn} from {bob_http}: {fetched} bytes, SHA-1 verified",
    ));
    say("    The directory answered in one request — and it is the single point of failure.".into());

    // Flooding.
    let alice_flat = run.flat[alice];
    say(format!(
        "\nGnutella flooding: the {} peers hold TCP connections to a few neighbours each; Alice's servent ({alice_flat}) sends",
        run.flat.len()
    ));
    say("a Query (TTL 7) to its neighbours, every peer forwards it to all of its neighbours once (duplicate GUIDs".into());
    say("are dropped), and a QueryHit travels back hop by hop along the Query's reverse path.".into());
    let hits = search_settled(&run, alice_flat, bob, &run.flat).await?;
    let trace = take_trace(&run);
    publish_descriptors(&run, &trace);
    let queries: Vec<&TraceEvent> = trace.iter().filter(|e| e.kind == "Query").collect();
    for e in queries.iter().filter(|e| e.received) {
        let h = facts.flat_reached.entry(e.node).or_insert(e.hops);
        *h = (*h).min(e.hops);
    }
    facts.flat_queries = queries.iter().filter(|e| !e.received).count();
    let duplicates = queries.iter().filter(|e| e.received).count() - facts.flat_reached.len();
    let mut by_hops: BTreeMap<u8, Vec<SocketAddr>> = BTreeMap::new();
    for (node, hops) in &facts.flat_reached {
        by_hops.entry(*hops).or_default().push(*node);
    }
    for (hops, nodes) in &by_hops {
        let list: Vec<String> = nodes.iter().map(|a| a.ip().to_string()).collect();
        say(format!("   Query arrived with hops={hops} at {}", list.join(", ")));
    }
    if facts.flat_reached.len() < run.flat.len() {
        return Err(format!("flooding reached {} of {} peers", facts.flat_reached.len(), run.flat.len()));
    }
    facts.reverse_path = reverse_path(&trace, run.flat[bob], &run.flat);
    if facts.reverse_path.last() != Some(&alice_flat) {
        return Err(format!("Bob's QueryHit did not come back to Alice's servent: {:?}", facts.reverse_path));
    }
    let path: Vec<String> = facts.reverse_path.iter().map(|a| a.ip().to_string()).collect();
    say(format!("   QueryHit from Bob, reverse path: {} → Alice", path.join(" → ")));
    say(format!(
        "   {} hits; {} Query messages for {} peers ({duplicates} of them duplicates): flooding is expensive, and its",
        hits.len(),
        facts.flat_queries,
        run.flat.len()
    ));
    say("   scope (the TTL) bounds what it finds — no guarantee.".into());

    // Ultrapeers.
    let alice_tiered = run.tiered[alice];
    say(format!(
        "\nKaZaA-style group leaders: peers {}..{} are ultrapeers; every other peer is a leaf of one of them and has",
        spec.peer_addr(0),
        spec.peer_addr(spec.ultrapeers - 1)
    ));
    say("sent it a QRP table (hashed keywords). Queries flood among ultrapeers only and reach a leaf only on a match.".into());
    let hits = search_settled(&run, alice_tiered, bob, &run.tiered).await?;
    let trace = take_trace(&run);
    publish_descriptors(&run, &trace);
    facts.tiered_queries = trace.iter().filter(|e| e.kind == "Query" && !e.received).count();
    facts.tiered_hits = hits.iter().map(|h| h.addr).collect();
    let mut seen = std::collections::HashSet::new();
    for e in trace.iter().filter(|e| e.kind == "Query" && e.received) {
        let from = if run.tiered.contains(&e.neighbour) {
            e.neighbour.ip().to_string()
        } else {
            "Alice's search".into()
        };
        let dup = if seen.insert(e.node) { "" } else { "  (a duplicate: dropped)" };
        say(format!("   Query at {} with hops={} from {from}{dup}", e.node.ip(), e.hops));
    }
    if !facts.tiered_hits.contains(&run.tiered[bob]) {
        return Err(format!("the two-tier search did not find Bob's copy: {:?}", facts.tiered_hits));
    }
    say(format!(
        "   {} hits with metadata, hash and address; {} Query messages instead of {}: {} saved.",
        hits.len(),
        facts.tiered_queries,
        facts.flat_queries,
        facts.flat_queries.saturating_sub(facts.tiered_queries)
    ));

    // The download (KaZaA: by hash, in parallel from every source).
    let sources: Vec<Source> =
        hits.iter().filter(|h| h.sha1 == Some(sha1)).map(|h| Source::by_urn(h.addr, &sha1)).collect();
    let gnutella_out = out.join("gnutella");
    std::fs::create_dir_all(&gnutella_out).map_err(|e| format!("overlay scene: {e}"))?;
    // Small ranges, one at a time per source: both sources get some even when one connects late.
    let opts = DownloadOptions { chunk: 16 * 1024, ..DownloadOptions::default() };
    let done = download(&sources, SONG, data.len() as u64, sha1, &gnutella_out, opts)
        .await
        .map_err(|e| format!("the HTTP download: {e}"))?;
    if std::fs::read(&done.path).map_err(|e| e.to_string())? != data {
        return Err("the downloaded file differs".into());
    }
    say(format!(
        "\nThe download over HTTP, by hash, from {} sources at once (byte ranges of 128 KiB):",
        sources.len()
    ));
    for (addr, n) in &done.from {
        let summary = format!("GET /uri-res/N2R?{urn}  Range: bytes=…  from {addr}: {n} bytes");
        let fields = vec![
            ("Request".to_string(), format!("GET /uri-res/N2R?{urn} with Range: bytes=… (128 KiB pieces)")),
            ("Received".into(), format!("{n} bytes (206 Partial Content)")),
        ];
        let peer = Endpoint::new(peer_name(&run, *addr), addr);
        tell(
            say,
            "   ",
            crate::events::event(peer, alice_end.clone(), "HTTP", summary, fields, Vec::new(), None),
        );
    }
    say(format!("   SHA-1 verified; saved as {}", done.path.display()));
    facts.download_from = done.from;
    let _ = carol;
    Ok(facts)
}

/// Searches through `node` until Bob's copy is among the hits (the overlay may still be
/// joining when the tour starts); the trace is cleared before the counted search.
async fn search_settled(
    run: &OverlayRun,
    node: SocketAddr,
    bob: usize,
    nodes: &[SocketAddr],
) -> Result<Vec<client::SearchHit>, String> {
    for _ in 0..20 {
        let hits = client::search(node, "hey jude", 7, WAIT).await.map_err(|e| format!("search: {e}"))?;
        if hits.iter().any(|h| h.addr == nodes[bob]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    take_trace(run);
    let hits = client::search(node, "hey jude", 7, WAIT).await.map_err(|e| format!("search: {e}"))?;
    if !hits.iter().any(|h| h.addr == nodes[bob]) {
        return Err(format!("the search through {node} did not find Bob's copy ({} hits)", hits.len()));
    }
    Ok(hits)
}

/// The nodes a QueryHit passed through, from `from` until it left the overlay (to Alice's
/// searching client): each node sends it to the neighbour the Query came from.
fn reverse_path(trace: &[TraceEvent], from: SocketAddr, nodes: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut path = vec![from];
    let mut at = from;
    for _ in 0..nodes.len() {
        let Some(e) = trace.iter().find(|e| e.kind == "QueryHit" && !e.received && e.node == at) else {
            break;
        };
        if !nodes.contains(&e.neighbour) || path.contains(&e.neighbour) {
            break;
        }
        at = e.neighbour;
        path.push(at);
    }
    path
}
