"""Client to server: C1-C12, per client stack x server. The runners hold the exchanges; C6's
comparison with the kind's declared features is judged here."""

from __future__ import annotations

import dataclasses

from lab.cases import Case
from lab.results import ERROR, FAIL, FLAKY, PASS, CaseResult

# Declared features that a server advertises in the disco#info of its own domain (C6
# compares them). The others are seen elsewhere: stream-management and direct-tls in the
# stream, muc, upload, proxy65 and component on their own domains, mam and pep on each
# account's bare JID; private storage (XEP-0049) has no disco feature to advertise.
FEATURE_VARS = {
    "disco": "http://jabber.org/protocol/disco#info",
    "ping": "urn:xmpp:ping",
    "carbons": "urn:xmpp:carbons:2",
    "register": "jabber:iq:register",
    "version": "jabber:iq:version",
    "blocking": "urn:xmpp:blocking",           # XEP-0191 5
    "vcard": "vcard-temp",                     # XEP-0054 7
    "external-services": "urn:xmpp:extdisco:2",  # XEP-0215 4
}
# Declared features a server offers in its c2s stream features (C6 compares them too): the
# namespace of an element found anywhere in them (Bind2 and FAST sit inside SASL2's).
STREAM_FEATURE_NAMESPACES = {
    "sasl2": "urn:xmpp:sasl:2",
    "bind2": "urn:xmpp:bind:0",
    "fast": "urn:xmpp:fast:0",
}


def judge_features(result: CaseResult, server) -> CaseResult:
    """C6: every declared feature with a disco#info var, or a stream feature namespace, must
    be advertised there."""
    if result.status not in (PASS, FLAKY):
        return result
    advertised, stream = result.evidence.get("features"), result.evidence.get("stream_namespaces")
    if advertised is None or stream is None:
        return dataclasses.replace(result, status=ERROR,
                                   detail=f"the runner returned no advertised features to compare; {result.detail}")
    declared = {feature: FEATURE_VARS[feature] for feature in sorted(server.features) if feature in FEATURE_VARS}
    declared_stream = {feature: STREAM_FEATURE_NAMESPACES[feature] for feature in sorted(server.features)
                       if feature in STREAM_FEATURE_NAMESPACES}
    missing = [f"{feature} ({var}) in disco#info" for feature, var in declared.items() if var not in advertised]
    missing += [f"{feature} ({namespace}) in the stream features" for feature, namespace in declared_stream.items()
                if namespace not in stream]
    undeclared = sorted(set(advertised) & set(FEATURE_VARS.values()) - set(declared.values()))
    undeclared += sorted(set(stream) & set(STREAM_FEATURE_NAMESPACES.values()) - set(declared_stream.values()))
    note = f"; advertised but not declared: {', '.join(undeclared)}" if undeclared else ""
    if missing:
        return dataclasses.replace(result, status=FAIL, detail=(
            f"declared but not advertised: {', '.join(missing)}{note}; {result.detail}"))
    return dataclasses.replace(result, detail=(
        f"{result.detail}; every declared feature advertised: {', '.join([*declared, *declared_stream])}{note}"))


CASES = [
    Case("C1", "connect via SRV, STARTTLS, lab CA verified", "c2s",
         "the client finds the server through SRV _xmpp-client, connects to the port the record names, "
         "negotiates TLS with STARTTLS and verifies a certificate for the domain issued by the lab CA "
         "(trusting nothing else)",
         "RFC 6120 3.2.1, 5; RFC 6125 6"),
    Case("C2", "SASL login; wrong password refused", "c2s",
         "the right password logs in with the strongest mechanism offered (and with every other offered "
         "SCRAM/PLAIN where the stack can choose); a wrong password is refused with <not-authorized/>",
         "RFC 6120 6.5.10; RFC 5802; RFC 7677"),
    Case("C3", "resource binding", "c2s",
         "binding returns a full JID whose bare part is the account's",
         "RFC 6120 7"),
    Case("C4", "roster get/set/push", "c2s",
         "a roster set is pushed to the interested resource with its name and group, persists in a roster "
         "get, and its removal is pushed and persists too",
         "RFC 6121 2.1.5, 2.1.6, 2.3-2.5"),
    Case("C5", "message to a local user", "c2s",
         "a chat message to another local user arrives with from, id, type and body as sent",
         "RFC 6121 5.2, 8.5.3"),
    Case("C6", "disco#info on the server", "c2s",
         "the server's disco#info answers with its identity, and every feature its kind declares at its "
         "release that has a var there (disco, ping, carbons, register, version, blocking, vcard, "
         "external-services) is advertised there; SASL2, Bind2, FAST in the stream features after STARTTLS",
         "XEP-0030 3.1; XEP-0191 5; XEP-0054 7; XEP-0215 4; XEP-0388 2 (SASL2 in the stream features)", needs="disco", judge=lambda result, seen:
         judge_features(result, seen.sender)),
    Case("C7", "ping the server", "c2s",
         "an XEP-0199 ping to the server's domain gets an IQ result",
         "XEP-0199 4.2", needs="ping"),
    Case("C8", "stream management enable + resume", "c2s",
         "stream management is offered and enabled with resumption; after a TCP reset the session is resumed "
         "(previd names it, same full JID) and a message sent while the connection was down arrives",
         "XEP-0198 3, 5", needs="stream-management"),
    Case("C9", "message carbons", "c2s",
         "with carbons enabled on a second resource, it gets a <received/> copy of a message to the first "
         "and a <sent/> copy of one the first sent, both from the account's bare JID",
         "XEP-0280 6, 7", needs="carbons"),
    Case("C10", "MAM query", "c2s",
         "a message to the account is archived: a MAM query returns it with its stanza-id",
         "XEP-0313 4; XEP-0359", needs="mam"),
    Case("C11", "in-band registration", "c2s",
         "an account registered in-band (before authentication) logs in with its password, and can be "
         "removed again",
         "XEP-0077 3.1, 3.2", needs="register"),
    Case("C12", "direct TLS via _xmpps-client", "c2s",
         "the client finds the direct TLS port through SRV _xmpps-client, opens TLS at once (no STARTTLS) "
         "with the lab CA verified, and logs in",
         "XEP-0368 3", needs="direct-tls"),
]
