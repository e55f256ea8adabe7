"""End to end: the lab's TURN service (lab/turn.py) and J4 on a two-server lab, Prosody 13
and ejabberd 24.12 at trixie (the default lab's releases). J4 passes on both, on ejabberd
for its own TURN (turn-server) as well as the lab's; then made red: a template override
beside lab.yml gives each server a wrong TURN secret (J4 fails: the lab's TURN service
refuses what the server handed out); another switches ejabberd's use_turn off while its kind
declares turn-server (J4 fails: its own TURN is not listed); the TURN server hung (SIGSTOP in its container)
makes J4 an error, not a verdict on the servers; the TURN container stopped makes `lab test`
refuse to run. Removed by label afterwards."""

import json
import uuid

import docker
import pytest

from lab import TEMPLATES_DIR, turn
from test_e2e import lab_command, labelled, new_results as results, prosody_ejabberd_lab

pytestmark = pytest.mark.docker

WRONG_SECRET = "not-the-lab-secret"


def test_j4_passes_on_prosody_and_ejabberd_and_fails_on_a_wrong_secret_or_a_hung_turn_server(tmp_path):
    client = docker.from_env()
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    path = prosody_ejabberd_lab(tmp_path, name)
    try:
        up = lab_command("up", "-f", str(path))
        assert up.returncode == 0, up.stdout + up.stderr
        secret = (tmp_path / ".lab" / name / "turn" / "secret")
        assert secret.stat().st_mode & 0o077 == 0  # like the CA key: the owner's alone
        answer = lab_command("dns", "query", turn.NAME, "-f", str(path))
        assert answer.returncode == 0 and ".4" in answer.stdout, answer.stdout + answer.stderr

        tested = lab_command("test", "-f", str(path), "--only", "J4")
        first, green = results(tmp_path, name)
        assert {i: r["status"] for i, r in green.items()} == {"J4/slixmpp/prosody": "pass",
                                                             "J4/slixmpp/ejabberd": "pass"}, green
        for result in green.values():
            assert "allocated relays" in result["detail"] and "refused a changed password" in result["detail"], result
        # ejabberd's own TURN (turn-server) as well as the lab's, each over udp and tcp.
        detail = green["J4/slixmpp/ejabberd"]["detail"]
        assert detail.count("(the server's own) allocated relays") == 2, detail
        assert detail.count(f"{turn.NAME}:{turn.PORT} allocated relays") == 2, detail
        assert tested.returncode == 0, tested.stdout
        table = json.loads(first.read_text())["compliance"]
        assert table["prosody"]["requirements"]["XEP-0215"]["verdict"] == "pass"

        # A wrong secret in each server's config (template overrides beside lab.yml).
        for kind, template, line in [("prosody", "prosody.cfg.lua.j2", 'turn_external_secret = "{{ turn.secret }}"'),
                                     ("ejabberd", "ejabberd.yml.j2", 'secret: "{{ turn.secret }}"')]:
            text = (TEMPLATES_DIR / kind / template).read_text()
            assert text.count(line) == 1
            (tmp_path / "templates" / kind).mkdir(parents=True)
            (tmp_path / "templates" / kind / template).write_text(text.replace(line, line.replace(
                "{{ turn.secret }}", WRONG_SECRET)))
        up = lab_command("up", "-f", str(path))
        assert up.returncode == 0, up.stdout + up.stderr
        tested = lab_command("test", "-f", str(path), "--only", "J4")
        second, red = results(tmp_path, name, before=(first,))
        assert tested.returncode == 1
        for result in red.values():
            assert result["status"] == "fail" and "refused the credentials" in result["detail"], result
        # ejabberd's own TURN checks the password against the same (wrong) secret: it allocates.
        assert "(the server's own) allocated relays" in red["J4/slixmpp/ejabberd"]["detail"]
        (tmp_path / "templates" / "prosody" / "prosody.cfg.lua.j2").unlink()

        # ejabberd's own TURN switched off while its kind declares turn-server: only STUN is offered.
        text = (TEMPLATES_DIR / "ejabberd" / "ejabberd.yml.j2").read_text()
        assert text.count("use_turn: true") == 1
        (tmp_path / "templates" / "ejabberd" / "ejabberd.yml.j2").write_text(text.replace("use_turn: true",
                                                                                          "use_turn: false"))
        up = lab_command("up", "-f", str(path))
        assert up.returncode == 0, up.stdout + up.stderr
        tested = lab_command("test", "-f", str(path), "--only", "J4")
        third, off = results(tmp_path, name, before=(first, second))
        assert tested.returncode == 1 and off["J4/slixmpp/prosody"]["status"] == "pass", off
        result = off["J4/slixmpp/ejabberd"]
        assert result["status"] == "fail" and "its own TURN service at" in result["detail"], result
        assert "is not among them" in result["detail"], result
        (tmp_path / "templates" / "ejabberd" / "ejabberd.yml.j2").unlink()
        up = lab_command("up", "-f", str(path))
        assert up.returncode == 0, up.stdout + up.stderr

        # The TURN server hung: its container runs, nothing answers.
        turn_container = client.containers.get(f"xmpp-lab-{name}-{turn.SERVICE}")
        code, output = turn_container.exec_run(["sh", "-c", "kill -STOP $(pidof turnserver)"])
        assert code == 0, output
        try:
            tested = lab_command("test", "-f", str(path), "--only", "J4")
        finally:
            turn_container.exec_run(["sh", "-c", "kill -CONT $(pidof turnserver)"])
        _, hung = results(tmp_path, name, before=(first, second, third))
        for result in hung.values():
            assert result["status"] == "error" and "did not answer" in result["detail"], result
        # ejabberd's own TURN still answered, and the detail says so.
        assert "(the server's own) allocated relays" in hung["J4/slixmpp/ejabberd"]["detail"]

        # The TURN container stopped: the lab is not up.
        turn_container.stop(timeout=2)
        tested = lab_command("test", "-f", str(path), "--only", "J4")
        assert tested.returncode != 0 and "not up" in tested.stdout + tested.stderr, tested.stdout + tested.stderr
    finally:
        lab_command("down", "-f", str(path))
        assert not labelled(client, name)
