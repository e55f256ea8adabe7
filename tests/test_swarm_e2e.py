"""End to end on a single-node Docker swarm (engine: swarm): the same lab as services.

The swarm is made for the module only if the engine is in none, and left again after
(with the docker_gwbridge network it leaves behind); an engine already in a swarm is not
touched: the tests skip, saying so. Each lab is removed by label after, whatever happened.
"""

import json
import subprocess
import uuid

import docker
import pytest

from exemptions import Exemptions
from lab.runtime import LABEL_LAB
from test_e2e import federated, lab_command

pytestmark = pytest.mark.docker

LAB_YML = """\
name: {name}
engine: swarm
clients: [slixmpp]
servers:
  prosody: {{kind: prosody, domain: prosody.test}}
  ejabberd: {{kind: ejabberd, domain: ejabberd.test}}
  jabberd2: {{kind: jabberd2, domain: jabberd2.test}}
"""


@pytest.fixture(scope="module")
def swarm():
    client = docker.from_env()
    if client.info()["Swarm"]["LocalNodeState"] != "inactive":
        pytest.skip("the engine is already in a swarm: these tests make and leave a single-node swarm of their own")
    subprocess.run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"], check=True, capture_output=True)
    try:
        yield client
    finally:
        subprocess.run(["docker", "swarm", "leave", "--force"], check=True, capture_output=True)
        for network in client.networks.list(names=["docker_gwbridge"]):
            network.remove()


def leftovers(client, name):
    selector = {"label": f"{LABEL_LAB}={name}"}
    return (client.services.list(filters=selector) + client.configs.list(filters=selector)
            + client.containers.list(all=True, filters=selector) + client.networks.list(filters=selector))


def test_a_lab_on_the_swarm_federates_and_passes_s1_s8_s9_s10(swarm, tmp_path):
    name = f"e2e-sw-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "lab.yml"
    path.write_text(LAB_YML.format(name=name))
    try:
        up = lab_command("up", "-f", str(path))
        assert up.returncode == 0, up.stdout + up.stderr
        assert federated(up.stdout) == 6, up.stdout
        services = {s.name for s in swarm.services.list(filters={"label": f"{LABEL_LAB}={name}"})}
        assert services == {f"xmpp-lab-{name}-{s}" for s in ("prosody", "ejabberd", "jabberd2", "client-slixmpp")}
        assert swarm.configs.list(filters={"label": f"{LABEL_LAB}={name}"})
        status = json.loads(lab_command("status", "--json", "-f", str(path)).stdout)
        node = swarm.info()["Name"]
        assert all(row["ready"] for row in status if row["domain"]) and {row["node"] for row in status} == {node}
        again = lab_command("up", "-f", str(path))
        assert "up to date" in again.stdout, again.stdout
        tested = lab_command("test", "--only", "S1,S8,S9,S10", "-f", str(path))
        [report] = (tmp_path / ".lab" / name / "results").glob("*/results.json")
        results = json.loads(report.read_text())["results"]
        assert len(results) == 4 * 6
        exemptions = Exemptions()  # jabberd2's sporadic internal-server-error only, counted
        assert all(r["status"] == "pass" or exemptions.allows(r) for r in results), [
            (r["id"], r["status"], r["detail"][:300]) for r in results if r["status"] != "pass"]
        exemptions.check()
        assert tested.returncode == (1 if any(r["status"] == "fail" for r in results) else 0)
    finally:
        down = lab_command("down", "-f", str(path))
        assert down.returncode == 0, down.stdout + down.stderr
        assert not leftovers(swarm, name)


def test_a_server_on_a_node_that_does_not_exist_fails_with_the_schedulers_reason(swarm, tmp_path):
    name = f"e2e-sw-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "lab.yml"
    path.write_text(f"name: {name}\nengine: swarm\nclients: [slixmpp]\nservers:\n"
                    "  prosody: {kind: prosody, domain: prosody.test, host: no-such-node}\n")
    try:
        up = lab_command("up", "-f", str(path))
        assert up.returncode == 1
        (line,) = up.stderr.strip().splitlines()
        assert "prosody" in line and "did not start" in line and "no suitable node" in line, line
        assert not leftovers(swarm, name)
    finally:
        lab_command("down", "-f", str(path))
