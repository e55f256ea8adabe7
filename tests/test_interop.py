"""The interop run's pure parts: planning, checking runner output against the plan, and the
verdicts the lab judges itself (S8, S9/S10, C6), on logs captured from real containers
(tests/fixtures/interop/capture.sh says how)."""

import dataclasses
import json
from pathlib import Path

import pytest

from lab import model
from lab.cases import builtin, by_id
from lab.cases.auth import OBSERVER, judge_auth
from lab.cases.c2s import judge_features
from lab.cases.dns import judge_lookup
from lab.evidence import dns_queries, log_lines, server_side
from lab.interop import plan
from lab.servers import common_auth

BY_ID = by_id(builtin())
from lab.protocol import reconcile
from lab.results import ERROR, FAIL, FLAKY, NOT_SUPPORTED, PASS, CaseResult
from lab.stacks import stacks

FIXTURES = Path(__file__).parent / "fixtures" / "interop"
CAPTURED = {r["id"]: r for r in json.loads((FIXTURES / "results.json").read_text())["results"]}


@pytest.fixture
def servers(default_lab):
    return {s.name: s for s in default_lab.servers}


def exchange_of(result_id: str) -> CaseResult:
    """The exchange behind a captured S8 verdict, as the runner reported it (a pass)."""
    r = CAPTURED[result_id]
    return CaseResult("S8", r["title"], "slixmpp", r["server"], r["target"], PASS, "delivered",
                      started=r["started"], ended=r["ended"])


def captured_log(name: str):
    return log_lines((FIXTURES / f"{name}.log").read_text())


# --- planning -----------------------------------------------------------------------------------

def test_plan_says_why_a_case_is_not_run(default_lab, servers):
    pairs = [(a, b) for a in default_lab.servers for b in default_lab.servers if a is not b]
    planned, skipped = plan(stacks()["xmppc"], [BY_ID["C1"], BY_ID["C3"], BY_ID["S1"], BY_ID["S6"]],
                            list(default_lab.servers), pairs)
    assert {(p["case"], p["server"], p["target"]) for p in planned} == (
        {("C1", s, None) for s in servers} | {("S1", a.name, b.name) for a, b in pairs})
    # C3: the stack cannot express it; S6: not expressed either, and s2s cells are the servers' business
    assert {(r.case, r.reason) for r in skipped} == {("C3", "stack")}
    planned, skipped = plan(stacks()["slixmpp"], [BY_ID["C9"], BY_ID["S7"]], list(default_lab.servers), pairs)
    assert {(r.case, r.server, r.target, r.reason) for r in skipped} == {
        ("C9", "jabberd2", None, "server"), ("S7", "prosody", "jabberd2", "server"),
        ("S7", "ejabberd", "jabberd2", "server")}
    assert all(r.status == NOT_SUPPORTED for r in skipped)


def test_a_stack_paired_with_another_runs_each_s2s_case_once_per_pair_of_ends(default_lab):
    """libervia (pairs_with slixmpp): J1 per server pair with libervia at both ends, then
    libervia->slixmpp and slixmpp->libervia; the pair names the result's stack. F6 (the
    IPv6-only variant) is not supported (stack) for it: it resolves IPv4 only."""
    libervia = stacks()["libervia"]
    a, b = default_lab.servers[:2]
    planned, skipped = plan(libervia, [BY_ID["J1"], BY_ID["F6"]], [a, b], [(a, b)])
    assert [p.get("ends") for p in planned] == [None, "libervia->slixmpp", "slixmpp->libervia"]
    assert {(r.case, r.reason) for r in skipped} == {("F6", "stack")}
    assert all("resolves IPv4 only" in r.detail for r in skipped)
    reported = [{**p, "status": "pass", "detail": "ok"} for p in planned]
    ids = [r.id for r in reconcile("libervia", {"J1": "J1"}, planned, reported)]
    assert ids == [f"J1/{ends}/{a.name}->{b.name}" for ends in ("libervia", "libervia->slixmpp", "slixmpp->libervia")]


def test_the_ends_a_paired_stacks_runner_does_not_play_are_not_supported_with_the_reason(default_lab):
    """libervia's NOT_RUN: J2 not at both of its ends (its two profiles in one container would take
    each other's direct SOCKS5 candidate), J6 only slixmpp->libervia; each end left out is not
    supported (stack), the result named by its ends, with the reason; the others are planned."""
    libervia = stacks()["libervia"]
    a, b = default_lab.servers[:2]
    planned, skipped = plan(libervia, [BY_ID["J2"], BY_ID["J6"]], [a, b], [(a, b)])
    assert [(p["case"], p.get("ends")) for p in planned] == [("J2", "libervia->slixmpp"), ("J2", "slixmpp->libervia"),
                                                             ("J6", "slixmpp->libervia")]
    assert [(r.case, r.stack, r.reason) for r in skipped] == [("J2", "libervia", "stack"), ("J6", "libervia", "stack"),
                                                              ("J6", "libervia->slixmpp", "stack")]
    assert skipped[0].detail.startswith("the libervia runner does not run J2 with libervia at both ends: its two "
                                        "profiles share")
    assert skipped[2].detail.startswith("the libervia runner does not run J6 libervia->slixmpp: libervia cannot be told")


# --- runner output against the plan ------------------------------------------------------------

PLANNED = [{"case": "C1", "server": "p", "target": None}, {"case": "S1", "server": "p", "target": "e"}]
TITLES = {"C1": "connect", "S1": "message both ways"}


def test_a_missing_result_is_an_error():
    results = reconcile("x", TITLES, PLANNED, [{"case": "C1", "server": "p", "target": None, "status": "pass"}])
    assert [(r.case, r.status) for r in results] == [("C1", PASS), ("S1", ERROR)]
    assert "no result" in results[1].detail


def test_an_unknown_status_is_an_error_not_a_pass():
    results = reconcile("x", TITLES, PLANNED[:1], [{"case": "C1", "server": "p", "target": None, "status": "ok"}])
    assert results[0].status == ERROR and "unknown status 'ok'" in results[0].detail
    # "not supported" is the lab's call from data, never a runner's
    results = reconcile("x", TITLES, PLANNED[:1],
                        [{"case": "C1", "server": "p", "target": None, "status": "not supported"}])
    assert results[0].status == ERROR


def test_an_unasked_or_repeated_result_is_an_error_too():
    entry = {"case": "C1", "server": "p", "target": None, "status": "pass"}
    results = reconcile("x", TITLES, PLANNED[:1], [entry, entry, {**entry, "server": "q"}])
    assert [r.status for r in results] == [PASS, ERROR, ERROR]


def test_no_list_at_all_makes_every_planned_case_an_error():
    assert [r.status for r in reconcile("x", TITLES, PLANNED, {"oops": 1})] == [ERROR, ERROR]


def test_flaky_stays_flaky_with_its_attempts():
    # What the harness makes: a transient first attempt, then a pass.
    attempts = [{"status": "transient", "detail": "login refused with stream error internal-server-error"},
                {"status": "pass", "detail": "delivered"}]
    results = reconcile("x", TITLES, PLANNED[:1], [{"case": "C1", "server": "p", "target": None,
                                                   "status": "flaky", "attempts": attempts}])
    assert results[0].status == FLAKY and results[0].attempts == tuple(attempts)


@pytest.mark.parametrize("attempts, why", [
    ([{"status": "fail", "detail": "not delivered"}, {"status": "pass", "detail": "delivered"}],
     "its first attempt was 'fail', not transient"),
    ([{"status": "pass", "detail": "delivered"}], "it has 1 attempt, not 2"),
    ([], "it has 0 attempts, not 2"),
    ([{"status": "transient", "detail": "refused"}, {"status": "fail", "detail": "refused"}],
     "its last attempt was 'fail', not pass"),
])
def test_a_flaky_the_harness_cannot_make_is_an_error_with_the_reason(attempts, why):
    results = reconcile("x", TITLES, PLANNED[:1], [{"case": "C1", "server": "p", "target": None, "status": "flaky",
                                                   "detail": "passed", "attempts": attempts}])
    assert results[0].status == ERROR
    assert results[0].detail == f"the runner reported flaky, but {why}: passed"


# --- S8: the receiver's log of this run --------------------------------------------------------

def test_expected_auth_is_the_strongest_both_declare(servers):
    def expected_auth(sender, receiver):
        return common_auth(sender.kind, receiver.kind)
    assert expected_auth(servers["prosody"], servers["ejabberd"]) == "certificate"
    assert expected_auth(servers["prosody"], servers["jabberd2"]) == "dialback"
    assert expected_auth(servers["jabberd2"], servers["ejabberd"]) == "dialback"


@pytest.mark.parametrize("sender,receiver,method", [
    ("prosody", "ejabberd", "certificate"), ("ejabberd", "prosody", "certificate"),
    ("jabberd2", "prosody", "dialback"), ("jabberd2", "ejabberd", "dialback"),
    ("prosody", "jabberd2", "dialback"), ("ejabberd", "jabberd2", "dialback")])
def test_s8_reads_the_method_from_the_captured_log(servers, sender, receiver, method):
    result_id = f"S8/observed/{sender}->{receiver}"
    since = CAPTURED[result_id]["evidence"]["since"]
    verdict = judge_auth(exchange_of(result_id), servers[sender], servers[receiver], captured_log(receiver), since)
    assert (verdict.status, verdict.evidence["auth"], verdict.stack) == (PASS, method, OBSERVER)
    assert all(line in (FIXTURES / f"{receiver}.log").read_text() for line in verdict.evidence["log"].splitlines())


def test_s8_a_method_stronger_than_both_declare_is_an_unexpected_method_fail(servers):
    """jabberd2 declares dialback alone; a receiver's log showing it authenticated by
    certificate is not what the kinds say: a fail that says so (not a downgrade). The log is
    the captured Prosody one without its jabberd2 lines, with jabberd2.test put in place of
    ejabberd.test."""
    exchange = dataclasses.replace(exchange_of("S8/observed/ejabberd->prosody"), server="jabberd2")
    lines = [(when, line.replace("ejabberd.test", "jabberd2.test")) for when, line in captured_log("prosody")
             if "jabberd2.test" not in line]
    since = CAPTURED["S8/observed/ejabberd->prosody"]["evidence"]["since"]
    verdict = judge_auth(exchange, servers["jabberd2"], servers["prosody"], lines, since)
    assert verdict.status == FAIL
    assert verdict.detail.startswith("unexpected method: certificate where both kinds declare dialback; prosody "
                                     "logged: ")
    assert verdict.evidence["auth"] == "certificate"


def test_s8_sees_nothing_outside_the_window_and_says_so(servers):
    exchange = exchange_of("S8/observed/ejabberd->prosody")
    # A window that starts after the exchange: the authentication is not this run's evidence.
    verdict = judge_auth(exchange, servers["ejabberd"], servers["prosody"], captured_log("prosody"),
                         since=exchange.ended + 1)
    assert verdict.status == ERROR and "shows no authentication of ejabberd.test" in verdict.detail


def test_s8_calls_dialback_between_certificate_kinds_a_downgrade(servers):
    # jabberd2.test really authenticated by dialback; were it a kind that declares
    # certificates, that would be a downgrade.
    pretend = dataclasses.replace(servers["jabberd2"], kind=servers["prosody"].kind)
    result_id = "S8/observed/jabberd2->ejabberd"
    verdict = judge_auth(exchange_of(result_id), pretend, servers["ejabberd"], captured_log("ejabberd"),
                         CAPTURED[result_id]["evidence"]["since"])
    assert verdict.status == FAIL and verdict.detail.startswith("downgraded: dialback where both kinds declare "
                                                                "certificate")


def test_s8_without_a_delivery_is_not_a_pass(servers):
    failed = dataclasses.replace(exchange_of("S8/observed/prosody->ejabberd"), status=FAIL, detail="timed out")
    verdict = judge_auth(failed, servers["prosody"], servers["ejabberd"], captured_log("ejabberd"), 0)
    assert verdict.status == FAIL and "no federation to observe" in verdict.detail


def test_log_lines_keep_the_docker_timestamp():
    (when, line), = log_lines("2026-11-24T14:18:17.403102922Z s2sin55 info Incoming s2s connection a->b complete\n")
    assert line.startswith("s2sin55") and abs(when - 1795529897.403103) < 1e-3


# --- S9/S10: the lab DNS's query log ----------------------------------------------------------

def captured_delivery(result_id: str) -> CaseResult:
    r = CAPTURED[result_id]
    return CaseResult(r["case"], r["title"], "slixmpp", r["server"], r["target"], PASS, "delivered",
                      started=r["started"], ended=r["ended"])


@pytest.mark.parametrize("variant,sender,receiver", [
    ("S9", "prosody", "ejabberd"), ("S9", "jabberd2", "prosody"), ("S9", "ejabberd", "jabberd2"),
    ("S10", "prosody", "ejabberd"), ("S10", "jabberd2", "prosody"), ("S10", "ejabberd", "jabberd2")])
def test_s9_s10_pass_on_the_lookups_the_dns_saw(servers, variant, sender, receiver):
    result_id = f"{variant}/slixmpp/{sender}->{receiver}"
    since = CAPTURED[result_id]["evidence"]["since"]
    queries = dns_queries((FIXTURES / "dns.log").read_text())
    host = f"xmpp.{receiver}.test" if variant == "S9" else f"{receiver}.test"
    verdict = judge_lookup(captured_delivery(result_id), servers[sender], servers[receiver], host, queries, since)
    assert verdict.status == PASS, verdict.detail
    srv, address = verdict.evidence["dns"]
    assert srv["name"] == f"_xmpp-server._tcp.{receiver}.test." and srv["client"] == servers[sender].address
    assert address["name"] == (f"xmpp.{receiver}.test." if variant == "S9" else f"{receiver}.test.")


def test_s9_without_a_lookup_in_the_case_is_an_error(servers):
    result_id = "S9/slixmpp/prosody->ejabberd"
    queries = dns_queries((FIXTURES / "dns.log").read_text())
    # The same delivery, judged against another sender's address: nothing was asked from there.
    elsewhere = dataclasses.replace(servers["prosody"], address="10.0.0.99")
    verdict = judge_lookup(captured_delivery(result_id), elsewhere, servers["ejabberd"], "xmpp.ejabberd.test", queries,
                           CAPTURED[result_id]["evidence"]["since"])
    assert verdict.status == ERROR and "saw no query" in verdict.detail


def test_s9_quotes_the_lookup_that_returned_an_address(servers):
    # Seen once: Prosody asked AAAA (no answer) 0.6 ms before A. Only the A answer leads on.
    since = 100.0
    queries = [{"time": 101.0, "client": servers["prosody"].address, "name": "_xmpp-server._tcp.jabberd2.test.",
                "type": "SRV", "rcode": "NOERROR", "answers": ["0 5 5269 xmpp.jabberd2.test."]},
               {"time": 101.1, "client": servers["prosody"].address, "name": "xmpp.jabberd2.test.", "type": "AAAA",
                "rcode": "NOERROR", "answers": []},
               {"time": 101.1006, "client": servers["prosody"].address, "name": "xmpp.jabberd2.test.", "type": "A",
                "rcode": "NOERROR", "answers": [servers["jabberd2"].address]}]
    delivery = CaseResult("S9", "t", "slixmpp", "prosody", "jabberd2", PASS, "delivered", started=100.5, ended=102)
    verdict = judge_lookup(delivery, servers["prosody"], servers["jabberd2"], "xmpp.jabberd2.test", queries, since)
    assert verdict.status == PASS and verdict.evidence["dns"][1]["type"] == "A"
    verdict = judge_lookup(delivery, servers["prosody"], servers["jabberd2"], "xmpp.jabberd2.test", queries[:2], since)
    assert verdict.status == ERROR


def test_dns_log_skips_lines_that_are_not_queries():
    assert dns_queries('lab DNS serving /etc/zone.json\n{"time": 1, "client": "a", "name": "x.", "type": "A"}\n'
                       '{"time": 2, "cli') == [{"time": 1, "client": "a", "name": "x.", "type": "A"}]


# --- C6: advertised against declared ----------------------------------------------------------

# C6 on the default lab at trixie, the TURN service on (fixtures/c6/capture.sh).
C6_CAPTURED = {r["id"]: r for r in json.loads((FIXTURES.parent / "c6" / "results.json").read_text())["results"]}


def c6(server: str) -> CaseResult:
    r = C6_CAPTURED[f"C6/slixmpp/{server}"]
    return CaseResult("C6", r["title"], "slixmpp", server, None, PASS, "answered", evidence=r["evidence"])


def test_c6_passes_when_every_declared_feature_is_advertised(servers):
    assert judge_features(c6("prosody"), servers["prosody"]).status == PASS
    assert judge_features(c6("ejabberd"), servers["ejabberd"]).status == PASS


def test_c6_fails_on_a_declared_feature_that_is_not_advertised(servers):
    # Real: jabberd2 2.7.0 offers in-band registration (C11 passes) but its disco#info has no
    # jabber:iq:register, which XEP-0077 section 9 requires.
    verdict = judge_features(c6("jabberd2"), servers["jabberd2"])
    assert verdict.status == FAIL and "register (jabber:iq:register)" in verdict.detail


def test_c6_fails_when_a_server_does_not_advertise_what_its_kind_declares_for_compliance(servers):
    """The compliance features with a disco#info var: a server whose advertised list lacks one
    (what a Prosody without mod_blocking, mod_vcard or its TURN discovery would answer) fails."""
    for var, feature in [("urn:xmpp:blocking", "blocking"), ("vcard-temp", "vcard"),
                         ("urn:xmpp:extdisco:2", "external-services")]:
        result = c6("prosody")
        less = dataclasses.replace(result, evidence={**result.evidence, "features": [
            f for f in result.evidence["features"] if f != var]})
        verdict = judge_features(less, servers["prosody"])
        assert verdict.status == FAIL and f"{feature} ({var}) in disco#info" in verdict.detail, verdict.detail


def test_c6_without_advertised_features_cannot_pass(servers):
    bare = dataclasses.replace(c6("prosody"), evidence={})
    assert judge_features(bare, servers["prosody"]).status == ERROR


def test_test_concurrency_comes_from_lab_yml(tmp_path):
    (tmp_path / "lab.yml").write_text("test: {concurrency: 3}\nservers:\n  p: {kind: prosody, domain: p.test}\n")
    assert model.load(tmp_path / "lab.yml").test_concurrency == 3


# --- the servers' side of a failed s2s case -----------------------------------------------------

PAIR = Path(__file__).parent / "fixtures" / "jabberd2-pair"  # capture.sh there says how


@pytest.fixture
def jabberd2_pair(tmp_path):
    """The two-jabberd2 lab of the capture (same name, so the same addresses)."""
    path = tmp_path / "lab.yml"
    path.write_text("name: jabberd2pair\nclients: [slixmpp]\nservers:\n"
                    "  j1: {kind: jabberd2, domain: j1.test}\n  j2: {kind: jabberd2, domain: j2.test}\n")
    return {s.name: s for s in model.load(path).servers}


def pair_result(result_id: str) -> CaseResult:
    r = next(r for r in json.loads((PAIR / "results.json").read_text())["results"] if r["id"] == result_id)
    client_side = r["detail"].split("; the servers logged:")[0]
    return CaseResult(r["case"], r["title"], "slixmpp", r["server"], r["target"], r["status"], client_side,
                      started=r["started"], ended=r["ended"])


def test_a_failed_s2s_case_gets_what_its_servers_logged_about_each_other(jabberd2_pair):
    # Real: jabberd2 2.7.0 with OpenSSL 3 calls OBJ_create for every peer certificate
    # (sx/ssl.c); the "oid exists" it leaves queued makes a later SSL read fatal, and the
    # s2s stream carrying the disco#info result breaks.
    logs = {name: log_lines((PAIR / f"{name}.log").read_text()) for name in ("j1", "j2")}
    result = server_side(pair_result("S5/slixmpp/j2->j1"), jabberd2_pair["j2"], jabberd2_pair["j1"], logs)
    assert result.status == FAIL
    assert "the servers logged: j2: s2s:" in result.detail
    assert "SSL handshake error (error:04000066:object identifier routines::oid exists)" in result.detail
    assert all(jabberd2_pair["j1"].address in line or "j1.test" in line
               for line in result.evidence["server_log"] if line.startswith("j2:"))


def test_the_servers_side_is_only_what_they_logged_during_the_case(jabberd2_pair):
    logs = {name: log_lines((PAIR / f"{name}.log").read_text()) for name in ("j1", "j2")}
    failed = pair_result("S5/slixmpp/j2->j1")
    before = dataclasses.replace(failed, started=failed.started - 3600, ended=failed.started - 3500)
    assert server_side(before, jabberd2_pair["j2"], jabberd2_pair["j1"], logs) == before


def test_log_lines_drop_colour_codes():
    # ejabberd 26.07 (Debian sid) colours its console log.
    text = ("2026-11-24T23:10:49.725738000Z 2026-11-24 23:10:49.725738+00:00 \x1b[1;49;95m\x1b[1;49;93m[warning] "
            "\x1b[0;49;95m\x1b[0;49;93mFailed to establish outbound s2s connection\x1b[0m")
    [(when, line)] = log_lines(text)
    assert line == "2026-11-24 23:10:49.725738+00:00 [warning] Failed to establish outbound s2s connection"


def test_c6_fails_on_a_declared_stream_feature_that_is_not_offered(servers):
    # ejabberd 24.12 declares SASL2 at trixie; its captured stream features offer it. Without it: a fail.
    captured = c6("ejabberd")
    assert "urn:xmpp:sasl:2" in captured.evidence["stream_namespaces"]
    stripped = dataclasses.replace(captured, evidence={**captured.evidence, "stream_namespaces": [
        n for n in captured.evidence["stream_namespaces"] if n != "urn:xmpp:sasl:2"]})
    verdict = judge_features(stripped, servers["ejabberd"])
    assert verdict.status == FAIL and "sasl2 (urn:xmpp:sasl:2) in the stream features" in verdict.detail


def test_a_phase_may_set_the_runners_concurrency_itself(default_lab):
    """F8 runs every pair at once: its spec's concurrency is its own, not the lab's."""
    from lab.interop import Interop

    class Engine:
        def info(self):
            return {"NCPU": 2}

    class Local:
        client = Engine()

        def placed(self, lab):
            return lab
    interop = Interop(default_lab, Local())
    assert interop.spec(default_lab.primary)["concurrency"] == 4
    assert interop.spec(default_lab.primary, concurrency=6, outage={"down_at": 1})["concurrency"] == 6
