"""The compliance table (lab/cases/compliance.py): a requirement's verdict is the worst of
its cases' for the server (its own user acting), a level is met only if every requirement in
it and in the levels it builds on passes, and a requirement with no case is never met."""

from lab.cases import compliance
from lab.interop import Interop
from lab.results import CaseResult


def result(case, server, status, target=None, stack="slixmpp"):
    return CaseResult(case, case, stack, server, target, status)


def every_case_passing(server="p", peer="e"):
    cases = {case for level in compliance.LEVELS.values() for wanted in level.values() for case in wanted}
    return [result(case, server, "pass", peer if case[0] in "SX" else None) for case in sorted(cases)]


def test_a_level_needs_every_requirement_and_its_base_levels(monkeypatch):
    table = compliance.compliance_table(every_case_passing(), ["p"])["p"]
    assert table["requirements"]["XEP-0191"] == {"level": "IM Advanced", "verdict": "pass", "cases": ["X0191"],
                                                  "peers": ["e"], "failed": []}
    assert {level: entry["met"] for level, entry in table["levels"].items()} == {
        "Core": True, "Core Advanced": True, "IM": True, "IM Advanced": True, "A/V Calling": True}
    # A requirement with no case (as XEP-0114 had once): Core is not met, nor anything built on it.
    levels = {level: dict(wanted) for level, wanted in compliance.LEVELS.items()}
    levels["Core"]["XEP-0114"] = []
    levels["IM"]["XEP-0363"] = []
    monkeypatch.setattr(compliance, "LEVELS", levels)
    table = compliance.compliance_table(every_case_passing(), ["p"])["p"]
    assert table["requirements"]["XEP-0114"]["verdict"] == "not checked"
    assert {level: entry["met"] for level, entry in table["levels"].items()} == {
        "Core": False, "Core Advanced": False, "IM": False, "IM Advanced": False, "A/V Calling": False}
    assert table["levels"]["Core Advanced"]["missing"] == ["XEP-0114"]
    assert table["levels"]["IM Advanced"]["missing"] == ["XEP-0363", "XEP-0114"]
    assert table["requirements"]["XEP-0215"]["verdict"] == "pass"  # J4
    assert table["levels"]["A/V Calling"]["missing"] == ["XEP-0114"]


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


def test_the_terminal_rows_say_met_or_how_many_are_missing(monkeypatch):
    levels = {level: dict(wanted) for level, wanted in compliance.LEVELS.items()}
    levels["Core"]["XEP-0114"] = []  # a requirement with no case
    monkeypatch.setattr(compliance, "LEVELS", levels)
    rows = compliance.table_rows(compliance.compliance_table(every_case_passing(), ["p"]))
    assert rows[0] == ["requirement", "p"]
    assert ["Core level", "not met (1 missing)"] in rows
    assert ["  XEP-0191", "pass with e"] in rows
    rows = compliance.table_rows(compliance.compliance_table(every_case_passing() + [result("C2", "p", "fail")], ["p"]))
    assert ["  RFC 6120", "fail: C2/slixmpp/p"] in rows  # which result, so a client's own fault shows


# --- ROOM: a failed room with what its server and the others logged about each other -------------

class FakeInterop:
    """What Interop.with_server_side reads: the lab, the cases, the servers' logs."""
    def __init__(self, lab, logs):
        self.lab, self.logs_seen, self.asked = lab, logs, []
        self.cases = {case.id: case for case in compliance.CASES}

    def logs(self, names, since):
        self.asked.append((sorted(names), since))
        return self.logs_seen


def test_a_failed_room_carries_the_lines_its_servers_logged_about_each_other(default_lab):
    prosody = default_lab.server("prosody")
    failed = CaseResult("ROOM", "room", "slixmpp", "prosody", None, "fail", "timed out waiting for bob@jabberd2.test "
                        "joining", started=100.0, ended=110.0)
    passed = CaseResult("ROOM", "room", "slixmpp", "ejabberd", None, "pass", "3 occupants", started=100.0, ended=104.0)
    other_c2s = CaseResult("X0157", "x", "slixmpp", "prosody", None, "fail", "no form", started=100.0, ended=101.0)
    oid = (f"s2s: [13] [{prosody.address}, port=43402] error: SSL handshake error (error:04000066:object identifier "
           f"routines::oid exists)")
    logs = {"jabberd2": [(105.0, oid), (300.0, "s2s: later error from prosody.test")],
            "prosody": [(105.0, "info nothing about anyone")]}
    interop = FakeInterop(default_lab, logs)
    room, other, x0157 = Interop.with_server_side(interop, [failed, passed, other_c2s])
    assert room.status == "fail" and "the servers logged: jabberd2: " in room.detail and "oid exists" in room.detail
    assert room.evidence["server_log"] == [f"jabberd2: {oid}"]  # the line after the case ended is not its
    assert other == passed and x0157 == other_c2s  # a c2s case about one server gets no other server's lines
    assert interop.asked == [(["ejabberd", "jabberd2", "prosody"], 100.0)]


def test_jabberd2s_router_takes_the_lab_component_only_where_its_kind_declares_it(tmp_path):
    """jabberd2 declares component: its router listens on every address with the lab's
    secret, which mu-conference shares; without the feature, on 127.0.0.1 with its own."""
    import dataclasses

    from conftest import write_lab
    from lab import model
    from lab.render import render_server

    lab = model.load(write_lab(tmp_path, "servers:\n  j: {kind: jabberd2, domain: j.test}\n"))
    server = lab.server("j")
    rendered = render_server(lab, server, component_secret="fifteen-chars-x")
    assert "<ip>0.0.0.0</ip>" in rendered["/etc/jabberd2/router.xml"]
    assert "<secret>fifteen-chars-x</secret>" in rendered["/etc/jabberd2/router.xml"]
    assert "<secret>fifteen-chars-x</secret>" in rendered["/etc/jabberd2/muc.xml"]
    assert "component.j.test" in rendered["/etc/jabberd2/router.xml"]
    without = dataclasses.replace(server, kind=dataclasses.replace(server.kind,
                                                                   features=server.kind.features - {"component"}))
    plain = render_server(lab, without)
    assert "<ip>127.0.0.1</ip>" in plain["/etc/jabberd2/router.xml"]
    assert "<secret>labmuc</secret>" in plain["/etc/jabberd2/muc.xml"]


def test_the_lab_component_secret_fits_mu_conference(tmp_path):
    from lab import ca
    authority = ca.load_or_create_ca(tmp_path, "t", None)
    assert len(ca.secret(authority, "component.j.test")) == 15
