"""End to end: the Jingle cases (lab/cases/jingle.py) on a two-server lab, Prosody 13 and
ejabberd 24.12 at trixie: J1, J2, J3, J5 and J6 pass both ways, J2 through A's own proxy65
(Prosody's at port 5000, ejabberd's at 7777) and J6 with the responder's transport-accept.
Then each is made red on the same servers: the lab's responder plays Gajim's answer to an
IBB fallback (session-accept) and Dino's (none), the initiator truncates the file, the
responder declines without <decline/> (the runner is given the spec's ``jingle`` field, as
docs/jingle.md says), and the proxies' names are left out of the lab DNS zone. Removed by
label afterwards."""

import json
import re
import uuid

import docker
import pytest

from lab import model
from lab.interop import Interop
from lab.project import DNS_SERVICE, ZONE_PATH
from lab.runtime import File, connect, runtime_for
from test_e2e import lab_command, labelled, new_results as results, prosody_ejabberd_lab

pytestmark = pytest.mark.docker

CASES = ["J1", "J2", "J3", "J5", "J6"]
PAIRS = ["prosody->ejabberd", "ejabberd->prosody"]


def run_variant(path, case: str, jingle: dict) -> dict:
    """``case`` for both pairs on the lab's slixmpp runner, with the spec's jingle field set."""
    lab = model.load_lab(path)
    runtime = runtime_for(connect(), lab.name, lab.engine, own_containers=(DNS_SERVICE,))
    interop = Interop(lab, runtime)
    planned = [{"case": case, "server": a, "target": b} for a, b in (p.split("->") for p in PAIRS)]
    return {f"{r.server}->{r.target}": r for r in interop.run_runner(lab.primary, planned, jingle=jingle)}


def test_jingle_cases_pass_both_ways_and_each_is_made_red(tmp_path):
    client = docker.from_env()
    name = f"e2e-jingle-{uuid.uuid4().hex[:6]}"
    path = prosody_ejabberd_lab(tmp_path, name)
    try:
        up = lab_command("up", "-f", str(path))
        assert up.returncode == 0, up.stdout + up.stderr
        tested = lab_command("test", "-f", str(path), "--only", ",".join(CASES))
        first, green = results(tmp_path, name)
        assert sorted(green) == sorted(f"{c}/slixmpp/{p}" for c in CASES for p in PAIRS)
        assert {i: r["detail"] for i, r in green.items() if r["status"] != "pass"} == {}
        assert tested.returncode == 0, tested.stdout
        assert re.search(r"^streamhost used: proxy\.prosody\.test at proxy\.prosody\.test:5000 \(10\.",
                         green["J2/slixmpp/prosody->ejabberd"]["detail"])
        assert re.search(r"^streamhost used: proxy\.ejabberd\.test\S* at proxy\.ejabberd\.test:7777 \(10\.",
                         green["J2/slixmpp/ejabberd->prosody"]["detail"])
        for pair in PAIRS:
            assert green[f"J6/slixmpp/{pair}"]["evidence"]["reaction"] == "transport-accept"
            assert "ConnectionRefusedError" in green[f"J6/slixmpp/{pair}"]["evidence"]["candidates_tried"][0]
            assert green[f"J1/slixmpp/{pair}"]["evidence"]["bytes"] == 20000

        # The known breakages, played by the lab's responder, and a truncated file.
        gajim = run_variant(path, "J6", {"responder": {"on_fallback": "session-accept"}})
        dino = run_variant(path, "J6", {"responder": {"on_fallback": "ignore"}})
        truncated = run_variant(path, "J1", {"initiator": {"truncate": True}})
        no_decline = run_variant(path, "J3", {"responder": {"decline_reason": False}})
        for pair in PAIRS:
            assert gajim[pair].status == "fail" and gajim[pair].evidence["reaction"] == "session-accept", gajim[pair]
            assert "20000 bytes over IBB after transport-replace, sha-256 matches" in gajim[pair].detail
            assert dino[pair].status == "fail" and "never answered it" in dino[pair].detail, dino[pair]
            assert truncated[pair].status == "fail" and "16384 of 20000 bytes" in truncated[pair].detail
            assert no_decline[pair].status == "fail" and "not <decline/>" in no_decline[pair].detail

        # The proxies' names left out of the zone: B's user cannot reach A's streamhost.
        zone = json.loads((tmp_path / ".lab" / name / "dns" / "zone.json").read_text())
        kept = [r for r in zone["records"] if not r["name"].startswith("proxy.")]
        assert len(kept) < len(zone["records"])
        runtime = runtime_for(connect(), name, "local", own_containers=(DNS_SERVICE,))
        runtime.update_file(DNS_SERVICE, ZONE_PATH, File(json.dumps({**zone, "records": kept}).encode()))
        lab_command("test", "-f", str(path), "--only", "J2")
        _, red = results(tmp_path, name, before=(first,))
        for pair, proxy in zip(PAIRS, ("proxy.prosody.test", "proxy.ejabberd.test")):
            result = red[f"J2/slixmpp/{pair}"]
            assert result["status"] == "fail", result
            assert re.search(rf"could reach none of A's SOCKS5 candidates \(candidate-error\): proxy {proxy}\S* at "
                             rf"{proxy}:\d+: gaierror", result["detail"]), result["detail"]
    finally:
        lab_command("down", "-f", str(path))
        assert not labelled(client, name)
