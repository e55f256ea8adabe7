"""F3a-e, F4, F5: the fault on B's side: B presents a faulty certificate, or has s2s TLS off.

Each server B in turn presents each fault and is restarted alone; the lab looks at what B's
s2s port offers (no verdict when the fault is not in place), then every other server's user
and B's user message each other at the same time. Each way is observed (refused, fell back
to dialback, accepted, no answer) and held against what the sender's configured policy makes
right. B gets its own files back (restarted again) while the next server is restarted with
its first fault. What each fault expects, and what the built-in kinds did, is in
docs/faults.md.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import time
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from lab import ca
from lab.cases import Case
from lab.errors import LabError
from lab.evidence import window
from lab.results import ERROR, FAIL, FLAKY, NOT_SUPPORTED, PASS, CaseResult
from lab.servers import CERTIFICATE, common_auth

DAY = datetime.timedelta(days=1)


class ServerFault:
    """B restarted with a fault: ``certificate(authority, names, other_names)`` -> (issued, the
    chain B presents), or s2s TLS off (``s2s_tls`` False). ``accepted``: the conforming
    outcome is acceptance (else refusal); dialback is also fine where the sender's policy
    allows it for B, unless ``dialback_ok`` is off. ``expected_because``: why."""
    key = "server-fault"

    def __init__(self, what: str, expected_because: str, certificate: Callable | None = None,
                 s2s_tls: bool = True, accepted: bool = False, dialback_ok: bool = True):
        self.what, self.expected_because = what, expected_because
        self.certificate, self.s2s_tls, self.accepted, self.dialback_ok = certificate, s2s_tls, accepted, dialback_ok

    def run(self, session, cases: list[Case], servers, pairs) -> list[CaseResult]:
        project = session.project
        normal = {s.name: project.current_files(s) for s in session.lab.servers}
        results, faulted = [], {}  # faulted: {"server": the one presenting a fault now}
        try:
            for b in session.lab.servers:
                senders = [a for a, target in pairs if target is b]
                for case in cases if senders else []:
                    planned, skipped = session.plan(session.primary, [case], senders, [(a, b) for a in senders])
                    results += skipped
                    if planned:
                        results += run_fault(session, case, b, senders, normal, faulted)
        finally:
            if faulted:
                with session.cleanup():  # its own certificate and config back, whatever happens
                    restore(session, faulted["server"], normal)
        return results


def restore(session, server, normal: dict) -> None:
    try:
        session.project.restart_server(server, normal[server.name])
    except LabError as error:
        raise LabError(f"{server.name} did not come back after the fault scenarios ({error}); "
                       f"'lab up --fresh' starts it anew") from None


def run_fault(session, case: Case, b, senders: list, normal: dict, faulted: dict) -> list[CaseResult]:
    """One fault on B: B restarted with it (and the server of the last fault, if another,
    restored at the same time), then judged per sender."""
    fault, project, primary = case.phase, session.project, session.primary

    def error(detail: str) -> list[CaseResult]:
        return [CaseResult(case.id, case.title, primary.name, a.name, b.name, ERROR, detail) for a in senders]
    own, authority = normal[b.name], project.authority()
    key, chain = own[b.kind.tls_paths["key"]].data, own[b.kind.tls_paths["cert"]].data
    expected_der = None
    if fault.certificate:
        other = next(s for s in session.lab.servers if s is not b and s.domain != b.domain)
        issued, chain = fault.certificate(authority, b.names, other.names)
        key, expected_der = issued.key_pem, issued.cert.public_bytes(serialization.Encoding.DER)
    files = project.server_files(b, authority, key, chain, **({} if fault.s2s_tls else {"s2s_tls": False}))
    if not fault.s2s_tls and all(files[path] == own[path] for path in b.kind.config_files.values()):
        return [CaseResult(case.id, case.title, primary.name, a.name, b.name, NOT_SUPPORTED,
                           f"the {b.kind.name} templates do not use s2s_tls: it cannot turn s2s TLS off",
                           reason="server") for a in senders]
    previous = faulted.get("server")
    faulted["server"] = b

    def restart(server) -> str | None:
        if server is not b:
            restore(session, server, normal)
            return None
        try:
            project.restart_server(b, files)
        except LabError as problem:
            return str(problem)
    problem = session.each(restart, [b] + ([previous] if previous not in (None, b) else []), deferred=True)[0]
    if problem:
        return error(f"{b.name} did not come up with the fault ({fault.what}): {problem}")
    since = time.time()
    # What B's s2s port presents, looked at while every server drops its s2s connections
    # (the others may still hold the last fault's failure: ejabberd bounces for a while).
    offer, _ = session.each(lambda step: step(), [
        lambda: session.primary_command("s2s-offer", {"domain": b.domain, "port": b.kind.ports["s2s"],
                                                      "sender": senders[0].domain}),
        session.drop_s2s])
    # B's c2s presents the faulty certificate too: B's user logs in without checking it.
    ran = session.run_runner(primary, [{"case": case.id, "server": a.name, "target": b.name, "timeout": case.timeout,
                                        "unchecked_tls": fault.certificate is not None} for a in senders])
    logs = session.logs([b.name, *(a.name for a in senders)], since)
    facts = {"fault": fault, "problem": fault_in_place(fault, offer, expected_der), "presented": describe_offer(offer)}
    return [session.judged(r, since=since, logs=logs, facts=facts) for r in ran]


# --- judging -------------------------------------------------------------------------------------

def certificate_required(verifier, peer) -> bool:
    """Whether ``verifier``'s configured policy wants a verified certificate from ``peer``
    (the templates' dialback_peers: dialback only for a peer that can do nothing else)."""
    return common_auth(peer.kind, verifier.kind) == CERTIFICATE


def expected_outcomes(fault: ServerFault, sender, faulty) -> set[str]:
    """The outcomes that conform, for one direction of a pair with ``faulty`` presenting the
    fault; ``sender``'s policy decides (the normal server verifies the faulty one, whichever
    way the message goes)."""
    dialback = {"fell back to dialback"} if fault.dialback_ok and not certificate_required(sender, faulty) else set()
    return ({"accepted"} if fault.accepted else {"refused"}) | dialback


def fate_of(direction: dict | None, sender, receiver, log: str, fault: ServerFault) -> tuple[str, str, str]:
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
    if not fault.s2s_tls:
        short = f"delivered in plaintext after {direction.get('ms')} ms"
        return "delivered in plaintext", short, short
    seen = receiver.kind.inbound_auth(log, sender.domain, receiver.domain)
    if seen is None:
        return "unknown", "delivered, authentication not seen", (
            f"delivered after {direction.get('ms')} ms, but {receiver.name}'s log shows no authentication of "
            f"{sender.domain}")
    method, line = seen
    outcome = "accepted" if method == CERTIFICATE else "fell back to dialback"
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


def fault_in_place(fault: ServerFault, offer: dict, expected_der: bytes | None) -> str | None:
    """None when B's s2s port shows the fault (its certificate, or no STARTTLS), else why not."""
    if offer.get("error"):
        return f"B's s2s port could not be looked at: {offer['error']}"
    if not fault.s2s_tls:
        return "B still offers STARTTLS on its s2s port" if offer.get("starttls") else None
    if not offer.get("certificate"):
        return "B presented no certificate on its s2s port"
    if base64.b64decode(offer["certificate"]) != expected_der:
        return "B presented another certificate than the fault's on its s2s port"
    return None


def judge_server_fault(result: CaseResult, sender, faulty, fault: ServerFault, problem: str | None,
                       logs: dict[str, list[tuple[float, str]]], presented: str) -> CaseResult:
    """One fault for the pair sender -> faulty: each direction's observed outcome against
    what the sender's policy makes right. ``problem``: why the fault was not in place (then
    the lab cannot tell anything); ``presented``: what B showed on its s2s port."""
    if problem:
        return dataclasses.replace(result, status=ERROR, detail=f"the fault was not in place: {problem}")
    if result.status not in (PASS, FLAKY):
        return dataclasses.replace(result, status=ERROR, detail=f"the exchange could not be run: {result.detail}")
    since, until = (result.started or 0) - 0.5, (result.ended or time.time()) + 0.5
    there = fate_of(result.evidence.get("there"), sender, faulty, window(logs.get(faulty.name, []), since, until),
                    fault)
    back = fate_of(result.evidence.get("back"), faulty, sender, window(logs.get(sender.name, []), since, until), fault)
    wanted = expected_outcomes(fault, sender, faulty)
    expected_text = " or ".join(sorted(wanted))
    evidence = {**result.evidence, "observed": f"A->B {there[1]}; B->A {back[1]}",
                "expected": f"both ways {expected_text} ({fault.expected_because})", "presented": presented}
    if "unknown" in (there[0], back[0]):
        status = ERROR
    else:
        status = result.status if there[0] in wanted and back[0] in wanted else FAIL
    return dataclasses.replace(result, status=status, evidence=evidence, detail=(
        f"observed: A->B {there[2]}; B->A {back[2]}; expected both ways: {expected_text}; B presented {presented}"))


def judge(result: CaseResult, seen) -> CaseResult:
    return judge_server_fault(result, seen.sender, seen.receiver, seen.facts["fault"], seen.facts["problem"],
                              seen.logs, seen.facts["presented"])


# --- the faults ----------------------------------------------------------------------------------

def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def signed_by_lab(**issue_options) -> Callable:
    """B's names on a certificate the lab CA signs, with ``issue_options`` (validity, EKUs)."""
    def make(authority, names, other_names):
        options = {key: value() if callable(value) else value for key, value in issue_options.items()}
        issued = ca.issue(authority, names, **options)
        return issued, issued.cert_pem + authority.cert_pem
    return make


def another_domains(authority, names, other_names):
    issued = ca.issue(authority, other_names)
    return issued, issued.cert_pem + authority.cert_pem


def self_signed(authority, names, other_names):
    issued = ca.issue(None, names)
    return issued, issued.cert_pem


def second_ca(authority, names, other_names):
    signer = ca.create_ca("a second CA, not the lab's")
    issued = ca.issue(signer, names)
    return issued, issued.cert_pem + signer.cert_pem


NOT_VERIFIED = ("RFC 6120 13.7.2, RFC 6125 6, XEP-0178: a certificate that does not verify authenticates no one; "
                "dialback only where the policy allows it for that peer (XEP-0220, XEP-0344)")
F3_CRITERION = ("both ways (A->B and B->A) the message is refused, or falls back to dialback where A's policy "
                "allows dialback for B; never accepted on the certificate")
F3_SPEC = "RFC 6120 13.7.2; RFC 6125 6; XEP-0178; XEP-0220; XEP-0344"


def f3(letter: str, title: str, what: str, certificate: Callable) -> Case:
    return Case(f"F3{letter}", title, "s2s", F3_CRITERION, F3_SPEC,
                phase=ServerFault(what, NOT_VERIFIED, certificate=certificate), judge=judge, timeout=7.0,
                fault=True, group="server")


CASES = [
    f3("a", "B presents a certificate for another lab domain", "a certificate for another lab domain",
       another_domains),
    f3("b", "B presents an expired certificate", "an expired certificate",
       signed_by_lab(valid_from=lambda: now() - 30 * DAY, valid_until=lambda: now() - DAY)),
    f3("c", "B presents a self-signed certificate", "a self-signed certificate", self_signed),
    f3("d", "B presents a certificate from a CA A does not trust",
       "a certificate from a second CA the lab's servers do not trust", second_ca),
    f3("e", "B presents a certificate not valid yet", "a certificate not valid yet",
       signed_by_lab(valid_from=lambda: now() + 30 * DAY, valid_until=lambda: now() + 60 * DAY)),
    Case("F4", "B's certificate has the serverAuth EKU only", "s2s",
         "both ways the message is accepted on the certificate (or falls back to dialback where A's policy "
         "allows it): nothing asks a server certificate for the clientAuth EKU",
         "RFC 6120 13.7.2; RFC 5280 4.2.1.12; CA/B Forum baseline requirements",
         phase=ServerFault("a certificate with the serverAuth EKU only (no clientAuth)",
                           "nothing in RFC 6120 asks a server certificate for the clientAuth EKU, and public CAs no "
                           "longer issue it (ejabberd issue 4392); dialback is fine where the policy allows it for "
                           "that peer",
                           certificate=signed_by_lab(usages=(ExtendedKeyUsageOID.SERVER_AUTH,)), accepted=True),
         judge=judge, timeout=7.0, fault=True, group="server"),
    Case("F5", "B has s2s TLS off, A requires TLS: refused, nothing in plaintext", "s2s",
         "both ways the message is refused with an error to the sender's user; nothing is delivered in "
         "plaintext (every lab server requires TLS)",
         "RFC 7590 3; RFC 6120 5.3.1",
         phase=ServerFault("s2s TLS off", "RFC 7590 3, RFC 6120 5.3.1: the sender requires TLS (every lab server is "
                                          "configured to), so no stanza goes in plaintext and the sender's user gets "
                                          "an error", s2s_tls=False, dialback_ok=False),
         judge=judge, timeout=7.0, fault=True, group="server"),
]
