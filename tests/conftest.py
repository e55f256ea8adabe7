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
    """LAB_UPDATE_GOLDEN=1 rewrites golden files, never in CI: there it would make any
    output pass."""
    if not os.environ.get("LAB_UPDATE_GOLDEN"):
        return False
    if os.environ.get("CI") == "true":
        pytest.fail("LAB_UPDATE_GOLDEN is refused under CI=true: golden files are updated by hand and reviewed")
    return True
