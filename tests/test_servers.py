"""Server kinds as data (images/<name>/kind.yml, templates/<name>/): the built-ins, a user's own kind beside
lab.yml, kind.yml errors located as lab.yml's are; and how each built-in reads a peer's
authentication from its log (captured from the real containers:
tests/fixtures/interop/capture.sh)."""

import shutil
from pathlib import Path

import pytest

from lab import TEMPLATES_DIR, model
from lab.errors import ConfigError
from lab.images import kind_tag
from lab.evidence import log_lines
from lab.servers import BUILTIN_KINDS, CERTIFICATE, DIALBACK, filled, kind_folders, kinds

FIXTURES = Path(__file__).parent / "fixtures" / "interop"


def log(name: str) -> str:
    return "\n".join(line for _, line in log_lines((FIXTURES / f"{name}.log").read_text()))


def test_the_built_in_kinds_are_folders_of_data():
    found = kinds()
    assert sorted(found) == ["ejabberd", "jabberd2", "prosody"]
    for name, kind in found.items():
        assert kind.builtin and kind.folder == BUILTIN_KINDS / name and kind.prebuilt is None
        assert (kind.build_dir / "Dockerfile").is_file()
        assert all((kind.templates / template).is_file() for template in kind.config_files)
    assert found["jabberd2"].s2s_auth == (DIALBACK,) and "mam" not in found["jabberd2"].features
    assert found["ejabberd"].admin_ready("e.test") == ["ejabberdctl", "registered_users", "e.test"]


def test_commands_get_user_domain_and_password_and_keep_a_scripts_braces():
    script = 'out=$(x "$1") || { echo "$out"; exit 1; }'
    assert filled(("sh", "-c", script, "register", "{user}", "{domain}", "{password}"),
                  user="alice", domain="p.test", password="pw{1}") == [
        "sh", "-c", script, "register", "alice", "p.test", "pw{1}"]


# --- a user's own kind ---------------------------------------------------------------------------

def user_kind(tmp_path: Path, name: str = "myprosody", kind_yml: str | None = None) -> Path:
    """A copy of the Prosody kind under another name in images/ (its templates in templates/)
    beside a lab.yml using it."""
    folder = tmp_path / "images" / name
    shutil.copytree(BUILTIN_KINDS / "prosody", folder)
    shutil.copytree(TEMPLATES_DIR / "prosody", tmp_path / "templates" / name)
    if kind_yml is not None:
        (folder / "kind.yml").write_text(kind_yml)
    (tmp_path / "lab.yml").write_text(f"name: mine\nservers:\n  one: {{kind: {name}, domain: one.test}}\n"
                                      f"  two: {{kind: prosody, domain: two.test}}\n")
    return tmp_path / "lab.yml"


def test_a_kind_beside_lab_yml_is_found_and_used(tmp_path):
    lab = model.load(user_kind(tmp_path))
    mine = lab.server("one").kind
    assert (mine.name, mine.builtin, mine.folder) == ("myprosody", False, tmp_path / "images" / "myprosody")
    assert kind_tag(mine).startswith("xmpp-lab/myprosody:")
    assert "myprosody" in model.schema(tmp_path)["$defs"]["server"]["properties"]["kind"]["enum"]


def test_a_kind_may_not_take_the_name_of_the_labs_own_images(tmp_path):
    with pytest.raises(ConfigError, match="a kind may not be named 'dns'"):
        model.load(user_kind(tmp_path, name="dns"))


def test_a_users_kind_of_a_built_in_name_wins(tmp_path):
    user_kind(tmp_path, name="prosody")
    assert kind_folders(tmp_path)["prosody"] == tmp_path / "images" / "prosody"
    assert kind_folders()["prosody"] == BUILTIN_KINDS / "prosody"


def test_a_prebuilt_image_is_used_as_it_is(tmp_path):
    text = (BUILTIN_KINDS / "prosody" / "kind.yml").read_text().replace("image: {build: .}",
                                                                        "image: example/prosody:13.0")
    lab = model.load(user_kind(tmp_path, kind_yml=text))
    assert kind_tag(lab.server("one").kind) == "example/prosody:13.0"


BASE = (BUILTIN_KINDS / "prosody" / "kind.yml").read_text()


@pytest.mark.parametrize("change, error", [
    (("features: [", "feature: ["), "kind.yml:27: unknown key 'feature'; did you mean 'features'?"),
    (("features: [muc,", "features: [mucc,"), "kind.yml:27: features.0: 'mucc' is not one of: muc, muc-mam, mam, "),
    (("  register: [prosodyctl", "  register: prosodyctl #"),
     "kind.yml:12: accounts.register: expected an array, got a string"),
    (("      - \".*Incoming", "      - \"(?P<local>.*Incoming"),
     "kind.yml:24: s2s.inbound_auth_patterns.dialback.0: not a regular expression: "),
    (("\".*Incoming s2s connection (?P<peer>", "\".*Incoming s2s connection (?P<remote>"),
     "kind.yml:24: s2s.inbound_auth_patterns.dialback.0: needs a named group (?P<peer>...) for the remote domain"),
    (("prosody.cfg.lua.j2:", "prosody.lua.j2:"), "kind.yml:10: config_files.prosody.lua.j2: no template "),
    (("{build: .}", "{build: nowhere}"), "kind.yml:3: image.build: no Dockerfile in "),
])
def test_a_broken_kind_yml_is_one_located_error(tmp_path, change, error):
    old, new = change
    assert old in BASE, old
    path = user_kind(tmp_path, kind_yml=BASE.replace(old, new, 1))
    with pytest.raises(ConfigError) as raised:
        model.load(path)
    assert str(raised.value).startswith(f"{tmp_path / 'images' / 'myprosody'}/{error}"), str(raised.value)


def test_a_kind_in_the_old_kinds_folder_is_one_error_saying_where_it_goes_now(tmp_path):
    path = user_kind(tmp_path)
    (tmp_path / "images" / "myprosody").rename(tmp_path / "kinds")
    (tmp_path / "kinds").rename(tmp_path / "myprosody")
    (tmp_path / "kinds").mkdir()
    (tmp_path / "myprosody").rename(tmp_path / "kinds" / "myprosody")
    with pytest.raises(ConfigError, match=r"kinds: kinds now live in images/<name>/ .* move myprosody there"):
        model.load(path)


# --- reading a peer's authentication from the receiver's log ----------------------------------

def test_prosody_tells_certificate_from_dialback():
    prosody = kinds()["prosody"]
    assert prosody.inbound_auth(log("prosody"), "ejabberd.test", "prosody.test")[0] == CERTIFICATE
    assert prosody.inbound_auth(log("prosody"), "jabberd2.test", "prosody.test")[0] == DIALBACK
    assert prosody.inbound_auth(log("prosody"), "other.test", "prosody.test") is None


def test_prosody_reads_only_lines_of_the_local_host_asked_about():
    # The run authenticated ejabberd.test to prosody.test only, never to its MUC host.
    assert kinds()["prosody"].inbound_auth(log("prosody"), "ejabberd.test", "conference.prosody.test") is None


def test_ejabberd_and_jabberd2_name_the_method_themselves():
    ejabberd, jabberd2 = kinds()["ejabberd"], kinds()["jabberd2"]
    assert ejabberd.inbound_auth(log("ejabberd"), "prosody.test", "ejabberd.test")[0] == CERTIFICATE
    assert ejabberd.inbound_auth(log("ejabberd"), "jabberd2.test", "ejabberd.test")[0] == DIALBACK
    assert jabberd2.inbound_auth(log("jabberd2"), "prosody.test", "jabberd2.test")[0] == DIALBACK
    assert jabberd2.inbound_auth(log("jabberd2"), "prosody.test", "other.test") is None


def test_the_latest_authentication_counts():
    ejabberd = kinds()["ejabberd"]
    later = log("ejabberd") + ("\n[info] (tls|<0.1.0>) Accepted inbound s2s EXTERNAL authentication "
                               "jabberd2.test -> ejabberd.test (x)")
    assert ejabberd.inbound_auth(later, "jabberd2.test", "ejabberd.test")[0] == CERTIFICATE


def test_a_server_runs_only_at_a_release_its_kind_lists(tmp_path):
    # Without releases a kind builds at bookworm only; the lab says where and what it has.
    without = "\n".join(line for line in BASE.splitlines()
                        if not line.startswith(("releases:", "  bookworm:", "  trixie:", "  sid:")))
    path = user_kind(tmp_path, kind_yml=without + "\n")
    assert model.load(path).server("one").kind.releases == {"bookworm": "Prosody (Debian packages)"}
    path.write_text(path.read_text().replace("one: {kind: myprosody,", "one: {kind: myprosody, release: trixie,"))
    with pytest.raises(ConfigError) as raised:
        model.load(path)
    assert str(raised.value) == (f"{path}:3: servers.one.release: kind myprosody does not run at trixie "
                                 f"(its releases: bookworm)")
    assert all(set(kind.releases) == {"bookworm", "trixie", "sid"} for kind in kinds().values())
    assert kind_tag(kinds()["prosody"], "sid").startswith("xmpp-lab/prosody:sid-")
