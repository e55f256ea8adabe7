"""Server kinds: the auth method is read from real log lines of each server."""

from lab.servers import CERTIFICATE, DIALBACK, kinds

PROSODY_LOG = """\
s2sin55ccbf30acc0   info	Stream encrypted (TLSv1.3 with TLS_AES_256_GCM_SHA384)
prosody.test:saslauth  info	Accepting SASL EXTERNAL identity from ejabberd.test
s2sin55ccbf30acc0      info	Incoming s2s connection ejabberd.test->prosody.test complete
s2sin55ccbf31bcc0   info	Stream encrypted (TLSv1.3 with TLS_AES_256_GCM_SHA384)
s2sin55ccbf31bcc0      info	Incoming s2s connection jabberd2.test->prosody.test complete
"""

EJABBERD_LOG = """\
2026-11-24 00:07:21.828475+00:00 [info] (tls|<0.526.0>) Accepted inbound s2s EXTERNAL authentication prosody.test -> ejabberd.test (10.0.0.10)
2026-11-24 00:07:22.828475+00:00 [info] (tls|<0.532.0>) Accepted inbound s2s dialback authentication jabberd2.test -> ejabberd.test (10.0.0.12)
"""


def test_every_kind_has_its_template_and_image_folders():
    from lab import REPO_DIR
    for name, kind in kinds().items():
        for template in kind.config_files:
            assert (REPO_DIR / "templates" / name / template).is_file()
        assert (REPO_DIR / "images" / kind.image / "Dockerfile").is_file()


def test_prosody_tells_certificate_from_dialback():
    prosody = kinds()["prosody"]
    assert prosody.inbound_auth(PROSODY_LOG, "ejabberd.test") == CERTIFICATE
    assert prosody.inbound_auth(PROSODY_LOG, "jabberd2.test") == DIALBACK
    assert prosody.inbound_auth(PROSODY_LOG, "other.test") is None


def test_ejabberd_tells_certificate_from_dialback():
    ejabberd = kinds()["ejabberd"]
    assert ejabberd.inbound_auth(EJABBERD_LOG, "prosody.test") == CERTIFICATE
    assert ejabberd.inbound_auth(EJABBERD_LOG, "jabberd2.test") == DIALBACK


def test_the_latest_authentication_counts():
    ejabberd = kinds()["ejabberd"]
    later = EJABBERD_LOG + "[info] Accepted inbound s2s EXTERNAL authentication jabberd2.test -> ejabberd.test (x)\n"
    assert ejabberd.inbound_auth(later, "jabberd2.test") == CERTIFICATE
