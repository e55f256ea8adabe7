"""The lab's TURN service (lab/turn.py) in the model, the zone, the configs and its own files."""

import asyncio
import socket
import stat
import struct
from pathlib import Path

import pytest

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


# --- J4's judge and TURN client (lab/runners/slixmpp_turn.py) -------------------------------------

RUNNERS = Path(__file__).resolve().parent.parent / "lab" / "runners"
USER = "1796591244:fad82677d9e38432"  # as ejabberd 24.12 made it in a real run
OWN = {"hosts": ["10.202.156.198"], "port": 3478}
# ejabberd.test's XEP-0215 list in that run (passwords left out), its own TURN first.
LISTED = [{"type": "stun", "transport": "udp", "host": "10.202.156.198", "port": "3478"},
          {"type": "turn", "transport": "udp", "host": "10.202.156.198", "port": "3478", "username": USER},
          {"type": "stun", "transport": "tcp", "host": "10.202.156.198", "port": "3478"},
          {"type": "turn", "transport": "tcp", "host": "10.202.156.198", "port": "3478", "username": USER},
          {"type": "turn", "transport": "udp", "host": "turn.xmpp-lab.test", "port": "3478", "username": USER},
          {"type": "turn", "transport": "tcp", "host": "turn.xmpp-lab.test", "port": "3478", "username": USER}]


@pytest.fixture
def turn_runner(monkeypatch):
    monkeypatch.syspath_prepend(str(RUNNERS))
    import slixmpp_turn
    return slixmpp_turn


def relayed(host):
    """What relay_exchange saw when all went well (the real run's shape)."""
    return {"answered": True, "relays": [[host, 52191], [host, 53743]], "sent": 2, "received": 2, "refused": None,
            "log": ["A: Allocate as ...: success", "B: Allocate as ...: success"]}


REFUSED = {"answered": True, "relays": [], "sent": 0, "received": 0, "refused": "401 Unauthorized",
           "log": ["A: Allocate without credentials: error 401 Unauthorized",
                   f"A: Allocate as '{USER}', realm 'turn.xmpp-lab.test': error 401 Unauthorized"]}
SILENT = {"answered": False, "relays": [], "sent": 0, "received": 0, "refused": None,
          "log": ["A: Allocate without credentials: no answer"]}


def runs(outcomes):
    """(service, right password, outcome) for each TURN service of LISTED, in order: the right
    password's outcome from ``outcomes`` by host (default: relayed), the changed one refused."""
    turn = [s for s in LISTED if s["type"] == "turn"]
    return turn, [(s, right, outcomes.get(s["host"], relayed(s["host"])) if right else REFUSED)
                  for s in turn for right in (True, False)]


def test_j4_passes_and_names_each_service_what_it_did(turn_runner):
    turn, exchanges = runs({})
    detail = turn_runner.judge("ejabberd.test", LISTED, turn, OWN, exchanges)
    assert detail.count("(the server's own) allocated relays") == 2
    assert detail.count("turn.xmpp-lab.test:3478 allocated relays") == 2
    assert detail.count("refused a changed password (401 Unauthorized)") == 4


def test_j4_fails_when_the_servers_own_turn_is_not_listed(turn_runner):
    # use_turn off while the kind declares turn-server: only the lab's coturn is listed.
    listed = [s for s in LISTED if s["host"] != OWN["hosts"][0]]
    turn, exchanges = runs({})
    exchanges = [e for e in exchanges if e[0]["host"] != OWN["hosts"][0]]
    with pytest.raises(turn_runner.CaseFailed, match=r"its own TURN service at 10.202.156.198, port 3478 .* is not among"):
        turn_runner.judge("ejabberd.test", listed, [s for s in turn if s["host"] != OWN["hosts"][0]], OWN, exchanges)


def test_j4_fails_on_refused_credentials_and_still_says_what_the_other_service_did(turn_runner):
    # A wrong secret in mod_stun_disco: coturn refuses; ejabberd's own TURN checks against the
    # same (wrong) secret and allocates.
    turn, exchanges = runs({"turn.xmpp-lab.test": REFUSED})
    with pytest.raises(turn_runner.CaseFailed) as failed:
        turn_runner.judge("ejabberd.test", LISTED, turn, OWN, exchanges)
    text = str(failed.value)
    assert "turn.xmpp-lab.test:3478 refused the credentials ejabberd.test handed out" in text
    assert "401 Unauthorized" in text and "(the server's own) allocated relays" in text


def test_j4_fails_on_a_second_allocation_refused_or_a_message_lost_or_a_wrong_password_taken(turn_runner):
    one = {**relayed(OWN["hosts"][0]), "relays": [[OWN["hosts"][0], 1]], "refused": "420 Unknown Attribute"}
    lost = {**relayed(OWN["hosts"][0]), "received": 1}
    for outcome, expected in [(one, "allocated 10.202.156.198:1, then 420 Unknown Attribute"),
                              (lost, "of 2 messages relayed between the two allocations 1 came back")]:
        turn, exchanges = runs({OWN["hosts"][0]: outcome})
        with pytest.raises(turn_runner.CaseFailed, match=expected):
            turn_runner.judge("ejabberd.test", LISTED, turn, OWN, exchanges)
    turn, exchanges = runs({})
    exchanges = [(s, right, outcome if right else relayed(s["host"])) for s, right, outcome in exchanges]
    with pytest.raises(turn_runner.CaseFailed, match="with a wrong password"):
        turn_runner.judge("ejabberd.test", LISTED, turn, OWN, exchanges)


def test_j4_a_silent_service_is_an_error_and_a_fail_elsewhere_still_wins(turn_runner):
    turn, exchanges = runs({"turn.xmpp-lab.test": SILENT})
    with pytest.raises(turn_runner.NotObserved, match="turn.xmpp-lab.test:3478 did not answer"):
        turn_runner.judge("ejabberd.test", LISTED, turn, OWN, exchanges)
    turn, exchanges = runs({"turn.xmpp-lab.test": SILENT, OWN["hosts"][0]: REFUSED})
    with pytest.raises(turn_runner.CaseFailed, match="did not answer"):
        turn_runner.judge("ejabberd.test", LISTED, turn, OWN, exchanges)


def test_the_turn_client_against_a_silent_service_is_no_answer(turn_runner):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        service = {"host": "127.0.0.1", "port": str(silent.getsockname()[1]), "transport": "udp"}
        outcome = asyncio.run(turn_runner.relay_exchange(service, USER, "password", limit=1.0))
    assert not outcome["answered"] and not outcome["relays"]
    assert outcome["log"] == ["A: Allocate: no answer within 1.0 s"]


class RefusingTurn(asyncio.DatagramProtocol):
    """A TURN service that answers every Allocate 401 with a realm and a nonce, as coturn does
    for a wrong password; it keeps the attribute types of each request."""

    def __init__(self):
        self.requests = []

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        from aioice import stun
        request = stun.parse_message(data)
        types, at = [], 20
        while at + 4 <= len(data):
            code, size = struct.unpack("!HH", data[at:at + 4])
            types.append(code)
            at += 4 + size + (-size % 4)
        self.requests.append(types)
        answer = stun.Message(message_method=request.message_method, message_class=stun.Class.ERROR,
                              transaction_id=request.transaction_id)
        answer.attributes.update({"ERROR-CODE": (401, "Unauthorized"), "REALM": "turn.xmpp-lab.test",
                                  "NONCE": b"0123456789abcdef"})
        self.transport.sendto(bytes(answer), addr)


def test_a_refused_password_surfaces_with_its_error_code_and_the_allocate_has_no_even_port(turn_runner):
    async def against_refusing_turn():
        loop = asyncio.get_running_loop()
        transport, refusing = await loop.create_datagram_endpoint(RefusingTurn, local_addr=("127.0.0.1", 0))
        try:
            service = {"host": "127.0.0.1", "port": str(transport.get_extra_info("sockname")[1]), "transport": "udp"}
            return await turn_runner.relay_exchange(service, USER, "password", limit=2.0), refusing.requests
        finally:
            transport.close()

    outcome, requests = asyncio.run(against_refusing_turn())
    assert outcome["answered"] and not outcome["relays"] and outcome["refused"] == "401 Unauthorized"
    assert outcome["log"] == ["A: Allocate: 401 challenge, realm 'turn.xmpp-lab.test'",
                              f"A: Allocate as '{USER}': error 401 Unauthorized"]
    # LIFETIME and REQUESTED-TRANSPORT, then with credentials (USERNAME, NONCE, REALM,
    # MESSAGE-INTEGRITY, and FINGERPRINT from aioice 0.9); never EVEN-PORT (0x0018), which
    # ejabberd's TURN answers 420 (finding 2).
    assert requests[0] == [0x000D, 0x0019] and requests[1][:6] == [0x000D, 0x0019, 0x0006, 0x0015, 0x0014, 0x0008]
    assert len(requests) == 2 and not [r for r in requests if 0x0018 in r]
    # That outcome for the handed-out password is J4's fail.
    service = {"type": "turn", "transport": "udp", "host": "127.0.0.1", "port": "3478", "username": USER}
    with pytest.raises(turn_runner.CaseFailed, match="refused the credentials lab.test handed out .*401 Unauthorized"):
        turn_runner.judge("lab.test", [service], [service], None, [(service, True, outcome)])
