//! The user agent (RFC 3261 §8, §12–15): a phone that registers and answers, and a caller
//! that places one call with RTP media.
//!
//! The pieces that hold protocol state are pure ([`Dialog`], the message builders, SDP
//! offer/answer, Digest answers in [`auth`]); requests are retransmitted by the crate's
//! client transactions; [`phone`] and [`call`] are the thin tokio drivers around them.

pub mod auth;
pub mod call;
pub mod phone;

use crate::wire::{Message, NameAddr, SipUri, StartLine};
use std::net::SocketAddr;

/// A fresh random token for tags, branches and Call-IDs.
pub fn token() -> String {
    (0..8).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// A fresh RFC 3261 branch.
pub fn branch() -> String {
    format!("{}{}", crate::wire::BRANCH_COOKIE, token())
}

/// Parses `user@domain` (with or without `sip:`) into a SIP URI.
pub fn aor_uri(aor: &str) -> Option<SipUri> {
    let s = if aor.starts_with("sip:") || aor.starts_with("sips:") {
        aor.to_string()
    } else {
        format!("sip:{aor}")
    };
    SipUri::parse(&s).filter(|u| u.user.is_some())
}

/// A dialog (§12): what in-dialog requests (ACK, BYE) are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub call_id: String,
    /// Our From/To header value including our tag.
    pub local: String,
    /// The peer's From/To header value including its tag.
    pub remote: String,
    /// The peer's Contact URI.
    pub remote_target: String,
    /// Route set, in the order requests carry it.
    pub route: Vec<String>,
    pub local_cseq: u32,
}

impl Dialog {
    /// The caller's dialog from a 2xx to its INVITE (§12.1.2): the route set is the
    /// Record-Route in reverse.
    pub fn from_uac(invite: &Message, ok: &Message) -> Option<Dialog> {
        let mut route = ok.header_values("Record-Route");
        route.reverse();
        Some(Dialog {
            call_id: invite.call_id()?.to_string(),
            local: invite.header("From")?.to_string(),
            remote: ok.header("To")?.to_string(),
            remote_target: contact_uri(ok)?,
            route,
            local_cseq: invite.cseq()?.0,
        })
    }

    /// The callee's dialog from an INVITE it answers with `to` (its To with our tag)
    /// (§12.1.1): the route set is the Record-Route in order.
    pub fn from_uas(invite: &Message, to: &str) -> Option<Dialog> {
        Some(Dialog {
            call_id: invite.call_id()?.to_string(),
            local: to.to_string(),
            remote: invite.header("From")?.to_string(),
            remote_target: contact_uri(invite)?,
            route: invite.header_values("Record-Route"),
            local_cseq: 0,
        })
    }

    /// An in-dialog request (§12.2.1.1) with loose routing; ACK reuses the INVITE's CSeq
    /// number, other methods take the next one.
    pub fn request(&mut self, method: &str, via: &str) -> Message {
        if method != "ACK" {
            self.local_cseq += 1;
        }
        let mut m = Message::request(method, &self.remote_target);
        m.push("Via", format!("{via};branch={}", branch()));
        m.push("Max-Forwards", "70");
        for r in &self.route {
            m.push("Route", r.clone());
        }
        m.push("From", self.local.clone());
        m.push("To", self.remote.clone());
        m.push("Call-ID", self.call_id.clone());
        m.push("CSeq", format!("{} {method}", self.local_cseq));
        m
    }

    /// Where an in-dialog request goes first: the first Route's host, else the target's.
    pub fn next_hop(&self) -> Option<(String, u16)> {
        let first = self.route.first().and_then(|r| NameAddr::parse(r)).map(|n| n.uri);
        let uri = SipUri::parse(first.as_deref().unwrap_or(&self.remote_target))?;
        Some((uri.host, uri.port.unwrap_or(5060)))
    }
}

/// The URI of a message's first Contact.
pub fn contact_uri(m: &Message) -> Option<String> {
    NameAddr::parse(m.header_values("Contact").first()?).map(|n| n.uri)
}

/// A new out-of-dialog request (§8.1.1).
pub fn new_request(
    method: &str,
    uri: &str,
    from: &str,
    to: &str,
    call_id: &str,
    cseq: u32,
    via: &str,
) -> Message {
    let mut m = Message::request(method, uri);
    m.push("Via", format!("{via};branch={}", branch()));
    m.push("Max-Forwards", "70");
    m.push("From", from.to_string());
    m.push("To", to.to_string());
    m.push("Call-ID", call_id.to_string());
    m.push("CSeq", format!("{cseq} {method}"));
    m
}

/// Our Via sent-by for a socket: `SIP/2.0/UDP ip:port;rport` (RFC 3581).
pub fn via_for(local: SocketAddr) -> String {
    format!("SIP/2.0/UDP {local};rport")
}

/// A one-stream PCMU SDP (offer or answer) for RTP at `rtp` (RFC 3264, RFC 4566).
pub fn sdp_pcmu(rtp: SocketAddr, session_id: u64) -> Vec<u8> {
    format!(
        "v=0\r\no=appnet {session_id} {session_id} IN IP4 {ip}\r\ns=appnet call\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n",
        ip = rtp.ip(),
        port = rtp.port()
    )
    .into_bytes()
}

/// Why an offer or answer gives us no media to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdpRefusal {
    /// Not SDP, or no connection address / audio port.
    Unusable,
    /// No PCMU among the audio formats (answer with 488).
    NoCommonCodec,
}

/// The peer's RTP address from its SDP, when it offers or accepted PCMU.
pub fn remote_media(body: &[u8]) -> Result<SocketAddr, SdpRefusal> {
    let sdp = crate::wire::sdp::parse(body).map_err(|_| SdpRefusal::Unusable)?;
    let audio = sdp.media.iter().find(|m| m.kind == "audio" && m.port != 0).ok_or(SdpRefusal::Unusable)?;
    let pcmu = audio.formats.iter().any(|f| f == "0")
        || audio.rtpmaps.iter().any(|(_, n, r)| n.eq_ignore_ascii_case("PCMU") && *r == 8000);
    if !pcmu {
        return Err(SdpRefusal::NoCommonCodec);
    }
    let ip =
        sdp.connection.as_deref().ok_or(SdpRefusal::Unusable)?.parse().map_err(|_| SdpRefusal::Unusable)?;
    Ok(SocketAddr::new(ip, audio.port))
}

/// Where a response goes (§18.2.2 with RFC 3581): the top Via's received/rport, else its
/// sent-by.
pub fn response_target(req: &Message, from: SocketAddr) -> SocketAddr {
    let Some(via) = req.top_via() else { return from };
    if via.param("rport").is_some_and(|p| !p.is_empty()) || via.param("received").is_some() {
        return from;
    }
    let (h, p) = via.host_port();
    h.parse().map(|ip| SocketAddr::new(ip, p)).unwrap_or(from)
}

/// One line of `--trace`: who sent which message to whom, the deck's figure as text.
pub fn trace_line(m: &Message, from: &str, to: &str) -> String {
    let what = match &m.start {
        StartLine::Request { method, .. } => method.clone(),
        StartLine::Response { code, reason } => format!("{code} {reason} ({})", m.method()),
    };
    format!("{from:>24} -> {to:<24} {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialog_from_both_sides_routes_and_cseq() {
        let local: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let mut inv = new_request(
            "INVITE",
            "sip:bob@umass.edu",
            "<sip:alice@poly.edu>;tag=a1",
            "<sip:bob@umass.edu>",
            "c1",
            1,
            &via_for(local),
        );
        inv.push("Contact", "<sip:alice@127.0.0.1:5070>");
        inv.push("Record-Route", "<sip:10.0.0.1;lr>, <sip:10.0.0.2;lr>");
        let mut ok = Message::response_to(&inv, 200, "OK", Some("b1"));
        ok.push("Record-Route", "<sip:10.0.0.1;lr>, <sip:10.0.0.2;lr>");
        ok.push("Contact", "<sip:bob@127.0.0.1:5080>");
        let mut uac = Dialog::from_uac(&inv, &ok).unwrap();
        assert_eq!(uac.route, vec!["<sip:10.0.0.2;lr>", "<sip:10.0.0.1;lr>"]);
        assert_eq!(uac.next_hop(), Some(("10.0.0.2".into(), 5060)));
        let ack = uac.request("ACK", &via_for(local));
        assert_eq!(ack.cseq(), Some((1, "ACK")));
        assert_eq!(ack.uri(), Some("sip:bob@127.0.0.1:5080"));
        let bye = uac.request("BYE", &via_for(local));
        assert_eq!(bye.cseq(), Some((2, "BYE")));
        assert!(bye.to().unwrap().tag() == Some("b1") && bye.from().unwrap().tag() == Some("a1"));
        let parsed = crate::wire::parse(&bye.to_bytes()).unwrap();
        assert_eq!(parsed.header_values("Route").len(), 2);
        let uas = Dialog::from_uas(&inv, ok.header("To").unwrap()).unwrap();
        assert_eq!(uas.route, vec!["<sip:10.0.0.1;lr>", "<sip:10.0.0.2;lr>"]);
        assert_eq!(uas.remote_target, "sip:alice@127.0.0.1:5070");
    }

    #[test]
    fn sdp_offer_answer() {
        let rtp: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert_eq!(remote_media(&sdp_pcmu(rtp, 1)), Ok(rtp));
        assert_eq!(
            remote_media(b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 18\r\n"),
            Err(SdpRefusal::NoCommonCodec)
        );
        assert_eq!(remote_media(b"garbage"), Err(SdpRefusal::Unusable));
        assert_eq!(remote_media(b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n"), Err(SdpRefusal::Unusable));
        assert!(aor_uri("bob@umass.edu").is_some() && aor_uri("umass.edu").is_none());
    }
}
