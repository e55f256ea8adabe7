"""Server kinds: their folders, and how each reads a peer's authentication from its log
(on logs captured from the real containers: tests/fixtures/interop/capture.sh)."""

from pathlib import Path

from lab.interop import log_lines
from lab.servers import CERTIFICATE, DIALBACK, kinds

FIXTURES = Path(__file__).parent / "fixtures" / "interop"


def log(name: str) -> str:
    return "\n".join(line for _, line in log_lines((FIXTURES / f"{name}.log").read_text()))


def test_every_kind_has_its_template_and_image_folders():
    from lab import REPO_DIR
    for name, kind in kinds().items():
        for template in kind.config_files:
            assert (REPO_DIR / "templates" / name / template).is_file()
        assert (REPO_DIR / "images" / kind.image / "Dockerfile").is_file()


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
