//! Property tests: what the response writer encodes, the parser decodes to the same records;
//! what the zone-file printer writes, the zone-file reader reads back.

use appnet_dns::wire::message::parse;
use appnet_dns::wire::name::{ROOT, to_lower};
use appnet_dns::wire::query::Header;
use appnet_dns::wire::response::{Question, Reply, RrRef, write};
use appnet_dns::wire::rrtype::{code, pack_rdata};
use appnet_dns::wire::zonefile::{Includes, parse_text, record_text};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec("[a-zA-Z0-9-]{1,12}", 1..5).prop_map(|labels| {
        let mut n = Vec::new();
        for l in labels {
            n.push(l.len() as u8);
            n.extend_from_slice(l.as_bytes());
        }
        n.push(0);
        n
    })
}

fn rdata() -> impl Strategy<Value = (u16, Vec<u8>)> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| (code::A, a.to_vec())),
        any::<[u8; 16]>().prop_map(|a| (code::AAAA, a.to_vec())),
        name().prop_map(|n| (code::NS, n)),
        name().prop_map(|n| (code::CNAME, n)),
        (any::<u16>(), name()).prop_map(|(p, n)| {
            let mut v = p.to_be_bytes().to_vec();
            v.extend(n);
            (code::MX, v)
        }),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..4).prop_map(|strings| {
            let mut v = Vec::new();
            for s in strings {
                v.push(s.len() as u8);
                v.extend(s);
            }
            (code::TXT, v)
        }),
        prop::collection::vec(any::<u8>(), 0..30).prop_map(|d| (65280, d)),
    ]
}

proptest! {
    #[test]
    fn responses_decode_to_what_was_encoded(
        qname in name(),
        records in prop::collection::vec((name(), rdata(), any::<u32>()), 1..12),
    ) {
        let blobs: Vec<Vec<u8>> = records.iter().map(|(_, (_, rd), _)| {
            let mut b = Vec::new();
            pack_rdata(&mut b, rd);
            b
        }).collect();
        let rrs: Vec<RrRef<'_>> = records.iter().zip(&blobs).map(|((owner, (t, _), ttl), blob)| {
            RrRef { owner, rtype: *t, ttl: *ttl & 0x7fff_ffff, rdata: blob }
        }).collect();
        let reply = Reply { aa: true, answer: &rrs, ..Default::default() };
        let header = Header { id: 99, opcode: 0, rd: false, cd: false };
        let q = Question { qname: &qname, qtype: code::A, qclass: 1 };
        let bytes = write(header, Some(q), None, &reply, 65535, Vec::new());
        let parsed = parse(&bytes).unwrap();
        prop_assert_eq!(parsed.answer.len(), records.len());
        for (got, (owner, (t, rd), ttl)) in parsed.answer.iter().zip(&records) {
            prop_assert_eq!(to_lower(&got.owner), to_lower(owner));
            prop_assert_eq!(got.rtype, *t);
            prop_assert_eq!(got.ttl, *ttl & 0x7fff_ffff);
            if matches!(*t, code::NS | code::CNAME | code::MX) {
                // Compression matches names case-insensitively, so a name in the data may come
                // back in the case of an equal name written earlier.
                prop_assert_eq!(got.rdata.to_ascii_lowercase(), rd.to_ascii_lowercase());
            } else {
                prop_assert_eq!(&got.rdata, rd);
            }
        }
    }

    #[test]
    fn zone_text_reads_back(owner in name(), (t, rd) in rdata(), ttl in 0u32..0x7fff_ffff) {
        let text = record_text(&owner, t, ttl, &rd);
        let recs = parse_text(&text, "prop", ROOT, &Includes::Forbidden).unwrap();
        prop_assert_eq!(recs.len(), 1);
        prop_assert_eq!(&recs[0].owner, &to_lower(&owner));
        prop_assert_eq!(recs[0].rtype, t);
        prop_assert_eq!(recs[0].ttl, ttl);
        prop_assert_eq!(&recs[0].rdata, &rd);
    }
}
