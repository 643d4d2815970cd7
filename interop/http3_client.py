#!/usr/bin/env python3
"""A small HTTP/3 client on aioquic (independent of appnet), for interop/http3.sh.

usage: http3_client.py HOST PORT CAFILE SERVER_NAME PATH... [--header NAME:VALUE]
Sends every PATH as a GET on one QUIC connection, all streams at once, and prints one line per
path: "PATH STATUS LENGTH SHA256 ALT-SVC" (or "PATH RESET CODE" if the stream was reset).
A path prefixed with "!" carries the extra --header fields (to send a malformed request).
"""
import asyncio
import hashlib
import sys

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamReset


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.waiters = {}
        self.results = {}

    def get(self, authority, path, extra):
        sid = self._quic.get_next_available_stream_id()
        headers = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority.encode()),
                   (b":path", path.encode()), (b"user-agent", b"aioquic-interop")] + extra
        self.h3.send_headers(sid, headers, end_stream=True)
        fut = asyncio.get_running_loop().create_future()
        self.waiters[sid] = fut
        self.results[sid] = {"status": None, "body": b"", "alt": "-"}
        self.transmit()
        return fut

    def quic_event_received(self, event):
        if isinstance(event, StreamReset) and event.stream_id in self.waiters:
            self.results[event.stream_id]["reset"] = event.error_code
            self._done(event.stream_id)
            return
        for ev in self.h3.handle_event(event):
            r = self.results.get(ev.stream_id)
            if r is None:
                continue
            if isinstance(ev, HeadersReceived):
                for k, v in ev.headers:
                    if k == b":status":
                        r["status"] = int(v)
                    elif k == b"alt-svc":
                        r["alt"] = v.decode()
            elif isinstance(ev, DataReceived):
                r["body"] += ev.data
            if ev.stream_ended:
                self._done(ev.stream_id)

    def _done(self, sid):
        fut = self.waiters.get(sid)
        if fut and not fut.done():
            fut.set_result(self.results[sid])


async def main():
    args = sys.argv[1:]
    extra = []
    while "--header" in args:
        i = args.index("--header")
        name, value = args[i + 1].split(":", 1)
        extra.append((name.strip().lower().encode(), value.strip().encode()))
        del args[i:i + 2]
    host, port, cafile, name, paths = args[0], int(args[1]), args[2], args[3], args[4:]
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=name)
    config.load_verify_locations(cafile)
    async with connect(host, port, configuration=config, create_protocol=Client) as client:
        authority = f"{name}:{port}"
        futs = [client.get(authority, p.lstrip("!"), extra if p.startswith("!") else []) for p in paths]
        results = await asyncio.wait_for(asyncio.gather(*futs), 30)
        for p, r in zip(paths, results):
            if "reset" in r:
                print(p.lstrip("!"), "RESET", r["reset"])
            else:
                print(p, r["status"], len(r["body"]), hashlib.sha256(r["body"]).hexdigest(), r["alt"])


asyncio.run(main())
