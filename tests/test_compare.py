"""Run-to-run diffs (lab/compare.py, `lab report diff`) on results folders built here, and
what report.write makes of a lab's runs: results.md, and the page's "since the previous run"."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab import compare, model, report
from lab.results import ERROR, FAIL, FLAKY, NOT_SUPPORTED, PASS, CaseResult

SERVERS = [{"server": "p", "domain": "p.test", "kind": "prosody", "release": "trixie", "version": "13.0.1-1"},
           {"server": "e", "domain": "e.test", "kind": "ejabberd", "release": "trixie", "version": "24.12-3"}]


def result(case, status, server="p", target="e", detail=""):
    return CaseResult(case, case, "slixmpp", server, target, status, detail)


def folder(root: Path, name: str, results, servers=SERVERS) -> Path:
    where = root / name
    where.mkdir(parents=True)
    (where / "results.json").write_text(report.to_json(results, "t", servers, []))
    return where


OLD = [result("S1", PASS), result("S2", PASS), result("S3", FAIL), result("S4", PASS), result("S5", FLAKY),
       result("S6", PASS), result("C1", PASS, target=None), result("S7", NOT_SUPPORTED)]
NEW = [result("S1", PASS), result("S2", FAIL, detail="no delivery to e.test"), result("S3", PASS),
       result("S4", FLAKY), result("S5", ERROR), result("S6", NOT_SUPPORTED), result("C2", PASS, target=None),
       result("S7", NOT_SUPPORTED)]


def test_regressions_fixes_new_gone_and_versions_by_stable_id(tmp_path):
    newer = [dict(s, version="13.0.2-1") if s["server"] == "p" else s for s in SERVERS]
    changes = compare.diff(compare.load(folder(tmp_path, "a", OLD)), compare.load(folder(tmp_path, "b", NEW, newer)))
    assert [(c["id"], c["old"], c["new"]) for c in changes["regressions"]] == [
        ("S2/slixmpp/p->e", PASS, FAIL), ("S4/slixmpp/p->e", PASS, FLAKY), ("S5/slixmpp/p->e", FLAKY, ERROR)]
    assert changes["regressions"][0]["servers"] == ["p", "e"]
    assert changes["regressions"][0]["detail"] == "no delivery to e.test"
    assert [c["id"] for c in changes["fixes"]] == ["S3/slixmpp/p->e"]
    assert [(c["id"], c["new"]) for c in changes["changed"]] == [("S6/slixmpp/p->e", NOT_SUPPORTED)]
    assert [c["id"] for c in changes["new"]] == ["C2/slixmpp/p"]
    assert [c["id"] for c in changes["gone"]] == ["C1/slixmpp/p"]
    assert changes["versions"] == [{"name": "server p", "old": "prosody 13.0.1-1 (trixie)",
                                    "new": "prosody 13.0.2-1 (trixie)"}]
    assert compare.regressed(changes)
    same = compare.diff(compare.load(tmp_path / "a"), compare.load(tmp_path / "a"))
    assert not compare.regressed(same) and not any(same[k] for k in ("fixes", "changed", "new", "gone", "versions"))


def lab(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_lab_report_diff_exits_1_on_a_regression_and_prints_json(tmp_path):
    old, new = folder(tmp_path, "a", OLD), folder(tmp_path, "b", NEW)
    text = lab("report", "diff", str(old), str(new))
    assert text.returncode == 1, text.stderr
    assert "regression S2/slixmpp/p->e: pass -> fail: no delivery to e.test" in text.stdout
    assert "fixed S3/slixmpp/p->e: fail -> pass" in text.stdout
    as_json = lab("report", "diff", str(old), str(new / "results.json"), "--json")
    assert as_json.returncode == 1 and len(json.loads(as_json.stdout)["regressions"]) == 3
    back = lab("report", "diff", str(new), str(old))  # the other way round: S3 alone regressed
    assert back.returncode == 1 and [line for line in back.stdout.splitlines() if "regression " in line] == [
        "  regression S3/slixmpp/p->e: pass -> fail: "], back.stdout
    assert lab("report", "diff", str(old), str(old)).returncode == 0


def test_lab_report_diff_last_takes_the_labs_two_latest_runs(tmp_path):
    (tmp_path / "lab.yml").write_text("name: t\nservers:\n  p: {kind: prosody, domain: p.test}\n")
    runs = tmp_path / ".lab" / "t" / "results"
    folder(runs, "20260101-000000", NEW)  # the oldest: not compared
    one = lab("report", "diff", "--last", cwd=tmp_path)
    assert one.returncode == 1 and "has 1 runs" in one.stderr and "Traceback" not in one.stderr
    folder(runs, "20260102-000000", OLD)
    folder(runs, "20260103-000000", NEW)
    last = lab("report", "diff", "--last", "--json", cwd=tmp_path)
    changes = json.loads(last.stdout)
    assert last.returncode == 1 and (changes["old_run"]["name"], changes["new_run"]["name"]) == (
        "20260102-000000", "20260103-000000")


@pytest.mark.parametrize("args, code, message", [
    (["report", "diff"], 2, "takes OLD and NEW (two results folders), or --last"),
    (["report", "diff", "x"], 2, "takes OLD and NEW"),
    (["report", "diff", "x", "y", "--last"], 2, "takes OLD and NEW"),
    (["report", "diff", "nowhere", "nowhere"], 1, "nowhere: cannot read: No such file or directory"),
])
def test_bad_diff_arguments_are_one_line(tmp_path, args, code, message):
    done = lab(*args, cwd=tmp_path)
    assert done.returncode == code and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_broken_results_json_is_one_located_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text('{"results": [\n  oops]}')
    done = lab("report", "diff", str(tmp_path / "a"), str(tmp_path / "a"))
    assert done.returncode == 1 and f"{tmp_path / 'a' / 'results.json'}:2: not JSON" in done.stderr, done.stderr


def test_each_run_writes_results_md_and_the_page_says_what_changed_since_the_last_one(tmp_path, monkeypatch):
    path = tmp_path / "lab.yml"
    path.write_text("name: t\nclients: [slixmpp]\nservers:\n  p: {kind: prosody, domain: p.test}\n"
                    "  e: {kind: ejabberd, domain: e.test}\n")
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    the_lab = model.load(path)
    first = report.write(OLD, the_lab, run=report.run_info(1795567479.0, 3.0, ["lab", "test"]))
    assert "No earlier run of this lab" in (first / "report.html").read_text()
    second = report.write(NEW, the_lab)
    assert first != second and sorted(p.name for p in second.iterdir()) == [
        "junit.xml", "report.html", "results.json", "results.md"]
    page, text = (second / "report.html").read_text(), (second / "results.md").read_text()
    assert f"Compared with run {first.name}" in page and 'href="#S2/slixmpp/p-&gt;e">S2/slixmpp/p-&gt;e</a>' in page
    assert f"## Since run {first.name}" in text and "- regression S2/slixmpp/p->e: pass -> fail" in text
    assert summary.read_text().count("# xmpp interop lab: t") == 2  # appended per run, as Actions wants


def test_failing_since_goes_back_while_a_result_did_not_pass(tmp_path):
    runs = [compare.load(folder(tmp_path, name, results)) for name, results in
            (("r1", NEW), ("r2", OLD), ("r3", NEW), ("r4", NEW))]
    since = compare.failing_since(runs[:3], runs[3])
    assert since["S2/slixmpp/p->e"] == {"run": "r3", "runs": 2}  # passed in r2
    assert since["S5/slixmpp/p->e"] == {"run": "r1", "runs": 4}  # error, flaky, error, error
    assert "S3/slixmpp/p->e" not in since  # passes in r4
    assert compare.failing_since([], runs[3])["S2/slixmpp/p->e"] == {"run": None, "runs": 1}


def test_the_reports_say_since_which_run_a_result_has_not_passed(tmp_path):
    path = tmp_path / "lab.yml"
    path.write_text("name: t\nclients: [slixmpp]\nservers:\n  p: {kind: prosody, domain: p.test}\n"
                    "  e: {kind: ejabberd, domain: e.test}\n")
    the_lab = model.load(path)
    report.write(OLD, the_lab)
    second = report.write(NEW, the_lab)
    third = report.write(NEW, the_lab)
    assert "- **fail** `S2/slixmpp/p->e` S2: no delivery to e.test\n" in (second / "results.md").read_text()
    assert (f"- **fail** `S2/slixmpp/p->e` S2: no delivery to e.test (not passed since run {second.name}, 2 runs)"
            in (third / "results.md").read_text())
    page = (third / "report.html").read_text()
    assert f"<td>run {second.name} (2 runs)</td>" in page
