"""The interop test catalogue (IDs are stable: reports and tests refer to them).

Pass criteria are in shared/notes/interop-catalogue.md; runners implement them. A case
that needs a feature the server (c2s) or the target server (s2s) does not declare is
"not supported", decided here from the kinds' data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    id: str
    title: str
    scope: str               # "c2s": per stack x server; "s2s": per ordered server pair; "c2s+s2s": both
    needs: str | None = None  # feature the server (c2s) / target server (s2s) must declare
    needs_both: bool = False  # s2s: the sending server must declare it too
    group: str | None = None  # fault scenarios: the group it is set up with (see FAULTS)


CASES = [
    Case("C1", "connect via SRV, STARTTLS, lab CA verified", "c2s"),
    Case("C2", "SASL login; wrong password refused", "c2s"),
    Case("C3", "resource binding", "c2s"),
    Case("C4", "roster get/set/push", "c2s"),
    Case("C5", "message to a local user", "c2s"),
    Case("C6", "disco#info on the server", "c2s", "disco"),
    Case("C7", "ping the server", "c2s", "ping"),
    Case("C8", "stream management enable + resume", "c2s", "stream-management"),
    Case("C9", "message carbons", "c2s", "carbons"),
    Case("C10", "MAM query", "c2s", "mam"),
    Case("C11", "in-band registration", "c2s", "register"),
    Case("C12", "direct TLS via _xmpps-client", "c2s", "direct-tls"),
    Case("S1", "message both ways", "s2s"),
    Case("S2", "presence subscription both ways", "s2s"),
    Case("S3", "stanza to an unknown remote user", "s2s"),
    Case("S4", "ping the remote domain", "s2s", "ping"),
    Case("S5", "disco#info of the remote domain", "s2s", "disco"),
    Case("S6", "join a MUC on the remote server", "s2s", "muc"),
    Case("S7", "remote message lands in MAM", "s2s", "mam"),
    Case("S8", "how the sending server authenticated", "s2s"),
    Case("S9", "SRV to a distinct target host", "s2s"),
    Case("S10", "no SRV: A record on 5269", "s2s"),
]
# Fault scenarios (F1-F8 of shared/notes/interop-catalogue.md): run only when asked for,
# by ID (--only F6; F3 is F3a-e) or all of them (--faults). Scope "c2s+s2s": per server and
# per pair. Each group is set up and taken down on its own, and S1 runs after it: "dns"
# zone variants; "server" B's certificate or config, B alone restarted; "ipv6"; "outage".
FAULTS = [
    Case("F1", "SRV target \".\": refused at once, no A/AAAA fallback", "s2s", group="dns"),
    Case("F2", "first SRV target dead, second alive: delivered", "s2s", group="dns"),
    Case("F3a", "B presents a certificate for another lab domain", "s2s", group="server"),
    Case("F3b", "B presents an expired certificate", "s2s", group="server"),
    Case("F3c", "B presents a self-signed certificate", "s2s", group="server"),
    Case("F3d", "B presents a certificate from a CA A does not trust", "s2s", group="server"),
    Case("F3e", "B presents a certificate not valid yet", "s2s", group="server"),
    Case("F4", "B's certificate has the serverAuth EKU only", "s2s", group="server"),
    Case("F5", "B has s2s TLS off, A requires TLS: refused, nothing in plaintext", "s2s", group="server"),
    Case("F6", "IPv6 only (AAAA records alone): C1 and S1 over IPv6", "c2s+s2s", group="ipv6"),
    Case("F7", "_xmpps-server only (direct TLS between servers): delivered", "s2s", "s2s-direct-tls", True,
         group="dns"),
    Case("F8", "lab DNS down for 30 s, then back: federation recovers", "s2s", group="outage"),
]
BY_ID = {case.id: case for case in CASES + FAULTS}

# Declared features that a server advertises in the disco#info of its own domain (C6
# compares them). The others are seen elsewhere: stream-management and direct-tls in the
# stream, muc on its own service domain, mam on each account's bare JID.
FEATURE_VARS = {
    "disco": "http://jabber.org/protocol/disco#info",
    "ping": "urn:xmpp:ping",
    "carbons": "urn:xmpp:carbons:2",
    "register": "jabber:iq:register",
    "version": "jabber:iq:version",
}
# Declared features a server offers in its c2s stream features (C6 compares them too): the
# namespace of an element found anywhere in them (Bind2 and FAST sit inside SASL2's).
STREAM_FEATURE_NAMESPACES = {
    "sasl2": "urn:xmpp:sasl:2",
    "bind2": "urn:xmpp:bind:0",
    "fast": "urn:xmpp:fast:0",
}


def selected(only: list[str] | None, faults: bool = False) -> list[Case]:
    """The cases named in ``only`` (when None: every C and S case, and the faults if asked),
    in catalogue order."""
    if not only:
        return list(CASES) + (list(FAULTS) if faults else [])
    def named(case: Case, name: str) -> bool:  # F3 names F3a-e
        return case.id.upper() == name.upper() or (case.id[:-1] == name.upper() and case.id[-1].isalpha())
    unknown = [i for i in only if not any(named(case, i) for case in CASES + FAULTS)]
    if unknown:
        raise ValueError(f"unknown case {', '.join(unknown)} (cases: {', '.join(BY_ID)})")
    return [case for case in CASES + FAULTS
            if any(named(case, i) for i in only) or (faults and case in FAULTS)]
