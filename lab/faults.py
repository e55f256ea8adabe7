"""Fault scenarios (F cases): the lab's verdict on each, from what it saw itself.

The runner reports the exchange; these functions hold it against the lab DNS's query log
(F1, F2, F6, F7) or the lab's own clock (F8), and give each result its observed and
expected outcome. Pure: captured data in, CaseResult out (tests/test_faults.py,
tests/test_ipv6.py run them on logs of real runs). What each fault expects, and why, is
in docs/faults.md.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import time

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from lab.model import Server
from lab.servers import CERTIFICATE, common_auth
from lab.results import ERROR, FAIL, FLAKY, PASS, CaseResult

# F8: the lab DNS is paused this long, from OUTAGE_START after the runner began; the
# runner gives up RECOVERY_BUDGET after it is back.
OUTAGE_START, OUTAGE, RECOVERY_BUDGET = 5.0, 30.0, 15.0


def asked_during(result: CaseResult, askers: list[str], queries: list[dict], since: float) -> list[dict]:
    """The lab DNS queries from ``askers`` between ``since`` and the end of the case."""
    until = (result.ended or time.time()) + 0.5
    return [q for q in queries if q.get("client") in askers and since <= q.get("time", 0) <= until]


def judge_f1(result: CaseResult, sender: Server, receiver: Server, queries: list[dict], since: float) -> CaseResult:
    """F1: a refusal counts only if the lab DNS saw the sender get the "." SRV answer, and the
    sender must not look the receiver's address up after it (no A/AAAA fallback), whatever
    its user was told."""
    asked = asked_during(result, sender.addresses, queries, since)
    srv_name = f"_xmpp-server._tcp.{receiver.domain}"
    srv = next((q for q in asked if q["name"].rstrip(".") == srv_name and q["type"] == "SRV"), None)
    fallback = [q for q in asked if srv is not None and q["name"].rstrip(".") == receiver.domain
                and q["type"] in ("A", "AAAA") and q["time"] >= srv["time"]]
    if fallback:
        observed = f"fell back to {receiver.domain} {fallback[0]['type']} after the SRV answer '.'"
        return dataclasses.replace(result, status=FAIL, evidence={
            **result.evidence, "dns": [srv, *fallback], "since": since, "observed": observed}, detail=(
            f"observed: {observed} (lab DNS; RFC 6120 3.2.1: no fallback when the target is '.'); {result.detail}"))
    if result.status not in (PASS, FLAKY):
        return result
    if srv is None:
        return dataclasses.replace(result, status=ERROR, detail=(
            f"refused, but the lab DNS saw no SRV query from {sender.name} for {srv_name} during the case "
            f"(a cached answer?): the lab cannot tell why; {result.detail}"))
    return dataclasses.replace(result, evidence={**result.evidence, "dns": [srv], "since": since}, detail=(
        f"{result.detail}; lab DNS: {sender.name} asked {srv_name} SRV -> {', '.join(srv.get('answers') or [])}, "
        f"and no A/AAAA of {receiver.domain} after it"))


def judge_f2(result: CaseResult, sender: Server, receiver: Server, queries: list[dict], since: float) -> CaseResult:
    """F2: a delivery counts only if the lab DNS saw the sender look up both the dead first
    target and the live second one (in any order: a server may resolve them all at once)."""
    expected = "delivered through the second SRV target (RFC 2782 order; RFC 6120 3.2.1)"
    if result.status not in (PASS, FLAKY):
        return dataclasses.replace(result, evidence={**result.evidence, "expected": expected,
                                                      "observed": f"not delivered: {result.detail}"})
    asked = asked_during(result, sender.addresses, queries, since)
    # Lookups only: a server may resolve every target at once (jabberd2 does, live one first).
    dead = next((q for q in asked if q["name"].rstrip(".") == f"dead.{receiver.domain}" and q.get("answers")), None)
    live = next((q for q in asked if q["name"].rstrip(".") == receiver.domain and q["type"] in ("A", "AAAA")
                 and q.get("answers")), None)
    if not (dead and live):
        return dataclasses.replace(result, status=ERROR, detail=(
            f"delivered, but the lab DNS saw no lookup of both dead.{receiver.domain} and {receiver.domain} "
            f"from {sender.name} during the case: the lab cannot tell which target was used; {result.detail}"))
    took = re.search(r" in (\d+) ms", result.detail)
    observed = f"delivered after {took.group(1)} ms" if took else "delivered"
    return dataclasses.replace(result, detail=(
        f"observed: {observed}; {sender.name} looked up dead.{receiver.domain} ({dead['answers'][0]}, no one "
        f"there) and {receiver.domain}; "
        f"{result.detail}"), evidence={**result.evidence, "dns": [dead, live], "since": since,
                                      "observed": observed, "expected": expected})


def judge_f6(result: CaseResult, asker: str, askers: list[str], target: Server,
               queries: list[dict], since: float) -> CaseResult:
    """F6: an exchange under the IPv6-only zone counts only if the lab DNS saw ``asker`` (its
    addresses ``askers``) look ``target`` up during the case and get its IPv6 address."""
    if result.status not in (PASS, FLAKY):
        return result
    until = (result.ended or time.time()) + 0.5
    asked = asked_during(result, askers, queries, since)
    found = next((q for q in asked if q["name"].rstrip(".") == target.domain and q["type"] == "AAAA"
                  and target.address6 in (q.get("answers") or [])), None)
    if found is None:
        seen = ", ".join(f"{q['name'].rstrip('.')} {q['type']}" for q in asked) or "nothing"
        return dataclasses.replace(result, status=ERROR, detail=(
            f"exchanged, but the lab DNS saw no AAAA query from {asker} for {target.domain} answered with "
            f"{target.address6} during the case (it asked: {seen}); {result.detail}"))
    return dataclasses.replace(result, detail=f"{result.detail}; lab DNS: {asker} asked {target.domain} AAAA "
                                              f"-> {target.address6} (no A records served)",
                               evidence={**result.evidence, "dns": [found], "since": since, "until": until})


def judge_f7(result: CaseResult, sender: Server, receiver: Server, queries: list[dict], since: float) -> CaseResult:
    """F7: a delivery counts as direct TLS only if the lab DNS saw the sender look up the
    _xmpps-server record and then tls.<receiver>, the name only that record leads to."""
    expected = "delivered over direct TLS via _xmpps-server (XEP-0368)"
    if result.status not in (PASS, FLAKY):
        return dataclasses.replace(result, evidence={**result.evidence, "expected": expected,
                                                      "observed": f"not delivered: {result.detail}"})
    asked = asked_during(result, sender.addresses, queries, since)
    srv_name, host = f"_xmpps-server._tcp.{receiver.domain}", f"tls.{receiver.domain}"
    srv = next((q for q in asked if q["name"].rstrip(".") == srv_name and q["type"] == "SRV"), None)
    tls = next((q for q in asked if q["name"].rstrip(".") == host and q["type"] in ("A", "AAAA") and q.get("answers")),
               None)
    if srv is None or tls is None:
        observed = (f"delivered without looking up {host} (not through _xmpps-server: "
                    f"{'asked' if srv else 'never asked'} {srv_name})")
        return dataclasses.replace(result, status=FAIL, detail=f"observed: {observed}; {result.detail}",
                                   evidence={**result.evidence, "observed": observed, "expected": expected})
    return dataclasses.replace(result, detail=(
        f"observed: delivered through {srv_name} -> {host} ({tls['answers'][0]}); {result.detail}"),
        evidence={**result.evidence, "dns": [srv, tls], "since": since, "observed": "delivered over direct TLS",
                  "expected": expected})


def judge_f8(result: CaseResult, down: float, back: float, give_up: float) -> CaseResult:
    """F8: when the message arrived (the runner's ``delivered_at``) against when the lab DNS
    went down and came back, and when the runner gave up (unix times). The runner tries every 5 s: the recovery time is
    known to within that."""
    expected = "recovers once the DNS is back, with no restart (RFC 6120 3.2: lookups are retried)"
    evidence = {**result.evidence, "dns_down_at": down, "dns_back_at": back, "expected": expected}
    delivered = result.evidence.get("delivered_at")
    if result.status in (PASS, FLAKY) and delivered:
        observed = (f"recovered {delivered - back:.1f} s after the DNS came back" if delivered >= back
                    else f"delivered during the outage, {delivered - down:.1f} s into it")
        return dataclasses.replace(result, detail=f"observed: {observed}; {result.detail}",
                                   evidence={**evidence, "observed": observed})
    if result.status == FAIL:
        return dataclasses.replace(result, evidence={**evidence, "observed": (
            f"no recovery within {give_up - back:.0f} s after the DNS came back")})
    return result


# --- F3a-e, F4, F5: the fault on B's side (its certificate, or s2s TLS off) -------------------

EXPECTED_REF = {
    "F3": "RFC 6120 13.7.2, RFC 6125 6, XEP-0178: a certificate that does not verify authenticates no one; "
          "dialback only where the policy allows it for that peer (XEP-0220, XEP-0344)",
    "F4": "nothing in RFC 6120 asks a server certificate for the clientAuth EKU, and public CAs no longer issue "
          "it (ejabberd issue 4392); dialback is fine where the policy allows it for that peer",
    "F5": "RFC 7590 3, RFC 6120 5.3.1: the sender requires TLS (every lab server is configured to), so no "
          "stanza goes in plaintext and the sender's user gets an error",
}


def certificate_required(verifier: Server, peer: Server) -> bool:
    """Whether ``verifier``'s configured policy wants a verified certificate from ``peer``
    (the templates' dialback_peers: dialback only for a peer that can do nothing else)."""
    return common_auth(peer.kind, verifier.kind) == CERTIFICATE


def expected_outcomes(fault: str, sender: Server, faulty: Server) -> set[str]:
    """The outcomes that conform, for one direction of a pair with ``faulty`` presenting the
    fault; ``sender``'s policy decides (the normal server verifies the faulty one, whichever
    way the message goes)."""
    if fault == "F5":
        return {"refused"}
    dialback = set() if certificate_required(sender, faulty) else {"fell back to dialback"}
    return ({"accepted"} if fault == "F4" else {"refused"}) | dialback


def fate_of(direction: dict | None, sender: Server, receiver: Server, log: str, fault: str) -> tuple[str, str, str]:
    """(outcome, short observation, the evidence for it) of one message: its fate from the
    runner, and for a delivery how the receiver logged the sender's authentication."""
    if not direction:
        return "unknown", "unknown", "the runner reported nothing for this direction"
    if direction["outcome"] == "refused":
        short = f"refused: {direction.get('condition')} after {direction.get('ms')} ms"
        return "refused", short, f"{short} ({direction.get('detail')})"
    if direction["outcome"] == "none":
        short = f"no answer within {direction.get('seconds')} s"
        return "none", short, short
    if fault == "F5":
        short = f"delivered in plaintext after {direction.get('ms')} ms"
        return "delivered in plaintext", short, short
    seen = receiver.kind.inbound_auth(log, sender.domain, receiver.domain)
    if seen is None:
        return "unknown", "delivered, authentication not seen", (
            f"delivered after {direction.get('ms')} ms, but {receiver.name}'s log shows no authentication of "
            f"{sender.domain}")
    method, line = seen
    outcome = "accepted" if method == "certificate" else "fell back to dialback"
    short = f"{outcome}, delivered after {direction.get('ms')} ms"
    return outcome, short, f"{short} ({receiver.name} logged: {line.strip()})"


def describe_offer(offer: dict) -> str:
    """What a server showed on its s2s port (probe.s2s_offer), in a few words."""
    if offer.get("error"):
        return f"(could not be looked at: {offer['error']})"
    if not offer.get("starttls"):
        return "no STARTTLS on its s2s port"
    if not offer.get("certificate"):
        return "STARTTLS but no certificate"
    cert = x509.load_der_x509_certificate(base64.b64decode(offer["certificate"]))
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    try:
        names_of = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}
        usages = [names_of.get(u, u.dotted_string)
                  for u in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value]
    except x509.ExtensionNotFound:
        usages = ["(no EKU)"]
    return (f"a certificate for {', '.join(names[:2]) or cert.subject.rfc4514_string()} issued by "
            f"{cert.issuer.rfc4514_string()}, valid {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, EKU {'+'.join(usages)}")


def fault_in_place(fault: str, offer: dict, expected_der: bytes | None) -> str | None:
    """None when B's s2s port shows the fault (its certificate, or no STARTTLS), else why not."""
    if offer.get("error"):
        return f"B's s2s port could not be looked at: {offer['error']}"
    if fault == "F5":
        return "B still offers STARTTLS on its s2s port" if offer.get("starttls") else None
    if not offer.get("certificate"):
        return "B presented no certificate on its s2s port"
    if base64.b64decode(offer["certificate"]) != expected_der:
        return "B presented another certificate than the fault's on its s2s port"
    return None


def judge_server_fault(result: CaseResult, sender: Server, faulty: Server, fault: str, problem: str | None,
                       logs: dict[str, list[tuple[float, str]]], presented: str) -> CaseResult:
    """F3a-e, F4, F5 for the pair sender -> faulty: each direction's observed outcome against
    what the sender's policy makes right. ``problem``: why the fault was not in place (then
    the lab cannot tell anything); ``presented``: what B showed on its s2s port."""
    family = fault[:2]
    if problem:
        return dataclasses.replace(result, status=ERROR, detail=f"the fault was not in place: {problem}")
    if result.status not in (PASS, FLAKY):
        return dataclasses.replace(result, status=ERROR, detail=f"the exchange could not be run: {result.detail}")
    since, until = (result.started or 0) - 0.5, (result.ended or time.time()) + 0.5

    def window(server: Server) -> str:
        return "\n".join(line for when, line in logs.get(server.name, []) if since <= when <= until)
    there = fate_of(result.evidence.get("there"), sender, faulty, window(faulty), fault)
    back = fate_of(result.evidence.get("back"), faulty, sender, window(sender), fault)
    wanted = expected_outcomes(fault, sender, faulty)
    expected_text = " or ".join(sorted(wanted))
    evidence = {**result.evidence, "observed": f"A->B {there[1]}; B->A {back[1]}",
                "expected": f"both ways {expected_text} ({EXPECTED_REF[family]})", "presented": presented}
    if "unknown" in (there[0], back[0]):
        status = ERROR
    else:
        status = result.status if there[0] in wanted and back[0] in wanted else FAIL
    return dataclasses.replace(result, status=status, evidence=evidence, detail=(
        f"observed: A->B {there[2]}; B->A {back[2]}; expected both ways: {expected_text}; B presented {presented}"))
