"""F6: IPv6 only. The lab DNS serves AAAA records alone (dual-stack labs); every server's
C1 and every pair's S1 must work over IPv6, with the lab DNS's log showing the lookup."""

from __future__ import annotations

import dataclasses
import time

from lab.cases import Case
from lab.cases.dns import ZoneVariant
from lab.evidence import asked_during, asked_names
from lab.results import ERROR, FLAKY, PASS, CaseResult
from lab.zone import server_records

EXPECTED = "C1 and S1 work over IPv6 with AAAA records alone (RFC 6120 3.2.1: A or AAAA; RFC 3596)"


def ipv6_records(lab, server) -> list[dict]:
    return server_records(server, ipv4=False)


def ipv4_only(lab) -> str | None:
    return None if lab.ipv6 else "the lab network is IPv4 only (network: {ipv6: true} makes it dual-stack)"


def judge_f6(result: CaseResult, asker: str, askers: list[str], target, queries: list[dict], since: float) -> CaseResult:
    """F6: an exchange under the IPv6-only zone counts only if the lab DNS saw ``asker`` (its
    addresses ``askers``) look ``target`` up during the case and get its IPv6 address."""
    evidence = {**result.evidence, "expected": EXPECTED}
    if result.status not in (PASS, FLAKY):
        return dataclasses.replace(result, evidence={**evidence, "observed": f"did not work: {result.detail}"})
    until = (result.ended or time.time()) + 0.5
    asked = asked_during(result, askers, queries, since)
    found = next((q for q in asked if q["name"].rstrip(".") == target.domain and q["type"] == "AAAA"
                  and target.address6 in (q.get("answers") or [])), None)
    if found is None:
        return dataclasses.replace(result, status=ERROR, evidence={**evidence, "observed": "not seen"}, detail=(
            f"exchanged, but the lab DNS saw no AAAA query from {asker} for {target.domain} answered with "
            f"{target.address6} during the case (it asked: {asked_names(asked)}); {result.detail}"))
    observed = f"worked over IPv6 after {asker} asked {target.domain} AAAA"
    return dataclasses.replace(result, detail=f"{result.detail}; lab DNS: {asker} asked {target.domain} AAAA "
                                              f"-> {target.address6} (no A records served)",
                               evidence={**evidence, "observed": observed, "dns": [found], "since": since,
                                         "until": until})


def judge(result: CaseResult, seen) -> CaseResult:
    """Per pair: the sending server's lookup of the receiver; per server: the client's lookup."""
    if seen.receiver is not None:
        return judge_f6(result, seen.sender.name, seen.sender.addresses, seen.receiver, seen.queries, seen.since)
    return judge_f6(result, seen.asker, list(seen.askers), seen.sender, seen.queries, seen.since)


CASES = [
    Case("F6", "IPv6 only (AAAA records alone): C1 and S1 over IPv6", "c2s+s2s",
         "with AAAA records alone, every server's C1 login runs over IPv6 and every pair's S1 exchange works, "
         "each with the lab DNS's log showing the AAAA lookup of the peer during the case",
         "RFC 6120 3.2.1; RFC 3596", phase=ZoneVariant(ipv6_records, unavailable=ipv4_only), judge=judge,
         fault=True, group="ipv6"),
]
