"""An interop run on a lab that is up: the catalogue's cases, batch by batch, each batch run
by its cases' phase (lab/cases/): plan -> runners -> results checked against the plan ->
each case's lab-side judge.

This module is the lab-side harness the phases share: it plans, runs runners, drops s2s
connections, serves zones, reads logs, and knows nothing of any particular case.
"""

from __future__ import annotations

import dataclasses
import json
import time
from contextlib import contextmanager
from typing import Callable

from lab.cases import CASE_TIMEOUT, Case, Seen
from lab.cases.s2s import S1
from lab.cases.auth import S8
from lab.concurrency import interrupts_deferred, interrupts_ignored, parallel
from lab.errors import LabError, NotUp
from lab.evidence import dns_queries, log_lines, server_side
from lab.model import Lab, Server
from lab import protocol
from lab.project import DNS_SERVICE, ZONE_PATH, Project
from lab.protocol import reconcile, run_runner
from lab.results import ERROR, FAIL, NOT_SUPPORTED, CaseResult
from lab.runtime import File, Runtime
from lab.stacks import ClientStack
from lab.zone import SETTLE, build_zone

FEDERATION = [S1, S8]  # what `lab up` shows: a message both ways, and how each sender authenticated


def default_concurrency(engine_cores: int) -> int:
    """Cases a runner has in flight at once: TLS handshakes and logins are CPU work on the
    same cores as the servers, so a few per core; never fewer than two."""
    return max(2, 2 * engine_cores)


def plan(stack: ClientStack, cases: list[Case], servers: list[Server], pairs) -> tuple[list[dict], list[CaseResult]]:
    """What ``stack``'s runner is asked to run, and what is reported as not supported instead."""
    planned, skipped = [], []
    for case in cases:
        ipv4_only = stack.ipv4_only and case.group == "ipv6"  # said for every cell, s2s too
        if case.scope != "c2s" and case.id not in stack.cases and not ipv4_only:
            continue  # s2s cells are about the servers: stacks that cannot do a case stay out
        targets = ([(s, None) for s in servers] if "c2s" in case.scope else []) + \
            (list(pairs) if "s2s" in case.scope else [])
        for server, target in targets:
            if target is None:
                needed_from = [server]
            else:  # the target; the sender too where the case needs both ends, or it alone
                needed_from = [target, server] if case.needs_both else [server] if case.needs_sender else [target]
            where = dict(case=case.id, title=case.title, stack=stack.name, server=server.name,
                         target=target and target.name, status=NOT_SUPPORTED)
            if case.id not in stack.cases or ipv4_only:
                cannot = "resolves IPv4 only: it cannot run" if ipv4_only else "cannot express"
                skipped.append(CaseResult(**where, reason="stack",
                                          detail=f"the {stack.name} runner {cannot} {case.id}"))
            elif case.needs and any(case.needs not in s.features for s in needed_from):
                lacking = next(s for s in needed_from if case.needs not in s.features)
                skipped.append(CaseResult(**where, reason="server",
                                          detail=f"{lacking.kind.name} at {lacking.release} does not declare {case.needs}"))
            else:
                entry = {"case": case.id, "server": server.name, "target": target and target.name,
                         **({"timeout": case.timeout} if case.timeout else {})}
                # the same s2s case once per pair of ends with another stack, unless the runner says not
                ends_of = [None] + [ends for other in stack.pairs_with if target is not None
                                    for ends in (f"{stack.name}->{other}", f"{other}->{stack.name}")]
                not_run = {(case_id, ends): why for case_id, ends, why in stack.not_run}
                for ends in ends_of:
                    why = not_run.get((case.id, ends or stack.name)) if target is not None else None
                    if why:
                        how = f"with {stack.name} at both ends" if ends is None else ends
                        skipped.append(CaseResult(**{**where, "stack": ends or stack.name}, reason="stack",
                                                  detail=f"the {stack.name} runner does not run {case.id} {how}: {why}"))
                    else:
                        planned.append({**entry, "ends": ends} if ends else entry)
    return planned, skipped


def batches(cases: list[Case]) -> list[tuple[object, list[Case]]]:
    """The cases cut into batches of one phase and one fault group, each batch in catalogue
    order, batches in the order of their first case: a phase sets its batch up once."""
    found: dict[tuple, list[Case]] = {}
    for case in cases:
        found.setdefault((case.runs.key, case.group), []).append(case)
    return [(members[0].runs, members) for members in found.values()]


class Interop:
    def __init__(self, lab: Lab, runtime: Runtime, concurrency: int | None = None):
        # Each server where it runs (on a swarm, at the address its task got): the zone
        # variants of the DNS cases name those.
        self.lab, self.runtime = runtime.placed(lab), runtime
        self.concurrency = concurrency or lab.test_concurrency or default_concurrency(
            runtime.client.info().get("NCPU") or 1)
        self.cases = {case.id: case for case in lab.cases}
        self.stacks: list[ClientStack] = list(self.lab.clients)
        self.project = Project(self.lab, runtime)
        self.timings: dict[str, float] = {}  # seconds each batch of the last run took, by its cases
        # Called with each runner's batch of results as it comes in (lab test's progress line).
        self.on_results: Callable[[list[CaseResult]], None] = lambda results: None

    @property
    def primary(self) -> ClientStack:
        return self.lab.primary

    def check_up(self) -> None:
        stopped = [c.name for c in self.runtime.containers() if c.status != "running"]
        if not self.runtime.container(self.primary.service) or stopped:
            raise NotUp(f"lab {self.lab.name} is not up{' (stopped: ' + ', '.join(stopped) + ')' if stopped else ''}: "
                        f"run 'lab up' first")

    def federation(self) -> list[CaseResult]:
        """S1 (message both ways) and S8 (observed auth), the first client only: what `lab up` shows."""
        return self.run(FEDERATION, stack_names=[self.primary.name])

    def run(self, cases: list[Case], server_names: list[str] | None = None,
            stack_names: list[str] | None = None) -> list[CaseResult]:
        """``cases`` for every stack x server and every ordered server pair, batch by batch in
        catalogue order; after a fault group, S1 for every pair shows the lab is back to normal."""
        for name in server_names or []:
            self.lab.server(name)
        self.check_up()
        servers = [s for s in self.lab.servers if not server_names or s.name in server_names]
        self.stacks = [c for c in self.lab.clients if not stack_names or c.name in stack_names]
        pairs = [(a, b) for a in servers for b in self.lab.servers if a is not b]
        order = [case for case in self.lab.cases if case in cases] + [case for case in cases if case not in self.lab.cases]
        results, self.timings = [], {}
        for phase, members in batches(order):
            started = time.monotonic()
            ran = phase.run(self, members, servers, pairs)
            results += ran
            if members[0].group and any(r.status != NOT_SUPPORTED for r in ran):
                results += self.back_to_normal(members[0].group, servers, pairs)
            self.timings[f"{phase.key} {members[0].id}-{members[-1].id}"] = time.monotonic() - started
        results = self.with_server_side(results)
        place = {case.id: i for i, case in enumerate(order)}
        names = {s.name: i for i, s in enumerate(self.lab.servers)}
        return sorted(results, key=lambda r: (place.get(r.case, len(place)), r.stack, names.get(r.server, -1),
                                              names.get(r.target, -1)))

    # --- what phases use: planning, runners, judging ---------------------------------------

    def plan(self, stack: ClientStack, cases: list[Case], servers, pairs):
        return plan(stack, cases, servers, pairs)

    def run_stacks(self, cases: list[Case], servers, pairs) -> list[CaseResult]:
        """Every stack's runner over ``cases``, stacks side by side."""
        per_stack = self.each_stack(lambda stack, _: self.run_stack(stack, cases, servers, pairs),
                                    [(stack, None) for stack in self.stacks])
        return [r for _, stack_results in per_stack for r in stack_results]

    def each_stack(self, work, items: list[tuple[ClientStack, object]]) -> list[tuple[ClientStack, list]]:
        """``work(stack, item)`` for each (stack, item) at once. Runners create nothing: Ctrl-C
        need not wait for them."""
        done = parallel(lambda item: work(*item), items, finish_on_interrupt=False)
        return [(stack, results) for (stack, _), results in zip(items, done)]

    def run_stack(self, stack: ClientStack, cases: list[Case], servers, pairs, **extra) -> list[CaseResult]:
        """One stack's runner over every case it can express; the rest reported from data."""
        planned, results = plan(stack, cases, servers, pairs)
        return results + self.run_runner(stack, planned, **extra)

    def not_supported(self, case: Case, servers, pairs, why: str, reason: str) -> list[CaseResult]:
        """``case`` reported not supported for every cell a stack would have run."""
        return [CaseResult(p["case"], case.title, stack.name, p["server"], p["target"], NOT_SUPPORTED, why, reason=reason)
                for stack in self.stacks for p in plan(stack, [case], servers, pairs)[0]]

    def spec(self, stack: ClientStack, **extra) -> dict:
        """The runner's spec; ``extra`` adds fields or sets them otherwise (F8: its own concurrency)."""
        return {**protocol.spec(self.lab, stack, CASE_TIMEOUT, self.concurrency), **extra}

    def run_runner(self, stack: ClientStack, planned: list[dict], **extra) -> list[CaseResult]:
        """``extra``: further spec fields (F8's outage times; a concurrency of its own)."""
        if not planned:
            return []
        titles = {case_id: case.title for case_id, case in self.cases.items()}
        spec = self.spec(stack, cases=planned, **extra)
        try:
            reported = run_runner(self.runtime, stack, "cases", spec)
        except LabError as error:
            return [CaseResult(p["case"], titles.get(p["case"], p["case"]), p.get("ends") or stack.name, p["server"],
                               p["target"], ERROR, str(error)) for p in planned]
        results = reconcile(stack.name, titles, planned, reported)
        self.on_results(results)
        return results

    def primary_command(self, command: str, spec: dict):
        """A command of the first client's runner (ready, s2s-offer, software-version)."""
        return run_runner(self.runtime, self.primary, command, spec)

    def judged(self, result: CaseResult, **seen) -> CaseResult:
        """``result`` after its case's lab-side judge, given what the lab saw (see Seen)."""
        case = self.cases.get(result.case)
        by_name = {s.name: s for s in self.lab.servers}
        if (case is None or case.judge is None or result.status == NOT_SUPPORTED or result.server not in by_name
                or (result.target is not None and result.target not in by_name)):
            return result
        return case.judge(result, Seen(sender=by_name[result.server], receiver=by_name.get(result.target), **seen))

    def client_addresses(self, stack: ClientStack) -> tuple[str, ...]:
        return tuple(a for a in (self.lab.client_addresses.get(stack.name),
                                 self.lab.client_addresses6.get(stack.name)) if a)

    def software_versions(self) -> dict[str, str | None]:
        """Each server's XEP-0092 answer ("name version (os)"), or why there is none."""
        try:
            answers = self.primary_command("software-version", self.spec(self.primary))
        except LabError as error:
            return {s.name: f"not asked: {error}" for s in self.lab.servers}

        def said(answer: dict) -> str:
            if answer.get("error"):
                return f"no answer: {answer['error']}"
            os_name = f"({answer['os']})" if answer.get("os") else None
            return " ".join(part for part in (answer.get("name"), answer.get("version"), os_name) if part)
        return {name: said(answer) for name, answer in answers.items()}

    # --- what phases use: the lab's own view ------------------------------------------------

    def logs(self, names: list[str], since: float) -> dict[str, list[tuple[float, str]]]:
        """Each container's log lines since ``since`` (unix time), read at once."""
        names = list(dict.fromkeys(names))
        return dict(zip(names, parallel(
            lambda name: log_lines(self.runtime.logs(name, since=int(since) - 1, timestamps=True)), names)))

    def dns_log(self, since: float) -> list[dict]:
        return dns_queries(self.runtime.logs(DNS_SERVICE, since=int(since) - 1))

    def with_server_side(self, results: list[CaseResult]) -> list[CaseResult]:
        """Failed s2s cases with their servers' side (see evidence.server_side); a failed case
        that involves every server (``every_server``) with what its server and each other
        server logged about each other."""
        by_name = {s.name: s for s in self.lab.servers}

        def lab_wide(r: CaseResult) -> bool:
            return r.target is None and getattr(self.cases.get(r.case), "every_server", False)
        failed = [r for r in results if r.status == FAIL and r.started and r.server in by_name
                  and (r.target in by_name or lab_wide(r))]
        if not failed:
            return results
        logs = self.logs(sorted({n for r in failed for n in ((r.server, r.target) if r.target else by_name)}),
                         min(r.started for r in failed))
        failed_ids = {id(r) for r in failed}

        def with_logs(r: CaseResult) -> CaseResult:
            if r.target:
                return server_side(r, by_name[r.server], by_name[r.target], logs)
            found = [line for other in self.lab.servers if other.name != r.server
                     for line in server_side(r, by_name[r.server], other, logs).evidence.get("server_log", [])]
            if not found:
                return r
            more = f" (+{len(found) - 1} more in the evidence)" if len(found) > 1 else ""
            return dataclasses.replace(r, detail=f"{r.detail}; the servers logged: {found[0]}{more}",
                                       evidence={**r.evidence, "server_log": found[:20]})
        return [with_logs(r) if id(r) in failed_ids else r for r in results]

    # --- what phases use: setting cases up --------------------------------------------------

    def drop_s2s(self) -> dict[str, str | None]:
        """Make every server close its s2s connections: {server: None, or why it could not}."""
        def drop(server: Server) -> str | None:
            if not server.kind.close_s2s_command:
                return f"{server.kind.name} cannot drop s2s connections without a restart"
            code, output = self.runtime.exec(server.name, list(server.kind.close_s2s_command))
            last = (output.strip().splitlines() or ["(no output)"])[-1]
            return None if code == 0 else f"dropping {server.name}'s s2s connections failed (exit {code}): {last}"
        return dict(zip((s.name for s in self.lab.servers), parallel(drop, self.lab.servers)))

    def fresh_pairs(self, case: Case, stack: str, pairs, dropped: dict) -> tuple[list, list[CaseResult]]:
        """Pairs whose connection was dropped at one end at least; the others as results."""
        fresh, others = [], []
        for a, b in pairs:
            if dropped[a.name] is None or dropped[b.name] is None:
                fresh.append((a, b))
                continue
            cannot = all("cannot drop" in dropped[s.name] for s in (a, b))
            others.append(CaseResult(case.id, case.title, stack, a.name, b.name,
                                     NOT_SUPPORTED if cannot else ERROR, reason="lab" if cannot else None,
                                     detail=f"no fresh s2s connection: {dropped[a.name]}; {dropped[b.name]}"))
        return fresh, others

    def serve_zone(self, variant, settle: bool = True) -> dict[str, str | None]:
        """Serve the zone (or a DNS variant of it: a server's records under it); with
        ``settle``, make servers drop their s2s connections and wait until cached answers
        have expired."""
        zone = json.dumps(build_zone(self.lab, variant), indent=2).encode()
        self.runtime.update_file(DNS_SERVICE, ZONE_PATH, File(zone))
        if not settle:
            return {}
        served = time.monotonic()
        dropped = self.drop_s2s()
        # Answers cached before the zone changed expire counted from then, not from the drop.
        time.sleep(max(0.0, served + SETTLE - time.monotonic()))
        return dropped

    def pause_dns(self, down_at: float, up_at: float) -> tuple[float, float]:
        """The lab DNS paused from ``down_at`` to ``up_at`` (unix times): when it really went
        down and came back. It answers again whatever happens."""
        dns = self.runtime.container(DNS_SERVICE)
        try:
            time.sleep(max(0.0, down_at - time.time()))
            dns.pause()
            down = time.time()
            time.sleep(max(0.0, up_at - time.time()))
        finally:
            with interrupts_ignored():
                if self.runtime.container(DNS_SERVICE).status == "paused":
                    dns.unpause()
        return down, time.time()

    def each(self, work, items: list, deferred: bool = False) -> list:
        """``work`` over ``items`` at once (``deferred``: Ctrl-C waits until all are done)."""
        if not deferred:
            return parallel(work, items)
        with interrupts_deferred():
            return parallel(work, items)

    @contextmanager
    def cleanup(self):
        """A block that puts the lab back: Ctrl-C does not cut it short."""
        with interrupts_ignored():
            yield

    def back_to_normal(self, group: str, servers, pairs) -> list[CaseResult]:
        """After a group of faults: S1 for every pair again (stack after-<group>), to show the
        lab is back to normal. The servers drop their s2s connections first: a failed one
        may hold back stanzas for a while (ejabberd bounces them for up to a few minutes)."""
        self.drop_s2s()
        return [dataclasses.replace(r, stack=f"after-{group}")
                for r in self.run_stack(self.primary, [S1], servers, pairs)]
