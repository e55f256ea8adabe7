"""CI that cannot go green by accident (.ci/run, .ci/check-skips, .ci/allowed-skips and the
skip hook of tests/conftest.py), run in a copy of .ci/ with a fake ./run and a fake docker,
so nothing touches the engine."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONFTEST = REPO / "tests" / "conftest.py"

FAKE_RUN = """#!/bin/sh
# what .ci/run ran, and in what environment; then what the test asked for
echo "$@" > called
echo "CI=$CI PYTEST_ADDOPTS=${PYTEST_ADDOPTS-unset}" >> called
[ -n "$SKIPS" ] && printf '%s\n' "$SKIPS" >> "$LAB_SKIPS_FILE"
exit $CODE
"""
FAKE_DOCKER = """#!/bin/sh
echo "$@" >> "$DOCKER_CALLS"
case "$1" in info) echo "$SWARM";; ps) echo "$NODES";; esac
"""


def ci_run(tmp_path, *, code=0, skips=(), swarm="inactive", **env):
    """.ci/run in a copy of the repository's .ci/ beside a fake ./run; (exit, stderr, what ./run saw, docker calls)."""
    (tmp_path / ".ci").mkdir()
    for name in ("run", "check-skips", "allowed-skips"):
        (tmp_path / ".ci" / name).write_text((REPO / ".ci" / name).read_text())
        (tmp_path / ".ci" / name).chmod(0o755)
    (tmp_path / "run").write_text(FAKE_RUN)
    (tmp_path / "run").chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    environment = {key: value for key, value in os.environ.items() if key not in ("CI", "LAB_UPDATE_GOLDEN")}
    environment.update(PATH=f"{bin_dir}:{os.environ['PATH']}", CODE=str(code), SWARM=swarm,
                       SKIPS="\n".join(skips), DOCKER_CALLS=str(tmp_path / "docker-calls"),
                       PYTEST_ADDOPTS="-k nothing", **env)
    done = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], capture_output=True, text=True, timeout=60,
                          env=environment, cwd=tmp_path)
    called = (tmp_path / "called").read_text() if (tmp_path / "called").exists() else None
    calls = (tmp_path / "docker-calls").read_text() if (tmp_path / "docker-calls").exists() else ""
    return done.returncode, done.stderr, called, calls


@pytest.mark.parametrize("value", ["1", "0", ""])
def test_ci_refuses_to_run_with_lab_update_golden_set_to_anything(tmp_path, value):
    code, err, called, _ = ci_run(tmp_path, LAB_UPDATE_GOLDEN=value)
    assert code == 2 and called is None  # pytest never started
    assert err.count("\n") == 1 and err.startswith(f"ci: LAB_UPDATE_GOLDEN is set (to '{value}'): refused")


def test_ci_runs_the_readme_command_with_skips_shown_ci_true_and_no_pytest_addopts(tmp_path):
    code, err, called, calls = ci_run(tmp_path)
    assert (code, err) == (0, "")
    assert called == "pytest -rs\nCI=true PYTEST_ADDOPTS=unset\n"
    assert "swarm leave" not in calls and " rm " not in calls  # an engine in no swarm is left alone


def test_ci_leaves_a_swarm_left_by_an_aborted_run_so_the_swarm_tests_run(tmp_path):
    code, err, called, calls = ci_run(tmp_path, swarm="active")
    assert code == 0 and called is not None
    assert "swarm leave --force" in calls and "leaving it" in err


def test_ci_removes_nested_swarm_nodes_left_by_an_aborted_run_and_nothing_else(tmp_path):
    code, err, called, calls = ci_run(tmp_path, NODES="c0ffee")
    assert code == 0 and called is not None and "nested swarm nodes" in err
    assert "ps -aq --filter label=org.xmpp-lab.nested-swarm\nrm -f -v c0ffee\n" in calls
    assert "volume ls -q --filter label=org.xmpp-lab.nested-swarm" in calls


def test_ci_fails_on_a_skip_whose_reason_is_not_allowed_and_names_it(tmp_path):
    swarm_skip = "tests/test_swarm_e2e.py::test_x: the engine is already in a swarm"
    code, err, _, _ = ci_run(tmp_path, skips=[swarm_skip])
    assert code == 1
    assert err.strip() == f"ci: skipped for a reason not in .ci/allowed-skips: {swarm_skip}"


def test_ci_accepts_a_listed_skip(tmp_path):
    listed = "tests/test_ipv6.py::test_dual_stack_server: no IPv6 loopback here: [Errno 99] x"
    assert ci_run(tmp_path, skips=[listed])[:2] == (0, "")


def test_ci_keeps_pytest_exit_5_a_failure(tmp_path):
    code, err, _, _ = ci_run(tmp_path, code=5)
    assert code == 5 and "collected no tests" in err


def test_the_conftest_hook_records_every_skip_under_ci_true_for_check_skips(tmp_path):
    """A real pytest run, with tests/conftest.py's hook, of one listed and one unlisted skip."""
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "conftest.py").write_text(
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('repo_conftest', {str(CONFTEST)!r})\n"
        "module = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(module)\n"
        "pytest_runtest_logreport = module.pytest_runtest_logreport\n")
    (tests / "test_ipv6.py").write_text(
        "import pytest\n\ndef test_v6():\n    pytest.skip('no IPv6 loopback here: none')\n\n"
        "def test_chromium():\n    pytest.skip('chromium not installed')\n\ndef test_runs():\n    pass\n")
    skips = tmp_path / "skips"
    environment = {**os.environ, "CI": "true", "LAB_SKIPS_FILE": str(skips)}
    environment.pop("PYTEST_ADDOPTS", None)
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=tmp_path,
                   env=environment, capture_output=True, timeout=60)
    assert skips.read_text().splitlines() == ["tests/test_ipv6.py::test_v6: no IPv6 loopback here: none",
                                              "tests/test_ipv6.py::test_chromium: chromium not installed"]
    check = subprocess.run([str(REPO / ".ci" / "check-skips"), str(skips), str(REPO / ".ci" / "allowed-skips")],
                           capture_output=True, text=True)
    assert check.returncode == 1
    assert check.stderr.splitlines() == [f"ci: skipped for a reason not in {REPO / '.ci' / 'allowed-skips'}: "
                                         "tests/test_ipv6.py::test_chromium: chromium not installed"]


@pytest.mark.parametrize("value, rewrites", [("1", True), ("0", False), ("", False), ("yes", False), (None, False)])
def test_golden_files_are_rewritten_by_lab_update_golden_1_exactly(monkeypatch, value, rewrites):
    from conftest import update_golden
    monkeypatch.delenv("CI", raising=False)
    if value is None:
        monkeypatch.delenv("LAB_UPDATE_GOLDEN", raising=False)
    else:
        monkeypatch.setenv("LAB_UPDATE_GOLDEN", value)
    assert update_golden() is rewrites


def test_golden_update_is_refused_under_ci_true_whatever_its_value(monkeypatch):
    from conftest import update_golden
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("LAB_UPDATE_GOLDEN", "0")
    with pytest.raises(pytest.fail.Exception, match="LAB_UPDATE_GOLDEN='0' is refused under CI=true"):
        update_golden()
