"""The command-line runners read their tools' output: here on output captured from the real
tools in the lab's client containers (tests/fixtures/runners/capture.sh), not written by hand."""

import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "runners"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lab" / "runners"))
import cli_support  # noqa: E402  (lab/runners/ is not a package: runners import by name)
import gosendxmpp_runner  # noqa: E402
import sendxmpp_runner  # noqa: E402
import xmppc_runner  # noqa: E402


def ran(name: str, code: int = 0) -> cli_support.Ran:
    """A finished tool run from the captured NAME.out / NAME.err."""
    out, err = (FIXTURES / f"{name}.out"), (FIXTURES / f"{name}.err")
    return cli_support.Ran(["captured", name], code, out.read_text() if out.exists() else "",
                           err.read_text() if err.exists() else "", False, 1.0, ())


def text(name: str) -> str:
    return (FIXTURES / name).read_text()


# --- xmppc (libstrophe's -vvv log) -------------------------------------------------------------

def test_xmppc_login_facts_of_a_login():
    facts = xmppc_runner.login_facts(ran("xmppc-login"))
    assert facts == {"starttls": True, "verified": True, "secure": True, "mechanism": "SCRAM-SHA-1",
                     "bound": "alice@prosody.test/lab-cap", "failures": [], "errors": []}


def test_xmppc_login_facts_of_a_wrong_password():
    facts = xmppc_runner.login_facts(ran("xmppc-wrong-password"))
    assert (facts["mechanism"], facts["bound"], facts["failures"]) == (None, None, ["not-authorized"])
    assert facts["errors"] == ["auth ERROR Cannot authenticate with known methods"]


def test_xmppc_login_facts_of_an_untrusted_certificate():
    facts = xmppc_runner.login_facts(ran("xmppc-system-ca"))
    assert not (facts["verified"] or facts["secure"] or facts["mechanism"])
    assert facts["errors"][0] == "tls ERROR No certfail handler set, canceling connection attempt"


def test_xmppc_sent_message_id():
    assert xmppc_runner.sent_message_id(ran("xmppc-message").err) == "baf71410-0c72-4c35-a1e3-13a0ee9dac57"
    assert xmppc_runner.sent_message_id(ran("xmppc-login").err) is None


def test_strace_shows_the_srv_query_and_the_connection_that_followed():
    names, connects = cli_support.observed(text("xmppc-login.strace"))
    assert set(names) == {"_xmpp-client._tcp.prosody.test"}
    assert len(connects) == 1 and connects[0][1] == 5222  # DNS (port 53) left out
    records = [(0, 5, 5222, "prosody.test")]
    addresses = {connects[0]: "prosody.test"}
    verdict = cli_support.srv_verdict("xmppc", "prosody.test", records, names, connects,
                                      addresses=addresses)
    assert verdict.startswith("SRV _xmpp-client._tcp.prosody.test -> prosody.test:5222 asked and followed")
    with pytest.raises(cli_support.CaseFailed, match="never asked DNS for _xmpp-client._tcp.ejabberd.test"):
        cli_support.srv_verdict("xmppc", "ejabberd.test", records, names, connects, addresses=addresses)
    with pytest.raises(cli_support.CaseFailed, match="not to the SRV answer"):
        cli_support.srv_verdict("xmppc", "prosody.test", records, names, connects, addresses={})


# --- go-sendxmpp (-d output) ---------------------------------------------------------------------

def test_gosendxmpp_listener_output_gives_the_message_as_it_arrived():
    output = text("gosendxmpp-listener.out")
    assert "<jid>bob@ejabberd.test/lab-cap</jid>" in output  # what Listener.bound looks for
    assert gosendxmpp_runner.received(output, "lab capture body") == {
        "from": "alice@prosody.test/go-sendxmpp.e9794fad", "id": "bc06837acd4a9a85", "type": "chat",
        "body": "lab capture body"}


def test_gosendxmpp_wrong_password():
    output = text("gosendxmpp-wrong-password.out")
    assert gosendxmpp_runner.SASL_FAILURE.findall(output) == ["not-authorized"] * 3  # one per SRV record it tries
    assert gosendxmpp_runner.refusal(output) == (
        "auth failure: Unable to authorize you with the authentication credentials you've sent.")


def test_gosendxmpp_untrusted_certificate():
    assert gosendxmpp_runner.refusal(text("gosendxmpp-system-ca.out")) == (
        "starttls handshake: x509: certificate signed by unknown authority")


# --- sendxmpp (-d log of Net::XMPP) --------------------------------------------------------------

def test_sendxmpp_sends_the_newline_that_ended_its_input():
    log = ran("sendxmpp-message").err
    assert "We authed!" in log and "<body>lab capture\n</body>" in log


def test_sendxmpp_wrong_password():
    assert sendxmpp_runner.complaint(ran("sendxmpp-wrong-password", code=1)) == "Error 'AuthSend': error: not-authorized"
    assert sendxmpp_runner.complaint(ran("sendxmpp-message")) == "exit 0, no error line"


def test_gosendxmpp_refused_before_login_by_internal_server_error_is_the_passing_fault():
    # The tail of a listener's -d output from a CI run (jabberd2, twice, on both SRV records):
    # its last line, go-sendxmpp's own, names "<success>" without any SASL success.
    output = text("gosendxmpp-internal-server-error.out")
    assert gosendxmpp_runner.refused_before_login(output)
    assert not gosendxmpp_runner.refused_before_login(text("gosendxmpp-listener.out"))
    assert not gosendxmpp_runner.refused_before_login(text("gosendxmpp-wrong-password.out"))
