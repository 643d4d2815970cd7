//! Running what the page asks for against the lab: a tour scene, or from one of the client
//! hosts a lookup through its local DNS server or a URL fetch (the lookup, then one GET).

use super::page::CLIENTS;
use super::server::Command;
use crate::run::Lab;
use appnet_dns::wire::rrtype::code;
use std::net::{IpAddr, SocketAddr};

/// Splits `http://host[:port]/path` into (host, port, path); the port defaults to `web_port`.
pub fn split_url(url: &str, web_port: u16) -> Result<(String, u16, String), String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("bad port in {url}"))?),
        None => (authority, web_port),
    };
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    if host.is_empty() || !host.chars().all(ok) || path.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return Err(format!("not a lab URL: {url}"));
    }
    Ok((host.to_string(), port, path.to_string()))
}

/// Runs `command`, printing through `say` (its exchanges go to the event bus as the tour's do).
pub async fn run(lab: &mut Lab, command: Command, say: &mut dyn FnMut(String)) -> Result<(), String> {
    let client = |from: &str| {
        let (host, addr, resolver) =
            CLIENTS.iter().find(|(c, _, _)| *c == from).ok_or(format!("no client host {from}"))?;
        let ip: IpAddr = addr.parse().map_err(|_| "bad client address".to_string())?;
        Ok::<_, String>((*host, ip, *resolver))
    };
    match command {
        Command::Scene(n) => crate::tour::run_scene(lab, n, say).await,
        Command::Resolve { from, name } => {
            let (host, ip, resolver) = client(&from)?;
            say(format!("\n== From the page: {host} resolves {name}"));
            crate::tour::scene_query(lab, (host, ip), resolver, &name, code::A, say).await.map(|_| ())
        }
        Command::Fetch { from, url } => {
            let (host, ip, resolver) = client(&from)?;
            let (name, port, path) = split_url(&url, lab.topology.web_port)?;
            say(format!("\n== From the page: {host} fetches {url}"));
            let (reply, _) = crate::tour::scene_query(lab, (host, ip), resolver, &name, code::A, say).await?;
            let addr = reply
                .answer
                .iter()
                .find(|r| r.rtype == code::A && r.rdata.len() == 4)
                .map(|r| IpAddr::from(<[u8; 4]>::try_from(&r.rdata[..]).expect("length checked")))
                .ok_or(format!("{name} has no address"))?;
            let host_header = format!("{name}:{port}");
            let target = SocketAddr::new(addr, port);
            let (head, body) = crate::http_scene::get_once(ip, target, &host_header, &path, "").await?;
            say(format!("   {}, {} bytes", head.lines().next().unwrap_or(""), body.len()));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        assert_eq!(
            split_url("http://www.someschool.edu/a/b.html", 8080),
            Ok(("www.someschool.edu".into(), 8080, "/a/b.html".into()))
        );
        assert_eq!(
            split_url("http://gaia.cs.umass.edu:81", 8080),
            Ok(("gaia.cs.umass.edu".into(), 81, "/".into()))
        );
        for bad in [
            "ftp://x/",
            "http://:80/",
            "http://a b/",
            "http://x:99999/",
            "http://x/a\r\nHost: y",
            "http://x@y/",
        ] {
            assert!(split_url(bad, 80).is_err(), "{bad}");
        }
    }
}
