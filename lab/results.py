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
