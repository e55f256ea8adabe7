"""End to end on the real Docker engine: no mocks of Docker or of the servers.

Each test lab has its own name, so it never touches a user's lab, and is removed by
label afterwards whatever happened.
"""

import os
import subprocess
import sys
import uuid

import docker
import pytest

from lab.runtime import LABEL_LAB

pytestmark = pytest.mark.docker

LAB_YML = """\
name: {name}
servers:
  prosody:
    kind: prosody
    domain: prosody.test
  ejabberd:
    kind: ejabberd
    domain: ejabberd.test
"""


def lab_command(*args, env=None):
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=3000)


def labelled(client, name):
    selector = {"label": f"{LABEL_LAB}={name}"}
    return (client.containers.list(all=True, filters=selector) + client.networks.list(filters=selector)
            + client.volumes.list(filters=selector))


@pytest.fixture(scope="module")
def client():
    return docker.from_env()


@pytest.fixture(scope="module")
def lab_up(client, tmp_path_factory):
    """The two-server lab, brought up once for this module's tests."""
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    directory = tmp_path_factory.mktemp("lab")
    (directory / "lab.yml").write_text(LAB_YML.format(name=name))
    result = lab_command("up", "-f", str(directory / "lab.yml"))
    yield name, directory / "lab.yml", result
    lab_command("down", "-f", str(directory / "lab.yml"))
    assert not labelled(client, name)


def test_up_federates_both_ways_with_verified_certificates(lab_up):
    _, _, result = lab_up
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for direction in ("prosody.test -> ejabberd.test", "ejabberd.test -> prosody.test"):
        (line,) = [l for l in lines if direction in l]
        assert "pass" in line and "certificate (SASL EXTERNAL)" in line, result.stdout


def test_lab_network_is_internal_and_everything_is_labelled(lab_up, client):
    name, _, _ = lab_up
    (network,) = client.networks.list(filters={"label": f"{LABEL_LAB}={name}"})
    assert network.attrs["Internal"] is True
    roles = sorted(c.labels["org.xmpp-lab.role"] for c in
                   client.containers.list(filters={"label": f"{LABEL_LAB}={name}"}))
    assert roles == ["client", "dns", "server", "server"]


def test_second_up_rebuilds_and_restarts_nothing(lab_up, client):
    name, path, _ = lab_up
    before = {c.name: c.id for c in client.containers.list(filters={"label": f"{LABEL_LAB}={name}"})}
    result = lab_command("up", "-f", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "building image" not in result.stdout + result.stderr
    after = {c.name: c.id for c in client.containers.list(filters={"label": f"{LABEL_LAB}={name}"})}
    assert after == before


def test_ca_key_stays_on_the_host_with_mode_0600(lab_up, client):
    name, path, _ = lab_up
    key = path.parent / ".lab" / name / "ca" / "ca.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    ca_key = key.read_bytes()
    for container in client.containers.list(filters={"label": f"{LABEL_LAB}={name}"}):
        found = container.exec_run(["grep", "-rlF", ca_key.splitlines()[1].decode(), "/etc"]).output
        assert not found.strip(), f"CA key material in {container.name}: {found}"


def test_server_that_never_becomes_ready_is_named_and_nothing_is_left(client, tmp_path):
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    (tmp_path / "lab.yml").write_text(f"name: {name}\nservers:\n  broken:\n    kind: prosody\n"
                                      f"    domain: broken.test\n")
    # A lab may override any template; this one makes Prosody exit at start.
    (tmp_path / "templates" / "prosody").mkdir(parents=True)
    (tmp_path / "templates" / "prosody" / "prosody.cfg.lua.j2").write_text("this is not lua\n")
    result = lab_command("up", "-f", str(tmp_path / "lab.yml"))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: server broken (broken.test) never became ready") and "last log lines:" in line
    assert not labelled(client, name)


def test_unreachable_docker_engine_is_one_line_error(tmp_path):
    result = lab_command("down", env={"DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"})
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach the Docker engine")
