//! The Chord scene: "who is responsible for key 1110?" on the textbook's 4-bit ring of real
//! nodes, answered hop by hop along successor pointers and then with fingers; peer 5 is killed
//! and peer 4 repairs its successor list; peer 13 joins and takes over key 13. Everything
//! printed is read from the nodes over RPC (`Info`, `FindSuccessor`), with bounded waits.

use crate::events::{Endpoint, event, tell};
use crate::run::{Lab, chord_name};
use appnet_chord::client::{Client, NodeInfo, rpc};
use appnet_chord::lookup::{Lookup, Step};
use appnet_chord::wire::{Request, Response};
use appnet_chord::{Id, NodeRef};
use appnet_netkit::harness::wait_until;
use std::time::{Duration, Instant};

/// The key the textbook asks about (binary 1110).
pub const KEY: u64 = 0b1110;

/// What the scene observed, for tests.
#[derive(Debug, Clone, Default)]
pub struct ChordFacts {
    /// The asking peer.
    pub asker: u64,
    /// Peers visited along successor pointers only, the asker first.
    pub successor_path: Vec<u64>,
    /// Peers asked with fingers (iterative `FindSuccessor`), the asker first.
    pub finger_path: Vec<u64>,
    /// Whether every finger was the true successor of n + 2^k when the scene asked.
    pub fingers_ideal: bool,
    /// Who is responsible for [`KEY`] (from each way of asking).
    pub owner: Vec<u64>,
    /// The peer killed, and its predecessor's successor list once repaired.
    pub killed: u64,
    /// The successor list of the killed peer's predecessor after the repair.
    pub repaired_succs: Vec<u64>,
    /// How long the repair took.
    pub repair_time: Duration,
    /// The peer that joined.
    pub joined: u64,
    /// Owners after the join: (key, responsible peer).
    pub owners_after_join: Vec<(u64, u64)>,
}

/// How long the scene waits for the ring to settle after each change.
const SETTLE: Duration = Duration::from_secs(20);
/// RPC timeout of the scene's own requests.
const RPC: Duration = Duration::from_secs(2);

fn ids(nodes: &[NodeRef]) -> Vec<u64> {
    nodes.iter().map(|n| n.id.low_u64()).collect()
}

fn list(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

/// The successor of `id` among the sorted `ring`.
fn successor_of(ring: &[u64], id: u64) -> u64 {
    ring.iter().copied().find(|&n| n >= id).unwrap_or(ring[0])
}

/// Whether every node's predecessor and successor list are right, and (with `fingers`) every
/// finger points at the true successor of n + 2^k.
async fn settled(
    client: &Client,
    peers: &[(u64, std::net::SocketAddr)],
    bits: u8,
    r: usize,
    fingers: bool,
) -> bool {
    let mut ring: Vec<u64> = peers.iter().map(|p| p.0).collect();
    ring.sort_unstable();
    let n = ring.len();
    let modulus = 1u64 << bits;
    for (pos, id) in ring.iter().enumerate() {
        let Some(addr) = peers.iter().find(|p| p.0 == *id).map(|p| p.1) else { return false };
        let Ok(info) = client.info(addr).await else { return false };
        let want: Vec<u64> = (1..=r.min(n - 1)).map(|k| ring[(pos + k) % n]).collect();
        if ids(&info.succs) != want || info.pred.map(|p| p.id.low_u64()) != Some(ring[(pos + n - 1) % n]) {
            return false;
        }
        if fingers {
            let mut expect: Vec<(u8, u64)> = Vec::new();
            for k in 0..bits {
                let f = successor_of(&ring, (id + (1 << k)) % modulus);
                if expect.last().is_none_or(|(_, last)| *last != f) {
                    expect.push((k, f));
                }
            }
            let have: Vec<(u8, u64)> = info.fingers.iter().map(|(k, f)| (*k, f.id.low_u64())).collect();
            if have != expect {
                return false;
            }
        }
    }
    true
}

/// A ring member as the event bus names it (its lab name and address).
fn peer(n: &NodeRef) -> Endpoint {
    Endpoint::new(chord_name(n.id.low_u64()), n.addr)
}

/// Fields shared by the lookup's messages.
fn key_fields(key: Id, bits: u8) -> Vec<(String, String)> {
    let k = key.low_u64();
    vec![("Key".to_string(), format!("{k} ({k:0w$b})", w = usize::from(bits)))]
}

async fn info(client: &Client, addr: std::net::SocketAddr) -> Result<NodeInfo, String> {
    client.info(addr).await.map_err(|e| format!("chord scene: Info from {addr}: {e}"))
}

/// Every node's state in one line each, for error messages.
async fn describe(client: &Client, peers: &[(u64, std::net::SocketAddr)]) -> String {
    let mut out = String::new();
    for &(id, addr) in peers {
        match client.info(addr).await {
            Ok(i) => out.push_str(&format!(
                "\n  {id}: pred {:?} succs [{}] fingers {:?}",
                i.pred.map(|p| p.id.low_u64()),
                list(&ids(&i.succs)),
                i.fingers.iter().map(|(k, f)| (*k, f.id.low_u64())).collect::<Vec<_>>()
            )),
            Err(e) => out.push_str(&format!("\n  {id}: {e}")),
        }
    }
    out
}

/// Follows successor pointers only, from `from`, asking each peer for its successor (`Info`)
/// until the key lies between a peer and its successor. Returns the peers visited and the owner.
async fn walk_successors(
    client: &Client,
    from: NodeRef,
    key: Id,
    say: &mut dyn FnMut(String),
) -> Result<(Vec<u64>, u64), String> {
    let mut at = from;
    let mut visited = Vec::new();
    for _ in 0..64 {
        let me = info(client, at.addr).await?;
        let succ = *me.succs.first().ok_or(format!("peer {} has no successor", at.id.low_u64()))?;
        visited.push(at.id.low_u64());
        let (a, s) = (at.id.low_u64(), succ.id.low_u64());
        let mut fields = vec![("Key".to_string(), key.low_u64().to_string())];
        fields.push(("Arc of the successor".into(), format!("({a}, {s}]")));
        if key.in_half_open(&at.id, &succ.id) {
            fields.push(("Outcome".into(), format!("{s} is responsible")));
            let summary =
                format!("key {} lies in ({a}, {s}], so my successor {s} is responsible", key.low_u64());
            let e = event(peer(&at), peer(&from), "Chord", summary, fields, Vec::new(), None);
            tell(say, &format!("   peer {a}: "), e);
            return Ok((visited, s));
        }
        fields.push(("Outcome".into(), format!("forwarded to the successor {s}")));
        let summary =
            format!("key {} is not in ({a}, {s}]: pass the query to my successor {s}", key.low_u64());
        tell(
            say,
            &format!("   peer {a}: "),
            event(peer(&at), peer(&succ), "Chord", summary, fields, Vec::new(), None),
        );
        at = succ;
    }
    Err("chord scene: the successor walk did not end".into())
}

/// An iterative lookup with fingers: ask a peer `FindSuccessor(key)`; it answers with the
/// owner, or with the closest preceding peers it knows (its fingers), the next to ask.
async fn finger_lookup(
    bits: u8,
    from: NodeRef,
    key: Id,
    say: &mut dyn FnMut(String),
) -> Result<(Vec<u64>, u64), String> {
    let mut lookup = Lookup::new(key, bits, vec![from]);
    let mut asked = Vec::new();
    let mut step = lookup.next_step();
    loop {
        match step {
            Step::Ask(node) => {
                let req = Request::FindSuccessor { id: key, avoid: lookup.avoid() };
                let n = node.id.low_u64();
                asked.push(n);
                let started = Instant::now();
                crate::events::bus().emit(|| {
                    let mut fields = key_fields(key, bits);
                    fields.push((
                        "Request".into(),
                        "FindSuccessor (iterative: the asker asks each peer itself)".into(),
                    ));
                    event(
                        peer(&from),
                        peer(&node),
                        "Chord",
                        format!("FindSuccessor(key {})", key.low_u64()),
                        fields,
                        Vec::new(),
                        None,
                    )
                });
                step = match rpc(node.addr, bits, &req, RPC).await {
                    Ok((_, resp)) => {
                        let ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                        let mut fields = key_fields(key, bits);
                        let summary = match &resp {
                            Response::Found { succs } => {
                                fields.push(("Response".into(), "Found: the key is my successor's".into()));
                                fields.push(("Successor list".into(), list(&ids(succs))));
                                format!(
                                    "\"key {} is my successor's: {}\" (successor list [{}])",
                                    key.low_u64(),
                                    succs.first().map_or(0, |s| s.id.low_u64()),
                                    list(&ids(succs))
                                )
                            }
                            Response::Closer { nodes } => {
                                fields.push(("Response".into(), "Closer: ask one of these".into()));
                                fields.push(("Closest preceding peers".into(), list(&ids(nodes))));
                                format!(
                                    "\"not mine; the closest preceding peers I know: [{}]\"",
                                    list(&ids(nodes))
                                )
                            }
                            other => format!("unexpected answer {other:?}"),
                        };
                        tell(
                            say,
                            &format!("   ask peer {n}: "),
                            event(peer(&node), peer(&from), "Chord", summary, fields, Vec::new(), ms),
                        );
                        lookup.on_response(resp)
                    }
                    Err(e) => {
                        say(format!("   ask peer {n}: no answer ({e}); route around it"));
                        lookup.on_failure(&node)
                    }
                };
            }
            Step::Done(succs) => {
                let owner = succs.first().ok_or("chord scene: an empty successor list")?;
                return Ok((asked, owner.id.low_u64()));
            }
            Step::Failed => return Err(format!("chord scene: the lookup of {} failed", key.low_u64())),
        }
    }
}

/// Runs the scene on the lab's ring.
pub async fn run(lab: &mut Lab, say: &mut dyn FnMut(String)) -> Result<ChordFacts, String> {
    let spec = lab.topology.chord.clone().ok_or("the lab has no chord ring")?;
    let bits = spec.bits;
    let r = spec.successors;
    let peers: Vec<(u64, std::net::SocketAddr)> = lab.chord_peers().iter().map(|p| (p.id, p.addr)).collect();
    let mut ring: Vec<u64> = peers.iter().map(|p| p.0).collect();
    ring.sort_unstable();
    let entry = peers.first().ok_or("the chord ring has no running node")?.1;
    let client = Client::connect(entry, RPC).await.map_err(|e| format!("chord scene: {e}"))?;
    let mut facts = ChordFacts::default();

    say(format!(
        "{} — {bits} bits, nodes [{}]: who is responsible for key {KEY:04b} ({KEY})?",
        crate::tour::heading(10),
        list(&ring)
    ));
    say(format!(
        "Real nodes on their own addresses, each keeping {r} successors; stabilization every {} ms.",
        spec.stabilize_ms
    ));
    let started = Instant::now();
    if !wait_until(SETTLE, Duration::from_millis(50), || settled(&client, &peers, bits, r, false)).await {
        return Err(format!(
            "chord scene: the ring did not stabilize (successors, predecessors): {}",
            describe(&client, &peers).await
        ));
    }
    // Fingers follow within a few dozen fix_fingers rounds; the scene goes on with whatever
    // the nodes really hold if they are not ideal by then (and says so).
    let rounds = Duration::from_millis(20 * spec.stabilize_ms);
    facts.fingers_ideal =
        wait_until(rounds, Duration::from_millis(50), || settled(&client, &peers, bits, r, true)).await;
    say(format!(
        "   the ring stabilized {:.1} s after the lab started its nodes{}:",
        started.elapsed().as_secs_f64(),
        if facts.fingers_ideal { "" } else { " (some fingers are not the ideal successor of n + 2^k)" }
    ));
    for &(id, addr) in &peers {
        let i = info(&client, addr).await?;
        let fingers: Vec<String> = i.fingers.iter().map(|(k, f)| format!("{k}→{}", f.id.low_u64())).collect();
        say(format!(
            "   peer {id:>2} ({addr}): predecessor {}, successors [{}], fingers [{}]",
            i.pred.map_or("?".into(), |p| p.id.low_u64().to_string()),
            list(&ids(&i.succs)),
            fingers.join(" ")
        ));
    }

    let asker = if ring.contains(&3) { 3 } else { ring[0] };
    facts.asker = asker;
    let from = peers.iter().find(|p| p.0 == asker).map(|p| NodeRef { id: Id::from_u64(asker), addr: p.1 });
    let from = from.ok_or("chord scene: no asking peer")?;
    let key = Id::from_u64(KEY);
    say(format!("Peer {asker} asks, following successor pointers only (a circular DHT without shortcuts):"));
    let (path, owner) = walk_successors(&client, from, key, say).await?;
    say(format!("   {} messages around the circle: [{}] → {owner}", path.len(), list(&path)));
    facts.successor_path = path;
    facts.owner.push(owner);
    say(format!("Peer {asker} asks again, now with fingers (shortcuts: the successor of n + 2^k):"));
    let (path, owner) = finger_lookup(bits, from, key, say).await?;
    say(format!("   {} peers asked: [{}] → {owner} is responsible for key {KEY}", path.len(), list(&path)));
    facts.finger_path = path;
    facts.owner.push(owner);

    // Peer 5 crashes; its predecessor 4 notices when stabilize gets no answer.
    let victim = if ring.contains(&5) { 5 } else { ring[ring.len() / 2] };
    let pos = ring.iter().position(|&n| n == victim).expect("in the ring");
    let pred = ring[(pos + ring.len() - 1) % ring.len()];
    let pred_addr = peers.iter().find(|p| p.0 == pred).map(|p| p.1).ok_or("no predecessor")?;
    say(format!("\nPeer {victim} leaves abruptly (its process is killed: no goodbye, no hand-over)."));
    let before = info(&client, pred_addr).await?;
    say(format!("   peer {pred}'s successors before: [{}]", list(&ids(&before.succs))));
    lab.kill_chord_node(victim).await;
    facts.killed = victim;
    let killed_at = Instant::now();
    ring.retain(|&n| n != victim);
    let want: Vec<u64> = (1..=r.min(ring.len() - 1))
        .map(|k| ring[(ring.iter().position(|&n| n == pred).expect("alive") + k) % ring.len()])
        .collect();
    let repaired = wait_until(SETTLE, Duration::from_millis(20), || async {
        client.info(pred_addr).await.is_ok_and(|i| ids(&i.succs) == want)
    })
    .await;
    facts.repair_time = killed_at.elapsed();
    let after = info(&client, pred_addr).await?;
    facts.repaired_succs = ids(&after.succs);
    if !repaired {
        return Err(format!(
            "chord scene: peer {pred} did not repair its successors (have [{}], want [{}])",
            list(&facts.repaired_succs),
            list(&want)
        ));
    }
    say(format!(
        "   {:.2} s later peer {pred}'s stabilize RPC to {victim} failed (refused, or no answer in {} ms): it made {} its",
        facts.repair_time.as_secs_f64(),
        spec.rpc_timeout_ms,
        want[0]
    ));
    say(format!(
        "   first successor and took {}'s successor as its second: successors now [{}]",
        want[0],
        list(&facts.repaired_succs)
    ));
    let victim_addr = before.succs.first().map(|n| n.addr);
    crate::events::bus().emit_all(|| {
        let pred_end = Endpoint::new(chord_name(pred), pred_addr);
        let gone = Endpoint::new(chord_name(victim), victim_addr.map_or(String::new(), |a| a.to_string()));
        let next = after.succs.first().map_or(pred_end.clone(), peer);
        vec![
            event(
                pred_end.clone(),
                gone,
                "Chord",
                format!("stabilize: peer {victim} does not answer (it left)"),
                vec![("Repair time".to_string(), format!("{:.2} s", facts.repair_time.as_secs_f64()))],
                Vec::new(),
                None,
            ),
            event(
                pred_end,
                next,
                "Chord",
                format!("stabilize: my successors are now [{}]", list(&facts.repaired_succs)),
                vec![("Successor list".to_string(), list(&facts.repaired_succs))],
                Vec::new(),
                None,
            ),
        ]
    });

    // Peer 13 joins through the first node.
    let Some(late) = spec.nodes.iter().find(|n| n.late) else { return Ok(facts) };
    say(format!(
        "\nPeer {} joins through peer {} (a lookup of its own id finds its successor).",
        late.id, ring[0]
    ));
    let joined = lab.start_chord_node(&spec, late, Some(entry)).await.map_err(|e| e.to_string())?;
    crate::events::bus().emit(|| {
        let entry_id = peers.iter().find(|p| p.1 == entry).map_or(ring[0], |p| p.0);
        let fields = vec![("Joining id".to_string(), late.id.to_string())];
        event(
            Endpoint::new(chord_name(late.id), joined.addr),
            Endpoint::new(chord_name(entry_id), entry),
            "Chord",
            format!("join: FindSuccessor(my own id {})", late.id),
            fields,
            Vec::new(),
            None,
        )
    });
    facts.joined = late.id;
    let joined_at = Instant::now();
    ring.push(late.id);
    ring.sort_unstable();
    let peers: Vec<(u64, std::net::SocketAddr)> = lab.chord_peers().iter().map(|p| (p.id, p.addr)).collect();
    if !wait_until(SETTLE, Duration::from_millis(50), || settled(&client, &peers, bits, r, false)).await {
        return Err(format!("chord scene: the ring did not take peer {} in", late.id));
    }
    let me = info(&client, joined.addr).await?;
    say(format!(
        "   {:.2} s later the ring is whole again: peer {} has predecessor {} and successors [{}]",
        joined_at.elapsed().as_secs_f64(),
        late.id,
        me.pred.map_or("?".into(), |p| p.id.low_u64().to_string()),
        list(&ids(&me.succs))
    ));
    for k in [KEY, late.id] {
        let (path, owner) = finger_lookup(bits, from, Id::from_u64(k), &mut |_| {}).await?;
        say(format!(
            "   who is responsible for key {k} ({k:04b})? peer {asker} asks [{}] → peer {owner}",
            list(&path)
        ));
        facts.owners_after_join.push((k, owner));
    }
    say(format!(
        "   {} now holds the keys in ({}, {}]; {} keeps the rest of its arc.",
        chord_name(late.id),
        ring[(ring.iter().position(|&n| n == late.id).expect("joined") + ring.len() - 1) % ring.len()],
        late.id,
        successor_of(&ring, late.id + 1)
    ));
    Ok(facts)
}
