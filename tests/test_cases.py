"""The catalogue's case units, cases of your own (cases/ beside lab.yml) and what a broken
case file says, without Docker. The E2E run of a case of your own is in test_cases_e2e.py."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import cases, model
from lab.cases import builtin, catalogue, runner_cases, user_case
from lab.errors import ConfigError
from lab.stacks import stacks

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "cases" / "s11_headline.py"
LAB = "name: own-cases\nclients: [slixmpp]\nservers:\n  prosody: {kind: prosody, domain: prosody.test}\n"


def lab_dir(tmp_path: Path, **files: str) -> Path:
    (tmp_path / "lab.yml").write_text(LAB)
    (tmp_path / "cases").mkdir()
    for name, text in files.items():
        (tmp_path / "cases" / name).write_text(text)
    return tmp_path


def lab_command(directory: Path, *args):
    return subprocess.run([sys.executable, "-m", "lab", *args, "-f", str(directory / "lab.yml")],
                          capture_output=True, text=True, timeout=120)


def test_every_builtin_case_says_when_it_passes_and_against_which_spec():
    for case in builtin():
        assert case.scope in cases.SCOPES, case.id
        assert len(case.criterion) > 30 and re.search(r"RFC|XEP", case.spec), case.id
    ids = [case.id for case in builtin()]
    assert len(ids) == len(set(ids))


def test_the_catalogue_document_is_made_from_the_units():
    """docs/catalogue.md is `lab cases --markdown`: regenerate it when a unit changes."""
    assert (REPO / "docs" / "catalogue.md").read_text() == cases.markdown(builtin()) + "\n"


def test_a_stack_can_express_what_its_runner_table_names():
    assert runner_cases(REPO / "lab" / "runners" / "xmppc_runner.py") == {"C1", "C2", "C5", "S1"}
    assert stacks()["xmppc"].cases == {"C1", "C2", "C5", "S1"}
    assert {case.id for case in builtin()} <= stacks()["slixmpp"].cases


def test_a_runner_without_a_literal_table_is_refused(tmp_path):
    runner = tmp_path / "odd_runner.py"
    runner.write_text("CASES = dict(C1=print)\n")
    with pytest.raises(ValueError, match="no CASES"):
        runner_cases(runner)


# --- no case ID outside its unit -------------------------------------------------------------

CASE_ID = re.compile(r"^[CSFJX]\d+[a-e]?$")


def literals(path: Path) -> list[tuple[int, str]]:
    """Case-ID string literals in ``path``, docstrings aside."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and CASE_ID.match(node.value)
            and id(node) not in docstrings]


def test_no_case_id_is_spelled_outside_its_unit_and_the_runner_tables():
    """A case's ID is written in its unit (lab/cases/) and as a key of the runners' tables
    (CASES, and the per-case time a CLI runner gives it); nowhere else in lab/."""
    found = {}
    for path in sorted((REPO / "lab").rglob("*.py")):
        if path.parent.name == "cases":
            continue
        for line, value in literals(path):
            if path.parent.name == "runners" and runner_table_line(path, line):
                continue
            found.setdefault(str(path.relative_to(REPO)), []).append(f"{line}: {value}")
    assert not found, found


def runner_table_line(path: Path, line: int) -> bool:
    """Whether ``line`` of a runner is in its CASES or NOT_RUN table or its budget function."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        named = (isinstance(node, ast.Assign) and any(getattr(t, "id", "") in ("CASES", "NOT_RUN")
                                                      for t in node.targets)) or (
            isinstance(node, ast.FunctionDef) and node.name == "budget")
        if named and node.lineno <= line <= node.end_lineno:
            return True
    return False


# --- cases of your own ------------------------------------------------------------------------

def test_a_case_of_your_own_joins_the_catalogue_and_the_slixmpp_client(tmp_path):
    directory = lab_dir(tmp_path, **{"s11_headline.py": EXAMPLE.read_text()})
    found = catalogue(directory)
    assert [c.id for c in found][-1] == "S11" and found[-1].origin == "cases/s11_headline.py"
    lab = model.load(directory / "lab.yml")
    assert "S11" in lab.primary.cases and lab.case_files == [directory / "cases" / "s11_headline.py"]
    listed = lab_command(directory, "cases")
    assert listed.returncode == 0 and "cases/s11_headline.py" in listed.stdout and "RFC 6121 5.2.2" in listed.stdout


BROKEN = {
    "syntax": ("ID = 'S12'\nTITLE = 'x'\ndef run(run:\n", r"cases/broken\.py:3: syntax error"),
    "duplicate": (EXAMPLE.read_text().replace('ID = "S11"', 'ID = "S1"'),
                  r"cases/broken\.py: case ID S1 is already defined by built-in"),
    "scope": (EXAMPLE.read_text().replace('SCOPE = "s2s"', 'SCOPE = "server"'),
              r"cases/broken\.py:\d+: unknown scope 'server' \(scopes: c2s, s2s, c2s\+s2s\)"),
    "no run": (EXAMPLE.read_text().replace("async def run(run):", "async def exchange(run):"),
               r"cases/broken\.py:1: no case function: define 'async def run\(run\)'"),
    "raises": ("import no_such_module\n", r"cases/broken\.py:1: cannot load the case: ModuleNotFoundError"),
    "no criterion": (EXAMPLE.read_text().replace("CRITERION = ", "CRITERIA = "),
                     r"cases/broken\.py:1: CRITERION must be a non-empty string"),
}


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_case_file_is_one_located_line_and_exit_2(tmp_path, kind):
    text, message = BROKEN[kind]
    directory = lab_dir(tmp_path, **{"broken.py": text})
    with pytest.raises(ConfigError, match=message):
        catalogue(directory)
    for command in (("cases",), ("accounts",)):  # any command that reads the lab
        result = lab_command(directory, *command)
        assert result.returncode == 2, result.stderr
        assert re.search(message, result.stderr) and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_two_files_with_one_id_name_both(tmp_path):
    directory = lab_dir(tmp_path, **{"a.py": EXAMPLE.read_text(), "b.py": EXAMPLE.read_text()})
    with pytest.raises(ConfigError, match=r"cases/b\.py: case ID S11 is already defined by cases/a\.py"):
        catalogue(directory)


def test_user_case_reads_every_field(tmp_path):
    path = tmp_path / "c20.py"
    shutil.copy(EXAMPLE, path)
    text = path.read_text().replace('SCOPE = "s2s"', 'SCOPE = "c2s"').replace("NEEDS = None", 'NEEDS = "ping"')
    path.write_text(text.replace('ID = "S11"', 'ID = "C20"') + "\n\ndef judge(result, seen):\n    return result\n")
    case = user_case(path)
    assert (case.id, case.scope, case.needs, case.origin) == ("C20", "c2s", "ping", "cases/c20.py")
    assert case.judge is not None and case.phase is None and not case.fault


# --- every verdict made red once: tests/README.md names each ---------------------------------

def named_ids(text: str) -> set[str]:
    """Case IDs a table cell names: C3, C4 and F3a-e alike."""
    found = set(re.findall(r"\b([A-Z]\d+[A-Za-z]?|ROOM)\b", text))  # (ROOM: the event's room)
    for family, start, stop in re.findall(r"\b(F\d+)([a-e])-([a-e])\b", text):
        found |= {f"{family}{chr(c)}" for c in range(ord(start), ord(stop) + 1)}
    return found


def test_the_list_of_red_tests_names_every_case_function_and_judge():
    text = (REPO / "tests" / "README.md").read_text()
    runner_rows: dict[str, set[str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0] in ("slixmpp", "nbxmpp", "xmppc", "go-sendxmpp", "sendxmpp", "libervia"):
            runner_rows.setdefault(cells[0].replace("-", ""), set()).update(named_ids(cells[1]))
    for name, stack in stacks().items():
        missing = stack.cases - runner_rows.get(name, set())
        assert not missing, f"tests/README.md names no test making {name}'s {sorted(missing)} red"
    judges = text[text.index("### Judges"):]
    unnamed = [case.id for case in builtin() if case.judge and case.id not in named_ids(judges)]
    assert not unnamed, f"tests/README.md names no test making the judges of {unnamed} red"
