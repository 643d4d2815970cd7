//! The peer wire protocol (BEP 3) and the fast extension (BEP 6): handshake and length-prefixed
//! messages, as pure codecs. Structural limits are enforced here; indexes and lengths against a
//! particular torrent are checked by [`Message::validate`]. The payloads of BEP 10 extended
//! messages (metadata exchange, peer exchange) are in [`ext`].

pub mod ext;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// The protocol string of the handshake.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Length of a handshake on the wire.
pub const HANDSHAKE_LEN: usize = 68;
/// The block size everyone requests (16 KiB).
pub const BLOCK: u32 = 16 * 1024;
/// Largest block we serve to a REQUEST (libtorrent's limit).
pub const MAX_REQUEST: u32 = 128 * 1024;

/// Why bytes from a peer are not a valid message.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// Wrong protocol string in the handshake.
    #[error("not a BitTorrent handshake")]
    NotBitTorrent,
    /// A length prefix beyond the limit.
    #[error("message of {0} bytes is too long")]
    TooLong(u32),
    /// A known message with the wrong payload length.
    #[error("message id {id} with bad length {len}")]
    BadLength {
        /// Message id.
        id: u8,
        /// Payload length.
        len: u32,
    },
    /// An index, offset or length outside the torrent.
    #[error("out of range: {0}")]
    OutOfRange(&'static str),
}

/// The 68-byte opening of every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// Extension bits.
    pub reserved: [u8; 8],
    /// The torrent.
    pub info_hash: [u8; 20],
    /// The sender's peer id.
    pub peer_id: [u8; 20],
}

impl Handshake {
    /// Our handshake: fast extension (BEP 6) and extension protocol (BEP 10) advertised.
    pub fn new(info_hash: [u8; 20], peer_id: [u8; 20]) -> Self {
        let mut reserved = [0u8; 8];
        reserved[7] |= 0x04;
        reserved[5] |= 0x10;
        Handshake { reserved, info_hash, peer_id }
    }

    /// Whether the sender supports the fast extension.
    pub fn fast(&self) -> bool {
        self.reserved[7] & 0x04 != 0
    }

    /// Whether the sender supports the extension protocol (BEP 10).
    pub fn extended(&self) -> bool {
        self.reserved[5] & 0x10 != 0
    }

    /// Wire bytes.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut b = [0u8; HANDSHAKE_LEN];
        b[0] = 19;
        b[1..20].copy_from_slice(PROTOCOL);
        b[20..28].copy_from_slice(&self.reserved);
        b[28..48].copy_from_slice(&self.info_hash);
        b[48..68].copy_from_slice(&self.peer_id);
        b
    }

    /// Parses wire bytes.
    pub fn decode(b: &[u8; HANDSHAKE_LEN]) -> Result<Self, WireError> {
        if b[0] != 19 || &b[1..20] != PROTOCOL {
            return Err(WireError::NotBitTorrent);
        }
        let mut h = Handshake { reserved: [0; 8], info_hash: [0; 20], peer_id: [0; 20] };
        h.reserved.copy_from_slice(&b[20..28]);
        h.info_hash.copy_from_slice(&b[28..48]);
        h.peer_id.copy_from_slice(&b[48..68]);
        Ok(h)
    }
}

/// A block: `length` bytes at `begin` inside piece `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    /// Piece index.
    pub index: u32,
    /// Byte offset inside the piece.
    pub begin: u32,
    /// Length in bytes.
    pub length: u32,
}

/// A peer wire message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Zero-length message.
    KeepAlive,
    /// 0: we will not serve your requests.
    Choke,
    /// 1: we will serve your requests.
    Unchoke,
    /// 2: you have something we want.
    Interested,
    /// 3: you have nothing we want.
    NotInterested,
    /// 4: we completed a piece.
    Have(u32),
    /// 5: the pieces we have (only right after the handshake).
    Bitfield(Bytes),
    /// 6: please send this block.
    Request(BlockRef),
    /// 7: a block of data.
    Piece {
        /// Piece index.
        index: u32,
        /// Offset inside the piece.
        begin: u32,
        /// The data.
        data: Bytes,
    },
    /// 8: forget a request.
    Cancel(BlockRef),
    /// 9: DHT port (BEP 5); ignored.
    Port(u16),
    /// 0x0D (BEP 6): a hint to request this piece.
    Suggest(u32),
    /// 0x0E (BEP 6): we are a seed.
    HaveAll,
    /// 0x0F (BEP 6): we have nothing.
    HaveNone,
    /// 0x10 (BEP 6): we will not serve this request.
    Reject(BlockRef),
    /// 0x11 (BEP 6): you may request this piece even while choked.
    AllowedFast(u32),
    /// 20 (BEP 10): an extension message; `id` 0 is the extension handshake, others are the
    /// ids the receiver assigned in its handshake. Payloads are parsed by [`ext`].
    Extended {
        /// Extended message id.
        id: u8,
        /// The rest of the message.
        payload: Bytes,
    },
    /// An id we do not implement; ignored.
    Unknown(u8),
}

fn fixed(id: u8, len: usize, want: usize) -> Result<(), WireError> {
    if len == want { Ok(()) } else { Err(WireError::BadLength { id, len: len as u32 }) }
}

fn block(p: &mut Bytes) -> BlockRef {
    BlockRef { index: p.get_u32(), begin: p.get_u32(), length: p.get_u32() }
}

impl Message {
    /// Decodes one framed message from the front of `buf`, consuming it; `Ok(None)` when more
    /// bytes are needed. `max_len` bounds the length prefix (so no peer makes us buffer more).
    pub fn decode(buf: &mut BytesMut, max_len: u32) -> Result<Option<Message>, WireError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if len > max_len {
            return Err(WireError::TooLong(len));
        }
        if buf.len() < 4 + len as usize {
            buf.reserve(4 + len as usize - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        if len == 0 {
            return Ok(Some(Message::KeepAlive));
        }
        let mut p = buf.split_to(len as usize).freeze();
        let id = p.get_u8();
        let n = p.len();
        let msg = match id {
            0 | 1 | 2 | 3 | 0x0E | 0x0F => {
                fixed(id, n, 0)?;
                [Message::Choke, Message::Unchoke, Message::Interested, Message::NotInterested][..]
                    .get(id as usize)
                    .cloned()
                    .unwrap_or(if id == 0x0E { Message::HaveAll } else { Message::HaveNone })
            }
            4 | 0x0D | 0x11 => {
                fixed(id, n, 4)?;
                let i = p.get_u32();
                match id {
                    4 => Message::Have(i),
                    0x0D => Message::Suggest(i),
                    _ => Message::AllowedFast(i),
                }
            }
            5 => Message::Bitfield(p),
            6 | 8 | 0x10 => {
                fixed(id, n, 12)?;
                let b = block(&mut p);
                match id {
                    6 => Message::Request(b),
                    8 => Message::Cancel(b),
                    _ => Message::Reject(b),
                }
            }
            7 => {
                if n < 8 {
                    return Err(WireError::BadLength { id, len: n as u32 });
                }
                let index = p.get_u32();
                let begin = p.get_u32();
                Message::Piece { index, begin, data: p }
            }
            9 => {
                fixed(id, n, 2)?;
                Message::Port(p.get_u16())
            }
            ext::EXTENDED => {
                if n < 1 {
                    return Err(WireError::BadLength { id, len: 0 });
                }
                let id = p.get_u8();
                Message::Extended { id, payload: p }
            }
            other => Message::Unknown(other),
        };
        Ok(Some(msg))
    }

    /// Appends the framed message to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let simple = |out: &mut BytesMut, id: u8| {
            out.put_u32(1);
            out.put_u8(id);
        };
        let with_u32 = |out: &mut BytesMut, id: u8, v: u32| {
            out.put_u32(5);
            out.put_u8(id);
            out.put_u32(v);
        };
        let with_block = |out: &mut BytesMut, id: u8, b: &BlockRef| {
            out.put_u32(13);
            out.put_u8(id);
            out.put_u32(b.index);
            out.put_u32(b.begin);
            out.put_u32(b.length);
        };
        match self {
            Message::KeepAlive => out.put_u32(0),
            Message::Choke => simple(out, 0),
            Message::Unchoke => simple(out, 1),
            Message::Interested => simple(out, 2),
            Message::NotInterested => simple(out, 3),
            Message::Have(i) => with_u32(out, 4, *i),
            Message::Bitfield(b) => {
                out.put_u32(1 + b.len() as u32);
                out.put_u8(5);
                out.put_slice(b);
            }
            Message::Request(b) => with_block(out, 6, b),
            Message::Piece { index, begin, data } => {
                out.put_slice(&piece_header(*index, *begin, data.len() as u32));
                out.put_slice(data);
            }
            Message::Cancel(b) => with_block(out, 8, b),
            Message::Port(p) => {
                out.put_u32(3);
                out.put_u8(9);
                out.put_u16(*p);
            }
            Message::Suggest(i) => with_u32(out, 0x0D, *i),
            Message::HaveAll => simple(out, 0x0E),
            Message::HaveNone => simple(out, 0x0F),
            Message::Reject(b) => with_block(out, 0x10, b),
            Message::AllowedFast(i) => with_u32(out, 0x11, *i),
            Message::Extended { id, payload } => {
                out.put_u32(2 + payload.len() as u32);
                out.put_u8(ext::EXTENDED);
                out.put_u8(*id);
                out.put_slice(payload);
            }
            Message::Unknown(id) => simple(out, *id),
        }
    }

    /// Checks indexes, offsets and lengths against a torrent of `num_pieces` pieces where
    /// `piece_size(i)` is the length of piece `i`.
    pub fn validate(&self, num_pieces: u32, piece_size: impl Fn(u32) -> u32) -> Result<(), WireError> {
        let in_piece = |b: &BlockRef, max: u32| {
            if b.index >= num_pieces {
                return Err(WireError::OutOfRange("piece index"));
            }
            if b.length == 0 || b.length > max {
                return Err(WireError::OutOfRange("block length"));
            }
            if b.begin as u64 + b.length as u64 > piece_size(b.index) as u64 {
                return Err(WireError::OutOfRange("block past the end of the piece"));
            }
            Ok(())
        };
        match self {
            Message::Have(i) | Message::Suggest(i) | Message::AllowedFast(i) if *i >= num_pieces => {
                Err(WireError::OutOfRange("piece index"))
            }
            Message::Bitfield(b) if b.len() != num_pieces.div_ceil(8) as usize => {
                Err(WireError::BadLength { id: 5, len: b.len() as u32 })
            }
            Message::Request(b) | Message::Cancel(b) | Message::Reject(b) => in_piece(b, MAX_REQUEST),
            Message::Piece { index, begin, data } => {
                in_piece(&BlockRef { index: *index, begin: *begin, length: data.len() as u32 }, MAX_REQUEST)
            }
            _ => Ok(()),
        }
    }
}

/// The 13-byte header of a PIECE message carrying `len` bytes (so data can be written
/// straight from a buffer without copying it into the frame).
pub fn piece_header(index: u32, begin: u32, len: u32) -> [u8; 13] {
    let mut h = [0u8; 13];
    h[..4].copy_from_slice(&(9 + len).to_be_bytes());
    h[4] = 7;
    h[5..9].copy_from_slice(&index.to_be_bytes());
    h[9..13].copy_from_slice(&begin.to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_block() -> impl Strategy<Value = BlockRef> {
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(index, begin, length)| BlockRef {
            index,
            begin,
            length,
        })
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            Just(Message::KeepAlive),
            Just(Message::Choke),
            Just(Message::Unchoke),
            Just(Message::Interested),
            Just(Message::NotInterested),
            Just(Message::HaveAll),
            Just(Message::HaveNone),
            any::<u32>().prop_map(Message::Have),
            any::<u32>().prop_map(Message::Suggest),
            any::<u32>().prop_map(Message::AllowedFast),
            any::<u16>().prop_map(Message::Port),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(|v| Message::Bitfield(v.into())),
            arb_block().prop_map(Message::Request),
            arb_block().prop_map(Message::Cancel),
            arb_block().prop_map(Message::Reject),
            (any::<u32>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..300))
                .prop_map(|(index, begin, d)| Message::Piece { index, begin, data: d.into() }),
            (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..100))
                .prop_map(|(id, d)| Message::Extended { id, payload: d.into() }),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(msgs in proptest::collection::vec(arb_message(), 1..8)) {
            let mut buf = BytesMut::new();
            for m in &msgs { m.encode(&mut buf); }
            let mut got = Vec::new();
            while let Some(m) = Message::decode(&mut buf, 1 << 20).unwrap() { got.push(m); }
            prop_assert_eq!(got, msgs);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(m)) = Message::decode(&mut buf, 1000) {
                let _ = m.validate(10, |_| 32768);
            }
        }
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let mut full = BytesMut::new();
        Message::Have(7).encode(&mut full);
        let mut part = BytesMut::from(&full[..5]);
        assert_eq!(Message::decode(&mut part, 100), Ok(None));
        part.extend_from_slice(&full[5..]);
        assert_eq!(Message::decode(&mut part, 100), Ok(Some(Message::Have(7))));
    }

    #[test]
    fn limits_and_lengths_are_enforced() {
        let mut b = BytesMut::from(&[0, 0, 1, 0, 7][..]);
        assert_eq!(Message::decode(&mut b, 100), Err(WireError::TooLong(256)));
        let mut b = BytesMut::from(&[0, 0, 0, 2, 4, 1][..]);
        assert!(matches!(Message::decode(&mut b, 100), Err(WireError::BadLength { .. })));
        let req = |index, begin, length| Message::Request(BlockRef { index, begin, length });
        let size = |i: u32| if i == 9 { 1000 } else { 32768 };
        assert!(req(0, 16384, 16384).validate(10, size).is_ok());
        assert!(req(10, 0, 16384).validate(10, size).is_err());
        assert!(req(9, 0, 16384).validate(10, size).is_err());
        assert!(req(0, 0, 0).validate(10, size).is_err());
        assert!(req(0, u32::MAX, 16384).validate(10, size).is_err());
        assert!(Message::Bitfield(vec![0; 3].into()).validate(10, size).is_err());
    }

    #[test]
    fn handshake_round_trip_and_fast_bit() {
        let h = Handshake::new([1; 20], [2; 20]);
        let d = Handshake::decode(&h.encode()).unwrap();
        assert_eq!(d, h);
        assert!(d.fast());
        assert!(d.extended());
        let mut bad = h.encode();
        bad[3] = b'x';
        assert_eq!(Handshake::decode(&bad), Err(WireError::NotBitTorrent));
    }
}
