#!/usr/bin/env python3
"""An independent Chord client speaking appnet's wire protocol (see README, "Chord"), using only
the Python standard library. Usage:
  chord_client.py put HOST:PORT KEY VALUE     iterative lookup, then Put on the owner
  chord_client.py get HOST:PORT KEY           iterative lookup, then Get from the owner/replicas
  chord_client.py owner HOST:PORT KEY         prints the owner's id (hex or decimal) and hops
  chord_client.py badversion HOST:PORT        sends version 9, prints the error code and text
  chord_client.py stats HOST:PORT             Ping then Stats on one connection; prints
                                              `name value` lines
"""
import hashlib
import socket
import struct
import sys

VERSION = 1
PING, FIND, GET, PUT, STATS = 0x01, 0x03, 0x06, 0x07, 0x0C
PONG, FOUND, CLOSER, OK, VALUE, STATS_R, ERROR = 0x81, 0x83, 0x84, 0x86, 0x87, 0x8A, 0xFF


def recvn(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def exchange(s, bits, kind, payload=b"", version=VERSION):
    """One request/response on an open connection (several may follow on the same one)."""
    body = bytes([version, bits, kind]) + payload
    s.sendall(struct.pack(">I", len(body)) + body)
    (n,) = struct.unpack(">I", recvn(s, 4))
    resp = recvn(s, n)
    assert resp[0] == VERSION, "response version"
    if resp[2] == ERROR:
        (tlen,) = struct.unpack(">H", resp[4:6])
        raise RuntimeError(f"error {resp[3]}: {resp[6:6 + tlen].decode()}")
    return resp[1], resp[2], resp[3:]


def call(addr, bits, kind, payload=b"", version=VERSION):
    with socket.create_connection(addr, timeout=5) as s:
        return exchange(s, bits, kind, payload, version)


def stats(addr):
    """Ping, then Stats on the same connection: [(name, value)]."""
    with socket.create_connection(addr, timeout=5) as s:
        bits, kind, _ = exchange(s, 0, PING)
        assert kind == PONG
        _, kind, p = exchange(s, bits, STATS)
    assert kind == STATS_R, kind
    count, off, out = p[0], 1, []
    for _ in range(count):
        (n,) = struct.unpack(">H", p[off:off + 2])
        name = p[off + 2:off + 2 + n].decode()
        (value,) = struct.unpack(">Q", p[off + 2 + n:off + 10 + n])
        out.append((name, value))
        off += 10 + n
    assert off == len(p), "trailing bytes after the counters"
    return out


def parse_node(buf, off, bits):
    idlen = (bits + 7) // 8
    nid = int.from_bytes(buf[off:off + idlen], "big")
    off += idlen
    fam = buf[off]
    off += 1
    if fam == 4:
        ip = socket.inet_ntop(socket.AF_INET, buf[off:off + 4])
        off += 4
    else:
        ip = socket.inet_ntop(socket.AF_INET6, buf[off:off + 16])
        off += 16
    (port,) = struct.unpack(">H", buf[off:off + 2])
    return (nid, (ip, port)), off + 2


def parse_nodes(buf, off, bits):
    count, off, out = buf[off], off + 1, []
    for _ in range(count):
        node, off = parse_node(buf, off, bits)
        out.append(node)
    return out


def ring_bits(entry):
    bits, kind, _ = call(entry, 0, PING)
    assert kind == PONG
    return bits


def key_id(key, bits):
    return int.from_bytes(hashlib.sha1(key).digest(), "big") % (1 << bits)


def lookup(entry, key):
    """Iterative find_successor: returns (bits, successor list, hops)."""
    bits = ring_bits(entry)
    kid = key_id(key, bits)
    ask, hops = entry, 0
    for _ in range(64):
        # id, then the avoid list (u8 count + ids): empty, this client does not route around failures
        _, kind, p = call(ask, bits, FIND, kid.to_bytes((bits + 7) // 8, "big") + b"\x00")
        hops += 1
        nodes = parse_nodes(p, 0, bits)
        if kind == FOUND:
            return bits, nodes, hops
        assert kind == CLOSER, kind
        ask = nodes[0][1]
    raise RuntimeError("lookup did not converge")


def show_id(nid, bits):
    return str(nid) if bits <= 64 else format(nid, "040x")[-((bits + 3) // 4):]


def main():
    cmd, hostport = sys.argv[1], sys.argv[2]
    host, port = hostport.rsplit(":", 1)
    entry = (host, int(port))
    if cmd == "badversion":
        try:
            call(entry, 0, PING, version=9)
        except RuntimeError as e:
            print(e)
        return
    if cmd == "stats":
        for name, value in stats(entry):
            print(name, value)
        return
    key = sys.argv[3].encode()
    bits, succs, hops = lookup(entry, key)
    if cmd == "owner":
        print(show_id(succs[0][0], bits), hops)
    elif cmd == "put":
        value = sys.argv[4].encode()
        _, kind, _ = call(succs[0][1], 0, PUT, struct.pack(">H", len(key)) + key + struct.pack(">I", len(value)) + value)
        assert kind == OK
        print("stored")
    elif cmd == "get":
        for _, addr in succs:
            _, kind, p = call(addr, 0, GET, struct.pack(">H", len(key)) + key)
            assert kind == VALUE
            if p[0] == 1:
                (n,) = struct.unpack(">I", p[1:5])
                print(p[5:5 + n].decode())
                return
        sys.exit("not found")


if __name__ == "__main__":
    main()
