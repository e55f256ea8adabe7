"""Published client ports, end to end: the engine's own port bindings, lab down and up,
a taken port, and a real desktop-style client (Debian's profanity, in tmux on this
machine) logging in through a published port with the lab CA as its only trust."""

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import docker
import pytest

from lab import model, publish
from lab.runtime import LABEL_LAB
from test_e2e import lab_command, labelled

pytestmark = pytest.mark.docker

RECEIVER = (Path(__file__).parent / "fixtures" / "publish" / "receive.py").read_text()

# Two servers at trixie (Prosody 13, ejabberd 24.12), the slixmpp client, ports published.
LAB_YML = """\
name: {name}
clients: [slixmpp]
client: {{release: trixie}}
server: {{release: trixie}}
network: {{publish: {publish}}}
servers:
  prosody: {{kind: prosody, domain: prosody.test}}
  ejabberd: {{kind: ejabberd, domain: ejabberd.test}}
"""


@pytest.fixture(scope="module")
def client():
    return docker.from_env()


@pytest.fixture(scope="module")
def published_lab(client, tmp_path_factory):
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    path = tmp_path_factory.mktemp("publish") / "lab.yml"
    path.write_text(LAB_YML.format(name=name, publish="true"))
    result = lab_command("up", "-f", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    yield name, path, result
    lab_command("down", "-f", str(path))
    assert not labelled(client, name)


def bindings(client, name) -> dict[str, list[tuple[str, int]]]:
    """Every host port binding the engine has for the lab's containers, by container."""
    found = {}
    for container in client.containers.list(all=True, filters={"label": f"{LABEL_LAB}={name}"}):
        found[container.labels["org.xmpp-lab.service"]] = [
            (b["HostIp"], int(b["HostPort"])) for bs in (container.attrs["HostConfig"]["PortBindings"] or {}).values()
            for b in bs or []]
    return found


def free(port: int) -> bool:
    try:
        publish.probe("127.0.0.1", port)
        return True
    except OSError:
        return False


def test_up_says_where_the_ports_are_and_accounts_lists_them(published_lab):
    name, path, result = published_lab
    base = model.default_publish_port(name)
    (line,) = [l for l in result.stdout.splitlines() if l.startswith("client ports")]
    assert line.startswith(f"client ports on 127.0.0.1: prosody.test {base} (STARTTLS) {base + 1} (direct TLS), "
                           f"ejabberd.test {base + 10} (STARTTLS) {base + 11} (direct TLS)"), line
    rows = {row["jid"]: row for row in json.loads(lab_command("accounts", "--json", "-f", str(path)).stdout)["accounts"]}
    assert rows["alice@ejabberd.test"] == {
        "jid": "alice@ejabberd.test", "password": "alice-password", "server": "ejabberd", "published": True,
        "ports": [{"host": "127.0.0.1", "port": base + 10, "tls": "starttls"},
                  {"host": "127.0.0.1", "port": base + 11, "tls": "direct-tls"}]}


def test_only_the_forwarder_publishes_and_only_on_loopback(published_lab, client):
    """Read from the engine: the forwarder holds every published port, on 127.0.0.1 alone;
    the servers publish nothing and stay on the internal network only."""
    name, _, _ = published_lab
    base = model.default_publish_port(name)
    found = bindings(client, name)
    assert sorted(found["publish"]) == [("127.0.0.1", p) for p in (base, base + 1, base + 10, base + 11)]
    assert all(not ports for service, ports in found.items() if service != "publish"), found
    for server in ("prosody", "ejabberd"):
        container = client.containers.get(f"xmpp-lab-{name}-{server}")
        assert list(container.attrs["NetworkSettings"]["Networks"]) == [f"xmpp-lab-{name}"]
    assert client.networks.get(f"xmpp-lab-{name}").attrs["Internal"] is True


def test_status_lists_the_forwarder(published_lab):
    _, path, _ = published_lab
    rows = {row["server"]: row for row in json.loads(lab_command("status", "--json", "-f", str(path)).stdout)}
    assert (rows["publish"]["kind"], rows["publish"]["state"]) == ("forwarder", "running")


class Tmux:
    """A terminal program in a tmux session of its own (its own server socket)."""

    def __init__(self, command: list[str], width: int = 200):
        self.socket = f"lab-test-{uuid.uuid4().hex[:8]}"
        subprocess.run(["tmux", "-L", self.socket, "new-session", "-d", "-s", "main", "-x", str(width), "-y", "50",
                        *command], check=True)

    def type(self, text: str) -> None:
        subprocess.run(["tmux", "-L", self.socket, "send-keys", "-t", "main", "-l", text], check=True)
        subprocess.run(["tmux", "-L", self.socket, "send-keys", "-t", "main", "Enter"], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "-L", self.socket, "capture-pane", "-p", "-S", "-200", "-t", "main"],
                              capture_output=True, text=True).stdout

    def wait_for(self, pattern: str, timeout: float = 20) -> str:
        """The screen once ``pattern`` is on it; fails the test with the screen if it never is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if re.search(pattern, screen):
                return screen
            time.sleep(0.3)
        pytest.fail(f"not on the screen within {timeout:g}s: {pattern!r}\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def profanity(home: Path) -> Tmux:
    """Profanity with a fresh home and OpenSSL's default trust pointed at nothing, so only
    what /tls certpath names is trusted (libstrophe loads the default paths as well)."""
    home.mkdir()
    return Tmux(["env", "-i", "PATH=/usr/bin:/bin", "TERM=xterm-256color", f"HOME={home}",
                 "SSL_CERT_FILE=/nonexistent", "SSL_CERT_DIR=/nonexistent", "profanity"])


def receive(client, name: str, jid: str, password: str, token: str, timeout: float):
    """The lab's slixmpp client logs in as ``jid`` and waits for a message holding ``token``:
    (a thread, an event set once it is online, the result list it fills with the JSON)."""
    container = client.containers.get(f"xmpp-lab-{name}-client-slixmpp")
    online, result = threading.Event(), []

    def run():
        exec_id = client.api.exec_create(container.id, ["python3", "-c", RECEIVER, jid, password, token,
                                                        str(timeout)])["Id"]
        output = ""
        for chunk in client.api.exec_start(exec_id, stream=True):
            output += chunk.decode(errors="replace")
            if "ready\n" in output:
                online.set()
        result.extend(line for line in output.splitlines() if line.startswith("{"))
        result.append(output)
        online.set()  # (it ended: whoever waits must look at the result)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, online, result


@pytest.mark.skipif(not all(shutil.which(tool) for tool in ("profanity", "tmux", "openssl")),
                    reason="needs Debian's profanity, tmux and openssl on this machine (apt-get install profanity "
                           "tmux openssl; .ci/run installs them)")
def test_profanity_logs_in_on_a_published_port_and_messages_another_server(published_lab, client, tmp_path):
    """alice@prosody.test in profanity, through 127.0.0.1:PORT, trusting only the lab CA
    (/tls certpath: a folder holding just the CA), messages slixmpp-bob@ejabberd.test, whom
    the lab's slixmpp client receives. The control: the same login without the CA is
    refused by profanity's own certificate check."""
    name, path, _ = published_lab
    port = model.default_publish_port(name)
    certs = tmp_path / "certs"
    certs.mkdir()
    assert lab_command("ca", "export", str(certs / "lab-ca.pem"), "-f", str(path)).returncode == 0
    subprocess.run(["openssl", "rehash", str(certs)], check=True)  # the hashed names OpenSSL's CApath needs
    connect = f"/connect alice@prosody.test server 127.0.0.1 port {port} tls force"

    control = profanity(tmp_path / "control")
    try:
        control.wait_for("Type '/help'")
        control.type(connect)
        control.wait_for("Enter password")
        control.type("alice-password")
        screen = control.wait_for("TLS certificate verification failed")
        assert "logged in successfully" not in screen
        control.type("/tls deny")
    finally:
        control.close()

    token = f"byoc-{uuid.uuid4().hex[:10]}"
    thread, online, result = receive(client, name, "slixmpp-bob@ejabberd.test", "bob-password", token, 60)
    assert online.wait(30) and not result, f"the slixmpp receiver did not come online: {result}"
    prof = profanity(tmp_path / "home")
    try:
        prof.wait_for("Type '/help'")
        prof.type(f"/tls certpath set {certs}")
        prof.wait_for("Certificate path set to")
        prof.type(connect)
        prof.wait_for("Enter password")
        prof.type("alice-password")
        screen = prof.wait_for("logged in successfully|TLS certificate verification failed|Login failed")
        assert "logged in successfully" in screen, screen
        prof.type(f"/msg slixmpp-bob@ejabberd.test {token}")
        thread.join(60)
    finally:
        prof.close()
    got = json.loads(result[0]) if result and result[0].startswith("{") else {"error": result}
    assert got.get("body") == token, got
    assert got["from"].startswith("alice@prosody.test/") and got["type"] == "chat", got
    log = client.containers.get(f"xmpp-lab-{name}-publish").logs().decode()
    assert re.search(r"prosody \(starttls\): \S+ -> [\d.]+:5222", log), log  # it came through the forwarder


def test_down_frees_the_ports_and_up_brings_the_same_back(published_lab, client):
    name, path, _ = published_lab
    before = bindings(client, name)["publish"]
    assert lab_command("down", "-f", str(path)).returncode == 0
    assert not labelled(client, name)
    assert all(free(port) for _, port in before)
    result = lab_command("up", "-f", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(bindings(client, name)["publish"]) == sorted(before)


def test_a_port_another_lab_publishes_is_refused_before_anything_starts(published_lab, client, tmp_path):
    first, _, _ = published_lab
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "lab.yml"
    path.write_text(LAB_YML.format(name=name, publish=f"{{port: {model.default_publish_port(first)}}}"))
    result = lab_command("up", "-f", str(path))
    leftovers = labelled(client, name)
    lab_command("down", "-f", str(path))
    assert result.returncode == 1 and not leftovers, result.stdout + result.stderr
    assert (f"(prosody's STARTTLS client port) is taken: the engine publishes it for container "
            f"xmpp-lab-{first}-publish; ") in result.stderr, result.stderr


def free_base() -> int:
    """A base port whose two servers' ports are all free on 127.0.0.1 now."""
    for base in range(29000, 30000, 100):
        if all(free(base + offset) for offset in (0, 1, 10, 11)):
            return base
    pytest.skip("no free block of ports in 29000-29999 on 127.0.0.1")


def test_a_taken_port_is_one_error_and_nothing_is_left(client, tmp_path):
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    base = free_base()
    path = tmp_path / "lab.yml"
    path.write_text(LAB_YML.format(name=name, publish=f"{{port: {base}}}"))
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", base + 10))  # ejabberd's STARTTLS port
    squatter.listen()
    try:
        result = lab_command("up", "-f", str(path))
    finally:
        squatter.close()
        leftovers = labelled(client, name)
        lab_command("down", "-f", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert re.fullmatch(rf"error: {re.escape(str(path))}:5: network\.publish: host port 127\.0\.0\.1:{base + 10} "
                        rf"\(ejabberd's STARTTLS client port\) is taken: another program on this machine listens on "
                        rf"it; .*", line), line
    assert not leftovers
