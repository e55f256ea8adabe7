"""End to end: servers of one kind at different Debian releases side by side (issue:
today's releases beside older ones): Prosody 0.12 (bookworm) and 13 (sid), ejabberd 24.12
(trixie), with slixmpp 1.8.3 (bookworm) and 1.17 (sid) as two clients. Each image builds
FROM its own suite's base; C1, S1 and S8 pass for every pair and both clients, and the
report names each server's and client's release and installed version. Removed by label
after."""

import json
import uuid

import docker
import pytest

from lab.runtime import LABEL_LAB
from test_e2e import lab_command, labelled

pytestmark = pytest.mark.docker


def test_prosody_bookworm_and_sid_beside_ejabberd_trixie(tmp_path):
    client = docker.from_env()
    name = f"e2e-rel-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "lab.yml"
    path.write_text(f"name: {name}\nclients: [slixmpp, {{stack: slixmpp, release: sid}}]\nservers:\n"
                    "  p12: {kind: prosody, domain: p12.test}\n"
                    "  psid: {kind: prosody, release: sid, domain: psid.test}\n"
                    "  e24: {kind: ejabberd, release: trixie, domain: e24.test}\n")
    try:
        up = lab_command("up", "-f", str(path))
        assert up.returncode == 0, up.stdout + up.stderr
        assert "prosody 0.12." in up.stdout and "prosody 13." in up.stdout and "ejabberd 24." in up.stdout, up.stdout
        tested = lab_command("test", "--only", "C1,S1,S8", "-f", str(path))
        [report] = (tmp_path / ".lab" / name / "results").glob("*/results.json")
        document = json.loads(report.read_text())
        for result in document["results"]:
            assert result["status"] == "pass", (result["id"], result["detail"])
        # C1 per server and S1 per pair, for each client; S8 per pair, observed once
        assert len(document["results"]) == 2 * (3 + 6) + 6
        assert {r["stack"] for r in document["results"] if r["case"] == "S1"} == {"slixmpp", "slixmpp-sid"}
        releases = {row["server"]: (row["release"], row["version"].split(".")[0]) for row in document["servers"]}
        # What each server says it is (XEP-0092), beside the package version
        software = {row["server"]: row["software"] for row in document["servers"]}
        assert software["p12"].startswith("Prosody 0.12.") and software["psid"].startswith("Prosody 13."), software
        assert software["e24"].startswith("ejabberd 24.12"), software
        assert releases == {"p12": ("bookworm", "0"), "psid": ("sid", "13"), "e24": ("trixie", "24")}
        clients = {row["client"]: (row["release"], row["version"]) for row in document["clients"]}
        assert clients["slixmpp"][0] == "bookworm" and clients["slixmpp"][1].startswith("1.8.")
        assert clients["slixmpp-sid"][0] == "sid" and clients["slixmpp-sid"][1].startswith("1.17.")
        assert tested.returncode == 0, tested.stdout
        images = {c.name: c.image.tags[0] for c in client.containers.list(filters={"label": f"{LABEL_LAB}={name}"})}
        assert images[f"xmpp-lab-{name}-psid"].startswith("xmpp-lab/prosody:sid-")
    finally:
        lab_command("down", "-f", str(path))
        assert not labelled(client, name)


def test_pull_newer_builds_sid_again_and_recreates_only_its_containers(tmp_path):
    """sid moves: `lab up --pull-newer` makes the sid base and the lab's sid images again
    (no build cache: apt takes today's packages) and recreates the containers that ran the
    old images; a bookworm server keeps running as it was."""
    client = docker.from_env()
    name = f"e2e-pull-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "lab.yml"
    path.write_text(f"name: {name}\nclients: [slixmpp]\nservers:\n"
                    "  p12: {kind: prosody, domain: p12.test}\n"
                    "  psid: {kind: prosody, release: sid, domain: psid.test}\n")
    try:
        assert lab_command("up", "-f", str(path)).returncode == 0
        before = {c.name: (c.id, c.image.id) for c in client.containers.list(filters={"label": f"{LABEL_LAB}={name}"})}
        base_before = client.images.get("xmpp-lab/base:sid").id
        again = lab_command("up", "--pull-newer", "-f", str(path))
        assert again.returncode == 0, again.stdout + again.stderr
        assert "taking sid anew" in again.stdout, again.stdout
        after = {c.name: (c.id, c.image.id) for c in client.containers.list(filters={"label": f"{LABEL_LAB}={name}"})}
        sid, old = f"xmpp-lab-{name}-psid", f"xmpp-lab-{name}-p12"
        assert client.images.get("xmpp-lab/base:sid").id != base_before  # made again (its date differs)
        assert after[sid][1] != before[sid][1] and after[sid][0] != before[sid][0]
        assert after[old] == before[old]
        assert "prosody 13." in again.stdout
    finally:
        lab_command("down", "-f", str(path))
        assert not labelled(client, name)
