"""S8: how the sending server authenticated to the receiving one, as the receiver logged it.

Its phase drops every s2s connection, lets the lab's first client exchange a message both
ways per pair, and reads the receiver's log lines written from the drop to the end of the
pair's exchange. Its results belong to no stack: they are the lab's own observation.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime

from lab.cases import Case
from lab.evidence import window
from lab.results import ERROR, FAIL, FLAKY, PASS, CaseResult
from lab.servers import common_auth

OBSERVER = "observed"  # the "stack" of S8 results: the lab observes, its first client only exchanges


def judge_auth(exchange: CaseResult, sender, receiver, lines: list[tuple[float, str]], since: float) -> CaseResult:
    """S8 from the exchange of this run (sender -> receiver, after every s2s connection was
    dropped at ``since``) and the receiver's log lines written from then to its end."""
    verdict = dataclasses.replace(exchange, stack=OBSERVER)
    if exchange.status not in (PASS, FLAKY):
        return dataclasses.replace(verdict, status=exchange.status if exchange.status == ERROR else FAIL,
                                   detail=f"no federation to observe: {exchange.detail}")
    until = (exchange.ended or time.time()) + 0.5
    text = window(lines, since, until)
    seen = receiver.kind.inbound_auth(text, sender.domain, receiver.domain)
    expected = common_auth(sender.kind, receiver.kind)
    span = f"{receiver.name}'s log from {datetime.fromtimestamp(since).strftime('%H:%M:%S.%f')[:-3]} to the " \
           f"end of the exchange"
    if seen is None:
        return dataclasses.replace(verdict, status=ERROR, trace=text[-4000:], evidence={"since": since, "until": until},
                                   detail=f"delivered, but {span} shows no authentication of {sender.domain} "
                                          f"(the lab could not observe the method; expected {expected})")
    method, line = seen
    evidence = {"auth": method, "expected": expected, "log": line, "since": since, "until": until}
    if method == expected:
        return dataclasses.replace(verdict, status=exchange.status, evidence=evidence,
                                   detail=f"{method} (expected {expected}), {receiver.name} logged: {line}")
    ranks = list(receiver.kind.s2s_auth)
    weaker = expected in ranks and method in ranks and ranks.index(method) > ranks.index(expected)
    return dataclasses.replace(verdict, status=FAIL, evidence=evidence,
                               detail=f"{'downgraded' if weaker else 'unexpected method'}: {method} where both "
                                      f"kinds declare {expected}; {receiver.name} logged: {line}")


class Observed:
    """Fresh s2s connections, one exchange per pair by the lab's first client, then the judge
    reads the receiver's log."""
    key = "observed"

    def run(self, session, cases: list[Case], servers, pairs) -> list[CaseResult]:
        results = []
        for case in cases:
            since = time.time()
            fresh, skipped = session.fresh_pairs(case, OBSERVER, pairs, session.drop_s2s())
            results += skipped
            exchanges = session.run_runner(session.primary, [{"case": case.id, "server": a.name, "target": b.name}
                                                             for a, b in fresh])
            logs = session.logs(sorted({b.name for _, b in fresh}), since)
            for exchange in exchanges:
                if exchange.target not in logs:
                    results.append(dataclasses.replace(exchange, stack=OBSERVER))
                    continue
                results.append(session.judged(exchange, since=since, logs=logs))
        return results


S8 = Case("S8", "how the sending server authenticated", "s2s",
          "after every s2s connection was dropped, the receiving server's log shows the sender authenticated "
          "with the strongest method both kinds declare (SASL EXTERNAL with a verified certificate, else "
          "dialback); a weaker one is a fail that says 'downgraded'",
          "RFC 6120 13.7.2; XEP-0178; XEP-0220; XEP-0344",
          phase=Observed(),
          judge=lambda result, seen: judge_auth(result, seen.sender, seen.receiver,
                                                seen.logs.get(seen.receiver.name, []), seen.since))
CASES = [S8]


def observed(results: list[CaseResult]) -> dict[tuple[str, str], CaseResult]:
    """The S8 results of a run by (sender, receiver)."""
    return {(r.server, r.target): r for r in results if r.case == S8.id}
