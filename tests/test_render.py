"""Rendered server configs against golden files (tests/golden/<lab>/<server>/<file>).

After an intended template change: LAB_UPDATE_GOLDEN=1 pytest tests/test_render.py
"""

from pathlib import Path

import pytest
from conftest import update_golden

from lab import model
from lab.errors import LabError
from lab.render import render_server

GOLDEN = Path(__file__).parent / "golden"
LABS = {"default": model.DEFAULT_LAB, "dualstack": Path(__file__).parent / "labs" / "dualstack.yml",
        "releases": Path(__file__).parent / "labs" / "releases.yml"}


def rendered():
    for lab_name, path in LABS.items():
        lab = model.load(path)
        for server in lab.servers:
            for target, text in render_server(lab, server).items():
                yield f"{lab_name}/{server.name}/{Path(target).name}", text
    # The fault F5: server connections in plaintext (only the files it changes).
    lab = model.load(model.DEFAULT_LAB)
    for server in lab.servers:
        normal = render_server(lab, server)
        for target, text in render_server(lab, server, s2s_tls=False).items():
            if text != normal[target]:
                yield f"f5-plaintext-s2s/{server.name}/{Path(target).name}", text


@pytest.mark.parametrize("name,text", list(rendered()), ids=lambda v: v if "/" in str(v)[:60] else "")
def test_rendered_config_matches_golden_file(name, text):
    golden = GOLDEN / name
    if update_golden():
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden}; create it with LAB_UPDATE_GOLDEN=1"
    assert text == golden.read_text()


def test_a_template_beside_lab_yml_overrides_the_repo_template(tmp_path):
    (tmp_path / "templates" / "prosody").mkdir(parents=True)
    (tmp_path / "templates" / "prosody" / "prosody.cfg.lua.j2").write_text("-- custom for {{ domain }}\n")
    (tmp_path / "lab.yml").write_text("servers:\n  p: {kind: prosody, domain: p.test}\n")
    lab = model.load(tmp_path / "lab.yml")
    assert render_server(lab, lab.servers[0]) == {"/etc/prosody/prosody.cfg.lua": "-- custom for p.test\n"}


def test_template_error_is_reported_with_its_file_and_line(tmp_path):
    (tmp_path / "templates" / "prosody").mkdir(parents=True)
    (tmp_path / "templates" / "prosody" / "prosody.cfg.lua.j2").write_text("ok\n{{ no_such_variable }}\n")
    (tmp_path / "lab.yml").write_text("servers:\n  p: {kind: prosody, domain: p.test}\n")
    lab = model.load(tmp_path / "lab.yml")
    with pytest.raises(LabError, match=r"prosody.cfg.lua.j2:2: template error: 'no_such_variable' is undefined"):
        render_server(lab, lab.servers[0])
