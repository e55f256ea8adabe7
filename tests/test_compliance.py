"""The compliance table (lab/cases/compliance.py): a requirement's verdict is the worst of
its cases' for the server (its own user acting), a level is met only if every requirement in
it and in the levels it builds on passes, and a requirement with no case is never met."""

from lab.cases import compliance
from lab.results import CaseResult


def result(case, server, status, target=None, stack="slixmpp"):
    return CaseResult(case, case, stack, server, target, status)


def every_case_passing(server="p", peer="e"):
    cases = {case for level in compliance.LEVELS.values() for wanted in level.values() for case in wanted}
    return [result(case, server, "pass", peer if case[0] in "SX" else None) for case in sorted(cases)]


def test_a_level_needs_every_requirement_and_its_base_levels():
    table = compliance.compliance_table(every_case_passing(), ["p"])["p"]
    assert table["requirements"]["XEP-0191"] == {"level": "IM Advanced", "verdict": "pass", "cases": ["X0191"],
                                                  "peers": ["e"], "failed": []}
    # XEP-0114 has no case yet: Core is not met, nor anything built on it.
    assert table["requirements"]["XEP-0114"]["verdict"] == "not checked"
    assert {level: entry["met"] for level, entry in table["levels"].items()} == {
        "Core": False, "Core Advanced": False, "IM": False, "IM Advanced": False, "A/V Calling": False}
    assert table["levels"]["Core Advanced"]["missing"] == ["XEP-0114"]
    assert table["requirements"]["XEP-0215"]["verdict"] == "pass"  # J4
    assert table["levels"]["A/V Calling"]["missing"] == ["XEP-0114"]
    assert table["levels"]["IM Advanced"]["missing"] == ["XEP-0398 + XEP-0153", "XEP-0363", "XEP-0114"]


def test_one_failing_result_with_one_peer_fails_the_requirement_and_names_itself():
    results = every_case_passing() + [result("X0045", "p", "fail", "j"), result("X0313M", "p", "fail", "j"),
                                      result("X0054", "p", "not supported", "j"),
                                      result("X0191", "e", "fail", "p")]  # e's own user acting: not p's
    table = compliance.compliance_table(results, ["p", "e"])
    muc = table["p"]["requirements"]["XEP-0045 + XEP-0249"]
    assert muc["verdict"] == "fail" and muc["failed"] == ["X0045/slixmpp/p->j"]
    assert table["p"]["requirements"]["XEP-0313 (MUC)"]["verdict"] == "fail"
    assert table["p"]["requirements"]["XEP-0054"]["verdict"] == "pass"  # passed with e, not supported with j
    assert table["p"]["requirements"]["XEP-0191"]["verdict"] == "pass"
    assert table["e"]["requirements"]["XEP-0191"]["verdict"] == "fail"
    assert table["e"]["requirements"]["XEP-0054"]["verdict"] == "not checked"  # nothing ran for e


def test_the_terminal_rows_say_met_or_how_many_are_missing():
    rows = compliance.table_rows(compliance.compliance_table(every_case_passing(), ["p"]))
    assert rows[0] == ["requirement", "p"]
    assert ["Core level", "not met (1 missing)"] in rows
    assert ["  XEP-0191", "pass with e"] in rows
    rows = compliance.table_rows(compliance.compliance_table(every_case_passing() + [result("C2", "p", "fail")], ["p"]))
    assert ["  RFC 6120", "fail: C2/slixmpp/p"] in rows  # which result, so a client's own fault shows
