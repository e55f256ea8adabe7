"""Every slixmpp (and nbxmpp) case function made red once on the real engine.

A small lab: Prosody, whose kind still declares every feature, runs a template override
(templates/prosody/prosody.cfg.lua.j2 beside lab.yml, as README describes) with the modules
behind them switched off, and ejabberd as its peer. Each case must then be a `fail` (not an
error, not a pass) whose detail names what the server did. Where no module can be switched
off, the cause is made otherwise: a wrong password (every login of C1-C5), or ejabberd cut
off (its Erlang VM stopped with SIGSTOP: the network stays untouched) for S1-S3. Removed by label after.
"""

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import docker
import pytest

from lab.cases.outage import RECOVERY
from lab import TEMPLATES_DIR
from test_e2e import lab_command, labelled

pytestmark = pytest.mark.docker

LAB_YML = """\
name: {name}
clients: [slixmpp, nbxmpp]
room: ejabberd  # the event's room: this lab's Prosody has its MUC left out (override below)
servers:
  prosody: {{kind: prosody, domain: prosody.test}}
  ejabberd: {{kind: ejabberd, domain: ejabberd.test}}
"""
# The modules the override drops, by the lines that load them in the kind's template.
DROPPED = ['"disco";', '"ping";', '"carbons";', '"mam";', '"smacks";', '"register";']


def override() -> str:
    """Prosody's own template without the modules of DROPPED, registration, direct TLS for
    clients and the MUC component (the kind.yml still declares all of them)."""
    text = (TEMPLATES_DIR / "prosody" / "prosody.cfg.lua.j2").read_text()
    lines = [line for line in text.splitlines(keepends=True) if not any(m in line for m in DROPPED)]
    text = "".join(lines).replace("allow_registration = true", "allow_registration = false")
    text = re.sub(r"c2s_direct_tls_ports = .*\n", "", text)
    text = text[:text.index("{%- if muc_domain %}")]  # the MUC component, and its muc_mam
    return "-- the red E2E test's Prosody: modules off that the kind declares\n" + text


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    client = docker.from_env()
    name = f"e2e-red-{uuid.uuid4().hex[:6]}"
    directory = tmp_path_factory.mktemp("red")
    (directory / "templates" / "prosody").mkdir(parents=True)
    (directory / "templates" / "prosody" / "prosody.cfg.lua.j2").write_text(override())
    path = directory / "lab.yml"
    path.write_text(LAB_YML.format(name=name))
    up = lab_command("up", "-f", str(path))
    assert up.returncode == 0, up.stdout + up.stderr
    rendered = (directory / ".lab" / name / "servers" / "prosody" / "config" / "prosody.cfg.lua").read_text()
    assert rendered.startswith("-- the red E2E test's Prosody") and '"ping"' not in rendered
    yield name, path
    lab_command("down", "-f", str(path))
    assert not labelled(client, name)


def run_test(path, *args) -> tuple[int, dict]:
    result = lab_command("test", "-f", str(path), *args)
    folder = re.search(r"reports: (\S+)/\{", result.stdout)
    assert folder, result.stdout + result.stderr
    data = json.loads((Path(folder.group(1)) / "results.json").read_text())
    return result.returncode, {r["id"]: r for r in data["results"]}


def assert_red(by_id: dict, expected: dict) -> None:
    """Each ID a fail whose detail matches its pattern; all of them listed in one message."""
    wrong = {i: (by_id[i]["status"], by_id[i]["detail"][:300]) for i, pattern in expected.items()
             if by_id[i]["status"] != "fail" or not re.search(pattern, by_id[i]["detail"])}
    assert not wrong, json.dumps(wrong, indent=1)


# case -> what its detail must say, with the modules off (prosody's own cases, and
# ejabberd's user asking prosody.test across s2s)
MODULES_OFF = {
    "C6/slixmpp/prosody": r"disco#info of prosody\.test answered with error service-unavailable",
    "C7/slixmpp/prosody": r"ping of prosody\.test answered with error service-unavailable",
    "C7/nbxmpp/prosody": r"service-unavailable",
    "C8/slixmpp/prosody": r"stream management \(urn:xmpp:sm:3\) not offered",
    "C9/slixmpp/prosody": r"enabling carbons refused: .*service-unavailable",
    "C10/slixmpp/prosody": r"no XEP-0359 stanza-id|MAM query refused",
    "C11/slixmpp/prosody": r"in-band registration not offered in the stream features",
    "C12/slixmpp/prosody": r"prosody\.test|5223|refused|unreachable",
    "S4/slixmpp/ejabberd->prosody": r"ping of prosody\.test answered with error service-unavailable",
    "S5/slixmpp/ejabberd->prosody": r"disco#info of prosody\.test answered with error service-unavailable",
    "S6/slixmpp/ejabberd->prosody": r"joining lab-\w+@conference\.prosody\.test failed",
    "X0045/slixmpp/prosody->ejabberd": r"creating the room: joining lab-\w+@conference\.prosody\.test failed",
    "S7/slixmpp/ejabberd->prosody": r"no XEP-0359 stanza-id|not found in .*archive",
}


def test_cases_whose_module_is_off_fail_and_say_what_the_server_did(lab):
    _, path = lab
    code, by_id = run_test(path, "--only", "C6,C7,C8,C9,C10,C11,C12,S4,S5,S6,S7,X0045")
    assert_red(by_id, MODULES_OFF)
    # ejabberd keeps its modules: the same cases pass there (the checks are not just broken)
    for case in ("C7", "C8", "C9", "C10", "C11"):
        assert by_id[f"{case}/slixmpp/ejabberd"]["status"] == "pass", by_id[f"{case}/slixmpp/ejabberd"]
    assert by_id["S4/slixmpp/prosody->ejabberd"]["status"] == "pass"
    assert code == 1


WRONG_PASSWORD = {f"{case}/slixmpp/prosody": r"not-authorized" for case in ("C1", "C2", "C3", "C4", "C5")} | {
    f"{case}/nbxmpp/prosody": r"not-authorized" for case in ("C1", "C2", "C3", "C5")}


def test_every_login_case_fails_on_a_changed_password(lab):
    _, path = lab
    for user in ("slixmpp-alice", "alice"):  # the slixmpp stack's own alice, and every other stack's
        changed = lab_command("exec", "prosody", "-f", str(path), "--",
                              "prosodyctl", "register", user, "prosody.test", "not-the-password")
        assert changed.returncode == 0, changed.stderr
    try:
        code, by_id = run_test(path, "--only", "C1,C2,C3,C4,C5", "--server", "prosody")
        assert_red(by_id, WRONG_PASSWORD)
        assert code == 1
    finally:
        reset = lab_command("reset", "-f", str(path))  # the accounts of lab.yml again
        assert reset.returncode == 0, reset.stdout + reset.stderr


CUT_OFF = {
    "S1/slixmpp/prosody->ejabberd": r"not delivered|timed out",
    "S1/nbxmpp/prosody->ejabberd": r"not delivered|timed out|login failed",
    "S2/slixmpp/prosody->ejabberd": r"timed out waiting",
    "S3/slixmpp/prosody->ejabberd": r"an error for the message to nosuchuser-\w+@ejabberd\.test",
}


# Every process of ejabberd's Erlang VM stopped (SIGSTOP) or continued: its container keeps
# running (so the lab is up) and its ports accept connections, but nothing answers.
SIGNAL_BEAM = "for p in /proc/[0-9]*; do grep -qx beam.smp $p/comm 2>/dev/null && kill -{signal} ${{p#/proc/}}; done; true"


def test_s2s_cases_fail_when_the_peer_is_cut_off(lab):
    name, path = lab
    container = docker.from_env().containers.get(f"xmpp-lab-{name}-ejabberd")
    assert container.exec_run(["sh", "-c", SIGNAL_BEAM.format(signal="STOP")]).exit_code == 0
    try:
        code, by_id = run_test(path, "--only", "S1,S2,S3", "--server", "prosody")
        assert_red(by_id, CUT_OFF)
        assert code == 1
    finally:
        container.exec_run(["sh", "-c", SIGNAL_BEAM.format(signal="CONT")])


def test_f8_fails_at_the_runner_when_no_message_arrives_after_the_outage(lab):
    """F8's runner function made red: ejabberd's VM is stopped from the moment the lab DNS
    goes down until the runner has given up, so none of its messages arrives (the users
    logged in before). The VM goes on again before the lab's own S1 after the outage."""
    name, path = lab
    engine = docker.from_env()
    dns, ejabberd = (engine.containers.get(f"xmpp-lab-{name}-{role}") for role in ("dns", "ejabberd"))
    process = subprocess.Popen([sys.executable, "-m", "lab", "test", "--only", "F8", "--server", "prosody",
                                "-f", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stopped = False
    try:
        assert wait_for(lambda: status(dns) == "paused", 60), "the lab DNS was never paused"
        assert ejabberd.exec_run(["sh", "-c", SIGNAL_BEAM.format(signal="STOP")]).exit_code == 0
        stopped = True
        assert wait_for(lambda: status(dns) == "running", 60), "the lab DNS never came back"
        time.sleep(RECOVERY + 2)  # the runner gives up then
    finally:
        if stopped:
            ejabberd.exec_run(["sh", "-c", SIGNAL_BEAM.format(signal="CONT")])
        output, _ = process.communicate(timeout=300)
    folder = re.search(r"reports: (\S+)/\{", output)
    assert folder, output
    by_id = {r["id"]: r for r in json.loads((Path(folder.group(1)) / "results.json").read_text())["results"]}
    assert_red(by_id, {"F8/slixmpp/prosody->ejabberd": r"none of \d+ messages \(one every 5 s\) arrived"})
    assert process.returncode == 1


def status(container) -> str:
    container.reload()
    return container.status


def wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_f1_fails_at_the_runner_where_the_sender_falls_back_after_a_dot_target(tmp_path):
    """F1's runner function made red by a real server: jabberd2, the sender, looks the peer
    up by its A record after the SRV answer "." (a finding, docs/faults.md) instead of
    refusing at once, so its user gets no remote-server-not-found."""
    client = docker.from_env()
    name = f"e2e-red-f1-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "lab.yml"
    path.write_text(f"name: {name}\nclients: [slixmpp]\nservers:\n  prosody: {{kind: prosody, domain: prosody.test}}\n"
                    f"  jabberd2: {{kind: jabberd2, domain: jabberd2.test}}\n")
    try:
        up = lab_command("up", "-f", str(path))
        assert up.returncode == 0, up.stdout + up.stderr
        code, by_id = run_test(path, "--only", "F1")
        f1 = by_id["F1/slixmpp/jabberd2->prosody"]
        # the runner's own words: no error came back at once, or another condition than remote-server-not-found
        assert f1["status"] == "fail" and re.search(
            r"timed out waiting for an error for the message to slixmpp-bob@prosody\.test|"
            r"observed: refused with (?!remote-server-not-found)", f1["detail"]), f1
        assert by_id["F1/slixmpp/prosody->jabberd2"]["status"] == "pass"  # the check itself is not broken
        assert code == 1
    finally:
        lab_command("down", "-f", str(path))
        assert not labelled(client, name)
