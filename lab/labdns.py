"""The lab's DNS server: serves a zone file (JSON, see zone.py) with dnslib.

Runs inside the lab's DNS container, so it needs only the standard library and dnslib.
The zone file is re-read when it changes, so the lab can switch DNS variants without
restarting anything.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from dnslib import AAAA, QTYPE, RCODE, RR, SOA, SRV, A, DNSLabel
from dnslib.server import BaseResolver, DNSLogger, DNSServer

RDATA = {
    "A": lambda r: A(r["address"]),
    "AAAA": lambda r: AAAA(r["address"]),
    "SRV": lambda r: SRV(priority=r["priority"], weight=r["weight"], port=r["port"], target=r["target"]),
}


class ZoneResolver(BaseResolver):
    """Authoritative answers for one origin; REFUSED for names outside it."""

    def __init__(self, zone: dict):
        self.origin = DNSLabel(zone["origin"])
        self.ttl = zone["ttl"]
        self.records = [(DNSLabel(r["name"]), r["type"], RDATA[r["type"]](r)) for r in zone["records"]]
        self.soa = RR(self.origin, QTYPE.SOA, ttl=self.ttl, rdata=SOA(
            f"ns.{zone['origin']}", f"hostmaster.{zone['origin']}", (1, 60, 60, 60, self.ttl)))

    def resolve(self, request, handler):
        reply = request.reply()
        qname, qtype = request.q.qname, QTYPE[request.q.qtype]
        if not qname.matchSuffix(self.origin):
            reply.header.rcode = RCODE.REFUSED
            return reply
        reply.header.aa = 1
        names = [(name, rtype, rdata) for name, rtype, rdata in self.records if name == qname]
        for name, rtype, rdata in names:
            if qtype in (rtype, "ANY"):
                reply.add_answer(RR(name, getattr(QTYPE, rtype), ttl=self.ttl, rdata=rdata))
        if not reply.rr:
            # NODATA when the name exists with other types, NXDOMAIN otherwise; the SOA
            # lets resolvers cache the negative answer only briefly.
            if not names and qname != self.origin:
                reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self.soa)
        return reply


class ReloadingResolver(BaseResolver):
    """A ZoneResolver over a file, rebuilt whenever the file's content changes.

    The file is small and read per query: content, unlike mtime (whole seconds when
    copied in through the Docker API), always shows a change.
    """

    def __init__(self, path: str):
        self.path, self.text, self.zone = path, None, None
        self.lock = threading.Lock()
        self._reload()

    def _reload(self):
        with open(self.path, "rb") as file:
            text = file.read()
        if text != self.text:
            self.zone = ZoneResolver(json.loads(text))
            self.text = text

    def resolve(self, request, handler):
        with self.lock:
            try:
                self._reload()
            except (OSError, ValueError, KeyError) as error:
                print(f"zone not reloaded, serving the previous one: {error}", flush=True)
            return self.zone.resolve(request, handler)


class QueryLog(DNSLogger):
    """One JSON object a line per answered query: the lab reads it as evidence that a
    server looked a name up (S9, S10). Errors stay plain lines."""

    def __init__(self):
        super().__init__("-request,-send,-recv,-data")  # reply (below), truncated, error
        # The UDP and TCP servers answer in threads of their own: one whole line at a time.
        self.lock = threading.Lock()

    def log_reply(self, handler, reply):
        client = handler.client_address[0]
        line = json.dumps({
            # An IPv4 client of a dual-stack socket shows as ::ffff:a.b.c.d: logged as a.b.c.d.
            "time": round(time.time(), 6), "client": client.removeprefix("::ffff:"), "proto": handler.protocol,
            "name": str(reply.q.qname), "type": QTYPE[reply.q.qtype], "rcode": RCODE[reply.header.rcode],
            "answers": [str(rr.rdata) for rr in reply.rr]})
        with self.lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


def serve(resolver: BaseResolver, address: str = "0.0.0.0", port: int = 53) -> list[DNSServer]:
    logger = QueryLog()
    servers = [DNSServer(resolver, address=address, port=port, tcp=tcp, logger=logger) for tcp in (False, True)]
    for server in servers:
        server.start_thread()
    return servers


def main(path: str, address: str = "0.0.0.0") -> None:
    serve(ReloadingResolver(path), address)
    print(f"lab DNS serving {path}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(*sys.argv[1:3])  # ZONE_FILE [ADDRESS]: "::" on a dual-stack lab
