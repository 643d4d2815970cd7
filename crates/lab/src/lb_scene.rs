//! The load-balancer scene ("single IP address, multiple machines; ensure all packets from a
//! single TCP connection go to the same replica"): three keep-alive connections to
//! www.stanford.edu's one address land on its three machines; one machine dies; only the
//! connection it held breaks, the others keep their replica, and a new connection from the
//! same client is served by a survivor.

use crate::Lab;
use crate::topology::LbSpec;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Largest response the scene reads.
const MAX_RESPONSE: usize = 256 * 1024;

/// Sends `GET /` on a kept-alive connection and returns which replica served it (the address
/// its home page names), or `None` if the connection is gone.
async fn which_replica(s: &mut TcpStream, host: &str) -> Option<String> {
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())?;
                if buf.len() >= end + 4 + len {
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                    return body.split("Served by appnet on ").nth(1)?.split(' ').next().map(str::to_string);
                }
            }
            if buf.len() > MAX_RESPONSE {
                return None;
            }
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.ok().flatten()
}

/// Puts one kept-alive connection's request on the event bus as the balancer sees it: the
/// client's GET to the one address, the balancer's forwarding to the machine its hash picked,
/// and the machine's answer (`served` is None when the connection broke).
fn publish(client: SocketAddr, front: SocketAddr, lb: &str, backend: &str, served: Option<&str>) {
    use crate::events::{Endpoint, bus, event};
    let host = |a: IpAddr| a.to_string();
    let client_end = Endpoint::new(host(client.ip()), client);
    let lb_end = Endpoint::new(lb, front);
    let machine =
        Endpoint::new(backend, SocketAddr::new(backend.parse().unwrap_or(front.ip()), front.port()));
    bus().emit_all(|| {
        let request = format!("GET / HTTP/1.1 (connection {client} → {front})");
        let flow = vec![
            ("Flow".to_string(), format!("TCP {client} → {front}")),
            (
                "Balancing".into(),
                "Maglev consistent hash of the 5-tuple: every packet of the connection goes to one machine"
                    .into(),
            ),
            ("Machine".into(), backend.to_string()),
        ];
        let mut out = vec![
            event(
                client_end.clone(),
                lb_end.clone(),
                "HTTP",
                request.clone(),
                flow.clone(),
                Vec::new(),
                None,
            ),
            event(
                lb_end.clone(),
                machine.clone(),
                "LB",
                format!("forwards {client}'s connection to {backend}"),
                flow,
                Vec::new(),
                None,
            ),
        ];
        let reply = match served {
            Some(r) => format!("200 OK — \"Served by appnet on {r}\""),
            None => "connection reset: its machine is gone".to_string(),
        };
        let from = if served.is_some() { machine } else { lb_end };
        out.push(event(
            from,
            client_end,
            "HTTP",
            reply,
            vec![("Served by".to_string(), served.unwrap_or("nobody").to_string())],
            Vec::new(),
            None,
        ));
        out
    });
}

async fn connect(from: IpAddr, to: SocketAddr) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket.bind(SocketAddr::new(from, 0)).map_err(|e| e.to_string())?;
    socket.connect(to).await.map_err(|e| format!("cannot connect to {to}: {e}"))
}

/// Runs the scene.
pub async fn run(lab: &mut Lab, lb: &LbSpec, say: &mut dyn FnMut(String)) -> Result<(), String> {
    let port = lab.topology.web_port;
    let front = SocketAddr::new(IpAddr::V4(lb.addr), port);
    let host = format!("{}:{port}", lb.name);
    let replicas: Vec<String> = lb.replicas.iter().map(|r| r.to_string()).collect();
    say(format!("{}: {} ({})", crate::tour::heading(13), lb.name, lb.addr));
    say(format!(
        "   in front of {} machines: {}. Every TCP connection stays on one machine",
        replicas.len(),
        replicas.join(", ")
    ));
    say("   (Maglev consistent hashing of the client's address and port).".into());
    let mut events =
        lab.lb(&lb.name).ok_or("load-balancer scene: the load balancer is not running")?.subscribe();
    // Open keep-alive connections from lab hosts until every machine holds one (bounded).
    let clients: [IpAddr; 3] = [[127, 0, 10, 4].into(), [127, 0, 10, 10].into(), [127, 0, 10, 14].into()];
    let mut held: Vec<(IpAddr, TcpStream, String)> = Vec::new();
    for attempt in 0..60 {
        if held.len() == replicas.len() {
            break;
        }
        let from = clients[attempt % clients.len()];
        let mut s = connect(from, front).await?;
        let served = which_replica(&mut s, &host)
            .await
            .ok_or("load-balancer scene: no answer through the balancer")?;
        if !held.iter().any(|(_, _, r)| *r == served) {
            held.push((from, s, served));
        }
    }
    if held.len() < replicas.len() {
        return Err("load-balancer scene: the connections did not reach every machine".into());
    }
    for (from, s, served) in held.iter_mut() {
        let local = s.local_addr().map_err(|e| e.to_string())?;
        let again =
            which_replica(s, &host).await.ok_or("load-balancer scene: a kept-alive connection broke")?;
        if again != *served {
            return Err(format!("load-balancer scene: a connection moved from {served} to {again}"));
        }
        publish(local, front, &lb.name, served, Some(&again));
        say(format!(
            "   connection from {from}:{:<5} → {front} → machine {served} (twice, same machine)",
            local.port()
        ));
    }
    let victim = held[1].2.clone();
    let victim_addr = SocketAddr::new(victim.parse::<IpAddr>().map_err(|e| e.to_string())?, port);
    say(format!("   Machine {victim} crashes."));
    lab.stop_member_at(victim_addr).await;
    for (from, s, served) in held.iter_mut() {
        let local = s.local_addr().unwrap_or(SocketAddr::new(*from, 0));
        let after = which_replica(s, &host).await;
        publish(local, front, &lb.name, served, after.as_deref());
        match (&after, *served == victim) {
            (None, true) => {
                say(format!("   connection from {from} on {served}: broken (its machine is gone)"))
            }
            (Some(r), false) if r == served => {
                say(format!("   connection from {from} on {served}: still served by {r}"))
            }
            _ => {
                return Err(format!(
                    "load-balancer scene: the connection on {served} got {after:?} after {victim} died"
                ));
            }
        }
    }
    // The balancer notices (health checks), moves only the dead machine's share, and a new
    // connection from the client that lost its machine goes to a survivor.
    let moved = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(appnet_lb::Event::Down { backend, moved, .. }) if backend == victim_addr => {
                    return Some(moved);
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
    .ok_or("load-balancer scene: the balancer did not take the dead machine out")?;
    say(format!(
        "   The balancer's health checks take {victim} out: {:.1}% of the flow-key space moves (≈1/{}),",
        moved * 100.0,
        replicas.len()
    ));
    crate::events::bus().emit(|| {
        let fields = vec![
            ("Machine".to_string(), victim.clone()),
            ("Flow-key space moved".into(), format!("{:.1}%", moved * 100.0)),
        ];
        crate::events::event(
            crate::events::Endpoint::new(&lb.name, front),
            crate::events::Endpoint::new(&victim, victim_addr),
            "LB",
            format!("health check fails: {victim} taken out, {:.1}% of the flows move", moved * 100.0),
            fields,
            Vec::new(),
            None,
        )
    });
    say("   the flows of the other machines stay where they are.".into());
    let from = held[1].0;
    let mut s = connect(from, front).await?;
    let now =
        which_replica(&mut s, &host).await.ok_or("load-balancer scene: a new connection got no answer")?;
    let local = s.local_addr().unwrap_or(SocketAddr::new(from, 0));
    publish(local, front, &lb.name, &now, Some(&now));
    if now == victim {
        return Err("load-balancer scene: a new connection reached the dead machine".into());
    }
    say(format!("   A new connection from {from} is served by {now}."));
    Ok(())
}
