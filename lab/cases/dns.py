"""Cases under a DNS variant: S9, S10 and the DNS faults F1, F2, F7.

Each serves its own zone, live (nothing restarts), after which every server drops its s2s
connections and the lab waits out the zone's TTL; then the stacks that can express the case
run it, and its judge reads the lab DNS's query log: a delivery counts only if the DNS saw
the lookups the variant makes necessary, during the case. The normal zone is served again
when the case is over.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Callable

from lab.cases import Case
from lab.evidence import asked_during, asked_names, named
from lab.results import ERROR, FAIL, FLAKY, PASS, CaseResult
from lab.zone import address, server_records, srv


class ZoneVariant:
    """A case run under a DNS variant of the zone (``records``: a server's records under it).
    ``unavailable(lab)``: why this lab cannot serve the variant, or None."""
    key = "zone"

    def __init__(self, records: Callable, unavailable: Callable | None = None):
        self.records, self.unavailable = records, unavailable

    def run(self, session, cases: list[Case], servers, pairs) -> list[CaseResult]:
        results = []
        for case in cases:  # one after another: each serves its own zone
            why = case.phase.unavailable(session.lab) if case.phase.unavailable else None
            if why:
                results += session.not_supported(case, servers, pairs, why, reason="lab")
                continue
            since = time.time()
            try:
                dropped = session.serve_zone(case.phase.records)
                results += self.run_case(session, case, servers, pairs, dropped, since)
            finally:
                # The normal zone again, whatever happened; after a fault group's last case,
                # until the servers' cached answers of the variant have expired: the group's S1
                # back to normal must meet the normal zone (a zone case that follows waits
                # for its own zone anyway).
                with session.cleanup():
                    session.serve_zone(None, settle=bool(case.group) and case is cases[-1])
        return results

    @staticmethod
    def run_case(session, case: Case, servers, pairs, dropped: dict, since: float) -> list[CaseResult]:
        results, per_stack = [], []
        for stack in session.stacks:
            if case.id not in stack.cases:
                continue
            fresh, skipped = session.fresh_pairs(case, stack.name, pairs, dropped)
            results += skipped
            per_stack.append((stack, fresh))
        ran = session.each_stack(lambda stack, fresh: session.run_stack(stack, [case], servers, fresh), per_stack)
        queries = session.dns_log(since)
        for stack, stack_results in ran:
            results += [session.judged(r, since=since, queries=queries, asker=stack.service,
                                       askers=session.client_addresses(stack)) for r in stack_results]
        return results


# --- S9, S10 ---------------------------------------------------------------------------------

def s9_records(lab, server) -> list[dict]:
    """S9: every SRV record points at a distinct target host, xmpp.<name>, and the domain
    itself has no address record: only a server that follows SRV can connect."""
    return server_records(server, host=lambda name: f"xmpp.{name}")


def s10_records(lab, server) -> list[dict]:
    """S10: no _xmpp-server SRV records at all: servers fall back to the domain's address on 5269."""
    return server_records(server, s2s=None)


def judge_lookup(result: CaseResult, sender, receiver, host: str, queries: list[dict], since: float) -> CaseResult:
    """S9/S10: a delivery under the variant counts only if the lab DNS saw the sender look the
    receiver up afresh during the case: the SRV record, then ``host``, the address it leads to."""
    if result.status not in (PASS, FLAKY):
        return result
    until = (result.ended or time.time()) + 0.5
    asked = asked_during(result, sender.addresses, queries, since)
    srv_name = f"_xmpp-server._tcp.{receiver.domain}"
    found = named(asked, srv_name, ("SRV",))
    # The lookup that returned an address: an empty AAAA answer beside the A one proves nothing.
    after = [q for q in asked if found is not None and q["time"] >= found["time"]]
    lookup = named(after, host, ("A", "AAAA"), answered=True)
    if found is None or lookup is None:
        missing = f"SRV {srv_name}" if found is None else f"A/AAAA {host} after the SRV answer"
        return dataclasses.replace(result, status=ERROR, detail=(
            f"delivered, but the lab DNS saw no query from {sender.name} ({sender.address}) for {missing} "
            f"during the case (it asked: {asked_names(asked)}): the delivery may have used a cached answer or an "
            f"existing connection; {result.detail}"))
    proof = (f"lab DNS: {sender.name} asked {srv_name} SRV ({found.get('rcode')}: {found.get('answers') or 'none'}), "
             f"then {host} {lookup['type']} ({lookup.get('rcode')}: {lookup.get('answers') or 'none'})")
    return dataclasses.replace(result, detail=f"{result.detail}; {proof}",
                               evidence={**result.evidence, "dns": [found, lookup], "since": since, "until": until})


S9 = Case("S9", "SRV to a distinct target host", "s2s",
          "with every SRV record pointing at xmpp.<domain> and no address for the domain itself, S1's "
          "exchange still works, and the lab DNS saw the sender ask the SRV record, then xmpp.<peer>",
          "RFC 6120 3.2.1; RFC 2782", phase=ZoneVariant(s9_records),
          judge=lambda result, seen: judge_lookup(result, seen.sender, seen.receiver,
                                                  f"xmpp.{seen.receiver.domain}", seen.queries, seen.since))
S10 = Case("S10", "no SRV: A record on 5269", "s2s",
           "with no _xmpp-server records, S1's exchange still works, and the lab DNS saw the sender ask the "
           "SRV record, then fall back to the peer's address record",
           "RFC 6120 3.2.2", phase=ZoneVariant(s10_records),
           judge=lambda result, seen: judge_lookup(result, seen.sender, seen.receiver, seen.receiver.domain,
                                                   seen.queries, seen.since))
CASES = [S9, S10]


# --- F1, F2, F7 -------------------------------------------------------------------------------

def f1_records(lab, server) -> list[dict]:
    """F1: every _xmpp-server SRV target is "." (RFC 2782: the service is decidedly not
    available here), so a sender must give up at once, with no A/AAAA fallback."""
    return server_records(server, s2s=lambda server, name, target: [srv("_xmpp-server._tcp", name, 0, ".")])


def f2_records(lab, server) -> list[dict]:
    """F2: two _xmpp-server SRV records: first dead.<name>, an address no container holds,
    then the real target, so a sender must move on to the second."""
    def s2s(server, name, target):
        port = server.kind.ports["s2s"]
        dead = [address(f"dead.{name}", lab.unused_address)]
        dead += [address(f"dead.{name}", lab.unused_address6, ipv6=True)] if lab.unused_address6 else []
        return [srv("_xmpp-server._tcp", name, port, f"dead.{name}"), *dead,
                srv("_xmpp-server._tcp", name, port, target, priority=10)]
    return server_records(server, s2s=s2s)


def f7_records(lab, server) -> list[dict]:
    """F7: _xmpps-server SRV records alone (XEP-0368 direct TLS between servers), pointing at
    tls.<name>, a name that only a sender using them looks up."""
    def s2s(server, name, target):
        return [srv("_xmpps-server._tcp", name, server.kind.ports["s2s_direct_tls"], f"tls.{name}"),
                address(f"tls.{name}", server.address)]
    return server_records(server, s2s=s2s)


def judge_f1(result: CaseResult, sender, receiver, queries: list[dict], since: float) -> CaseResult:
    """F1: a refusal counts only if the lab DNS saw the sender get the "." SRV answer, and the
    sender must not look the receiver's address up after it (no A/AAAA fallback), whatever
    its user was told."""
    asked = asked_during(result, sender.addresses, queries, since)
    srv_name = f"_xmpp-server._tcp.{receiver.domain}"
    found = named(asked, srv_name, ("SRV",))
    fallback = [q for q in asked if found is not None and q["name"].rstrip(".") == receiver.domain
                and q["type"] in ("A", "AAAA") and q["time"] >= found["time"]]
    if fallback:
        observed = f"fell back to {receiver.domain} {fallback[0]['type']} after the SRV answer '.'"
        return dataclasses.replace(result, status=FAIL, evidence={
            **result.evidence, "dns": [found, *fallback], "since": since, "observed": observed}, detail=(
            f"observed: {observed} (lab DNS; RFC 6120 3.2.1: no fallback when the target is '.'); {result.detail}"))
    if result.status not in (PASS, FLAKY):
        return result
    if found is None:
        return dataclasses.replace(result, status=ERROR, detail=(
            f"refused, but the lab DNS saw no SRV query from {sender.name} for {srv_name} during the case "
            f"(a cached answer?): the lab cannot tell why; {result.detail}"))
    return dataclasses.replace(result, evidence={**result.evidence, "dns": [found], "since": since}, detail=(
        f"{result.detail}; lab DNS: {sender.name} asked {srv_name} SRV -> {', '.join(found.get('answers') or [])}, "
        f"and no A/AAAA of {receiver.domain} after it"))


def judge_f2(result: CaseResult, sender, receiver, queries: list[dict], since: float) -> CaseResult:
    """F2: a delivery counts only if the lab DNS saw the sender look up both the dead first
    target and the live second one (in any order: a server may resolve them all at once)."""
    expected = "delivered through the second SRV target (RFC 2782 order; RFC 6120 3.2.1)"
    if result.status not in (PASS, FLAKY):
        return dataclasses.replace(result, evidence={**result.evidence, "expected": expected,
                                                      "observed": f"not delivered: {result.detail}"})
    asked = asked_during(result, sender.addresses, queries, since)
    # Lookups only: a server may resolve every target at once (jabberd2 does, live one first).
    dead = named(asked, f"dead.{receiver.domain}", ("A", "AAAA"), answered=True)
    live = named(asked, receiver.domain, ("A", "AAAA"), answered=True)
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


def judge_f7(result: CaseResult, sender, receiver, queries: list[dict], since: float) -> CaseResult:
    """F7: a delivery counts as direct TLS only if the lab DNS saw the sender look up the
    _xmpps-server record and then tls.<receiver>, the name only that record leads to."""
    expected = "delivered over direct TLS via _xmpps-server (XEP-0368)"
    if result.status not in (PASS, FLAKY):
        return dataclasses.replace(result, evidence={**result.evidence, "expected": expected,
                                                      "observed": f"not delivered: {result.detail}"})
    asked = asked_during(result, sender.addresses, queries, since)
    srv_name, host = f"_xmpps-server._tcp.{receiver.domain}", f"tls.{receiver.domain}"
    found = named(asked, srv_name, ("SRV",))
    tls = named(asked, host, ("A", "AAAA"), answered=True)
    if found is None or tls is None:
        observed = (f"delivered without looking up {host} (not through _xmpps-server: "
                    f"{'asked' if found else 'never asked'} {srv_name})")
        return dataclasses.replace(result, status=FAIL, detail=f"observed: {observed}; {result.detail}",
                                   evidence={**result.evidence, "observed": observed, "expected": expected})
    return dataclasses.replace(result, detail=(
        f"observed: delivered through {srv_name} -> {host} ({tls['answers'][0]}); {result.detail}"),
        evidence={**result.evidence, "dns": [found, tls], "since": since, "observed": "delivered over direct TLS",
                  "expected": expected})


def pair_judge(judge) -> Callable:
    """A (result, sender, receiver, queries, since) judge as a case's judge(result, seen)."""
    return lambda result, seen: judge(result, seen.sender, seen.receiver, seen.queries, seen.since)


FAULTS = [
    # F1's user waits 7 s for the error: "no answer within" it is what the lab observes then.
    Case("F1", "SRV target \".\": refused at once, no A/AAAA fallback", "s2s",
         "the sender's user gets <remote-server-not-found/> at once, and the lab DNS saw the sender get the "
         "'.' answer and look up no A/AAAA of the peer after it",
         "RFC 6120 3.2.1, 8.3.3.16; RFC 2782", phase=ZoneVariant(f1_records), judge=pair_judge(judge_f1),
         timeout=7.0, fault=True, group="dns"),
    Case("F2", "first SRV target dead, second alive: delivered", "s2s",
         "the message arrives through the second SRV target, and the lab DNS saw the sender look up both the "
         "dead first target and the live one; the time it took is the observed outcome",
         "RFC 2782; RFC 6120 3.2.1", phase=ZoneVariant(f2_records), judge=pair_judge(judge_f2),
         fault=True, group="dns"),
    Case("F7", "_xmpps-server only (direct TLS between servers): delivered", "s2s",
         "with _xmpps-server records alone, the message arrives, and the lab DNS saw the sender look up the "
         "record and then tls.<peer>, the name only that record leads to",
         "XEP-0368 3", needs="s2s-direct-tls", needs_both=True, phase=ZoneVariant(f7_records),
         judge=pair_judge(judge_f7), fault=True, group="dns"),
]
