"""Results of an interop run: one record per case x stack x server (x target server).

A status says what happened, never more:
- pass: the exchange was observed in this run, its evidence is in ``detail``;
- flaky: it failed once and passed on the one retry the harness allows (never folded into pass);
- fail: the server(s) did not behave as the catalogue's pass criterion says;
- error: the lab or the harness could not run or observe the check;
- not supported: not run, for a ``reason`` of kind server (the kind declares no support),
  stack (the stack cannot express the case) or lab (the lab cannot set the case up).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

PASS, FLAKY, FAIL, ERROR, NOT_SUPPORTED = "pass", "flaky", "fail", "error", "not supported"
STATUSES = (PASS, FLAKY, FAIL, ERROR, NOT_SUPPORTED)
FAILED = (FAIL, ERROR)  # what makes a run's exit code 1
RUNNER_STATUSES = (PASS, FLAKY, FAIL, ERROR)  # what a runner may report; not supported is the host's call
REASONS = ("server", "stack", "lab")


@dataclass(frozen=True)
class CaseResult:
    case: str            # catalogue ID, e.g. C1 or S8
    title: str
    stack: str           # client stack that ran it
    server: str          # the server (c2s) or the source server (s2s)
    target: str | None   # the target server of an s2s case
    status: str          # one of STATUSES
    detail: str = ""     # the evidence of a pass, or why it failed / was not run
    trace: str = ""      # the XML or tool output exchanged, for anything but a plain pass
    seconds: float = 0.0
    reason: str | None = None    # for NOT_SUPPORTED: one of REASONS
    started: float | None = None  # wall clock (unix time) of the case's exchange, as the runner saw it
    ended: float | None = None
    attempts: tuple = ()          # the harness's attempts, when there was more than one
    evidence: dict = field(default_factory=dict)  # structured evidence (C6: advertised features)

    @property
    def id(self) -> str:
        """Stable across runs: case/stack/server[->target]."""
        where = f"{self.server}->{self.target}" if self.target else self.server
        return f"{self.case}/{self.stack}/{where}"

    @property
    def suite(self) -> str:
        return f"s2s {self.server} -> {self.target}" if self.target else f"c2s {self.stack} @ {self.server}"


def counts(results) -> dict[str, int]:
    tally = defaultdict(int)
    for result in results:
        tally[result.status] += 1
    return tally


def planned_key(entry: dict) -> tuple:
    return entry.get("case"), entry.get("server"), entry.get("target")


def not_flaky(attempts) -> str | None:
    """Why ``attempts`` are not what the harness makes of a flaky case (a transient first
    attempt, then a pass), or None when they are."""
    attempts = attempts if isinstance(attempts, list) else []
    statuses = [a.get("status") if isinstance(a, dict) else None for a in attempts]
    if len(statuses) != 2:
        return f"it has {len(statuses)} attempt{'s' if len(statuses) != 1 else ''}, not 2"
    if statuses[0] != "transient":
        return f"its first attempt was {statuses[0]!r}, not transient"
    if statuses[1] != PASS:
        return f"its last attempt was {statuses[1]!r}, not pass"
    return None


def reconcile(stack: str, titles: dict[str, str], planned: list[dict], reported) -> list[CaseResult]:
    """A runner's output checked against what it was asked to run.

    Exactly one result per planned entry comes back: a missing one, a malformed one or one
    with a status runners may not give becomes ``error``; a result nobody asked for is an
    ``error`` too, so a confused runner is seen rather than counted.
    """
    if not isinstance(reported, list):
        reported = []
        missing_why = "the runner printed no list of results"
    else:
        missing_why = "the runner returned no result for it"
    by_key: dict[tuple, dict] = {}
    extra = []
    for entry in reported:
        if not isinstance(entry, dict):
            extra.append({"case": "?", "server": "?", "target": None, "status": ERROR,
                          "detail": f"the runner returned a malformed result: {str(entry)[:200]}"})
            continue
        key = planned_key(entry)
        if key in by_key or key not in {planned_key(p) for p in planned}:
            extra.append({**entry, "status": ERROR,
                          "detail": f"the runner returned a result that was not asked for (or twice): "
                                    f"{entry.get('status')!r} {str(entry.get('detail', ''))[:200]}"})
            continue
        by_key[key] = entry
    results = []
    for entry in planned:
        got = by_key.get(planned_key(entry))
        case, server, target = planned_key(entry)
        if got is None:
            results.append(CaseResult(case, titles.get(case, case), stack, server, target, ERROR, missing_why))
            continue
        status, detail = got.get("status"), str(got.get("detail", ""))
        if status not in RUNNER_STATUSES:
            status, detail = ERROR, f"the runner reported an unknown status {status!r}: {detail}"
        elif status == FLAKY and (why := not_flaky(got.get("attempts"))):
            status, detail = ERROR, f"the runner reported flaky, but {why}: {detail}"
        results.append(CaseResult(
            case, titles.get(case, case), stack, server, target, status, detail, str(got.get("trace") or ""),
            float(got.get("seconds") or 0.0), started=got.get("started"), ended=got.get("ended"),
            attempts=tuple(got.get("attempts") or ()), evidence=dict(got.get("evidence") or {})))
    for got in extra:
        case = str(got.get("case"))
        results.append(CaseResult(case, titles.get(case, case), stack, str(got.get("server")), got.get("target"),
                                  ERROR, got["detail"], str(got.get("trace") or "")))
    return results
