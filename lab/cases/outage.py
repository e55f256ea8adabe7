"""F8: the lab DNS down for 30 s, then back: federation must recover with no restart.

Every server drops its s2s connections; each pair's users log in; the lab DNS container is
paused; from just after that, A's user messages B's user every 5 s until one arrives. The
recovery time counts from the moment the DNS came back. A delivery is judged only if the
outage was real for that pair: it came after the DNS was back, and the lab DNS saw the
sending server look the receiver up then (a delivery without it came from a cache or a
connection the outage never touched).
"""

from __future__ import annotations

import dataclasses
import threading
import time

from lab.cases import Case
from lab.evidence import asked_names
from lab.results import ERROR, FAIL, FLAKY, PASS, CaseResult

# The lab DNS is paused this long, from START after the runner began; the runner gives up
# RECOVERY after it is back (it tries every 5 s: the recovery time is known to within that).
START, SECONDS, RECOVERY = 5.0, 30.0, 15.0
EXPECTED = "recovers once the DNS is back, with no restart (RFC 6120 3.2: lookups are retried)"


class Outage:
    key = "outage"

    def run(self, session, cases: list[Case], servers, pairs) -> list[CaseResult]:
        results = []
        for case in cases:
            fresh, skipped = session.fresh_pairs(case, session.primary.name, pairs, session.drop_s2s())
            results += skipped
            if fresh:
                results += self.run_case(session, case, fresh)
        return results

    @staticmethod
    def run_case(session, case: Case, fresh) -> list[CaseResult]:
        start = time.time()
        outage = {"down_at": start + START, "up_at": start + START + SECONDS,
                  "give_up_at": start + START + SECONDS + RECOVERY}
        planned = [{"case": case.id, "server": a.name, "target": b.name,
                    "timeout": outage["give_up_at"] - start + 5} for a, b in fresh]
        box: dict = {}

        def run() -> None:  # beside the outage; what goes wrong in it is each pair's error
            try:
                box["results"] = session.run_runner(session.primary, planned, outage=outage, concurrency=len(planned))
            except Exception as error:
                box["results"] = [CaseResult(p["case"], case.title, session.primary.name, p["server"], p["target"],
                                             ERROR, f"the lab could not run the exchange: {type(error).__name__}: "
                                                    f"{error}") for p in planned]
        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        down, back = session.pause_dns(outage["down_at"], outage["up_at"])
        runner.join()
        give_up = back + (outage["give_up_at"] - outage["up_at"])
        queries = session.dns_log(down - 1)
        return [session.judged(r, queries=queries, facts={"down": down, "back": back, "give_up": give_up})
                for r in box["results"]]


def judge_f8(result: CaseResult, sender, receiver, queries: list[dict], down: float, back: float,
             give_up: float) -> CaseResult:
    """F8: when the message arrived (the runner's ``delivered_at``) against when the lab DNS
    went down and came back, and when the runner gave up (unix times); ``queries``: the lab
    DNS's log from the outage on."""
    evidence = {**result.evidence, "dns_down_at": down, "dns_back_at": back, "expected": EXPECTED}
    delivered = result.evidence.get("delivered_at")
    if result.status in (PASS, FLAKY):
        if not delivered:
            return dataclasses.replace(result, status=ERROR, evidence={**evidence, "observed": "not timed"}, detail=(
                f"the runner reported a delivery without its time: the lab cannot tell it from one before the "
                f"outage; {result.detail}"))
        if delivered < back:
            observed = f"delivered during the outage, {delivered - down:.1f} s into it"
            return dataclasses.replace(result, status=ERROR, evidence={**evidence, "observed": observed}, detail=(
                f"observed: {observed}: the outage was not real for this pair (a resolver cache or a connection "
                f"that outlived the drop), so recovery was not exercised; {result.detail}"))
        looked_up = [q for q in queries if q.get("client") in sender.addresses and down <= q.get("time", 0) <= delivered
                     and q["name"].rstrip(".").endswith(receiver.domain)]
        if not looked_up:
            asked = [q for q in queries if q.get("client") in sender.addresses]
            return dataclasses.replace(result, status=ERROR, evidence={**evidence, "observed": "no lookup seen"},
                                       detail=(
                f"delivered {delivered - back:.1f} s after the DNS came back, but the lab DNS saw no lookup of "
                f"{receiver.domain} from {sender.name} since the outage began (it asked: {asked_names(asked)}): the "
                f"lab cannot tell the outage mattered; {result.detail}"))
        observed = f"recovered {delivered - back:.1f} s after the DNS came back"
        first = looked_up[0]
        return dataclasses.replace(result, detail=(
            f"observed: {observed}; lab DNS: {sender.name} asked {first['name'].rstrip('.')} {first['type']} "
            f"after the outage; {result.detail}"), evidence={**evidence, "observed": observed, "dns": looked_up[:2]})
    if result.status == FAIL:
        return dataclasses.replace(result, evidence={**evidence, "observed": (
            f"no recovery within {give_up - back:.0f} s after the DNS came back")})
    return result


CASES = [
    Case("F8", "lab DNS down for 30 s, then back: federation recovers", "s2s",
         "a message first sent during the outage (and again every 5 s) arrives once the DNS is back, at most "
         "15 s after, with no server restarted, and the lab DNS saw the sender look the receiver up again",
         "RFC 6120 3.2", phase=Outage(), fault=True, group="outage",
         judge=lambda result, seen: judge_f8(result, seen.sender, seen.receiver, seen.queries, seen.facts["down"],
                                             seen.facts["back"], seen.facts["give_up"])),
]
