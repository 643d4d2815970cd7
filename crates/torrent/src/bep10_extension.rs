//! The session's side of the extension protocol (BEP 10): our extension handshake, serving the
//! info dictionary to peers that came from a magnet link (BEP 9 `ut_metadata`), and peer
//! exchange (BEP 11 `ut_pex`): acting on the peers others tell us about, and telling each peer
//! every `pex_interval_secs` which peers we connected to or lost since our last message.

use crate::bep9_magnet::CLIENT_NAME;
use crate::peer::{Out, PeerError};
use crate::session::TorrentHandle;
use crate::wire::Message;
use crate::wire::ext::{
    ExtHandshake, HANDSHAKE_ID, METADATA_PIECE, MetadataMsg, OUR_UT_METADATA, OUR_UT_PEX, Pex, message,
};
use bytes::Bytes;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Most peers named in one PEX message we send (BEP 11).
const PEX_MAX_ADDED: usize = 50;
/// Most peers we dial from one PEX message.
const PEX_MAX_DIAL: usize = 50;
/// Requests queued to the peer's write queue per connection beyond the metadata's own size
/// (a peer re-asking after a choke, say); past this, requests are rejected.
const METADATA_SERVE_SLACK: u32 = 16;

impl TorrentHandle {
    fn pex_enabled(&self) -> bool {
        crate::discovery::pex_allowed(&self.inner.cfg, &self.inner.meta.info)
    }

    /// Our extension handshake: `ut_metadata` with the info dictionary's size, `ut_pex` unless
    /// the torrent is private, our client name and listening port.
    pub(crate) fn ext_handshake(&self) -> Message {
        let mut h = ExtHandshake {
            metadata_size: Some(self.inner.meta.info_bytes.len() as u64),
            client: Some(CLIENT_NAME.into()),
            listen_port: Some(self.inner.listen.port()),
            reqq: Some(500),
            ..Default::default()
        };
        h.m.insert("ut_metadata".into(), OUR_UT_METADATA);
        if self.pex_enabled() {
            h.m.insert("ut_pex".into(), OUR_UT_PEX);
        }
        message(HANDSHAKE_ID, h.encode())
    }

    /// Handles an EXTENDED message from peer `id`.
    pub(crate) fn on_extended(&self, id: u64, ext_id: u8, payload: Bytes) -> Result<(), PeerError> {
        let bad = |e: crate::wire::ext::ExtError| PeerError::Protocol(e.to_string());
        let mut dial = Vec::new();
        {
            let mut st = self.lock();
            let Some(slot) = st.conns.get_mut(&id) else {
                return Err(PeerError::Protocol("unregistered".into()));
            };
            match ext_id {
                HANDSHAKE_ID => {
                    let h = ExtHandshake::decode(&payload).map_err(bad)?;
                    tracing::debug!("peer {} runs {:?}", slot.addr, h.client);
                    slot.ext.ut_metadata = h.id_of("ut_metadata");
                    slot.ext.ut_pex = h.id_of("ut_pex");
                    slot.ext.listen_port = h.listen_port;
                }
                OUR_UT_METADATA => {
                    let MetadataMsg::Request(piece) = MetadataMsg::decode(&payload).map_err(bad)? else {
                        return Ok(()); // data or reject: we already have the metadata
                    };
                    let Some(their) = slot.ext.ut_metadata else { return Ok(()) };
                    let info = &self.inner.meta.info_bytes;
                    let pieces = info.len().div_ceil(METADATA_PIECE) as u32;
                    let start = piece as usize * METADATA_PIECE;
                    let reply = if piece < pieces && slot.ext.metadata_served < pieces + METADATA_SERVE_SLACK
                    {
                        slot.ext.metadata_served += 1;
                        let data = info[start..(start + METADATA_PIECE).min(info.len())].to_vec();
                        MetadataMsg::Data { piece, total_size: info.len() as u64, data: data.into() }
                    } else {
                        MetadataMsg::Reject(piece)
                    };
                    let _ = slot.tx.send(Out::Msg(message(their, reply.encode())));
                }
                OUR_UT_PEX if self.pex_enabled() => {
                    let now = Instant::now();
                    let min_gap =
                        Duration::from_secs_f64(self.inner.cfg.pex_interval_secs.clamp(0.0, 3600.0) / 2.0);
                    let pex = Pex::decode(&payload).map_err(bad)?;
                    if slot.ext.last_pex_in.is_none_or(|t| now.duration_since(t) >= min_gap) {
                        slot.ext.last_pex_in = Some(now);
                        dial = pex.added.into_iter().take(PEX_MAX_DIAL).collect();
                    }
                }
                _ => {} // an extension we did not offer: ignore, as BEP 10 says
            }
        }
        for addr in dial {
            self.connect(addr);
        }
        Ok(())
    }

    /// Sends each PEX-speaking peer the changes in our peer set since its last message.
    pub(crate) async fn pex_loop(&self) {
        if !self.pex_enabled() {
            return;
        }
        let every = Duration::from_secs_f64(self.inner.cfg.pex_interval_secs.clamp(0.01, 3600.0));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.inner.shutdown.wait() => return,
                _ = tick.tick() => {}
            }
            let mut st = self.lock();
            // Where each connected peer listens: the address we dialled, or the port it gave.
            let listening: Vec<(u64, SocketAddr)> = st
                .conns
                .iter()
                .filter_map(|(id, p)| {
                    let a = if p.outgoing {
                        Some(p.addr)
                    } else {
                        p.ext.listen_port.map(|port| SocketAddr::new(p.addr.ip(), port))
                    };
                    a.map(|a| (*id, a))
                })
                .collect();
            for (id, p) in st.conns.iter_mut() {
                let Some(their) = p.ext.ut_pex else { continue };
                let now: HashSet<SocketAddr> =
                    listening.iter().filter(|(other, _)| other != id).map(|(_, a)| *a).collect();
                if let Some(pex) = pex_diff(&now, &mut p.ext.pex_sent) {
                    let _ = p.tx.send(Out::Msg(message(their, pex.encode())));
                }
            }
        }
    }
}

/// The next PEX message to a peer that was last told `sent`, now that our peers are `now`:
/// at most [`PEX_MAX_ADDED`] additions and as many drops (the rest go in later messages), or
/// `None` when nothing changed. `sent` is updated to what the peer will know.
fn pex_diff(now: &HashSet<SocketAddr>, sent: &mut HashSet<SocketAddr>) -> Option<Pex> {
    let added: Vec<SocketAddr> = now.difference(sent).copied().take(PEX_MAX_ADDED).collect();
    let dropped: Vec<SocketAddr> = sent.difference(now).copied().take(PEX_MAX_ADDED).collect();
    if added.is_empty() && dropped.is_empty() {
        return None;
    }
    sent.extend(added.iter().copied());
    for a in &dropped {
        sent.remove(a);
    }
    Some(Pex { added, dropped })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(ports: impl IntoIterator<Item = u16>) -> HashSet<SocketAddr> {
        ports.into_iter().map(|p| SocketAddr::from(([127, 0, 0, 1], p))).collect()
    }

    #[test]
    fn pex_sends_changes_only_and_in_bounded_batches() {
        let mut sent = HashSet::new();
        let first = pex_diff(&addrs([1, 2]), &mut sent).unwrap();
        assert_eq!(first.added.iter().copied().collect::<HashSet<_>>(), addrs([1, 2]));
        assert!(first.dropped.is_empty());
        assert_eq!(pex_diff(&addrs([1, 2]), &mut sent), None, "nothing changed");
        let next = pex_diff(&addrs([2, 3]), &mut sent).unwrap();
        assert_eq!(
            (next.added, next.dropped),
            (vec![SocketAddr::from(([127, 0, 0, 1], 3))], vec![SocketAddr::from(([127, 0, 0, 1], 1))])
        );
        assert_eq!(sent, addrs([2, 3]));
        let many = addrs(100..220);
        let mut sent = HashSet::new();
        let mut messages = 0;
        while let Some(p) = pex_diff(&many, &mut sent) {
            assert!(p.added.len() <= PEX_MAX_ADDED);
            messages += 1;
        }
        assert_eq!((messages, sent), (3, many));
    }
}
