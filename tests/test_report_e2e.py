"""End to end: two runs of `lab test` on a lab of its own, with a server cut off the lab
network between them; the second run's --compare and `lab report diff --last` show the
regressions, naming that server, and exit 1. Also what `lab test` writes beside its
reports (results.md, --junit) and its progress lines off a terminal. Removed by label."""

import json
import uuid
import xml.etree.ElementTree as ET

import docker
import pytest

from lab.runtime import LABEL_LAB
from test_e2e import LAB_YML, lab_command, labelled

pytestmark = pytest.mark.docker


def test_a_server_cut_off_between_two_runs_is_a_regression_naming_it(tmp_path):
    client = docker.from_env()
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "lab.yml"
    path.write_text(LAB_YML.format(name=name))
    junit = tmp_path / "ci" / "junit.xml"
    junit.parent.mkdir()
    try:
        up = lab_command("up", "-f", str(path))
        assert up.returncode == 0, up.stdout + up.stderr
        first = lab_command("test", "-f", str(path), "--only", "C1,S1", "--junit", str(junit))
        assert first.returncode == 0, first.stdout + first.stderr
        assert "progress: " in first.stdout and " cases run, 0 failed or in error, " in first.stdout  # plain, no tty
        assert {s.get("name") for s in ET.parse(junit).getroot()} >= {"s2s prosody -> ejabberd"}
        [run1] = (tmp_path / ".lab" / name / "results").iterdir()
        assert (run1 / "results.md").read_text().startswith(f"# xmpp interop lab: {name}\n")

        # ejabberd's container keeps running, but nothing reaches it any more.
        [ejabberd] = client.containers.list(filters={"label": [f"{LABEL_LAB}={name}",
                                                               "org.xmpp-lab.service=ejabberd"]})
        [network] = client.networks.list(filters={"label": f"{LABEL_LAB}={name}"})
        network.disconnect(ejabberd)

        second = lab_command("test", "-f", str(path), "--only", "C1,S1", "--compare", "last")
        assert second.returncode == 1, second.stdout + second.stderr
        regressions = [line.strip() for line in second.stdout.splitlines() if line.strip().startswith("regression ")]
        assert regressions, second.stdout
        assert all("ejabberd" in line for line in regressions), regressions
        assert any(line.startswith("regression S1/slixmpp/prosody->ejabberd: pass -> fail") for line in regressions)
        assert any(line.startswith("regression C1/slixmpp/ejabberd: pass -> ") for line in regressions)

        diff = lab_command("report", "diff", "--last", "--json", "-f", str(path))
        assert diff.returncode == 1, diff.stderr
        changes = json.loads(diff.stdout)
        assert changes["old_run"]["name"] == run1.name and changes["regressions"]
        assert all("ejabberd" in c["servers"] for c in changes["regressions"])
        assert not [c for c in changes["regressions"] if c["id"].startswith("C1/slixmpp/prosody")]

        run2 = sorted((tmp_path / ".lab" / name / "results").iterdir())[-1]
        page = (run2 / "report.html").read_text()
        assert f"Compared with run {run1.name}" in page and "S1/slixmpp/prosody-&gt;ejabberd</a>" in page
        assert "regression S1/slixmpp/prosody->ejabberd: pass -> fail" in (run2 / "results.md").read_text()
    finally:
        lab_command("down", "-f", str(path))
        assert not labelled(client, name)


@pytest.mark.parametrize("args, code, message", [
    (["--compare", "nowhere"], 1, "nowhere: cannot read: No such file or directory"),
    (["--compare", "last"], 1, "has 0 runs in "),
    (["--junit", "/nonexistent/dir/junit.xml"], 2, "--junit: /nonexistent/dir is not a directory"),
])
def test_a_bad_compare_or_junit_is_one_line_before_anything_runs(tmp_path, args, code, message):
    path = tmp_path / "lab.yml"
    path.write_text(LAB_YML.format(name=f"e2e-{uuid.uuid4().hex[:6]}"))  # never brought up
    done = lab_command("test", "-f", str(path), *args)
    assert done.returncode == code and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
