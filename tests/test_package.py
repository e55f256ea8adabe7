"""The lab as a tool: installed (not editable) into a fresh virtualenv, it runs from an empty
directory, every kind, image folder and runner inside the package."""

import shutil
import subprocess
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The `lab` command of a fresh virtualenv with the package installed from the checkout."""
    where = tmp_path_factory.mktemp("venv")
    venv.create(where, with_pip=True)
    # From a copy: pip builds in the source tree, and a build/ left there could add stale files.
    source = tmp_path_factory.mktemp("source") / "lab"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", ".lab", "build", "*.egg-info",
                                                                "__pycache__"))
    done = subprocess.run([str(where / "bin" / "python"), "-m", "pip", "install", "-q", str(source)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return where / "bin" / "lab"


def run(lab: Path, directory: Path, *args):
    return subprocess.run([str(lab), *args], cwd=directory, capture_output=True, text=True, timeout=120)


def test_from_an_empty_directory_it_knows_its_kinds_and_commands(installed, tmp_path):
    kinds = run(installed, tmp_path, "kinds")
    assert kinds.returncode == 0, kinds.stderr
    rows = [line for line in kinds.stdout.splitlines()[1:] if line[:3].strip()]  # (a long features cell wraps)
    assert [line.split()[:2] for line in rows] == [
        ["ejabberd", "built-in"], ["jabberd2", "built-in"], ["prosody", "built-in"]]
    up_help = run(installed, tmp_path, "up", "--help")
    assert up_help.returncode == 0 and "Bring the lab up" in up_help.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


def test_lab_init_writes_a_starter_lab_once(installed, tmp_path):
    first = run(installed, tmp_path, "init")
    assert first.returncode == 0, first.stderr
    text = (tmp_path / "lab.yml").read_text()
    schema = Path(text.splitlines()[0].split("$schema=")[1])
    assert schema.name == "schema.json" and schema.is_file() and "site-packages" in str(schema)
    assert "kind: jabberd2" in text and "images/<name>/" in text
    (tmp_path / "lab.yml").write_text(text + "# mine\n")
    again = run(installed, tmp_path, "init")
    assert again.returncode == 1 and "never overwrites" in again.stderr
    assert (tmp_path / "lab.yml").read_text().endswith("# mine\n")


def test_every_import_of_the_package_is_declared():
    """What lab/ imports from outside the standard library is in pyproject.toml's
    dependencies (the runners run in their containers, with their stacks' Debian packages)."""
    import ast
    import sys
    import tomllib
    declared = {re_name(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    modules = {"docker": "docker", "yaml": "pyyaml", "jinja2": "jinja2", "dnslib": "dnslib",
               "cryptography": "cryptography", "typer": "typer", "rich": "rich", "jsonschema": "jsonschema",
               "requests": "requests"}
    imported = set()
    for path in (REPO / "lab").rglob("*.py"):
        if path.parent.name == "runners" or path.name == "labdns.py":  # in containers
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            imported |= {name.split(".")[0] for name in names}
    third_party = imported - set(sys.stdlib_module_names) - {"lab", "__future__"}
    assert third_party <= set(modules), f"imported but not known here: {third_party - set(modules)}"
    assert {modules[name] for name in third_party} <= declared


def re_name(requirement: str) -> str:
    import re
    return re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()


def test_the_installed_tool_carries_the_lab_directory_and_renders_the_report(installed, tmp_path):
    python = installed.parent / "python"
    script = ("import lab, pathlib; from lab import report; from lab.results import CaseResult; "
              "print(lab.DATA_DIR); "
              "page = report.to_html([CaseResult('C1', 't', 'slixmpp', 'p', None, 'pass')], 'x', ['p']); "
              "print('report', len(page) > 1000 and 'C1/slixmpp/p' in page)")
    done = subprocess.run([str(python), "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    data_dir = Path(done.stdout.splitlines()[0])
    assert data_dir.name == "_data" and "site-packages" in str(data_dir)
    assert (data_dir / "lab.yml").is_file() and (data_dir / "images" / "dns" / "Dockerfile").is_file()
    assert (data_dir / "templates" / "prosody" / "prosody.cfg.lua.j2").is_file()
    assert done.stdout.splitlines()[1] == "report True"
    # A lab directory of one's own: images/<name>/ with kind.yml adds a kind.
    shutil.copytree(data_dir / "images" / "prosody", tmp_path / "images" / "mine")
    shutil.copytree(data_dir / "templates" / "prosody", tmp_path / "templates" / "mine")
    kinds = run(installed, tmp_path, "kinds")
    rows = [line.split()[0] for line in kinds.stdout.splitlines()[1:] if line[:10].strip()]  # not a folded path
    assert kinds.returncode == 0 and rows == ["mine", "ejabberd", "jabberd2", "prosody"], kinds.stdout
    assert "built-in" not in kinds.stdout.splitlines()[1] and kinds.stdout.count("built-in") == 3
