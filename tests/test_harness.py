"""The runners' shared harness (lab/runners/harness.py) with fake case functions, no Docker:
planning, the concurrency limit, budgets, results it could not get, the retry policy."""

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

RUNNERS = Path(__file__).resolve().parent.parent / "lab" / "runners"
sys.path.insert(0, str(RUNNERS))
import harness  # noqa: E402  (lab/runners/ is not a package: runners import it by name)
from harness import Case, CaseFailed, Runner, Transient  # noqa: E402

SERVERS = {name: {"domain": f"{name}.test", "accounts": {"alice": "pw-a", "bob": "pw-b"}} for name in "abc"}


def spec(*entries, concurrency=4, timeout=5):
    return {"servers": SERVERS, "timeout": timeout, "concurrency": concurrency, "ca": "/ca.pem",
            "cases": [{"case": c, "server": s, "target": t} for c, s, t in entries]}


def runner(cases, **kwargs):
    return Runner("fake", cases, **kwargs)


def test_plan_groups_cases_by_pair_in_order():
    entries = spec(("C1", "a", None), ("S1", "a", "b"), ("C2", "a", None), ("S1", "b", "a"))["cases"]
    assert harness.plan(entries) == {("a", None): [0, 2], ("a", "b"): [1], ("b", "a"): [3]}


def test_one_result_per_case_in_the_order_asked():
    results = harness.run_cases(runner({"C1": lambda case: f"on {case.domain(case.server)}"}),
                                spec(("C1", "c", None), ("C1", "a", None), ("C1", "b", None)))
    assert [(r["server"], r["status"], r["detail"]) for r in results] == [
        ("c", "pass", "on c.test"), ("a", "pass", "on a.test"), ("b", "pass", "on b.test")]
    assert all(len(r["attempts"]) == 1 and r["started"] <= r["ended"] for r in results)


def test_never_more_cases_in_flight_than_the_limit():
    lock, in_flight, most = threading.Lock(), [0], [0]

    def case(_):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.1)
        with lock:
            in_flight[0] -= 1
        return "done"
    entries = [("S1", s, t) for s in "abc" for t in "abc" if s != t]
    results = harness.run_cases(runner({"S1": case}), spec(*entries, concurrency=2))
    assert [r["status"] for r in results] == ["pass"] * 6 and most[0] == 2


def test_the_budget_starts_when_the_case_gets_its_slot():
    """Three cases of 0.3 s, one at a time, each with a 0.6 s budget: queueing eats none of it."""
    def case(_):
        time.sleep(0.3)
        return "done"
    results = harness.run_cases(runner({"C1": case}, budget=lambda c, t: 0.6),
                                spec(*[("C1", s, None) for s in "abc"], concurrency=1))
    assert [r["status"] for r in results] == ["pass"] * 3


def test_a_case_past_its_budget_is_an_error_and_its_tools_are_killed():
    seen = {}

    def case(ctx: Case):
        process = subprocess.Popen(["sleep", "30"], start_new_session=True)
        ctx.processes.add(process)
        seen["process"] = process
        process.wait()
        return "never"
    started = time.monotonic()
    [result] = harness.run_cases(runner({"C1": case}, budget=lambda c, t: 0.5), spec(("C1", "a", None)))
    assert result["status"] == "error" and "0.5s budget" in result["detail"]
    assert time.monotonic() - started < 5
    assert seen["process"].wait(5) == -9


@pytest.mark.parametrize("entry, why", [
    (("C9", "a", None), "the fake runner cannot express C9"),
    (("S1", "a", "zz"), "server 'zz' not in the spec"),
])
def test_a_case_that_cannot_run_is_an_error_with_the_reason(entry, why):
    [result] = harness.run_cases(runner({"C1": lambda _: "x", "S1": lambda _: "x"}), spec(entry))
    assert (result["status"], result["detail"], result["attempts"]) == ("error", why, [])


def test_a_fail_keeps_its_detail_and_trace():
    def case(ctx):
        ctx.trace.append("<message/> sent")
        raise CaseFailed("not delivered within 5s")
    [result] = harness.run_cases(runner({"C1": case}), spec(("C1", "a", None)))
    assert (result["status"], result["detail"], result["trace"]) == ("fail", "not delivered within 5s", "<message/> sent")


def test_a_runner_bug_is_an_error_never_a_verdict():
    [result] = harness.run_cases(runner({"C1": lambda _: {}["missing"]}), spec(("C1", "a", None)))
    assert result["status"] == "error" and result["detail"].startswith("runner error: KeyError: 'missing'")
    assert "test_harness.py line" in result["detail"]


def test_a_transient_fault_then_a_pass_is_flaky_and_says_why():
    attempts = []

    def case(_):
        attempts.append(1)
        if len(attempts) == 1:
            raise harness.login_refused("alice@a.test", "internal-server-error")
        return "delivered"
    [result] = harness.run_cases(runner({"C1": case}), spec(("C1", "a", None)))
    assert result["status"] == "flaky"
    assert [a["status"] for a in result["attempts"]] == ["transient", "pass"]
    assert result["detail"] == ("delivered; the first attempt failed: alice@a.test: login refused with "
                                "stream error internal-server-error")
    # and the host takes the harness's flaky as it is (lab/results.py checks its attempts)
    from lab.protocol import reconcile
    from lab.results import FLAKY
    [taken] = reconcile("fake", {}, [{"case": "C1", "server": "a", "target": None}], [result])
    assert taken.status == FLAKY


def test_a_transient_fault_twice_is_a_fail():
    def case(_):
        raise Transient("refused")
    [result] = harness.run_cases(runner({"C1": case}), spec(("C1", "a", None)))
    assert result["status"] == "fail" and [a["status"] for a in result["attempts"]] == ["transient"] * 2
    assert "again on the second attempt" in result["detail"]


def test_only_internal_server_error_is_a_passing_fault():
    assert isinstance(harness.login_refused("x", "internal-server-error"), Transient)
    assert isinstance(harness.login_refused("x", "host-unknown"), CaseFailed)


def test_async_case_functions_run_on_a_loop_of_their_own_and_their_close_is_awaited():
    closed = []

    class AsyncCase(Case):
        async def close(self):
            await asyncio.sleep(0)
            closed.append(self.server)

    async def case(ctx):
        await asyncio.sleep(0.05)
        return f"async on {ctx.server}"
    results = harness.run_cases(runner({"C1": case}, case_class=AsyncCase),
                                spec(("C1", "a", None), ("C1", "b", None)))
    assert [r["detail"] for r in results] == ["async on a", "async on b"] and sorted(closed) == ["a", "b"]


def test_evidence_goes_into_the_result():
    def case(ctx):
        ctx.evidence["features"] = ["urn:xmpp:ping"]
        return "ok"
    [result] = harness.run_cases(runner({"C6": case}), spec(("C6", "a", None)))
    assert result["evidence"] == {"features": ["urn:xmpp:ping"]}


# --- the one delivery check ----------------------------------------------------------------------

SENT = {"from": "alice@a.test/r1", "id": "m1", "type": "chat", "body": "hi <&>"}


def test_delivery_intact():
    assert harness.delivered("a -> b", SENT, dict(SENT), 0.012, 5) == "a -> b in 12 ms, from/id/type/body intact"


@pytest.mark.parametrize("got, says", [
    (None, "a -> b: not delivered within 5s"),
    ({**SENT, "type": "error", "error": "service-unavailable"}, "a -> b: came back as an error: service-unavailable"),
    ({**SENT, "from": "alice@a.test/other"},
     "a -> b: arrived altered: from 'alice@a.test/other' instead of 'alice@a.test/r1'"),
    ({**SENT, "id": None}, "a -> b: arrived altered: id None instead of 'm1'"),
    ({**SENT, "body": "hi"}, "a -> b: arrived altered: body 'hi' instead of 'hi <&>'"),
])
def test_delivery_not_intact_fails_and_says_how(got, says):
    with pytest.raises(CaseFailed) as failure:
        harness.delivered("a -> b", SENT, got, 0.01, 5)
    assert str(failure.value) == says


def test_delivery_by_a_tool_that_picks_its_resource_and_id():
    sent = {"from": None, "from_bare": "alice@a.test", "id": None, "type": "chat", "body": "hi"}
    got = {"from": "alice@a.test/gosendxmpp.1", "id": "x", "type": "chat", "body": "hi"}
    assert harness.delivered("a -> b", sent, got, 1.5, 5) == "a -> b in 1500 ms, from/type/body intact (no id set by the tool)"
    with pytest.raises(CaseFailed, match="instead of a full JID of alice@a.test"):
        harness.delivered("a -> b", sent, {**got, "from": "alice@a.test"}, 1.5, 5)


# --- a runner process: main() and isolated groups ------------------------------------------------

FAKE_RUNNER = """
import os, sys
sys.path.insert(0, {runners!r})
from harness import CaseFailed, Runner, main

def c1(case):
    if case.server == "b":
        os._exit(3)  # the group's process dies: its cases must still get a result
    return f"pid {{os.getpid()}}"

main(Runner("fake", {{"C1": c1}}, isolate_groups={isolate}))
"""


def run_fake(tmp_path, isolate, the_spec):
    script = tmp_path / "fake_runner.py"
    script.write_text(FAKE_RUNNER.format(runners=str(RUNNERS), isolate=isolate))
    done = subprocess.run([sys.executable, str(script), "cases", json.dumps(the_spec)],
                          capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_isolated_groups_run_in_processes_of_their_own_and_a_dead_one_is_an_error(tmp_path):
    results = run_fake(tmp_path, True, spec(("C1", "a", None), ("C1", "b", None), ("C1", "c", None)))
    assert [r["status"] for r in results] == ["pass", "error", "pass"]
    assert results[0]["detail"] != results[2]["detail"]  # two processes
    assert results[1]["detail"].startswith("the group's runner process failed (exit 3)")


# --- the retry's other ends, and the isolated group's watchdog -------------------------------------

def test_a_transient_fault_then_a_fail_is_that_fail_and_names_the_first():
    attempts = []

    def case(_):
        attempts.append(1)
        if len(attempts) == 1:
            raise Transient("alice@a.test: login refused with stream error internal-server-error")
        raise CaseFailed("not delivered within 5s")
    [result] = harness.run_cases(runner({"C1": case}), spec(("C1", "a", None)))
    assert result["status"] == "fail"
    assert [a["status"] for a in result["attempts"]] == ["transient", "fail"]
    assert result["detail"] == ("not delivered within 5s (second attempt; the first failed: alice@a.test: login "
                                "refused with stream error internal-server-error)")


def test_a_transient_fault_then_a_case_past_its_budget_is_an_error_and_names_the_first():
    attempts = []

    def case(_):
        attempts.append(1)
        if len(attempts) == 1:
            raise Transient("refused with internal-server-error")
        time.sleep(5)
        return "too late"
    [result] = harness.run_cases(runner({"C1": case}, budget=lambda c, t: 0.3), spec(("C1", "a", None)))
    assert result["status"] == "error"
    assert [a["status"] for a in result["attempts"]] == ["transient", "error"]
    assert result["detail"].startswith("the case was still running at the end of its 0.3s budget")
    assert result["detail"].endswith("(second attempt; the first failed: refused with internal-server-error)")


HANGING_GROUP = """
import os, subprocess, sys
child = subprocess.Popen(["sleep", "300"])  # a tool the group started: must die with it
open({pid_file!r}, "w").write(str(child.pid))
child.wait()
"""


def test_an_isolated_group_past_its_limit_is_killed_with_its_tools_and_its_cases_are_errors(tmp_path, monkeypatch):
    script, pid_file = tmp_path / "hanging_runner.py", tmp_path / "pid"
    script.write_text(HANGING_GROUP.format(pid_file=str(pid_file)))
    monkeypatch.setattr(sys, "argv", [str(script)])
    monkeypatch.setattr(harness, "ISOLATED_MARGIN", 1.0)
    the_spec = spec(("C1", "a", None), ("C2", "a", None))
    started = time.monotonic()
    results = harness.run_isolated(runner({"C1": None, "C2": None}, budget=lambda c, t: 0.25), the_spec,
                                   the_spec["cases"])
    assert time.monotonic() - started < 10
    assert [(r["case"], r["status"], r["detail"]) for r in results] == [
        (case, "error", "the group's runner process was killed after 2s") for case in ("C1", "C2")]
    pid = int(pid_file.read_text())
    for _ in range(50):  # the killed sleep is reaped by init: wait until it is gone
        if not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text():
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the group's tool (pid {pid}) still runs")


def test_what_the_runner_could_not_observe_is_an_error_with_its_reason_not_a_runner_bug():
    def case(_):
        raise harness.NotObserved("xmppc did not finish within 20s")
    [result] = harness.run_cases(runner({"C1": case}), spec(("C1", "a", None)))
    assert (result["status"], result["detail"]) == ("error", "xmppc did not finish within 20s")
