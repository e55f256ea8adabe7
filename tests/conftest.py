import os
from pathlib import Path

import pytest

from lab import model

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def default_lab() -> model.Lab:
    return model.parse(model.DEFAULT_LAB.read_text(), REPO / "lab.yml")  # as ./lab.yml at the repo root


def write_lab(directory: Path, text: str) -> Path:
    path = directory / "lab.yml"
    path.write_text(text)
    return path


def update_golden() -> bool:
    """LAB_UPDATE_GOLDEN=1 (exactly) rewrites golden files, never in CI: there it would make
    any output pass. Any other value (0, yes, empty) compares as usual."""
    value = os.environ.get("LAB_UPDATE_GOLDEN")
    if value is not None and os.environ.get("CI") == "true":
        pytest.fail(f"LAB_UPDATE_GOLDEN={value!r} is refused under CI=true: golden files are updated by hand "
                    f"and reviewed")
    return value == "1"


def skip_line(report) -> str | None:
    """"<test id>: <reason>" of a skipped test's report (None for anything else); what
    .ci/check-skips matches against .ci/allowed-skips."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return None
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return f"{report.nodeid}: {reason.removeprefix('Skipped: ')}"


def pytest_runtest_logreport(report):
    """Under CI=true every skip goes to $LAB_SKIPS_FILE (.ci/run sets it and fails the run
    on a skip whose reason is not allowed)."""
    line = skip_line(report)
    if line and os.environ.get("CI") == "true" and os.environ.get("LAB_SKIPS_FILE"):
        with open(os.environ["LAB_SKIPS_FILE"], "a") as skips:
            skips.write(line.replace("\n", " ") + "\n")


def pytest_terminal_summary(terminalreporter):
    """Every exemption the E2E tests took (tests/exemptions.py), named at the end of the run."""
    from exemptions import TAKEN
    if TAKEN:
        terminalreporter.section(f"jabberd2 exemptions taken: {len(TAKEN)}")
        for what in TAKEN:
            terminalreporter.write_line(what)
