"""The lab's DNS zone, generated from the model.

The zone is plain data (JSON) so the DNS container needs nothing of this package:
``labdns.py`` serves it.
"""

from __future__ import annotations

from lab.model import Lab

TTL = 5  # short: a changed zone is seen at once
C2S_PORT = 5222
S2S_PORT = 5269
C2S_DIRECT_TLS_PORT = 5223


def srv(service: str, domain: str, port: int, target: str) -> dict:
    return {"name": f"{service}.{domain}", "type": "SRV", "priority": 0, "weight": 5, "port": port, "target": target}


def build_zone(lab: Lab) -> dict:
    records = []
    for server in lab.servers:
        for name in server.names:
            records.append({"name": name, "type": "A", "address": server.address})
            records.append(srv("_xmpp-server._tcp", name, S2S_PORT, name))
        records.append(srv("_xmpp-client._tcp", server.domain, C2S_PORT, server.domain))
        if "direct-tls" in server.kind.features:
            records.append(srv("_xmpps-client._tcp", server.domain, C2S_DIRECT_TLS_PORT, server.domain))
    return {"origin": "test", "ttl": TTL, "records": records}
