"""End to end: the libervia stack's J1 on a two-server lab, Prosody 13 and ejabberd 24.12 at
trixie, libervia 0.9.0~hg4352 at both ends (one backend, alice's profile on A, bob's on B):
the file crosses both ways over IBB and arrives whole. The pairs with the lab's slixmpp
ends fail both ways on libervia's XEP-0300 hash values (a real finding, docs/jingle.md). Then made red: a Prosody template
override beside lab.yml switches its s2s off (modules_disabled), so no Jingle stanza
crosses; J1 must fail both ways with what libervia logged. Removed by label afterwards."""

import json
import uuid

import docker
import pytest

from lab import TEMPLATES_DIR
from test_e2e import lab_command, labelled

pytestmark = pytest.mark.docker

PAIRS = ["prosody->ejabberd", "ejabberd->prosody"]


def results(tmp_path, name, before=()):
    [report] = [p for p in (tmp_path / ".lab" / name / "results").glob("*/results.json") if p not in before]
    return report, {r["id"]: r for r in json.loads(report.read_text())["results"]}


def test_libervia_j1_passes_both_ways_and_fails_with_s2s_off(tmp_path):
    client = docker.from_env()
    name = f"e2e-libervia-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "lab.yml"
    path.write_text(f"name: {name}\nserver: {{release: trixie}}\nclient: {{release: trixie}}\nclients: [libervia]\n"
                    f"servers:\n  prosody: {{kind: prosody, domain: prosody.test}}\n"
                    f"  ejabberd: {{kind: ejabberd, domain: ejabberd.test}}\n")
    try:
        up = lab_command("up", "-f", str(path))
        assert up.returncode == 0, up.stdout + up.stderr
        tested = lab_command("test", "-f", str(path), "--only", "J1")
        first, green = results(tmp_path, name)
        ends = ("libervia", "libervia->slixmpp", "slixmpp->libervia", "slixmpp")
        assert sorted(green) == sorted(f"J1/{stack}/{pair}" for stack in ends for pair in PAIRS)
        for pair in PAIRS:
            for stack in ("libervia", "slixmpp"):
                assert green[f"J1/{stack}/{pair}"]["status"] == "pass", green[f"J1/{stack}/{pair}"]["detail"]
            result = green[f"J1/libervia/{pair}"]
            assert " 20000 bytes over IBB (XEP-0261), sha-256 matches the file sent (checked by the runner)" in result["detail"]
            assert result["evidence"]["transports"] == ["IBB (XEP-0261)"] and result["evidence"]["s5b_left_out"]
            # libervia 0.9.0~hg4352's XEP-0300 values (docs/jingle.md, findings): its checksum is base64
            # of the hex digest, and a standard <hash/> in an offer ends its session
            sent = green[f"J1/libervia->slixmpp/{pair}"]
            assert sent["status"] == "fail" and "libervia's value is base64 of the hex digest" in sent["detail"], sent
            taken = green[f"J1/slixmpp->libervia/{pair}"]
            assert taken["status"] == "fail" and "ended the session with <failed-application/>" in taken["detail"], taken
            assert "UnicodeDecodeError" in taken["detail"]
        assert tested.returncode == 1, tested.stdout

        override = tmp_path / "templates" / "prosody" / "prosody.cfg.lua.j2"
        override.parent.mkdir(parents=True)
        template = (TEMPLATES_DIR / "prosody" / "prosody.cfg.lua.j2").read_text()
        override.write_text(template.replace("modules_enabled = {", 'modules_disabled = { "s2s" }\n\nmodules_enabled = {', 1))
        lab_command("up", "-f", str(path))  # its federation check fails now: no s2s on Prosody
        red_run = lab_command("test", "-f", str(path), "--only", "J1")
        _, red = results(tmp_path, name, before=(first,))
        assert red_run.returncode == 1, red_run.stdout
        for pair in PAIRS:
            result = red[f"J1/libervia/{pair}"]
            assert result["status"] == "fail", result
            assert "no file arrived at bob@" in result["detail"], result["detail"]
    finally:
        lab_command("down", "-f", str(path))
        assert not labelled(client, name)


def test_libervia_j2_j3_j5_j6_pairs_and_red_without_a_proxy(tmp_path):
    """J2, J3, J5, J6 with libervia (libervia 0.9.0~hg4352 against the lab's slixmpp ends, and J3
    at both ends), as the real package does them (docs/jingle.md, libervia findings): J3 passes
    every way; J2, J5 and J6 are red on libervia's own bugs, with the transport part in the
    detail. Then made red: Prosody without its proxy65 component (a template override), so no J2
    or J6 from prosody.test has A's proxy; and Prosody's s2s off, so no J3 decline crosses."""
    client = docker.from_env()
    name = f"e2e-libervia-j-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "lab.yml"
    path.write_text(f"name: {name}\nserver: {{release: trixie}}\nclient: {{release: trixie}}\nclients: [libervia]\n"
                    f"servers:\n  prosody: {{kind: prosody, domain: prosody.test}}\n"
                    f"  ejabberd: {{kind: ejabberd, domain: ejabberd.test}}\n")
    override = tmp_path / "templates" / "prosody" / "prosody.cfg.lua.j2"
    template = (TEMPLATES_DIR / "prosody" / "prosody.cfg.lua.j2").read_text()
    try:
        up = lab_command("up", "-f", str(path))
        assert up.returncode == 0, up.stdout + up.stderr
        lab_command("test", "-f", str(path), "--only", "J2,J3,J5,J6")
        first, got = results(tmp_path, name)
        for pair in PAIRS:
            for left_out in ("J2/libervia", "J5/libervia", "J6/libervia", "J6/libervia->slixmpp"):  # NOT_RUN
                alone = got[f"{left_out}/{pair}"]
                assert alone["status"] == "not supported" and "the libervia runner does not run J" in alone["detail"]
            # libervia takes the fallback as XEP-0260 says (candidate-error, transport-accept); the file
            # arrives whole over IBB; the checksum is not taken (finding 4)
            fallback = got[f"J6/slixmpp->libervia/{pair}"]
            assert fallback["status"] == "fail" and fallback["evidence"]["reaction"] == "transport-accept", fallback
            assert "the file arrived whole (20000 bytes over IBB (XEP-0261)" in fallback["detail"]
            for ends in ("libervia", "libervia->slixmpp", "slixmpp->libervia"):
                declined = got[f"J3/{ends}/{pair}"]
                assert declined["status"] == "pass", declined
                assert "<decline/>" in declined["detail"] or 'progress_error "declined"' in declined["detail"]
            # libervia sending over SOCKS5: B's user connects to A's proxy, libervia never activates it
            # (proxy-error, then transport-replace to IBB), and its hash value is hex (finding 1)
            sent = got[f"J2/libervia->slixmpp/{pair}"]
            assert sent["status"] == "fail", sent
            assert "transport-info proxy-error" in sent["detail"] and "B's user was connected to proxy." in sent["detail"]
            assert "over IBB after transport-replace" in sent["detail"]
            # libervia receiving through A's proxy: the bytes arrive whole, the standard checksum is not taken
            taken = got[f"J2/slixmpp->libervia/{pair}"]
            assert taken["status"] == "fail", taken
            assert "the file arrived whole (20000 bytes over SOCKS5 (XEP-0260)" in taken["detail"]
            assert "activated it, sent 20000 B through it" in taken["detail"]
            assert "did not take the standard XEP-0300 checksum" in taken["detail"]
            proposed = got[f"J5/slixmpp->libervia/{pair}"]
            assert proposed["status"] == "fail" and " -> proceed from bob@" in proposed["detail"], proposed
            assert "20000 bytes over IBB (XEP-0261)" in proposed["detail"]
        # libervia proposing: to Prosody's user it proposes (then fails on its hash); ejabberd answers
        # the disco#info of a non-contact's bare JID with subscription-required, and libervia gives up
        into_prosody = got["J5/libervia->slixmpp/ejabberd->prosody"]
        assert into_prosody["status"] == "fail" and "-> proceed from bob@prosody.test/" in into_prosody["detail"]
        into_ejabberd = got["J5/libervia->slixmpp/prosody->ejabberd"]
        assert into_ejabberd["status"] == "fail" and "subscription-required" in into_ejabberd["detail"], into_ejabberd

        override.parent.mkdir(parents=True)
        override.write_text(template.replace("{%- if proxy65_domain %}", "{%- if false %}", 1))
        lab_command("up", "-f", str(path))
        lab_command("test", "-f", str(path), "--only", "J2,J6")
        second, red = results(tmp_path, name, before=(first,))
        fallback = red["J6/slixmpp->libervia/prosody->ejabberd"]
        assert fallback["status"] == "fail" and "no proxy/bytestreams service" in fallback["detail"], fallback
        sent = red["J2/libervia->slixmpp/prosody->ejabberd"]
        assert sent["status"] == "fail" and "B's user was connected to" not in sent["detail"], sent
        assert "direct alice@prosody.test/" in sent["detail"] and "not tried" in sent["detail"]
        taken = red["J2/slixmpp->libervia/prosody->ejabberd"]
        assert taken["status"] == "fail" and "no proxy/bytestreams service among the disco#items of prosody.test" \
            in taken["detail"], taken

        override.write_text(template.replace("modules_enabled = {", 'modules_disabled = { "s2s" }\n\nmodules_enabled = {', 1))
        lab_command("up", "-f", str(path))
        lab_command("test", "-f", str(path), "--only", "J3")
        _, cut = results(tmp_path, name, before=(first, second))
        for pair in PAIRS:
            for ends in ("libervia", "libervia->slixmpp", "slixmpp->libervia"):
                assert cut[f"J3/{ends}/{pair}"]["status"] == "fail", cut[f"J3/{ends}/{pair}"]
    finally:
        lab_command("down", "-f", str(path))
        assert not labelled(client, name)
