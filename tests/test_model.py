"""lab.yml -> model, and every malformed lab.yml in tests/cases/ with its expected error."""

import json
import shutil
from pathlib import Path

import pytest

from lab import model
from lab.errors import ConfigError
from lab.servers import kinds
from lab.stacks import stacks

CASES = Path(__file__).parent / "cases"


def test_default_lab_has_one_server_of_each_kind_with_accounts(default_lab):
    assert [(s.name, s.kind.name, s.domain) for s in default_lab.servers] == [
        ("prosody", "prosody", "prosody.test"), ("ejabberd", "ejabberd", "ejabberd.test"),
        ("jabberd2", "jabberd2", "jabberd2.test")]
    assert {"alice": "alice-password", "bob": "bob-password"}.items() <= default_lab.servers[0].accounts.items()
    addresses = {default_lab.dns_address, *default_lab.client_addresses.values(),
                 *(s.address for s in default_lab.servers)}
    assert len(addresses) == 1 + len(default_lab.servers) + len(default_lab.clients)
    assert all(model.ipaddress.ip_address(a) in default_lab.subnet for a in addresses)


def test_labs_with_different_names_get_different_subnets():
    assert model.default_subnet("default") != model.default_subnet("other")


def test_server_settings_override_lab_defaults(tmp_path):
    path = tmp_path / "lab.yml"
    path.write_text("name: x\naccounts: {carol: c}\nservers:\n  p: {kind: prosody, domain: p.test, "
                    "log_level: debug, accounts: {alice: other}}\n")
    (server,) = model.load(path).servers
    assert server.log_level == "debug"
    assert {"alice": "other", "bob": "bob-password", "carol": "c"}.items() <= server.accounts.items()


def test_clients_at_releases_are_named_by_release_and_get_own_accounts(tmp_path):
    path = tmp_path / "lab.yml"
    path.write_text("name: x\nclient: {release: trixie}\nclients: [nbxmpp, {stack: slixmpp, release: sid}, "
                    "{stack: xmppc, release: trixie}]\nservers:\n  p: {kind: prosody, domain: p.test}\n")
    lab = model.load(path)
    assert [(c.name, c.stack, c.release, c.service, c.image) for c in lab.clients] == [
        ("slixmpp", "slixmpp", "trixie", "client-slixmpp", "client-slixmpp"),
        ("nbxmpp", "nbxmpp", "trixie", "client-nbxmpp", "client-nbxmpp"),
        ("slixmpp-sid", "slixmpp", "sid", "client-slixmpp-sid", "client-slixmpp"),
        ("xmppc", "xmppc", "trixie", "client-xmppc", "client-xmppc")]
    (server,) = lab.servers
    # Two slixmpp clients at once: each its own accounts; nbxmpp (no own_accounts) none.
    assert {"slixmpp-alice", "slixmpp-bob", "slixmpp-sid-alice", "slixmpp-sid-bob"} <= set(server.accounts)
    assert not any(a.startswith("nbxmpp") for a in server.accounts)
    assert len(set(lab.client_addresses.values())) == 4


def test_default_clients_are_every_stack_at_client_release_or_its_newest(tmp_path):
    path = tmp_path / "lab.yml"
    path.write_text("name: x\nclient: {release: trixie}\nservers:\n  p: {kind: prosody, domain: p.test}\n")
    clients = {c.name: c.release for c in model.load(path).clients}
    assert clients == {"slixmpp": "trixie", "gosendxmpp-bookworm": "bookworm", "nbxmpp": "trixie",
                       "sendxmpp": "trixie", "xmppc": "trixie"}  # libervia only where named (by_default)
    path.write_text("name: x\nclient: {release: trixie}\nclients: [libervia]\nservers:\n  p: {kind: prosody, domain: p.test}\n")
    assert {c.name: c.release for c in model.load(path).clients} == {"slixmpp": "trixie", "libervia": "trixie"}


def case_files():
    return sorted(CASES.glob("*.yml"))


@pytest.mark.parametrize("case", case_files(), ids=lambda p: p.stem)
def test_malformed_lab_file_gives_located_error(case):
    """Each case file's first line is '# error: <expected message after file:line: >'
    ({kinds} and {stacks} stand for the known server kinds and client stacks, so adding
    one changes no case file)."""
    text = case.read_text()
    first = text.splitlines()[0] if text else ""
    expected = (case.with_suffix(".error").read_text().strip() if case.with_suffix(".error").exists()
                else first.removeprefix("# error: ").strip()).replace("{kinds}", ", ".join(sorted(kinds()))).replace("{stacks}", ", ".join(sorted(stacks())))
    with pytest.raises(ConfigError) as raised:
        model.load(case)
    assert str(raised.value) == f"{case}:{expected}"
    assert raised.value.exit_code == 2


def test_published_schema_is_valid_and_accepts_the_default_lab():
    import jsonschema
    import yaml
    jsonschema.Draft202012Validator.check_schema(model.schema())
    jsonschema.validate(yaml.safe_load(model.DEFAULT_LAB.read_text()), model.schema())
    kind_schema = json.loads((model.PACKAGE_DIR / "kind.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(kind_schema)


def test_the_event_room_is_on_the_first_server_with_muc_or_the_one_named_or_none(tmp_path, default_lab):
    assert (default_lab.room_server, default_lab.room) == ("prosody", "interop@conference.prosody.test")
    path = tmp_path / "lab.yml"
    servers = "servers:\n  p: {kind: prosody, domain: p.test}\n  e: {kind: ejabberd, domain: e.test}\n"
    path.write_text(servers + "room: e\n")
    assert model.load(path).room == "interop@conference.e.test"
    path.write_text(servers + "room: false\n")
    assert model.load(path).room is None


def test_the_event_room_on_a_server_without_muc_is_a_located_error(tmp_path):
    """A lab's own kind (a copy of jabberd2's without muc) holds no room: said at room:."""
    kind_dir = tmp_path / "images" / "nomuc"
    shutil.copytree(model.DATA_DIR / "images" / "jabberd2", kind_dir)
    shutil.copytree(model.DATA_DIR / "templates" / "jabberd2", tmp_path / "templates" / "nomuc")
    kind_file = kind_dir / "kind.yml"
    kind_file.write_text(kind_file.read_text().replace("features: [muc, ", "features: ["))
    path = tmp_path / "lab.yml"
    path.write_text("servers:\n  j: {kind: nomuc, domain: j.test}\n")
    assert model.load(path).room is None  # null: no server with a MUC, no room
    path.write_text("servers:\n  j: {kind: nomuc, domain: j.test}\nroom: j\n")
    with pytest.raises(ConfigError) as raised:
        model.load(path)
    assert str(raised.value) == (f"{path}:3: room: server j (nomuc at bookworm) has no MUC service (its kind does "
                                 f"not declare muc); servers with one: none")
