"""The host side of the runner protocol: what a runner is told (``spec``), how it is run in
its stack's container (``run_runner``), which accounts a stack uses (``stack_users``), and
how its answer is checked against what it was asked (``reconcile``). The runners' side is
lab/runners/harness.py.
"""

from __future__ import annotations

import json

from lab import ca, turn
from lab.errors import LabError
from lab.results import ERROR, FAIL, FLAKY, PASS, CaseResult
from lab.runtime import Runtime
from lab.stacks import ClientStack

CLIENT_CA = "/etc/xmpp-lab/ca.pem"  # the lab CA, where every client container has it
COMPONENT_PORT = 5347  # where every kind's XEP-0114 listener is (the templates)
RUNNER_STATUSES = (PASS, FLAKY, FAIL, ERROR)  # what a runner may report; not supported is the host's call


def spec(lab, stack: ClientStack, timeout: float, concurrency: int) -> dict:
    """What a runner is told of the lab: its CA, the servers with their accounts, how long a
    wait may take and how many cases it runs at once (the lab's concurrency, scaled for the
    stack)."""
    return {"ca": CLIENT_CA, "timeout": timeout, "concurrency": concurrency * stack.concurrency_scale,
            "servers": {s.name: {"domain": s.domain, "accounts": s.accounts, "muc": s.muc_domain,
                                 "room": lab.room if s.name == lab.room_server else None,  # kept open by lab up
                                 "upload": s.upload_domain,
                                 "component": {"domain": s.component_domain, "port": COMPONENT_PORT,
                                               "secret": ca.lab_secret(lab.state_dir, s.component_domain)}
                                 if s.component_domain else None,
                                 # J4: the server's own TURN service its XEP-0215 list must show too
                                 "own_turn": turn.own_service(lab, s),
                                 "users": stack_users(stack, s)}
                        for s in lab.servers}}


def stack_users(stack: ClientStack, server) -> dict[str, str]:
    """Accounts of a stack's own (``<stack>-alice``) where the lab has them, so stacks
    running side by side never share one: presence and roster cases would see each other."""
    return {role: f"{stack.name}-{role}" for role in ("alice", "bob") if f"{stack.name}-{role}" in server.accounts}


def run_runner(runtime: Runtime, stack: ClientStack, command: str, spec: dict):
    """A stack's runner in its container: the JSON document on its last line of output."""
    code, output = runtime.exec(stack.service, stack.command(command, spec))
    try:
        return json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = " | ".join(output.strip().splitlines()[-3:]) or "(no output)"
        raise LabError(f"the {stack.name} runner failed ({command}, exit {code}): {tail}") from None


def planned_key(entry: dict) -> tuple:
    return entry.get("case"), entry.get("server"), entry.get("target"), entry.get("ends")


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


def reconcile(stack_name: str, titles: dict[str, str], planned: list[dict], reported) -> list[CaseResult]:
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
        case, server, target, ends = planned_key(entry)
        stack = ends or stack_name  # a pair of ends names the result's stack (docs/jingle.md)
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
        results.append(CaseResult(case, titles.get(case, case), got.get("ends") or stack_name, str(got.get("server")),
                                  got.get("target"), ERROR, got["detail"], str(got.get("trace") or "")))
    return results
