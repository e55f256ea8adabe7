"""The lab's TURN service (lab/turn.py) in the model, the zone, the configs and its own files."""

import stat

from conftest import write_lab

from lab import model, turn
from lab.render import render_server
from lab.zone import build_zone


def test_the_default_lab_runs_turn_and_names_it_in_the_zone(default_lab):
    assert default_lab.turn_enabled
    assert default_lab.turn_address == str(default_lab.subnet[model.TURN_HOST])
    assert {"name": turn.NAME, "type": "A", "address": default_lab.turn_address} in build_zone(default_lab)["records"]
    # A DNS variant (the faults') is about the servers' records alone.
    assert not [r for r in build_zone(default_lab, lambda lab, server: [])["records"]]
    assert "external-services" in default_lab.server("prosody").features
    assert "external-services" not in default_lab.server("jabberd2").features


def test_turn_false_runs_none_and_no_server_advertises_one(tmp_path):
    lab = model.load(write_lab(tmp_path, "turn: false\nservers:\n  p: {kind: prosody, domain: p.test}\n"))
    assert not lab.turn_enabled and "external-services" not in lab.server("p").features
    assert not [r for r in build_zone(lab)["records"] if r["name"] == turn.NAME]
    assert "turn_external" not in render_server(lab, lab.server("p"))["/etc/prosody/prosody.cfg.lua"]


def test_a_lab_of_jabberd2_alone_runs_no_turn(tmp_path):
    lab = model.load(write_lab(tmp_path, "servers:\n  j: {kind: jabberd2, domain: j.test}\n"))
    assert lab.turn and not lab.turn_enabled


def test_the_secret_is_made_once_per_lab_for_its_owner_alone(tmp_path):
    lab = model.load(write_lab(tmp_path, "servers:\n  p: {kind: prosody, domain: p.test}\n"))
    secret = turn.load_or_create_secret(lab)
    assert len(secret) == 40 and turn.load_or_create_secret(lab) == secret
    assert stat.S_IMODE(turn.secret_path(lab).stat().st_mode) == 0o600
    config = turn.config(lab, secret)
    assert f"static-auth-secret={secret}" in config and "use-auth-secret" in config
    assert f"listening-ip={lab.turn_address}" in config and f"realm={turn.NAME}" in config
    rendered = render_server(lab, lab.server("p"), turn=turn.settings(lab, secret))["/etc/prosody/prosody.cfg.lua"]
    assert f'turn_external_secret = "{secret}"' in rendered
