from pathlib import Path

import pytest

from lab import model

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def default_lab() -> model.Lab:
    return model.load(REPO / "lab.yml")


def write_lab(directory: Path, text: str) -> Path:
    path = directory / "lab.yml"
    path.write_text(text)
    return path
