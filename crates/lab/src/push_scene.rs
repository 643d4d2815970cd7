//! The CDN push scene: the content provider pre-positions a page on every replica before
//! anyone asks (a signed push, see `appnet web push`), and the very first request for it at
//! each replica is a HIT.

use crate::Lab;
use crate::topology::CdnSpec;
use appnet_web::proxy::push::{client, read_secret, wire::Outcome};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The page pushed (served by the CDN's origin).
pub const PUSHED: &str = "/news/index.html";

/// Runs the scene: push [`PUSHED`] to every replica, then ask each replica for it once.
pub async fn run(lab: &Lab, cdn: &CdnSpec, say: &mut dyn FnMut(String)) -> Result<(), String> {
    use crate::http_scene::{get_once, header};
    let port = lab.topology.web_port;
    let url = format!("http://{}:{port}{PUSHED}", cdn.name);
    say(format!("\n== Scene 8b: CDN push — {} pre-positions {url} on every replica", cdn.origin));
    say("   (\"expectation of high access rate\"): one signed POST /.appnet/push per replica; each".into());
    say("   fetches the page from the origin and stores it under the key a client's request uses.".into());
    let secret = read_secret(&crate::cdn::push_secret_file(&lab.dir))?;
    let body = client::body(std::slice::from_ref(&url));
    for r in &cdn.replicas {
        let addr = SocketAddr::new(IpAddr::V4(r.addr), port);
        let origin = crate::events::Endpoint::new(
            &cdn.origin,
            lab.addr_of(&cdn.origin).map_or_else(|| cdn.origin.clone(), |a| a.ip().to_string()),
        );
        let replica = crate::events::Endpoint::new(&r.name, addr);
        crate::events::bus().emit(|| {
            let fields = vec![
                ("Request".to_string(), "POST /.appnet/push HTTP/1.1".to_string()),
                ("URL pushed".into(), url.clone()),
                ("Authentication".into(), "signed with the lab's push secret (not shown)".into()),
            ];
            let summary = format!("POST /.appnet/push: pre-position {url}");
            crate::events::event(origin.clone(), replica.clone(), "HTTP", summary, fields, body.clone(), None)
        });
        let sent = std::time::Instant::now();
        let lines = client::push(&addr.to_string(), &body, &secret, Duration::from_secs(10))
            .await
            .map_err(|e| format!("scene 8b: push to {} ({addr}): {e}", r.name))?;
        let line = lines.first().ok_or(format!("scene 8b: {} answered no line", r.name))?;
        let summary = format!("{} — {}", line.outcome.word(), line.detail);
        let fields = vec![
            ("Outcome".to_string(), line.outcome.word().to_string()),
            ("Detail".into(), line.detail.clone()),
        ];
        let ms = Some(sent.elapsed().as_secs_f64() * 1000.0);
        let e = crate::events::event(replica, origin, "HTTP", summary, fields, Vec::new(), ms);
        crate::events::tell(say, &format!("   push to {:<12} {addr}: ", r.name), e);
        if line.outcome != Outcome::Stored {
            return Err(format!("scene 8b: {} did not store {url}", r.name));
        }
    }
    let client: IpAddr = "127.0.10.4".parse().expect("static");
    let host = format!("{}:{port}", cdn.name);
    for r in &cdn.replicas {
        let addr = SocketAddr::new(IpAddr::V4(r.addr), port);
        let (head, body) = get_once(client, addr, &host, PUSHED, "").await?;
        let status = head.lines().next().unwrap_or("").to_string();
        let x_cache = header(&head, "x-cache").unwrap_or("-").to_string();
        say(format!("   first request at {:<12} {status}, {} bytes, X-Cache: {x_cache}", r.name, body.len()));
        if !x_cache.starts_with("HIT") {
            return Err(format!("scene 8b: the first request at {} was {x_cache}, not a HIT", r.name));
        }
    }
    say("   No client waited for the origin: the objects were there before the first request.".into());
    Ok(())
}
