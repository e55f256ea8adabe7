"""The lab's DNS zone, generated from the model.

The zone is plain data (JSON) so the DNS container needs nothing of this package:
``labdns.py`` serves it.
"""

from __future__ import annotations

from lab.model import Lab

TTL = 2  # short: a changed zone (a DNS variant) is seen within seconds


def srv(service: str, domain: str, port: int, target: str, priority: int = 0) -> dict:
    return {"name": f"{service}.{domain}", "type": "SRV", "priority": priority, "weight": 5, "port": port,
            "target": target}


# DNS variants the interop cases S9, S10 and the fault F6 run under (served live, nothing
# restarts):
# S9: every SRV record points at a distinct target host, xmpp.<domain>, and the domain
#     itself has no A record, so only a server that follows SRV can connect;
# S10: no _xmpp-server SRV records at all, so servers fall back to A on 5269;
# F1: every _xmpp-server SRV target is "." (RFC 2782: the service is decidedly not
#     available), so a sender must give up at once, with no A/AAAA fallback;
# F2: two _xmpp-server SRV records: first dead.<domain>, an address no container holds,
#     then the real target, so a sender must move on to the second;
# F6: IPv6 only: AAAA records alone (dual-stack labs), so every connection is over IPv6;
# F7: _xmpps-server SRV records alone (XEP-0368 direct TLS for servers), pointing at
#     tls.<domain>, a name that only a sender using them looks up.
VARIANTS = ("S9", "S10", "F1", "F2", "F6", "F7")


def build_zone(lab: Lab, variant: str | None = None) -> dict:
    records = []
    for server in lab.servers:
        ports = server.kind.ports
        for name in server.names:
            target = f"xmpp.{name}" if variant == "S9" else name
            if variant != "F6":
                records.append({"name": target, "type": "A", "address": server.address})
            if server.address6:
                records.append({"name": target, "type": "AAAA", "address": server.address6})
            if variant == "F1":
                records.append(srv("_xmpp-server._tcp", name, 0, "."))
            elif variant == "F2":
                records.append(srv("_xmpp-server._tcp", name, ports["s2s"], f"dead.{name}"))
                records.append({"name": f"dead.{name}", "type": "A", "address": lab.unused_address})
                if lab.unused_address6:
                    records.append({"name": f"dead.{name}", "type": "AAAA", "address": lab.unused_address6})
                records.append(srv("_xmpp-server._tcp", name, ports["s2s"], target, priority=10))
            elif variant == "F7":
                records.append(srv("_xmpps-server._tcp", name, ports["s2s_direct_tls"], f"tls.{name}"))
                records.append({"name": f"tls.{name}", "type": "A", "address": server.address})
            elif variant != "S10":
                records.append(srv("_xmpp-server._tcp", name, ports["s2s"], target))
        target = f"xmpp.{server.domain}" if variant == "S9" else server.domain
        records.append(srv("_xmpp-client._tcp", server.domain, ports["c2s"], target))
        if "direct-tls" in server.features:
            # Less preferred than STARTTLS: clients that merge both lists (XEP-0368) use
            # _xmpp-client first, as on most public servers; C12 asks for _xmpps-client itself.
            records.append(srv("_xmpps-client._tcp", server.domain, ports["c2s_direct_tls"], target, priority=10))
    return {"origin": "test", "ttl": TTL, "records": records}
