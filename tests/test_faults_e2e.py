"""End to end: one fault of each family on a small lab (Prosody and ejabberd) on the real
engine: DNS (F1), certificate (F3c, B restarted with a self-signed certificate), TLS policy
(F5, B with s2s TLS off) and DNS outage (F8); IPv6 (F6) is in test_ipv6_e2e.py. Both
kinds verify certificates and require TLS, so every fault has one right outcome here; the
lab must be back to normal after each group. Removed by label after."""

import json
import signal
import subprocess
import sys
import time
import uuid

import docker
import pytest

from lab.runtime import LABEL_LAB
from test_e2e import lab_command, labelled

pytestmark = pytest.mark.docker

PAIRS = ("prosody->ejabberd", "ejabberd->prosody")


def test_one_fault_of_each_family_then_back_to_normal(tmp_path):
    client = docker.from_env()
    name = f"e2e-faults-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "lab.yml"
    path.write_text(f"name: {name}\nclients: [slixmpp]\nservers:\n  prosody: {{kind: prosody, domain: prosody.test}}\n"
                    f"  ejabberd: {{kind: ejabberd, domain: ejabberd.test}}\n")
    try:
        up = lab_command("up", "-f", str(path))
        assert up.returncode == 0, up.stdout + up.stderr
        containers = {c.name: c.id for c in client.containers.list(filters={"label": f"{LABEL_LAB}={name}"})}

        tested = lab_command("test", "--only", "F1,F3c,F5,F8", "-f", str(path))
        [report] = (tmp_path / ".lab" / name / "results").glob("*/results.json")
        results = {r["id"]: r for r in json.loads(report.read_text())["results"]}
        assert set(results) == {f"{case}/slixmpp/{pair}" for case in ("F1", "F3c", "F5", "F8") for pair in PAIRS} | {
            f"S1/after-{group}/{pair}" for group in ("dns", "server", "outage") for pair in PAIRS}
        for result_id, result in results.items():
            assert result["status"] == "pass", (result_id, result["detail"])
        for pair in PAIRS:
            f1, f3c, f5, f8 = (results[f"{case}/slixmpp/{pair}"] for case in ("F1", "F3c", "F5", "F8"))
            assert "refused: remote-server-not-found" in f1["observed"] and "lab DNS:" in f1["detail"]
            # B presented the self-signed certificate (seen on its s2s port), and neither way got through.
            target = pair.split("->")[1]
            assert f3c["evidence"]["presented"].startswith(
                f"a certificate for {target}.test, conference.{target}.test issued by CN={target}.test,")
            assert f3c["observed"].startswith("A->B refused: ") and "; B->A refused: " in f3c["observed"]
            assert f5["evidence"]["presented"] == "no STARTTLS on its s2s port"
            assert f5["observed"].startswith("A->B refused: ") and "; B->A refused: " in f5["observed"]
            assert f8["observed"].startswith("recovered ") or f8["observed"].startswith("delivered during")
        assert tested.returncode == 0, tested.stdout + tested.stderr
        # B was restarted, not recreated: the same containers, running, with their own certificates back.
        after = {c.name: c.id for c in client.containers.list(filters={"label": f"{LABEL_LAB}={name}"})}
        assert after == containers
        federation = lab_command("test", "--only", "S1", "-f", str(path))
        assert federation.returncode == 0, federation.stdout

        # Ctrl-C while a server presents a fault: one line, exit 130, its own files back.
        process = subprocess.Popen([sys.executable, "-m", "lab", "test", "--only", "F3c", "-f", str(path)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(6)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 130, output
        assert output.strip().splitlines()[-1].startswith("interrupted: lab test was interrupted"), output
        state = tmp_path / ".lab" / name
        for server, config in (("prosody", "/etc/prosody/prosody.cfg.lua"), ("ejabberd", "/etc/ejabberd/ejabberd.yml")):
            container = client.containers.get(f"xmpp-lab-{name}-{server}")
            _, presented = container.exec_run(["cat", "/etc/xmpp-lab/cert.pem", config])
            own = b"".join(file.read_bytes() for file in (state / "servers" / server / "cert.pem", state / "ca" / "ca.pem",
                                                          state / "servers" / server / "config" / config.split("/")[-1]))
            assert presented == own, f"{server} kept a fault's files"
    finally:
        lab_command("down", "-f", str(path))
        assert not labelled(client, name)
