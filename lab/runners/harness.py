"""The test harness every runner shares; a runner holds only its stack's case functions.

Put beside each runner in its client container (``support`` of every stack in lab/stacks/),
so it needs the standard library only. A runner ends with ``main(Runner(...))``; then

    RUNNER cases SPEC_JSON   prints, as its last stdout line, one JSON list: one result per
                             case of the spec, in the spec's order

The spec: {"cases": [{"case", "server", "target", optional "timeout" and case options}],
"servers": {name: {"domain", "accounts", ...}}, "timeout": seconds one wait may take (a case's
own "timeout" wins), "concurrency": cases in flight, "ca": path}.

What the harness does for every runner:
- planning: the cases of one (server, target) pair run in turn, pairs side by side, at most
  ``concurrency`` cases at once;
- a time budget per case, counted from the moment the case gets its slot: a case still
  running at the end of it is an ``error`` (the harness stopped waiting), its tools killed;
- one retry policy: a case function raises ``Transient`` for a known passing fault (jabberd2
  answering a login with internal-server-error); the whole case then runs once more, fresh,
  and passes only as ``flaky``. A second ``Transient`` is a ``fail``;
- the result record: status, detail, trace (for anything but a pass), seconds, started and
  ended (unix time: the lab judges server logs by them), evidence, and attempts (the status
  and detail of each go at it).

A case function takes a ``Case`` (or the runner's subclass of it) and returns the detail of a
pass; it raises ``CaseFailed`` for a fail, ``NotObserved`` for an ``error`` it can explain (a
tool that hung). Anything else it raises is an ``error`` too (a runner bug, never a verdict
on a server). It may be ``async``: it then runs on an event loop of its
own thread.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Callable


# Before the one retry. The passing fault has a cause that must pass first: jabberd2's c2s
# keys a session by its socket's descriptor number (c2s/c2s.c), so its session manager
# refuses the start of a session whose descriptor an ended one still holds there
# (sm/mod_session.c) until it has seen that end; a retry at once gets the descriptor just
# freed by the refused connection, and is refused again.
RETRY_PAUSE = 1.0


class CaseFailed(Exception):
    """The server did not behave as the catalogue's pass criterion says."""


class Transient(Exception):
    """A known passing fault of a server: the case runs once more and can then only be flaky."""


class NotObserved(Exception):
    """The runner could not observe what the server did (a tool that hung, evidence it could
    not read): an ``error`` with this reason, never a verdict on the server."""


def login_refused(what: str, condition: str | None) -> Exception:
    """What to raise when a login ended in a stream error before the session: Transient for
    internal-server-error (jabberd2 answers so, now and then, when a connection reuses a
    just-closed one's descriptor), CaseFailed for anything else. The one place that says
    which server fault is passing."""
    kind = Transient if condition == "internal-server-error" else CaseFailed
    return kind(f"{what}: login refused with stream error {condition}")


def token(length: int = 8) -> str:
    return uuid.uuid4().hex[:length]


def bare(jid: str | None) -> str:
    return (jid or "").split("/", 1)[0]


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters: its head and (longer) tail."""
    text = text.strip()
    if len(text) <= limit:
        return text
    head = limit // 3
    return text[:head] + f"\n[... {len(text) - limit} characters left out ...]\n" + text[-(limit - head):]


def timeout_of(spec: dict, entry: dict) -> float:
    """Seconds one wait of the case may take: the case's own, else the spec's."""
    return float(entry.get("timeout") or spec.get("timeout", 20))


def kill_group(process) -> None:
    try:
        os.killpg(process.pid, 9)
    except OSError:
        pass


class Case:
    """One attempt at one case: the spec, where it runs, and what is worth showing."""

    def __init__(self, spec: dict, entry: dict, budget: float):
        self.spec, self.entry = spec, entry
        self.case, self.server, self.target = entry["case"], entry.get("server"), entry.get("target")
        self.timeout = timeout_of(spec, entry)
        self.budget = budget
        self.ca = spec.get("ca")
        self.trace: list[str] = []
        self.evidence: dict = {}
        self.ends: list = []            # receivers, listeners: closed at the end, their logs traced
        self.processes: set = set()     # tool processes running: killed when the budget runs out
        self.lock = threading.Lock()

    def domain(self, server: str) -> str:
        return self.spec["servers"][server]["domain"]

    def account(self, server: str, user: str) -> tuple[str, str]:
        return f"{user}@{self.domain(server)}", self.spec["servers"][server]["accounts"][user]

    def secrets(self) -> list[str]:
        return [password for server in self.spec["servers"].values() for password in server["accounts"].values()]

    def opened(self, end):
        self.ends.append(end)
        return end

    def close(self):
        """Close what the case opened (may be a coroutine in an async runner's subclass)."""
        for end in self.ends:
            end.close()
            self.trace.append(end.transcript())

    def kill(self) -> None:
        with self.lock:
            for process in list(self.processes):
                kill_group(process)

    def trace_text(self) -> str:
        return clip("\n\n".join(self.trace), 12000)


def delivered(what: str, sent: dict, got: dict | None, seconds: float, timeout: float) -> str:
    """The one delivery check of every stack (C5, S1 and their variants).

    ``sent``: "from", "id", "type", "body" as the sender put them on the wire, None where
    its tool chooses by itself (a command-line tool's resource or id); "from_bare" when only
    the bare JID is known. ``got``: the same fields of the message that arrived (and "error"
    when it came back as one), or None when none did within ``timeout``.
    """
    if got is None:
        raise CaseFailed(f"{what}: not delivered within {timeout:g}s")
    if got.get("type") == "error":
        raise CaseFailed(f"{what}: came back as an error: {got.get('error') or '(no condition)'}")
    problems = [f"{key} {got.get(key)!r} instead of {value!r}" for key, value in sent.items()
                if key != "from_bare" and value is not None and got.get(key) != value]
    if sent.get("from") is None and sent.get("from_bare"):
        if bare(got.get("from")) != sent["from_bare"] or "/" not in (got.get("from") or ""):
            problems.append(f"from {got.get('from')!r} instead of a full JID of {sent['from_bare']}")
    if problems:
        raise CaseFailed(f"{what}: arrived altered: {'; '.join(problems)}")
    checked = [key for key in ("from", "id", "type", "body")
               if sent.get(key) is not None or (key == "from" and sent.get("from_bare"))]
    unset = [key for key in ("id",) if sent.get(key) is None]
    return (f"{what} in {seconds * 1000:.0f} ms, {'/'.join(checked)} intact"
            + (f" (no {', '.join(unset)} set by the tool)" if unset else ""))


def message_fields(element) -> dict:
    """from, id, type, body (and error: its condition) of a received <message/> element."""
    ns = "{jabber:client}"
    error = element.find(f"{ns}error")
    condition = next((child.tag.split("}")[-1] for child in (error if error is not None else [])
                      if not child.tag.endswith("}text")), None)
    return {"from": element.get("from"), "id": element.get("id"), "type": element.get("type"),
            "body": element.findtext(f"{ns}body"), "error": condition}


# --- running one case -------------------------------------------------------------------------

@dataclass
class Runner:
    """A stack's runner: its case functions and what its cases need."""
    tool: str
    cases: dict                                   # catalogue ID -> case function
    case_class: type = Case
    budget: Callable[[str, float], float] = lambda case, timeout: timeout + 10
    # Each (server, target) group in a child process of its own (nbxmpp: one GLib main loop).
    isolate_groups: bool = False
    commands: dict = field(default_factory=dict)  # further commands: name -> function(spec) -> JSON


@dataclass
class Attempt:
    status: str           # pass, fail, error, transient
    detail: str
    case: Case | None


def run_async(coroutine):
    """``coroutine`` on a fresh event loop of this thread; what is left of it is cancelled,
    briefly waited for, and the loop closed (never waiting on a stuck resolver thread)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(coroutine)
    finally:
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left, timeout=2))
        asyncio.set_event_loop(None)
        loop.close()


def call(function, case: Case) -> str:
    """The case function's detail; what it opened is closed either way."""
    if inspect.iscoroutinefunction(function):
        async def whole():
            try:
                return await function(case)
            finally:
                closing = case.close()
                if inspect.isawaitable(closing):
                    await closing
        return run_async(whole())
    try:
        return function(case)
    finally:
        case.close()


def where(error: BaseException) -> str:
    """The innermost line of a runner file the error came through."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.endswith(".py")]
    frame = next((f for f in reversed(frames) if "/asyncio/" not in f.filename), None)
    return f" ({os.path.basename(frame.filename)} line {frame.lineno} in {frame.name})" if frame else ""


def attempt(runner: Runner, spec: dict, entry: dict, budget: float) -> Attempt:
    """One go at the case in a thread of its own, waited for ``budget`` seconds at most."""
    box: dict = {}

    def work():
        case = box["case"] = runner.case_class(spec, entry, budget)
        try:
            box["outcome"] = ("pass", call(runner.cases[entry["case"]], case))
        except CaseFailed as failure:
            box["outcome"] = ("fail", str(failure))
        except Transient as fault:
            box["outcome"] = ("transient", str(fault))
        except NotObserved as blind:
            box["outcome"] = ("error", str(blind))
        except Exception as error:  # a runner bug: an error, never a verdict
            box["outcome"] = ("error", f"runner error: {type(error).__name__}: {error}{where(error)}")

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(budget)
    case = box.get("case")
    if "outcome" not in box:
        if case is not None:
            case.kill()
        return Attempt("error", f"the case was still running at the end of its {budget:g}s budget "
                                f"(the harness stopped waiting for it)", case)
    return Attempt(*box["outcome"], case)


def unrunnable(runner: Runner, spec: dict, entry: dict) -> str | None:
    case, servers = entry.get("case"), spec.get("servers", {})
    if case not in runner.cases:
        return f"the {runner.tool} runner cannot express {case}"
    for name in (entry.get("server"), entry.get("target")):
        if name is not None and name not in servers:
            return f"server {name!r} not in the spec"
    return None


def run_case(runner: Runner, spec: dict, entry: dict) -> dict:
    """The result record of one case (retried once on Transient: flaky at best then)."""
    result = {"case": entry.get("case"), "server": entry.get("server"), "target": entry.get("target"),
              **({"ends": entry["ends"]} if entry.get("ends") else {}), "status": "error", "detail": "", "trace": "", "started": time.time(), "attempts": []}
    started = time.monotonic()
    problem = unrunnable(runner, spec, entry)
    if problem:
        result["detail"] = problem
    else:
        budget = float(runner.budget(entry["case"], timeout_of(spec, entry)))
        outcome = attempt(runner, spec, entry, budget)
        result["attempts"].append({"status": outcome.status, "detail": outcome.detail})
        retried = outcome.detail if outcome.status == "transient" else None
        if retried:
            time.sleep(RETRY_PAUSE)
            outcome = attempt(runner, spec, entry, budget)
            result["attempts"].append({"status": outcome.status, "detail": outcome.detail})
        status, detail = outcome.status, outcome.detail
        if status == "transient":
            status, detail = "fail", f"{retried}; and again on the second attempt: {detail}"
        elif status == "pass" and retried:
            status, detail = "flaky", f"{detail}; the first attempt failed: {retried}"
        elif retried:
            detail = f"{detail} (second attempt; the first failed: {retried})"
        result.update(status=status, detail=detail)
        if outcome.case is not None:
            if status != "pass" or spec.get("trace_all"):
                result["trace"] = outcome.case.trace_text()
            if outcome.case.evidence:
                result["evidence"] = outcome.case.evidence
    result["seconds"] = round(time.monotonic() - started, 3)
    result["ended"] = time.time()
    return result


# --- running the spec -------------------------------------------------------------------------

def concurrency(spec: dict) -> int:
    """Cases (or isolated groups) in flight at once, as the lab asked."""
    return max(1, int(spec.get("concurrency") or 4))


def plan(entries: list) -> dict:
    """{(server, target): [indexes of its entries]}, groups and indexes in the order of ``entries``."""
    found: dict = {}
    for index, entry in enumerate(entries):
        found.setdefault((entry.get("server"), entry.get("target")), []).append(index)
    return found


def stopped(entry: dict, detail: str) -> dict:
    """The record of a case that never reported a result."""
    return {**{key: entry.get(key) for key in ("case", "server", "target")}, "status": "error",
            "detail": detail, "trace": "", "seconds": 0.0}


# Seconds a group's child process gets beyond its cases' budgets (to start, and to report).
ISOLATED_MARGIN = 10.0


def run_isolated(runner: Runner, spec: dict, entries: list) -> list:
    """The entries (one group) in a child process: `RUNNER group SPEC_JSON`; killed after
    every case's budget twice over (a retry each), its cases then in error."""
    limit = sum(2 * float(runner.budget(e.get("case"), timeout_of(spec, e))) for e in entries) + ISOLATED_MARGIN
    child = subprocess.Popen([sys.executable, os.path.abspath(sys.argv[0]), "group",
                              json.dumps({**spec, "cases": entries})],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = child.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        kill_group(child)
        child.communicate()
        return [stopped(e, f"the group's runner process was killed after {limit:g}s") for e in entries]
    try:
        results = json.loads(out.decode().strip().splitlines()[-1])
        if len(results) == len(entries):
            return results
    except (ValueError, IndexError):
        pass
    tail = " | ".join(err.decode(errors="replace").strip().splitlines()[-3:])
    return [stopped(e, f"the group's runner process failed (exit {child.returncode}): {tail}") for e in entries]


def run_cases(runner: Runner, spec: dict) -> list:
    """One result per entry of the spec, in its order."""
    entries = spec.get("cases") or []
    results: list = [None] * len(entries)
    slots = threading.Semaphore(concurrency(spec))

    def run_group(indexes):
        if runner.isolate_groups:
            with slots:
                for index, result in zip(indexes, run_isolated(runner, spec, [entries[i] for i in indexes])):
                    results[index] = result
            return
        for index in indexes:
            with slots:  # the case's budget starts once it has its slot
                results[index] = run_case(runner, spec, entries[index])

    threads = [threading.Thread(target=run_group, args=(indexes,), daemon=True) for indexes in plan(entries).values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [result or stopped(entries[i], "no result (harness bug)") for i, result in enumerate(results)]


def main(runner: Runner) -> None:
    """`RUNNER cases|group|<command> SPEC_JSON`: the JSON document as the last stdout line."""
    if len(sys.argv) != 3:
        raise SystemExit(f"usage: {sys.argv[0]} cases|{'|'.join(runner.commands) or 'cases'} SPEC_JSON")
    command, spec = sys.argv[1], json.loads(sys.argv[2])
    if command == "cases":
        document = run_cases(runner, spec)
    elif command == "group":  # one isolated group, in this process (see run_isolated)
        document = [run_case(runner, spec, entry) for entry in spec.get("cases") or []]
    elif command in runner.commands:
        document = runner.commands[command](spec)
    else:
        raise SystemExit(f"unknown command {command} (cases, {', '.join(runner.commands)})")
    sys.stdout.write("\n" + json.dumps(document) + "\n")
    sys.stdout.flush()
    os._exit(0)  # threads still stuck in a tool or a library are not waited for
