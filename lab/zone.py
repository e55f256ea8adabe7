"""The lab's DNS zone, generated from the model.

The zone is plain data (JSON) so the DNS container needs nothing of this package:
``labdns.py`` serves it.
"""

from __future__ import annotations

from lab.model import Lab

TTL = 5  # short: a changed zone is seen at once
C2S_PORT = 5222
S2S_PORT = 5269


def build_zone(lab: Lab) -> dict:
    records = []
    for server in lab.servers:
        records.append({"name": server.domain, "type": "A", "address": server.address})
        for service, port in (("_xmpp-client._tcp", C2S_PORT), ("_xmpp-server._tcp", S2S_PORT)):
            records.append({"name": f"{service}.{server.domain}", "type": "SRV",
                            "priority": 0, "weight": 5, "port": port, "target": server.domain})
    return {"origin": "test", "ttl": TTL, "records": records}
