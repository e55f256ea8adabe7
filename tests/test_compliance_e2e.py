"""End to end: the compliance cases (lab/cases/compliance.py) on a two-server lab, Prosody
13 and ejabberd 24.12 at trixie (the default lab's releases): every one passes both ways;
then Prosody's template is overridden beside lab.yml with each case's module switched off
while the kind still declares the feature, and each case fails on Prosody with a detail
that names what was refused. Removed by label afterwards."""

import json
import uuid

import docker
import pytest

from lab import TEMPLATES_DIR
from test_e2e import lab_command, labelled, new_results as results, prosody_ejabberd_lab

pytestmark = pytest.mark.docker

CASES = ["X0054", "X0191", "X0163", "X0045", "X0313M", "X0049", "X0223", "X0157", "X0363", "X0114", "X0398",
         "ROOM"]
# The Prosody config lines that turn each case's module on, and what the case then says.
SWITCHED_OFF = {
    '"vcard_legacy";': ("X0054/slixmpp/prosody->ejabberd", "vCard set refused: service-unavailable"),
    '"blocklist";': ("X0191/slixmpp/prosody->ejabberd", "blocking slixmpp-bob@ejabberd.test refused"),
    '"pep";': ("X0163/slixmpp/prosody->ejabberd", "user tune publish refused"),
    'modules_enabled = { "muc_mam" }': ("X0313M/slixmpp/prosody->ejabberd", "MAM query of lab-"),
    '"private";': ("X0049/slixmpp/prosody->ejabberd", "bookmarks in private XML refused"),
    '"server_contact_info";': ("X0157/slixmpp/prosody", "has no http://jabber.org/network/serverinfo form"),
    'Component "{{ upload_domain }}" "http_file_share"': (
        "X0363/slixmpp/prosody->ejabberd", "slot request to upload.prosody.test refused"),
    # Without its secret Prosody refuses every component of that name.
    'component_secret = "{{ component_secret }}"': (
        "X0114/slixmpp/prosody->ejabberd", "did not take the component component.prosody.test"),
}
# (pep off also takes private PEP away: X0223 fails on it too, and PEP avatars: X0398 fails at
# its publish. vcard_legacy off alone fails X0398 at the presence: no photo hash in it.)
ALSO_RED = {"X0223/slixmpp/prosody->ejabberd": "publishing a XEP-0402 bookmark (whitelist, persistent) refused",
            "X0398/slixmpp/prosody->ejabberd": "avatar data publish refused"}


def test_compliance_cases_pass_on_prosody_and_ejabberd_and_fail_with_their_module_off(tmp_path):
    client = docker.from_env()
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    path = prosody_ejabberd_lab(tmp_path, name)
    try:
        up = lab_command("up", "-f", str(path))
        assert up.returncode == 0, up.stdout + up.stderr
        tested = lab_command("test", "-f", str(path), "--only", ",".join(CASES))
        first, green = results(tmp_path, name)
        assert len(green) == 24, sorted(green)  # 10 s2s cases x 2 pairs, X0157 and ROOM x 2 servers
        assert {i: r["status"] for i, r in green.items() if r["status"] != "pass"} == {}, \
            {i: r["detail"] for i, r in green.items() if r["status"] != "pass"}
        assert tested.returncode == 0, tested.stdout
        table = json.loads(first.read_text())["compliance"]  # and the table of the suites' levels
        assert table["prosody"]["requirements"]["XEP-0054"]["verdict"] == "pass"
        assert table["prosody"]["requirements"]["XEP-0054"]["peers"] == ["ejabberd"]
        assert table["ejabberd"]["requirements"]["XEP-0191"]["verdict"] == "pass"
        assert "compliance, XEP-0479" in tested.stdout

        # The modules off in a template beside lab.yml; kind.yml still declares them.
        template = (TEMPLATES_DIR / "prosody" / "prosody.cfg.lua.j2").read_text()
        lines = template.splitlines(keepends=True)
        kept = [line for line in lines if not any(switch in line for switch in SWITCHED_OFF)]
        assert len(lines) - len(kept) == len(SWITCHED_OFF)  # each switch is one line of the template
        # ROOM: the MUC keeps no history for latecomers.
        muc = kept.index('Component "{{ muc_domain }}" "muc"\n')
        kept.insert(muc + 1, "\tmax_history_messages = 0\n")
        (tmp_path / "templates" / "prosody").mkdir(parents=True)
        (tmp_path / "templates" / "prosody" / "prosody.cfg.lua.j2").write_text("".join(kept))
        up = lab_command("up", "-f", str(path))
        assert up.returncode == 0, up.stdout + up.stderr
        tested = lab_command("test", "-f", str(path), "--only", ",".join(CASES))
        second, red = results(tmp_path, name, before=(first,))
        assert tested.returncode == 1
        table = json.loads(second.read_text())["compliance"]
        assert table["prosody"]["requirements"]["XEP-0054"]["failed"] == ["X0054/slixmpp/prosody->ejabberd"]
        for result_id, cause in [*SWITCHED_OFF.values(), *ALSO_RED.items()]:
            assert red[result_id]["status"] == "fail" and cause in red[result_id]["detail"], red[result_id]
        assert red["ROOM/slixmpp/prosody"]["status"] == "fail" and "0 of the 2 messages as history" in \
            red["ROOM/slixmpp/prosody"]["detail"], red["ROOM/slixmpp/prosody"]
        assert red["X0157/slixmpp/ejabberd"]["status"] == "pass"  # ejabberd's config is its own
        assert red["ROOM/slixmpp/ejabberd"]["status"] == "pass"
        assert "not supported" not in {r["status"] for r in red.values()}  # still declared: asked, and failed
    finally:
        lab_command("down", "-f", str(path))
        assert not labelled(client, name)
