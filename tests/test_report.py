"""Report rendering from fixed results, against golden files (LAB_UPDATE_GOLDEN=1 to refresh)."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import update_golden

from lab import cases as catalogue, report
from lab.report import c2s_matrix, s2s_matrix, texts, to_html, to_json, to_junit, to_markdown
from lab.results import FAIL, FLAKY, NOT_SUPPORTED, PASS, CaseResult

GOLDEN = Path(__file__).parent / "golden" / "report"
SERVERS = ["prosody", "ejabberd", "jabberd2"]
RESULTS = [
    CaseResult("C1", "connect", "slixmpp", "prosody", None, PASS, "TLSv1.3", seconds=0.2),
    CaseResult("C1", "connect", "slixmpp", "jabberd2", None, PASS, "TLSv1.3", seconds=0.3),
    CaseResult("C9", "message carbons", "slixmpp", "jabberd2", None, NOT_SUPPORTED, "jabberd2 does not declare carbons",
               reason="server"),
    CaseResult("C2", "SASL login", "xmppc", "ejabberd", None, FAIL, "wrong password accepted",
               trace="<auth mechanism='PLAIN'/>\n<success/>", seconds=1.5),
    CaseResult("S1", "message both ways", "slixmpp", "prosody", "ejabberd", PASS, seconds=0.5),
    CaseResult("S8", "auth", "observed", "prosody", "ejabberd", PASS, "certificate", evidence={"auth": "certificate"}),
    CaseResult("S6", "join a MUC", "slixmpp", "prosody", "jabberd2", NOT_SUPPORTED, "jabberd2 does not declare muc",
               reason="server"),
    CaseResult("S8", "auth", "observed", "prosody", "jabberd2", PASS, "dialback", evidence={"auth": "dialback"}),
    CaseResult("C5", "message to a local user", "xmppc", "ejabberd", None, FLAKY, "first attempt: stream error",
               attempts=({"status": "fail", "detail": "stream error"}, {"status": "pass", "detail": "ok"})),
]


def test_s2s_matrix_counts_and_shows_the_observed_auth():
    rows = texts(s2s_matrix(RESULTS, SERVERS))
    assert rows[1] == ["prosody", "", "2 pass [certificate]", "1 pass, 1 not supported [dialback]"]
    assert rows[2][1] == "-"


def test_c2s_matrix_has_a_row_per_stack():
    rows = texts(c2s_matrix(RESULTS, SERVERS))
    assert [r[0] for r in rows[1:]] == ["slixmpp", "xmppc"]
    assert rows[1][3] == "1 pass, 1 not supported" and rows[2][2] == "1 flaky, 1 fail"


def test_flaky_is_never_folded_into_pass():
    root = ET.fromstring(to_junit(RESULTS, "t"))
    flaky = next(c for c in root.iter("testcase") if c.get("name").startswith("C5 "))
    assert flaky.find("properties/property[@name='status']").get("value") == "flaky"
    assert "flaky: first attempt" in flaky.find("system-out").text
    assert json.loads(to_json(RESULTS, "t"))["summary"]["flaky"] == 1
    assert '<span class="status flaky">flaky</span> C5/xmppc/ejabberd' in to_html(RESULTS, "t", SERVERS)


def test_ids_are_stable():
    assert [r.id for r in RESULTS[:2]] == ["C1/slixmpp/prosody", "C1/slixmpp/jabberd2"]
    assert RESULTS[4].id == "S1/slixmpp/prosody->ejabberd"


def test_junit_has_one_suite_per_pair_and_per_stack_server():
    root = ET.fromstring(to_junit(RESULTS, "t"))
    suites = {s.get("name"): s for s in root}
    assert set(suites) == {"c2s slixmpp @ prosody", "c2s slixmpp @ jabberd2", "c2s xmppc @ ejabberd",
                           "s2s prosody -> ejabberd", "s2s prosody -> jabberd2"}
    assert suites["c2s xmppc @ ejabberd"].get("failures") == "1"
    assert suites["c2s slixmpp @ jabberd2"].get("skipped") == "1"


def test_html_is_self_contained_and_shows_failing_traces():
    page = to_html(RESULTS, "t", SERVERS)
    assert "&lt;auth mechanism=&#39;PLAIN&#39;/&gt;" in page
    # Nothing fetched: no stylesheet or script from elsewhere, no address but the SVG namespace.
    assert "https://" not in page and "<link" not in page and "<script src" not in page and "<img" not in page
    assert page.replace('xmlns="http://www.w3.org/2000/svg"', "").count("http://") == 0


def test_html_escapes_what_a_server_sent():
    hostile = CaseResult("C1", "connect", "slixmpp", "prosody", None, FAIL, "<script>alert(1)</script>",
                         trace="<b>not bold</b>")
    page = to_html([hostile], "t", SERVERS)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>not bold</b>" not in page


def test_passwords_are_redacted_in_the_page_and_the_summary():
    leaky = CaseResult("C2", "SASL login", "xmppc", "ejabberd", None, FAIL, "alice-password was accepted",
                       trace="<auth>alice-password</auth>", evidence={"sent": ["alice-password"]},
                       attempts=({"status": "fail", "detail": "pw alice-password"},))
    for text in (to_html([leaky], "t", SERVERS, secrets=["alice-password"]),
                 to_markdown([leaky], "t", SERVERS, secrets=["alice-password"])):
        assert "alice-password" not in text and "[redacted]" in text


def test_cells_are_coloured_by_status_not_by_their_words():
    # A detail or observed outcome that reads "pass" does not make a failing cell green.
    fault = CaseResult("F1", "t", "slixmpp", "prosody", "ejabberd", FAIL, "x",
                       evidence={"observed": "would pass elsewhere"})
    [cell] = [c for c in report.fault_matrices([fault], SERVERS)["F1"][1][1:] if c.results]
    assert (cell.status, cell.text) == (FAIL, "fail: would pass elsewhere")
    assert report.worst(RESULTS[:4]) == FAIL and report.worst(RESULTS[:3]) == PASS


def test_the_federation_picture_has_an_arrow_per_ordered_pair_coloured_by_the_s_verdicts():
    picture = report.federation_picture(RESULTS, SERVERS)
    arrows = {(a.source, a.target): a for a in picture["arrows"]}
    assert len(arrows) == 6 and ("prosody", "prosody") not in arrows
    assert (arrows["prosody", "ejabberd"].status, arrows["prosody", "ejabberd"].auth) == (PASS, "certificate")
    assert arrows["ejabberd", "prosody"].status is None
    fifteen = report.federation_picture([], [f"s{i}" for i in range(15)])
    assert len(fifteen["arrows"]) == 15 * 14 and len({a.path for a in fifteen["arrows"]}) == 210


def test_the_summary_has_the_matrices_as_tables_and_a_line_per_failure():
    text = to_markdown(RESULTS, "t", SERVERS)
    assert "| prosody |   | 2 pass [certificate] | 1 pass, 1 not supported [dialback] |" in text
    assert "- **fail** `C2/xmppc/ejabberd` SASL login: wrong password accepted" in text
    assert "**9 results:** 5 pass, 1 flaky, 1 fail, 2 not supported" in text


RUN = {"started": 1795567479.0, "seconds": 12.3, "command": "lab test --only C1", "revision": "abc1234"}


@pytest.mark.parametrize("name,render", [
    ("results.json", lambda: to_json(RESULTS, "t", run=RUN)),
    ("junit.xml", lambda: to_junit(RESULTS, "t")),
    ("report.html", lambda: to_html(RESULTS, "t", SERVERS, run=RUN)),
    ("results.md", lambda: to_markdown(RESULTS, "t", SERVERS, run=RUN)),
])
def test_report_matches_golden_file(name, render):
    golden = GOLDEN / name
    if update_golden():
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(render())
    assert render() == golden.read_text()


def test_json_report_is_machine_readable():
    data = json.loads(to_json(RESULTS, "t"))
    assert data["summary"] == {"fail": 1, "flaky": 1, "not supported": 2, "pass": 5}
    assert data["results"][0]["id"] == "C1/slixmpp/prosody"


def test_catalogue_selection():
    assert [c.id for c in catalogue.selected(catalogue.builtin(), ["s1", "C2"])] == ["C2", "S1"]
    with pytest.raises(ValueError, match="unknown case X9"):
        catalogue.selected(catalogue.builtin(), ["X9"])


def test_a_faults_observed_and_expected_outcomes_are_fields_of_their_own():
    fault = CaseResult("F1", "SRV target '.'", "slixmpp", "jabberd2", "ejabberd", FAIL, "fell back",
                       evidence={"observed": "fell back to ejabberd.test A", "expected": "refused at once"})
    [entry] = json.loads(to_json([fault], "lab"))["results"]
    assert (entry["id"], entry["observed"], entry["expected"]) == (
        "F1/slixmpp/jabberd2->ejabberd", "fell back to ejabberd.test A", "refused at once")
    [plain] = json.loads(to_json([CaseResult("C1", "t", "slixmpp", "p", None, PASS)], "lab"))["results"]
    assert "observed" not in plain


def test_faults_have_matrices_of_their_own_with_the_observed_outcome():
    from lab.report import fault_matrices
    results = [
        CaseResult("F1", "t", "slixmpp", "p", "e", PASS, "ok", evidence={"observed": "refused: x after 8 ms"}),
        CaseResult("F1", "t", "slixmpp", "e", "p", FAIL, "no", evidence={"observed": "fell back to p A"}),
        CaseResult("F6", "t", "slixmpp", "p", None, PASS, "v6"),
        CaseResult("S1", "t", "slixmpp", "p", "e", PASS, "ok"),
    ]
    matrices = fault_matrices(results, ["p", "e"])
    assert texts(matrices["F1"]) == [["from \\ to", "p", "e"], ["p", "", "pass (refused: x after 8 ms)"],
                              ["e", "fail: fell back to p A", ""]]
    assert texts(matrices["F6"])[-1] == ["(c2s)", "pass", ""]
    assert str(s2s_matrix(results, ["p", "e"])[1][2]) == "1 pass"  # the S matrix counts no fault
    junit = ET.fromstring(to_junit(results[:1], "lab"))
    assert junit.find(".//property[@name='observed']").get("value") == "refused: x after 8 ms"
    assert junit.find(".//property[@name='spec']").get("value")  # every case says its spec reference


def test_matrices_name_each_server_and_client_by_kind_version_and_release():
    servers = [{"server": "p13", "kind": "prosody", "version": "13.0.1-1+deb131u", "release": "trixie"},
               {"server": "j2", "kind": "jabberd2", "version": None, "release": "bookworm"}]
    clients = [{"client": "slixmpp-sid", "stack": "slixmpp", "version": "1.17.0-2", "release": "sid"}]
    names = report.labels(servers, clients)
    matrix = report.relabelled([["from \\ to", "p13", "j2"], ["p13", "", "2 pass"], ["slixmpp-sid", "1 pass", "-"]],
                               names)
    assert matrix[0] == ["from \\ to", "p13 (prosody 13.0.1, trixie)", "j2 (jabberd2 ?, bookworm)"]
    assert [row[0] for row in matrix[1:]] == ["p13 (prosody 13.0.1, trixie)", "slixmpp-sid (slixmpp 1.17.0, sid)"]
    assert matrix[1][2] == "2 pass"  # cells stay as they were
    assert report.upstream("1:2.7.0-4+b2") == "2.7.0"
