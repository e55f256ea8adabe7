"""A case of your own on the real engine: one new file in cases/ beside lab.yml is listed,
planned for every ordered pair, run by the slixmpp client and reported; and it can fail."""

import json
import re
import shutil
import uuid
from pathlib import Path

import docker
import pytest

from test_e2e import LAB_YML, lab_command, labelled

pytestmark = pytest.mark.docker

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cases" / "s11_headline.py"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    client = docker.from_env()
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    directory = tmp_path_factory.mktemp("own-cases")
    (directory / "lab.yml").write_text(LAB_YML.format(name=name))
    (directory / "cases").mkdir()
    shutil.copy(EXAMPLE, directory / "cases" / "s11_headline.py")
    up = lab_command("up", "-f", str(directory / "lab.yml"))
    assert up.returncode == 0, up.stdout + up.stderr
    yield directory / "lab.yml"
    lab_command("down", "-f", str(directory / "lab.yml"))
    assert not labelled(client, name)


def run_test(path, *args):
    result = lab_command("test", "-f", str(path), *args)
    folder = re.search(r"reports: (\S+)/\{", result.stdout)
    assert folder, result.stdout + result.stderr
    folder = Path(folder.group(1))
    return result, {r["id"]: r for r in json.loads((folder / "results.json").read_text())["results"]}, folder


def test_a_case_of_your_own_is_planned_run_and_reported(lab):
    listed = lab_command("cases", "-f", str(lab))
    assert re.search(r"S11\s+cases/s11_headline\.py\s+s2s", listed.stdout), listed.stdout
    result, by_id, folder = run_test(lab, "--only", "S11")
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(by_id) == {"S11/slixmpp/prosody->ejabberd", "S11/slixmpp/ejabberd->prosody"}
    for entry in by_id.values():
        assert entry["status"] == "pass", entry
        assert re.search(r"-> slixmpp-bob@\w+\.test: headline arrived from slixmpp-alice@\w+\.test/", entry["detail"])
    assert "S11 headline message to a remote user" in (folder / "junit.xml").read_text()


def test_a_case_of_your_own_fails_when_the_server_does_not_do_its_part(lab):
    """Made red once: bob's password on ejabberd changed, so B's user cannot log in there:
    the pair towards ejabberd fails, the other way still passes."""
    wrong = lab_command("exec", "ejabberd", "-f", str(lab), "--", "ejabberdctl", "change_password", "slixmpp-bob",
                        "ejabberd.test", "not-the-password")
    assert wrong.returncode == 0, wrong.stdout
    try:
        result, by_id, _ = run_test(lab, "--only", "S11")
        assert result.returncode == 1
        failed = by_id["S11/slixmpp/prosody->ejabberd"]
        assert failed["status"] == "fail" and "slixmpp-bob@ejabberd.test" in failed["detail"], failed
        assert by_id["S11/slixmpp/ejabberd->prosody"]["status"] == "pass"
    finally:
        assert lab_command("reset", "-f", str(lab)).returncode == 0
