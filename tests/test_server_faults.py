"""Faults F3a-e, F4, F5 (the fault on B: its certificate, or s2s TLS off), without Docker:
what each sender's configured policy makes right, how one message's fate is read, and when
the lab refuses to judge because the fault was not in place."""

import base64
import json
from pathlib import Path

import pytest

from lab import ca, model
from lab.cases import builtin
from lab.cases.server_faults import describe_offer, expected_outcomes, fate_of, fault_in_place, judge_server_fault
from lab.evidence import log_lines
from lab.results import ERROR, FAIL, PASS, CaseResult

FAULT = {case.id: case.phase for case in builtin() if case.group == "server"}  # each fault's setup


def variant(fault: str, authority, names, other):
    return FAULT[fault].certificate(authority, names, other)


@pytest.fixture(scope="module")
def lab():
    return model.load(model.DEFAULT_LAB)


def test_expected_outcomes_follow_the_senders_policy(lab):
    prosody, ejabberd, jabberd2 = (lab.server(n) for n in ("prosody", "ejabberd", "jabberd2"))
    # Both do certificates: a bad one is refused; dialback only for a dialback-only peer.
    assert expected_outcomes(FAULT["F3c"], prosody, ejabberd) == {"refused"}
    assert expected_outcomes(FAULT["F3c"], prosody, jabberd2) == {"refused", "fell back to dialback"}
    assert expected_outcomes(FAULT["F3a"], jabberd2, prosody) == {"refused", "fell back to dialback"}
    assert expected_outcomes(FAULT["F4"], ejabberd, prosody) == {"accepted"}
    assert expected_outcomes(FAULT["F4"], jabberd2, ejabberd) == {"accepted", "fell back to dialback"}
    assert expected_outcomes(FAULT["F5"], prosody, jabberd2) == {"refused"}


def test_a_message_fate_is_read_with_the_receivers_log(lab):
    prosody, ejabberd = lab.server("prosody"), lab.server("ejabberd")
    log = ("prosody.test:saslauth        info\tAccepting SASL EXTERNAL identity from ejabberd.test\n"
           "s2sin55ffd8aff090            info\tIncoming s2s connection ejabberd.test->prosody.test complete")
    outcome, short, _ = fate_of({"outcome": "delivered", "ms": 62}, ejabberd, prosody, log, FAULT["F4"])
    assert (outcome, short) == ("accepted", "accepted, delivered after 62 ms")
    dialback = "[info] Accepted inbound s2s dialback authentication prosody.test -> ejabberd.test"
    assert fate_of({"outcome": "delivered", "ms": 86}, prosody, ejabberd, dialback, FAULT["F4"])[0] == "fell back to dialback"
    assert fate_of({"outcome": "delivered", "ms": 86}, prosody, ejabberd, "", FAULT["F4"])[0] == "unknown"
    refused = {"outcome": "refused", "condition": "remote-server-timeout", "ms": 54, "detail": "x"}
    assert fate_of(refused, prosody, ejabberd, "", FAULT["F3c"])[:2] == ("refused", "refused: remote-server-timeout after 54 ms")
    assert fate_of({"outcome": "none", "seconds": 10.5}, prosody, ejabberd, "", FAULT["F3c"])[:2] == (
        "none", "no answer within 10.5 s")
    assert fate_of({"outcome": "delivered", "ms": 5}, prosody, ejabberd, "", FAULT["F5"])[0] == "delivered in plaintext"


def offer_of(issued: ca.Issued) -> dict:
    der = issued.cert.public_bytes(ca.serialization.Encoding.DER)
    return {"starttls": True, "certificate": base64.b64encode(der).decode(), "error": None}


def test_the_fault_must_be_seen_on_bs_port_before_anything_is_judged(lab):
    authority = ca.create_ca("t")
    faulty, _ = variant("F3b", authority, ["prosody.test"], ["ejabberd.test"])
    good = ca.issue(authority, ["prosody.test"])
    der = faulty.cert.public_bytes(ca.serialization.Encoding.DER)
    assert fault_in_place(FAULT["F3b"], offer_of(faulty), der) is None
    assert "another certificate" in fault_in_place(FAULT["F3b"], offer_of(good), der)
    assert "could not be looked at" in fault_in_place(FAULT["F3b"], {"error": "refused"}, der)
    assert fault_in_place(FAULT["F5"], {"starttls": False, "certificate": None, "error": None}, None) is None
    assert "still offers STARTTLS" in fault_in_place(FAULT["F5"], offer_of(good), None)
    assert describe_offer(offer_of(variant("F4", authority, ["p.test"], ["e.test"])[0])).endswith("EKU serverAuth")
    assert "EKU serverAuth+clientAuth" in describe_offer(offer_of(good))
    assert "serverAuth" in describe_offer(offer_of(variant("F4", authority, ["p.test"], ["e.test"])[0]))
    assert describe_offer(offer_of(faulty)).startswith("a certificate for prosody.test issued by CN=xmpp interop lab CA (t)")


def runner_said(there: dict, back: dict, started: float = 100.0) -> CaseResult:
    return CaseResult("F3c", "t", "slixmpp", "prosody", "ejabberd", PASS, "as the runner said",
                      evidence={"there": there, "back": back}, started=started, ended=started + 1)


def test_judged_both_ways_and_never_when_the_fault_was_not_in_place(lab):
    prosody, ejabberd = lab.server("prosody"), lab.server("ejabberd")
    refused = {"outcome": "refused", "condition": "remote-server-timeout", "ms": 30, "detail": "x"}
    verdict = judge_server_fault(runner_said(refused, refused), prosody, ejabberd, FAULT["F3c"], None, {}, "a certificate")
    assert verdict.status == PASS
    assert verdict.evidence["observed"] == ("A->B refused: remote-server-timeout after 30 ms; "
                                            "B->A refused: remote-server-timeout after 30 ms")
    assert verdict.evidence["expected"].startswith("both ways refused (RFC 6120")
    silent = judge_server_fault(runner_said(refused, {"outcome": "none", "seconds": 10.5}), prosody, ejabberd,
                                FAULT["F3c"], None, {}, "a certificate")
    assert silent.status == FAIL and "B->A no answer within 10.5 s" in silent.detail
    logs = {"ejabberd": [(100.2, "[info] Accepted inbound s2s EXTERNAL authentication prosody.test -> ejabberd.test")]}
    accepted = judge_server_fault(runner_said({"outcome": "delivered", "ms": 40}, refused), prosody, ejabberd,
                                  FAULT["F3c"], None, logs, "a certificate")
    assert accepted.status == FAIL and accepted.evidence["observed"].startswith("A->B accepted")
    late = {"ejabberd": [(105.0, logs["ejabberd"][0][1])]}  # logged after the case: not this exchange's
    assert judge_server_fault(runner_said({"outcome": "delivered", "ms": 40}, refused), prosody, ejabberd,
                              FAULT["F3c"], None, late, "a certificate").status == ERROR
    assert judge_server_fault(runner_said(refused, refused), prosody, ejabberd, FAULT["F3c"], "B presented no certificate",
                              {}, "").status == ERROR


# --- on a real run (tests/fixtures/server-faults/capture.sh) ------------------------------------

FIXTURES = Path(__file__).parent / "fixtures" / "server-faults"
CAPTURED = {r["id"]: r for r in json.loads((FIXTURES / "results.json").read_text())["results"]}
LOGS = {name: log_lines((FIXTURES / f"{name}.log").read_text()) for name in ("prosody", "ejabberd", "jabberd2")}


def as_the_runner_said(result_id: str) -> CaseResult:
    r = CAPTURED[result_id]
    return CaseResult(r["case"], r["title"], "slixmpp", r["server"], r["target"], PASS, "as the runner said",
                      evidence={"there": r["evidence"]["there"], "back": r["evidence"]["back"]},
                      started=r["started"], ended=r["ended"])


# What the lab must make of each captured exchange, written here with the reason (never read
# from the statuses saved in the capture): (status, A->B fate, B->A fate, why).
REFUSED, DIALBACK, ACCEPTED, NO_ANSWER = "refused", "fell back to dialback", "accepted", "no answer"
EXPECTED = {
    "F3c/slixmpp/prosody->ejabberd": (PASS, REFUSED, REFUSED, "both want a verified certificate from the other"),
    "F3c/slixmpp/prosody->jabberd2": (PASS, DIALBACK, DIALBACK, "dialback is allowed for jabberd2, both ways"),
    "F3c/slixmpp/ejabberd->prosody": (PASS, REFUSED, REFUSED, "both want a verified certificate from the other"),
    "F3c/slixmpp/ejabberd->jabberd2": (PASS, DIALBACK, DIALBACK, "dialback is allowed for jabberd2, both ways"),
    "F3c/slixmpp/jabberd2->prosody": (FAIL, NO_ANSWER, REFUSED,
                                      "jabberd2 keeps a message to a server it cannot verify: no error comes back"),
    "F3c/slixmpp/jabberd2->ejabberd": (FAIL, NO_ANSWER, REFUSED, "the same finding on jabberd2 -> ejabberd"),
    "F4/slixmpp/prosody->ejabberd": (PASS, ACCEPTED, ACCEPTED, "a serverAuth-only certificate is a good certificate"),
    "F4/slixmpp/prosody->jabberd2": (PASS, DIALBACK, DIALBACK, "jabberd2 does dialback only, which is allowed"),
    "F4/slixmpp/ejabberd->prosody": (FAIL, ACCEPTED, DIALBACK,
                                     "ejabberd refuses a serverAuth-only certificate for SASL EXTERNAL and takes "
                                     "dialback instead (ejabberd issue 4392), where Prosody wants a certificate"),
    "F4/slixmpp/ejabberd->jabberd2": (PASS, DIALBACK, DIALBACK, "jabberd2 does dialback only, which is allowed"),
    "F4/slixmpp/jabberd2->prosody": (FAIL, NO_ANSWER, REFUSED,
                                     "jabberd2 neither delivers nor answers, and Prosody refuses jabberd2's way "
                                     "back, where dialback is allowed"),
    "F4/slixmpp/jabberd2->ejabberd": (FAIL, REFUSED, REFUSED,
                                      "refused both ways where dialback with jabberd2 is allowed"),
    "F5/slixmpp/prosody->ejabberd": (PASS, REFUSED, REFUSED, "both require TLS: nothing goes in plaintext"),
    "F5/slixmpp/prosody->jabberd2": (FAIL, NO_ANSWER, NO_ANSWER,
                                     "the senders' users get no error for a message that cannot go"),
    "F5/slixmpp/ejabberd->prosody": (PASS, REFUSED, REFUSED, "both require TLS: nothing goes in plaintext"),
    "F5/slixmpp/ejabberd->jabberd2": (PASS, REFUSED, REFUSED, "both require TLS: nothing goes in plaintext"),
    "F5/slixmpp/jabberd2->prosody": (FAIL, NO_ANSWER, NO_ANSWER,
                                     "the senders' users get no error for a message that cannot go"),
    "F5/slixmpp/jabberd2->ejabberd": (FAIL, NO_ANSWER, NO_ANSWER,
                                      "the senders' users get no error for a message that cannot go"),
}


def test_every_captured_fault_has_an_expectation():
    assert set(EXPECTED) == {i for i in CAPTURED if i.startswith("F")}


@pytest.mark.parametrize("result_id", sorted(EXPECTED))
def test_the_lab_judges_a_real_run_as_the_test_expects(lab, result_id):
    status, there, back, why = EXPECTED[result_id]
    r = CAPTURED[result_id]
    verdict = judge_server_fault(as_the_runner_said(result_id), lab.server(r["server"]), lab.server(r["target"]),
                                 FAULT[r["case"]], None, LOGS, r["evidence"]["presented"])
    observed_there, observed_back = verdict.evidence["observed"].split("; B->A ")
    assert (verdict.status, observed_there.removeprefix("A->B ").startswith(there),
            observed_back.startswith(back)) == (status, True, True), (why, verdict.evidence["observed"])


def test_findings_of_that_run(lab):
    # ejabberd 23.01 refuses Prosody's serverAuth-only certificate for SASL EXTERNAL and takes
    # dialback instead (ejabberd issue 4392); its log line is the evidence.
    f4 = CAPTURED["F4/slixmpp/ejabberd->prosody"]
    assert f4["status"] == FAIL and f4["observed"].startswith("A->B accepted")
    assert "B->A fell back to dialback" in f4["observed"]
    assert "Accepted inbound s2s dialback authentication prosody.test -> ejabberd.test" in f4["detail"]
    # jabberd2 keeps a message to a server whose certificate it cannot verify: no error comes back.
    assert CAPTURED["F3c/slixmpp/jabberd2->prosody"]["observed"].startswith("A->B no answer within")
    # B's port was looked at: the self-signed certificate was really presented.
    assert CAPTURED["F3c/slixmpp/prosody->ejabberd"]["evidence"]["presented"].startswith(
        "a certificate for ejabberd.test, conference.ejabberd.test issued by CN=ejabberd.test")


def test_a_delivery_whose_authentication_is_not_in_the_log_is_not_judged(lab):
    rid = "F3c/slixmpp/prosody->jabberd2"  # delivered by dialback both ways
    r = CAPTURED[rid]
    without = {name: [(when, line) for when, line in lines if "is now valid" not in line and "complete" not in line]
               for name, lines in LOGS.items()}
    verdict = judge_server_fault(as_the_runner_said(rid), lab.server("prosody"), lab.server("jabberd2"), FAULT["F3c"],
                                 None, without, r["evidence"]["presented"])
    assert verdict.status == ERROR and "log shows no authentication" in verdict.detail
