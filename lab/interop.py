"""An interop run on a lab that is up: plan -> runners -> results checked against the plan.

The runners (lab/runners/, in the client containers) run the exchanges; what only the lab
can see is judged here, each verdict from evidence of this run:
- S8: the receiving server's log lines written between this run's s2s drop and the end of
  the pair's exchange, against the strongest method both kinds declare;
- S9/S10: the lab DNS's query log shows the sending server asked for the variant's records
  during the case;
- C6: the server's advertised disco#info against the kind's declared features;
- a failed s2s case gets the lines both servers logged about each other during it;
- the fault scenarios (F cases) are set up here and judged in lab/faults.py.
Every function that judges is pure (captured data in, CaseResult out), so it is tested on
real captured logs without Docker.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from typing import Callable
from datetime import datetime

from cryptography.hazmat.primitives import serialization

from lab.catalogue import BY_ID, CASES, FAULTS, FEATURE_VARS, STREAM_FEATURE_NAMESPACES, Case
from lab.errors import LabError, NotUp
from lab import ca
from lab.faults import (OUTAGE, OUTAGE_START, RECOVERY_BUDGET, describe_offer, fault_in_place, judge_f1, judge_f2,
                        judge_f6, judge_f7, judge_f8, judge_server_fault)
from lab.model import Lab, Server
from lab.servers import common_auth
from lab.project import CLIENT_CA, DNS_SERVICE, PRIMARY, ZONE_PATH, Project, run_runner, stack_users
from lab.results import ERROR, FAIL, FLAKY, NOT_SUPPORTED, PASS, CaseResult, reconcile
from lab.runtime import File, Runtime, interrupts_deferred, interrupts_ignored, parallel
from lab.stacks import ClientStack
from lab.zone import TTL, VARIANTS, build_zone

CASE_BUDGET = 20.0   # seconds a case may take, counted from its own start in the runner
# F1, F3-F5: how long the sender's user waits for the message to arrive or come back as
# an error. "No answer within" it is what the lab observes then (jabberd2, for one, retries
# a failed TLS connection in a loop and keeps the stanza; docs/faults.md).
FAULT_BUDGET = 7.0
OBSERVER = "observed"  # the "stack" of S8 results: the lab observes, slixmpp only exchanges
TITLES = {case.id: case.title for case in CASES + FAULTS}
# Only these cases make servers connect afresh: they run alone, after the others.
FRESH_S2S = ("S8", "F8", *VARIANTS)


def default_concurrency(engine_cores: int) -> int:
    """Cases a runner has in flight at once: TLS handshakes and logins are CPU work on the
    same cores as the servers, so a few per core; never fewer than two."""
    return max(2, 2 * engine_cores)


def expected_auth(sender: Server, receiver: Server) -> str | None:
    """The strongest method both kinds declare, in the receiver's order of preference."""
    return common_auth(sender.kind, receiver.kind)


# --- planning ---------------------------------------------------------------------------------

def plan(stack: ClientStack, cases: list[Case], servers: list[Server], pairs) -> tuple[list[dict], list[CaseResult]]:
    """What ``stack``'s runner is asked to run, and what is reported as not supported instead."""
    planned, skipped = [], []
    for case in cases:
        if case.scope != "c2s" and case.id not in stack.cases:
            continue  # s2s cells are about the servers: stacks that cannot do a case stay out
        targets = ([(s, None) for s in servers] if "c2s" in case.scope else []) + \
            (list(pairs) if "s2s" in case.scope else [])
        for server, target in targets:
            if target is None:
                needed_from = [server]
            else:  # the target; the sender too where the case needs both ends
                needed_from = [target, server] if case.needs_both else [target]
            where = dict(case=case.id, title=case.title, stack=stack.name, server=server.name,
                         target=target and target.name, status=NOT_SUPPORTED)
            if case.id not in stack.cases:
                skipped.append(CaseResult(**where, reason="stack",
                                          detail=f"the {stack.name} runner cannot express {case.id}"))
            elif case.needs and any(case.needs not in s.features for s in needed_from):
                lacking = next(s for s in needed_from if case.needs not in s.features)
                skipped.append(CaseResult(**where, reason="server",
                                          detail=f"{lacking.kind.name} at {lacking.release} does not declare {case.needs}"))
            else:
                planned.append({"case": case.id, "server": server.name, "target": target and target.name})
    return planned, skipped


# --- judging from the lab's own view ------------------------------------------------------------

ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # ejabberd 26 colours its console log


def log_lines(text: str) -> list[tuple[float, str]]:
    """A container log fetched with timestamps -> [(unix time, line)], colour codes removed."""
    lines = []
    for raw in ANSI_COLOUR.sub("", text).splitlines():
        stamp, _, line = raw.partition(" ")
        try:
            # Docker gives nanoseconds: fromisoformat takes at most microseconds.
            head, _, fraction = stamp.rstrip("Z").partition(".")
            when = datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}+00:00").timestamp()
        except ValueError:
            continue
        lines.append((when, line))
    return lines


TROUBLE = re.compile(r"error|fail|refus|denied|invalid|unable|timed? ?out", re.IGNORECASE)


def server_side(result: CaseResult, sender: Server, receiver: Server,
                logs: dict[str, list[tuple[float, str]]]) -> CaseResult:
    """A failed s2s case with what its servers logged about each other during it (lines that
    name the other server's domain or address and speak of trouble): the client saw the
    symptom, this is the servers' side."""
    since, until = (result.started or 0) - 0.5, (result.ended or time.time()) + 0.5
    found = [f"{server.name}: {line.strip()}"
             for server, peer in ((sender, receiver), (receiver, sender))
             for when, line in logs.get(server.name, [])
             if since <= when <= until and TROUBLE.search(line)
             and any(name in line for name in (peer.domain, *peer.addresses))]
    if not found:
        return result
    more = f" (+{len(found) - 1} more in the evidence)" if len(found) > 1 else ""
    return dataclasses.replace(result, detail=f"{result.detail}; the servers logged: {found[0]}{more}",
                               evidence={**result.evidence, "server_log": found[:20]})


def judge_auth(exchange: CaseResult, sender: Server, receiver: Server,
               lines: list[tuple[float, str]], since: float) -> CaseResult:
    """S8 from the exchange of this run (sender -> receiver, after every s2s connection was
    dropped at ``since``) and the receiver's log lines written from then to its end."""
    verdict = dataclasses.replace(exchange, stack=OBSERVER, case="S8", title=TITLES["S8"])
    if exchange.status not in (PASS, FLAKY):
        return dataclasses.replace(verdict, status=exchange.status if exchange.status == ERROR else FAIL,
                                   detail=f"no federation to observe: {exchange.detail}")
    until = (exchange.ended or time.time()) + 0.5
    window = "\n".join(line for when, line in lines if since <= when <= until)
    seen = receiver.kind.inbound_auth(window, sender.domain, receiver.domain)
    expected = expected_auth(sender, receiver)
    span = f"{receiver.name}'s log from {datetime.fromtimestamp(since).strftime('%H:%M:%S.%f')[:-3]} to the " \
           f"end of the exchange"
    if seen is None:
        return dataclasses.replace(verdict, status=ERROR, trace=window[-4000:], evidence={"since": since, "until": until},
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


def dns_queries(text: str) -> list[dict]:
    """The lab DNS's query log (one JSON object a line, see labdns.py); other lines skipped."""
    queries = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                queries.append(json.loads(line))
            except ValueError:
                pass
    return queries


def judge_lookup(result: CaseResult, variant: str, sender: Server, receiver: Server,
                 queries: list[dict], since: float) -> CaseResult:
    """S9/S10: a delivery under the variant counts only if the lab DNS saw the sender look the
    receiver up afresh during the case: the SRV record, then the address it leads to."""
    if result.status not in (PASS, FLAKY):
        return result
    until = (result.ended or time.time()) + 0.5
    asked = [q for q in queries if q.get("client") in sender.addresses and since <= q.get("time", 0) <= until]
    srv_name = f"_xmpp-server._tcp.{receiver.domain}"
    host = f"xmpp.{receiver.domain}" if variant == "S9" else receiver.domain
    srv = next((q for q in asked if q["name"].rstrip(".") == srv_name and q["type"] == "SRV"), None)
    # The lookup that returned an address: an empty AAAA answer beside the A one proves nothing.
    address = next((q for q in asked if q["name"].rstrip(".") == host and q["type"] in ("A", "AAAA")
                    and q.get("answers") and srv is not None and q["time"] >= srv["time"]), None)
    if srv is None or address is None:
        missing = f"SRV {srv_name}" if srv is None else f"A/AAAA {host} after the SRV answer"
        seen = ", ".join(f"{q['name'].rstrip('.')} {q['type']}" for q in asked) or "nothing"
        return dataclasses.replace(result, status=ERROR, detail=(
            f"delivered, but the lab DNS saw no query from {sender.name} ({sender.address}) for {missing} "
            f"during the case (it asked: {seen}): the delivery may have used a cached answer or an "
            f"existing connection; {result.detail}"))
    proof = (f"lab DNS: {sender.name} asked {srv_name} SRV ({srv.get('rcode')}: {srv.get('answers') or 'none'}), "
             f"then {host} {address['type']} ({address.get('rcode')}: {address.get('answers') or 'none'})")
    return dataclasses.replace(result, detail=f"{result.detail}; {proof}",
                               evidence={**result.evidence, "dns": [srv, address], "since": since, "until": until})


def judge_features(result: CaseResult, server: Server) -> CaseResult:
    """C6: every declared feature with a disco#info var, or a stream feature namespace, must
    be advertised there."""
    if result.status not in (PASS, FLAKY):
        return result
    advertised, stream = result.evidence.get("features"), result.evidence.get("stream_namespaces")
    if advertised is None or stream is None:
        return dataclasses.replace(result, status=ERROR,
                                   detail=f"the runner returned no advertised features to compare; {result.detail}")
    declared = {feature: FEATURE_VARS[feature] for feature in sorted(server.features) if feature in FEATURE_VARS}
    declared_stream = {feature: STREAM_FEATURE_NAMESPACES[feature] for feature in sorted(server.features)
                       if feature in STREAM_FEATURE_NAMESPACES}
    missing = [f"{feature} ({var}) in disco#info" for feature, var in declared.items() if var not in advertised]
    missing += [f"{feature} ({namespace}) in the stream features" for feature, namespace in declared_stream.items()
                if namespace not in stream]
    undeclared = sorted(set(advertised) & set(FEATURE_VARS.values()) - set(declared.values()))
    undeclared += sorted(set(stream) & set(STREAM_FEATURE_NAMESPACES.values()) - set(declared_stream.values()))
    note = f"; advertised but not declared: {', '.join(undeclared)}" if undeclared else ""
    if missing:
        return dataclasses.replace(result, status=FAIL, detail=(
            f"declared but not advertised: {', '.join(missing)}{note}; {result.detail}"))
    return dataclasses.replace(result, detail=(
        f"{result.detail}; every declared feature advertised: {', '.join([*declared, *declared_stream])}{note}"))


# --- running ------------------------------------------------------------------------------------

class Interop:
    def __init__(self, lab: Lab, runtime: Runtime, concurrency: int | None = None):
        # Each server where it runs (on a swarm, at the address its task got): the zone
        # variants of the DNS cases name those.
        self.lab, self.runtime = runtime.placed(lab), runtime
        self.concurrency = concurrency or lab.test_concurrency or default_concurrency(
            runtime.client.info().get("NCPU") or 1)
        # Called with each runner's batch of results as it comes in (lab test's progress line).
        self.on_results: Callable[[list[CaseResult]], None] = lambda results: None

    def check_up(self) -> None:
        stopped = [c.name for c in self.runtime.containers() if c.status != "running"]
        if not self.runtime.container(PRIMARY.service) or stopped:
            raise NotUp(f"lab {self.lab.name} is not up{' (stopped: ' + ', '.join(stopped) + ')' if stopped else ''}: "
                        f"run 'lab up' first")

    def federation(self) -> list[CaseResult]:
        """The catalogue's S1 (message both ways) and S8 (observed auth), slixmpp only: what
        `lab up` shows."""
        return self.run([BY_ID["S1"], BY_ID["S8"]], stack_names=[PRIMARY.name])

    def run(self, cases: list[Case], server_names: list[str] | None = None,
            stack_names: list[str] | None = None) -> list[CaseResult]:
        """The catalogue's ``cases`` for every stack x server and every ordered server pair."""
        for name in server_names or []:
            self.lab.server(name)
        self.check_up()
        servers = [s for s in self.lab.servers if not server_names or s.name in server_names]
        stack_list = [c for c in self.lab.clients if not stack_names or c.name in stack_names]
        pairs = [(a, b) for a in servers for b in self.lab.servers if a is not b]
        plain = [c for c in cases if c.id not in FRESH_S2S and c not in FAULTS]
        # Runners create nothing: Ctrl-C need not wait for them.
        per_stack = parallel(lambda stack: self.run_stack(stack, plain, servers, pairs), stack_list,
                             finish_on_interrupt=False)
        results = [r for stack_results in per_stack for r in stack_results]
        by_name = {s.name: s for s in self.lab.servers}
        results = [judge_features(r, by_name[r.server]) if r.case == "C6" else r for r in results]
        if any(c.id == "S8" for c in cases):
            results += self.observe_auth(pairs)
        variants = [c for c in cases if c.id in VARIANTS]
        try:
            for case in variants:  # one after another: each serves its own zone
                results += self.run_variant(case, stack_list, servers, pairs)
        finally:
            if variants:
                with interrupts_ignored():  # the lab is left with its normal zone, whatever happens
                    self.serve_zone(None)
        set_up = [c for c in cases if c.id in VARIANTS and c.group and (c.id != "F6" or self.lab.ipv6)]
        for group in dict.fromkeys(c.group for c in set_up):
            results += self.back_to_normal(group, servers, pairs)
        server_faults = [c for c in cases if c.group == "server"]
        if server_faults:
            results += self.run_server_faults(server_faults, servers, pairs)
        if any(c.id == "F8" for c in cases):
            results += self.run_outage(BY_ID["F8"], pairs)
        results = self.with_server_side(results)
        order = {c.id: i for i, c in enumerate(CASES)}
        place = {s.name: i for i, s in enumerate(self.lab.servers)}
        return sorted(results, key=lambda r: (order.get(r.case, len(order)), r.stack, place.get(r.server, -1),
                                              place.get(r.target, -1)))

    def run_stack(self, stack: ClientStack, cases: list[Case], servers: list[Server], pairs,
                  **extra) -> list[CaseResult]:
        """One stack's runner over every case it can express; the rest reported from data."""
        planned, results = plan(stack, cases, servers, pairs)
        return results + self.run_runner(stack, planned, **extra)

    def spec(self, stack: ClientStack, **extra) -> dict:
        """What a runner is told of the lab: its CA, the servers with their accounts."""
        return {"ca": CLIENT_CA, "timeout": CASE_BUDGET, "concurrency": self.concurrency * stack.concurrency_scale,
                "servers": {s.name: {"domain": s.domain, "accounts": s.accounts, "muc": s.muc_domain,
                                     "users": stack_users(stack, s)}
                            for s in self.lab.servers}, **extra}

    def software_versions(self) -> dict[str, str | None]:
        """Each server's XEP-0092 answer ("name version (os)"), or why there is none."""
        try:
            answers = run_runner(self.runtime, PRIMARY, "software-version", self.spec(PRIMARY))
        except LabError as error:
            return {s.name: f"not asked: {error}" for s in self.lab.servers}

        def said(answer: dict) -> str:
            if answer.get("error"):
                return f"no answer: {answer['error']}"
            os_name = f"({answer['os']})" if answer.get("os") else None
            return " ".join(part for part in (answer.get("name"), answer.get("version"), os_name) if part)
        return {name: said(answer) for name, answer in answers.items()}

    def run_runner(self, stack: ClientStack, planned: list[dict], **extra) -> list[CaseResult]:
        """``extra``: further spec fields (F8's outage times; a concurrency of its own)."""
        if not planned:
            return []
        spec = self.spec(stack, cases=planned, **extra)
        try:
            reported = run_runner(self.runtime, stack, "cases", spec)
        except LabError as error:
            return [CaseResult(p["case"], TITLES[p["case"]], stack.name, p["server"], p["target"], ERROR, str(error))
                    for p in planned]
        results = reconcile(stack.name, TITLES, planned, reported)
        self.on_results(results)
        return results

    def with_server_side(self, results: list[CaseResult]) -> list[CaseResult]:
        """Failed s2s cases with their servers' side (see server_side)."""
        failed = [r for r in results if r.status == FAIL and r.target and r.started]
        if not failed:
            return results
        since = int(min(r.started for r in failed)) - 1
        names = sorted({n for r in failed for n in (r.server, r.target)})
        logs = dict(zip(names, parallel(
            lambda name: log_lines(self.runtime.logs(name, since=since, timestamps=True)), names)))
        by_name = {s.name: s for s in self.lab.servers}
        failed_ids = {id(r) for r in failed}
        return [server_side(r, by_name[r.server], by_name[r.target], logs) if id(r) in failed_ids else r
                for r in results]

    # --- cases that need fresh s2s connections --------------------------------------------

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

    def observe_auth(self, pairs) -> list[CaseResult]:
        """S8: drop every s2s connection, let slixmpp exchange a message both ways per pair,
        and read how each receiver logged the sender's authentication."""
        since = time.time()
        dropped = self.drop_s2s()
        fresh, results = self.fresh_pairs(BY_ID["S8"], OBSERVER, pairs, dropped)
        exchanges = self.run_runner(PRIMARY, [{"case": "S8", "server": a.name, "target": b.name} for a, b in fresh])
        by_name = {s.name: s for s in self.lab.servers}
        receivers = sorted({r.target for r in exchanges if r.target in by_name})
        logs = dict(zip(receivers, parallel(lambda name: log_lines(
            self.runtime.logs(name, since=int(since) - 1, timestamps=True)), receivers)))
        for exchange in exchanges:
            if exchange.target not in logs:
                results.append(dataclasses.replace(exchange, stack=OBSERVER))
                continue
            results.append(judge_auth(exchange, by_name[exchange.server], by_name[exchange.target],
                                      logs[exchange.target], since))
        return results

    def run_variant(self, case: Case, stack_list, servers, pairs) -> list[CaseResult]:
        """S9/S10/F1/F2/F6/F7 under their DNS variant, on fresh s2s connections (the caller
        serves the normal zone again after the last one)."""
        results, per_stack = [], []
        if case.id == "F6" and not self.lab.ipv6:
            why = "the lab network is IPv4 only (network: {ipv6: true} makes it dual-stack)"
            return [CaseResult(p["case"], TITLES[p["case"]], stack.name, p["server"], p["target"], NOT_SUPPORTED,
                               why, reason="lab")
                    for stack in stack_list for p in plan(stack, [case], servers, pairs)[0]]
        since = time.time()
        dropped = self.serve_zone(case.id)
        for stack in stack_list:
            if case.id not in stack.cases:
                continue
            fresh, skipped = self.fresh_pairs(case, stack.name, pairs, dropped)
            results += skipped
            per_stack.append((stack, fresh))
        budget = {"timeout": FAULT_BUDGET} if case.id == "F1" else {}
        ran = parallel(lambda item: self.run_stack(item[0], [case], servers, item[1], **budget), per_stack,
                       finish_on_interrupt=False)
        queries = dns_queries(self.runtime.logs(DNS_SERVICE, since=int(since) - 1))
        by_name = {s.name: s for s in self.lab.servers}
        for (stack, _), stack_results in zip(per_stack, ran):
            client = [a for a in (self.lab.client_addresses.get(stack.name),
                                  self.lab.client_addresses6.get(stack.name)) if a]
            for r in stack_results:
                if r.status == NOT_SUPPORTED:
                    pass
                elif case.id == "F1" and r.target in by_name:
                    r = judge_f1(r, by_name[r.server], by_name[r.target], queries, since)
                elif case.id == "F2" and r.target in by_name:
                    r = judge_f2(r, by_name[r.server], by_name[r.target], queries, since)
                elif case.id == "F7" and r.target in by_name:
                    r = judge_f7(r, by_name[r.server], by_name[r.target], queries, since)
                elif case.id == "F6" and r.target in by_name:
                    sender = by_name[r.server]
                    r = judge_f6(r, sender.name, sender.addresses, by_name[r.target], queries, since)
                elif case.id == "F6":
                    r = judge_f6(r, stack.service, client, by_name[r.server], queries, since)
                elif r.target in by_name:
                    r = judge_lookup(r, case.id, by_name[r.server], by_name[r.target], queries, since)
                results.append(r)
        return results

    def back_to_normal(self, group: str, servers, pairs) -> list[CaseResult]:
        """After a group of faults: S1 for every pair again (stack after-<group>), to show the
        lab is back to normal. The servers drop their s2s connections first: a failed one
        may hold back stanzas for a while (ejabberd bounces them for up to a few minutes)."""
        self.drop_s2s()
        return [dataclasses.replace(r, stack=f"after-{group}")
                for r in self.run_stack(PRIMARY, [BY_ID["S1"]], servers, pairs)]

    def run_server_faults(self, cases: list[Case], servers, pairs) -> list[CaseResult]:
        """F3a-e, F4, F5: each server B in turn presents each fault (a faulty certificate, or
        s2s TLS off) and is restarted alone; the lab looks at what B's s2s port offers, and
        every other server's user and B's user message each other. A server gets its own
        files back (restarted again) while the next one is restarted with its first fault."""
        project = Project(self.lab, self.runtime)
        authority = project.authority()
        normal = {s.name: s.files for s in project.services() if s.role == "server"}
        results, faulted = [], {}  # faulted: {"server": the one presenting a fault now}
        try:
            for b in self.lab.servers:
                senders = [a for a, target in pairs if target is b]
                for case in cases if senders else []:
                    planned, skipped = plan(PRIMARY, [case], senders, [(a, b) for a in senders])
                    results += skipped
                    if planned:
                        results += self.run_server_fault(project, authority, case, b, senders, normal, faulted)
        finally:
            if faulted:
                with interrupts_ignored():  # its own certificate and config back, whatever happens
                    self.restore(project, faulted["server"], normal)
        return results + self.back_to_normal("server", servers, pairs)

    @staticmethod
    def restore(project: Project, server: Server, normal: dict) -> None:
        try:
            project.restart_server(server, normal[server.name])
        except LabError as error:
            raise LabError(f"{server.name} did not come back after the fault scenarios ({error}); "
                           f"'lab up --fresh' starts it anew") from None

    def run_server_fault(self, project: Project, authority, case: Case, b: Server, senders: list[Server],
                         normal: dict[str, dict[str, File]], faulted: dict) -> list[CaseResult]:
        """One fault on B (see run_server_faults): B restarted with it (and the server of the
        last fault, if another, restored at the same time), then judged per sender."""
        def error(detail: str) -> list[CaseResult]:
            return [CaseResult(case.id, case.title, PRIMARY.name, a.name, b.name, ERROR, detail) for a in senders]
        own = normal[b.name]
        expected_der = None
        if case.id == "F5":
            files = project.server_files(b, authority, own[b.kind.tls_paths["key"]].data,
                                         own[b.kind.tls_paths["cert"]].data, s2s_tls=False)
            if all(files[path] == own[path] for path in b.kind.config_files.values()):
                return [CaseResult(case.id, case.title, PRIMARY.name, a.name, b.name, NOT_SUPPORTED,
                                   f"the {b.kind.name} templates do not use s2s_tls: it cannot turn s2s TLS off",
                                   reason="server") for a in senders]
        else:
            other = next(s for s in self.lab.servers if s is not b and s.domain != b.domain)
            issued, chain = ca.variant(case.id, authority, b.names, other.names)
            files = project.server_files(b, authority, issued.key_pem, chain)
            expected_der = issued.cert.public_bytes(serialization.Encoding.DER)
        previous = faulted.get("server")
        faulted["server"] = b

        def restart(server: Server) -> str | None:
            if server is not b:
                self.restore(project, server, normal)
                return None
            try:
                project.restart_server(b, files)
            except LabError as problem:
                return str(problem)
        with interrupts_deferred():
            problem = parallel(restart, [b] + ([previous] if previous not in (None, b) else []))[0]
        if problem:
            return error(f"{b.name} did not come up with the fault ({ca.VARIANTS.get(case.id, 's2s TLS off')}): "
                         f"{problem}")
        since = time.time()
        # What B's s2s port presents, looked at while every server drops its s2s connections
        # (the others may still hold the last fault's failure: ejabberd bounces for a while).
        offer, _ = parallel(lambda step: step(), [
            lambda: run_runner(self.runtime, PRIMARY, "s2s-offer", {"domain": b.domain, "port": b.kind.ports["s2s"],
                                                                    "sender": senders[0].domain}),
            self.drop_s2s])
        ran = self.run_runner(PRIMARY, [{"case": case.id, "server": a.name, "target": b.name} for a in senders],
                              timeout=FAULT_BUDGET)
        names = [b.name, *(a.name for a in senders)]
        logs = dict(zip(names, parallel(lambda name: log_lines(
            self.runtime.logs(name, since=int(since) - 1, timestamps=True)), names)))
        by_name = {s.name: s for s in self.lab.servers}
        problem = fault_in_place(case.id, offer, expected_der)
        presented = describe_offer(offer)
        return [judge_server_fault(r, by_name[r.server], b, case.id, problem, logs, presented)
                if r.server in by_name else r for r in ran]

    def run_outage(self, case: Case, pairs) -> list[CaseResult]:
        """F8: every pair's users log in, the lab DNS is paused for OUTAGE seconds, and each
        pair's message is tried every 5 s until it arrives; the recovery time is judged here."""
        dropped = self.drop_s2s()
        fresh, results = self.fresh_pairs(case, PRIMARY.name, pairs, dropped)
        if not fresh:
            return results
        start = time.time()
        outage = {"down_at": start + OUTAGE_START, "up_at": start + OUTAGE_START + OUTAGE,
                  "give_up_at": start + OUTAGE_START + OUTAGE + RECOVERY_BUDGET}
        planned = [{"case": case.id, "server": a.name, "target": b.name} for a, b in fresh]
        box: dict = {}
        runner = threading.Thread(target=lambda: box.update(results=self.run_runner(
            PRIMARY, planned, outage=outage, concurrency=len(planned))), daemon=True)
        dns = self.runtime.container(DNS_SERVICE)
        try:
            runner.start()
            time.sleep(max(0.0, outage["down_at"] - time.time()))
            dns.pause()
            down = time.time()
            time.sleep(max(0.0, outage["up_at"] - time.time()))
        finally:
            with interrupts_ignored():  # the lab DNS answers again, whatever happens
                if self.runtime.container(DNS_SERVICE).status == "paused":
                    dns.unpause()
        back = time.time()
        runner.join()
        give_up = back + (outage["give_up_at"] - outage["up_at"])
        results += [judge_f8(r, down, back, give_up) for r in box.get("results", [])]
        return results + self.back_to_normal(case.group, list(self.lab.servers), pairs)

    def serve_zone(self, variant: str | None) -> dict[str, str | None]:
        """Serve the zone (or a DNS variant of it), make servers drop their s2s connections,
        and wait until cached answers have expired."""
        zone = json.dumps(build_zone(self.lab, variant), indent=2).encode()
        self.runtime.update_file(DNS_SERVICE, ZONE_PATH, File(zone))
        dropped = self.drop_s2s()
        time.sleep(TTL + 1)
        return dropped
