"""Asks appnet and NSD, serving the same zone, the same questions and compares the answers.

Compared per question: rcode, the AA flag, and the answer and authority sections as sets of
RRsets (owner, type, TTL, records). One known difference is left out: NSD adds the zone's NS
RRset to the authority section of some positive answers; appnet sends minimal responses.
Usage: answers.py ZONE APPNET_PORT NSD_PORT ZONEFILE [SEED]. Prints the mismatches; exits 1 if
there is any.
"""
import random
import socket
import sys

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.zone

TYPES = ["A", "AAAA", "MX", "TXT", "NS", "SOA", "CNAME", "DNAME", "DS", "SRV", "PTR", "CAA", "ANY"]


def questions(zone_name, zone_file, seed):
    rng = random.Random(seed)
    zone = dns.zone.from_file(zone_file, origin=zone_name, relativize=False, check_origin=False)
    owners = sorted({str(n) for n in zone.nodes.keys()})
    names = set(owners)
    origin = zone_name.rstrip(".") + "."
    word = lambda: "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rng.randint(1, 12)))
    for owner in owners:
        if owner.startswith("*."):
            base = owner[2:]
            names.update({f"{word()}.{base}", f"{word()}.{word()}.{base}", owner})
        else:
            names.add(f"{word()}.{owner}")
    for _ in range(20):
        names.add(f"{word()}.{origin}")
    # Empty non-terminals and names around DNAMEs and cuts.
    names.update({f"ent.a.{origin}", f"a.{origin}", f"y.z.ent2.{origin}", f"z.ent2.{origin}",
                  f"{'b' * 60}.{'c' * 60}.long.{origin}", f"x.dnchain.{origin}", f"q.dnin2.{origin}",
                  f"deep.x.sub.{origin}", f"ns.sub.{origin}", f"x.sub2.{origin}"})
    out = []
    for name in sorted(names):
        for t in rng.sample(TYPES, 4) + ["A"]:
            out.append((name, t))
    return sorted(set(out))


def ask(port, name, qtype):
    q = dns.message.make_query(name, qtype, want_dnssec=False)
    q.flags &= ~dns.flags.RD
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=3)


def ask_raw(port, name, qtype, rd):
    """(request, response) wire bytes of one UDP question with RD set or clear."""
    q = dns.message.make_query(name, qtype, want_dnssec=False)
    if not rd:
        q.flags &= ~dns.flags.RD
    wire = q.to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(wire, ("127.0.0.1", port))
        return wire, s.recv(65535)


def rrsets(section, drop_apex_ns=None):
    out = set()
    for rrset in section:
        if drop_apex_ns and rrset.rdtype == dns.rdatatype.NS and rrset.name.to_text().lower() == drop_apex_ns:
            continue
        rdatas = tuple(sorted(r.to_text().lower() for r in rrset))
        out.add((rrset.name.to_text().lower(), dns.rdatatype.to_text(rrset.rdtype), rrset.ttl, rdatas))
    return out


def main():
    zone_name, ours_port, nsd_port, zone_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else 22
    apex = zone_name.rstrip(".").lower() + "."
    qs = questions(zone_name, zone_file, seed)
    mismatches = 0
    for name, qtype in qs:
        a, n = ask(ours_port, name, qtype), ask(nsd_port, name, qtype)
        positive = lambda m: m.rcode() == dns.rcode.NOERROR and len(m.answer) > 0
        diffs = []
        if a.rcode() != n.rcode():
            diffs.append(f"rcode appnet {dns.rcode.to_text(a.rcode())} nsd {dns.rcode.to_text(n.rcode())}")
        if bool(a.flags & dns.flags.AA) != bool(n.flags & dns.flags.AA):
            diffs.append(f"AA appnet {bool(a.flags & dns.flags.AA)} nsd {bool(n.flags & dns.flags.AA)}")
        if rrsets(a.answer) != rrsets(n.answer):
            diffs.append(f"answer\n      appnet {sorted(rrsets(a.answer))}\n      nsd    {sorted(rrsets(n.answer))}")
        drop = apex if positive(n) else None
        if rrsets(a.authority, drop) != rrsets(n.authority, drop):
            diffs.append(f"authority\n      appnet {sorted(rrsets(a.authority, drop))}\n"
                         f"      nsd    {sorted(rrsets(n.authority, drop))}")
        # Asked twice more with other IDs and RD flags: appnet answers repeated questions from
        # its per-worker cache of finished answers, which must differ only in ID and RD.
        first, again = ask_raw(ours_port, name, qtype, True), ask_raw(ours_port, name, qtype, False)
        for (q, r), rd in ((first, 1), (again, 0)):
            if r[:2] != q[:2] or r[2] & 1 != rd or (r[2] & 0xFE, r[3:]) != (first[1][2] & 0xFE, first[1][3:]):
                diffs.append(f"a repeated question (RD={rd}) got different bytes")
        m = dns.message.from_wire(first[1])
        same = lambda x: (x.rcode(), x.flags & ~dns.flags.RD, rrsets(x.answer), rrsets(x.authority), rrsets(x.additional))
        if same(m) != same(a):
            diffs.append("the repeated question got another answer")
        if diffs:
            mismatches += 1
            print(f"  MISMATCH {name} {qtype}: " + "; ".join(diffs))
    print(f"appnet vs NSD: {len(qs)} questions, {mismatches} mismatches")
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
