"""The lab's DNS zone, generated from the model.

The zone is plain data (JSON) so the DNS container needs nothing of this package:
``labdns.py`` serves it. A case that runs under a DNS variant (S9, S10, the DNS faults)
builds its variant's records from the pieces here, in its own unit (lab/cases/).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from lab.model import Lab, Server

TTL = 2  # short: a changed zone (a DNS variant) is seen within seconds
SETTLE = TTL + 1  # seconds after a zone change until no answer cached before it is left


def srv(service: str, domain: str, port: int, target: str, priority: int = 0) -> dict:
    return {"name": f"{service}.{domain}", "type": "SRV", "priority": priority, "weight": 5, "port": port,
            "target": target}


def address(name: str, ip: str, ipv6: bool = False) -> dict:
    return {"name": name, "type": "AAAA" if ipv6 else "A", "address": ip}


def s2s_srv(server: "Server", name: str, target: str) -> list[dict]:
    """The normal server-to-server record of one of ``server``'s names."""
    return [srv("_xmpp-server._tcp", name, server.kind.ports["s2s"], target)]


def server_records(server: "Server", host: Callable[[str], str] = lambda name: name,
                   s2s: Callable[["Server", str, str], list[dict]] | None = s2s_srv, ipv4: bool = True) -> list[dict]:
    """One server's records: for each of its names, the addresses of ``host(name)`` (A unless
    ``ipv4`` is off; AAAA on a dual-stack lab) and ``s2s(server, name, host(name))``; then its
    client records, which point at ``host(domain)``."""
    records = []
    for name in server.names:
        target = host(name)
        if ipv4:
            records.append(address(target, server.address))
        if server.address6:
            records.append(address(target, server.address6, ipv6=True))
        records += s2s(server, name, target) if s2s else []
    target = host(server.domain)
    ports = server.kind.ports
    records.append(srv("_xmpp-client._tcp", server.domain, ports["c2s"], target))
    if "direct-tls" in server.features:
        # Less preferred than STARTTLS: clients that merge both lists (XEP-0368) use
        # _xmpp-client first, as on most public servers; C12 asks for _xmpps-client itself.
        records.append(srv("_xmpps-client._tcp", server.domain, ports["c2s_direct_tls"], target, priority=10))
    return records


Variant = Callable[["Lab", "Server"], list[dict]]  # a server's records under a DNS variant


def build_zone(lab: "Lab", variant: Variant | None = None) -> dict:
    """The lab's zone: every server's records, normal or as ``variant`` makes them."""
    records = []
    for server in lab.servers:
        records += variant(lab, server) if variant else server_records(server)
    # The lab's TURN service, which servers name in their XEP-0215 answers (IPv4 only; no DNS
    # variant is about it).
    if lab.turn_enabled and variant is None:
        from lab import turn
        records.append(address(turn.NAME, lab.turn_address))
    return {"origin": "test", "ttl": TTL, "records": records}
