"""Every case function of the command-line runners (xmppc, go-sendxmpp, sendxmpp), run by the
harness as in a client container, but fed the tools' real output captured in the lab
(tests/fixtures/runners/, capture.sh says how): each made to pass once and to fail (or be
an ``error`` where the runner could not observe) once. No Docker."""

import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "runners"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lab" / "runners"))
import cli_support  # noqa: E402  (lab/runners/ is not a package: runners import by name)
import gosendxmpp_runner  # noqa: E402
import harness  # noqa: E402
import sendxmpp_runner  # noqa: E402
import xmppc_runner  # noqa: E402

ACCOUNTS = {"alice": "alice-password", "bob": "bob-password"}
SPEC = {"servers": {"prosody": {"domain": "prosody.test", "accounts": ACCOUNTS},
                    "ejabberd": {"domain": "ejabberd.test", "accounts": ACCOUNTS}},
        "timeout": 2, "ca": "/etc/xmpp-lab/ca.pem"}
# the address the captured xmppc connected to (xmppc-login.strace), as the SRV target's
PROSODY_AT = ("10.207.168.117", 5222)


def captured(name: str, code: int = 0, timed_out: bool = False, argv=("captured",)) -> cli_support.Ran:
    out, err = FIXTURES / f"{name}.out", FIXTURES / f"{name}.err"
    return cli_support.Ran(list(argv), code, out.read_text() if out.exists() else "",
                           err.read_text() if err.exists() else "", timed_out, 1.0, ())


class Canned(cli_support.Context):
    """A case whose tool runs answer, in turn, with the given captured runs: each a function
    of (argv, stdin) giving a Ran (one list for every attempt of the case)."""
    answers: list = []

    def run(self, argv, timeout, **kwargs) -> cli_support.Ran:
        ran = type(self).answers.pop(0)(argv, kwargs.get("stdin"))
        self.trace.append(ran.text())
        return ran


def run_case(runner_module, case: str, answers, server="prosody", target=None) -> dict:
    """The harness's result record of ``case`` with the tool runs answering ``answers``."""
    context = type("Context", (Canned,), {"answers": list(answers)})
    runner = harness.Runner(runner_module.TOOL, runner_module.CASES, case_class=context,
                            budget=lambda c, t: 20)
    return harness.run_case(runner, SPEC, {"case": case, "server": server, "target": target})


def gives(name: str, **kwargs):
    return lambda argv, stdin: captured(name, **kwargs)


class FakeReceiver:
    """cli_support.Receiver's place: logged in at once; a message arrives as the test says:
    ``arrive(body)`` gives the message element (or None: nothing within the wait)."""
    arrive = None
    sent = threading.Event  # replaced per test

    def __init__(self, jid, password, ca, timeout):
        self.full_jid = f"{jid}/lab-rx-1"

    def login(self):
        return self.full_jid

    def wait_for(self, body, timeout):
        return type(self).arrive(self, body)

    def transcript(self):
        return "(fake receiver)"

    def close(self):
        pass


def message(sender: str, body: str, message_id: str | None, type_: str = "chat") -> ET.Element:
    element = ET.Element("{jabber:client}message", {"from": sender, "type": type_, **({"id": message_id} if message_id else {})})
    ET.SubElement(element, "{jabber:client}body").text = body
    return element


# --- xmppc -----------------------------------------------------------------------------------

@pytest.fixture
def xmppc_dns(monkeypatch):
    monkeypatch.setattr(xmppc_runner, "srv_lookup", lambda name: [(0, 5, 5222, "prosody.test")])
    monkeypatch.setattr(cli_support, "srv_addresses", lambda records: {PROSODY_AT: "prosody.test"})


def xmppc_under_strace(name: str, **kwargs):
    """xmppc run under strace: its strace output (captured) written where -o says."""
    def answer(argv, stdin):
        Path(argv[argv.index("-o") + 1]).write_text((FIXTURES / "xmppc-login.strace").read_text())
        return captured(name, **kwargs)
    return answer


def test_xmppc_c1_passes_on_a_verified_login_via_srv_refused_with_the_system_ca(xmppc_dns):
    result = run_case(xmppc_runner, "C1", [xmppc_under_strace("xmppc-login"), gives("xmppc-system-ca")])
    assert result["status"] == "pass", result["detail"]
    assert result["detail"].startswith("SRV _xmpp-client._tcp.prosody.test -> prosody.test:5222 asked and followed")


def test_xmppc_c1_fails_when_the_system_ca_is_trusted_too(xmppc_dns):
    result = run_case(xmppc_runner, "C1", [xmppc_under_strace("xmppc-login"), gives("xmppc-login")])
    assert result["status"] == "fail"
    assert result["detail"].startswith("with the system CA store instead of the lab CA the login still worked")


def test_xmppc_c1_fails_when_the_login_is_refused(xmppc_dns):
    result = run_case(xmppc_runner, "C1", [xmppc_under_strace("xmppc-wrong-password")])
    assert result["status"] == "fail"
    assert result["detail"] == ("with the lab CA: login failed: auth ERROR Cannot authenticate with known methods")


def test_xmppc_c1_fails_when_the_connection_did_not_follow_the_srv_answer(monkeypatch):
    monkeypatch.setattr(xmppc_runner, "srv_lookup", lambda name: [(0, 5, 5222, "prosody.test")])
    monkeypatch.setattr(cli_support, "srv_addresses", lambda records: {("10.9.9.9", 5222): "prosody.test"})
    result = run_case(xmppc_runner, "C1", [xmppc_under_strace("xmppc-login")])
    assert result["status"] == "fail" and "not to the SRV answer prosody.test:5222" in result["detail"]


def test_a_hung_xmppc_is_an_error_not_a_verdict_on_the_server(xmppc_dns):
    result = run_case(xmppc_runner, "C1", [xmppc_under_strace("xmppc-login", timed_out=True)])
    assert result["status"] == "error"
    assert "did not finish within 2s and was killed" in result["detail"]
    result = run_case(xmppc_runner, "C2", [gives("xmppc-login", timed_out=True)])
    assert result["status"] == "error"


def test_xmppc_c2_passes_on_a_login_and_a_refused_wrong_password():
    result = run_case(xmppc_runner, "C2", [gives("xmppc-login"), gives("xmppc-wrong-password")])
    assert result["status"] == "pass"
    assert result["detail"].startswith("SASL SCRAM-SHA-1, bound alice@prosody.test/lab-cap; wrong password -> "
                                       "not-authorized")


def test_xmppc_c2_fails_when_a_wrong_password_logs_in():
    result = run_case(xmppc_runner, "C2", [gives("xmppc-login"), gives("xmppc-login")])
    assert (result["status"], result["detail"]) == ("fail", "logged in with a wrong password")


def test_xmppc_c2_fails_when_the_right_password_is_refused():
    result = run_case(xmppc_runner, "C2", [gives("xmppc-wrong-password")])
    assert result["status"] == "fail" and result["detail"].startswith("right password: login failed")


def xmppc_sends(name: str, **kwargs):
    """xmppc in message mode: what it was asked to send is kept for the fake receiver."""
    def answer(argv, stdin):
        FakeReceiver.asked.append(argv)
        FakeReceiver.sent.set()
        return captured(name, **kwargs)
    return answer


@pytest.fixture
def receiver(monkeypatch):
    FakeReceiver.asked, FakeReceiver.sent = [], threading.Event()
    for module in (xmppc_runner, sendxmpp_runner):
        monkeypatch.setattr(module, "Receiver", FakeReceiver)
    return FakeReceiver


def arrives_as_sent(message_id=None, sender=None, newline=""):
    """The message arrives as the tool was asked to send it (from its -j / -r, its body)."""
    def arrive(self, body):
        # The tool run that was asked to send this body (xmppc's S1 sends both ways at once).
        deadline = time.monotonic() + 5
        while not any(body in arg for argv in FakeReceiver.asked for arg in argv) and time.monotonic() < deadline:
            time.sleep(0.01)
        argv = next((argv for argv in FakeReceiver.asked if any(body in arg for arg in argv)), FakeReceiver.asked[-1])
        frm = sender or (argv[argv.index("-j") + 1] if "-j" in argv and "@" in argv[argv.index("-j") + 1]
                         else f"{argv[argv.index('-u') + 1]}@{argv[argv.index('-j') + 1]}/{argv[argv.index('-r') + 1]}")
        return message(frm, body + newline, message_id)
    return arrive


def test_xmppc_c5_passes_on_a_delivery_as_sent(receiver):
    receiver.arrive = arrives_as_sent("baf71410-0c72-4c35-a1e3-13a0ee9dac57")
    result = run_case(xmppc_runner, "C5", [xmppc_sends("xmppc-message")])
    assert result["status"] == "pass", result["detail"]
    assert "from/id/type/body intact" in result["detail"]


def test_xmppc_c5_fails_when_nothing_arrives(receiver):
    receiver.arrive = lambda self, body: None
    result = run_case(xmppc_runner, "C5", [xmppc_sends("xmppc-message")])
    assert result["status"] == "fail"
    assert "not received within 12s (xmppc sent it (id baf71410-0c72-4c35-a1e3-13a0ee9dac57))" in result["detail"]


def test_xmppc_s1_fails_when_the_message_arrives_altered(receiver):
    receiver.arrive = arrives_as_sent("another-id")
    # (S1 runs both ways at once: one captured run for each)
    result = run_case(xmppc_runner, "S1", [xmppc_sends("xmppc-message")] * 2, target="ejabberd")
    assert result["status"] == "fail"
    assert "arrived altered: id 'another-id' instead of 'baf71410-0c72-4c35-a1e3-13a0ee9dac57'" in result["detail"]


def test_xmppc_s1_passes_both_ways(receiver):
    receiver.arrive = arrives_as_sent("baf71410-0c72-4c35-a1e3-13a0ee9dac57")
    result = run_case(xmppc_runner, "S1", [xmppc_sends("xmppc-message"), xmppc_sends("xmppc-message")],
                      target="ejabberd")
    assert result["status"] == "pass" and "; back: " in result["detail"]


# --- sendxmpp --------------------------------------------------------------------------------

def sendxmpp_sends(name: str, code: int = 0):
    def answer(argv, stdin):
        FakeReceiver.asked.append([*argv, stdin or ""])  # (sendxmpp reads the body from stdin)
        FakeReceiver.sent.set()
        return captured(name, code=code)
    return answer


def test_sendxmpp_c2_passes_on_a_delivery_and_a_refused_wrong_password(receiver):
    receiver.arrive = arrives_as_sent(newline="\n")
    result = run_case(sendxmpp_runner, "C2", [sendxmpp_sends("sendxmpp-message"),
                                              gives("sendxmpp-wrong-password", code=1)])
    assert result["status"] == "pass", result["detail"]
    assert "wrong password -> not-authorized, exit 1 \"Error 'AuthSend': error: not-authorized\"" in result["detail"]


def test_sendxmpp_c2_fails_when_a_wrong_password_is_taken(receiver):
    receiver.arrive = arrives_as_sent(newline="\n")
    result = run_case(sendxmpp_runner, "C2", [sendxmpp_sends("sendxmpp-message"), gives("sendxmpp-message")])
    assert (result["status"], result["detail"]) == ("fail", "sendxmpp exited 0 with a wrong password")


def test_sendxmpp_c5_fails_when_the_right_password_is_refused(receiver):
    receiver.arrive = lambda self, body: None
    result = run_case(sendxmpp_runner, "C5", [sendxmpp_sends("sendxmpp-wrong-password", code=1)])
    assert result["status"] == "fail"
    assert result["detail"].endswith("sendxmpp failed: Error 'AuthSend': error: not-authorized")


def test_sendxmpp_c5_passes_and_s1_fails_when_nothing_arrives(receiver):
    receiver.arrive = arrives_as_sent(newline="\n")
    assert run_case(sendxmpp_runner, "C5", [sendxmpp_sends("sendxmpp-message")])["status"] == "pass"
    receiver.arrive = lambda self, body: None
    result = run_case(sendxmpp_runner, "S1", [sendxmpp_sends("sendxmpp-message")], target="ejabberd")
    assert result["status"] == "fail" and "sent (exit 0) but not received within 2s" in result["detail"]


def test_sendxmpp_s1_passes_both_ways(receiver):
    receiver.arrive = arrives_as_sent(newline="\n")
    result = run_case(sendxmpp_runner, "S1", [sendxmpp_sends("sendxmpp-message")] * 2, target="ejabberd")
    assert result["status"] == "pass" and "; back: " in result["detail"]


# --- go-sendxmpp ------------------------------------------------------------------------------

def gosendxmpp_output(name: str) -> str:
    return (FIXTURES / f"{name}.out").read_text()


LISTENER_LOGIN, ARRIVAL = gosendxmpp_output("gosendxmpp-listener").split("<message ", 1)
ARRIVAL = "<message " + ARRIVAL  # the captured message as the listener printed it, and its line


class FakeListener:
    """gosendxmpp_runner.Listener's place: its -d output is a captured one (the next of
    ``outputs``: fixture name, exit code); logged in when that output shows its bound JID."""
    outputs: list = []
    live: dict = {}

    def __init__(self, ctx, jid, password, *, ca=None, strace=False):
        self.jid, self.ctx = jid, ctx
        self.full_jid = f"{jid}/lab-{ctx.case.lower()}-1"
        name, self.code = type(self).outputs.pop(0)
        self.output = gosendxmpp_output(name) if name != "listener" else LISTENER_LOGIN
        if "<jid>" in self.output:  # the bound JID is this listener's
            self.output = self.output.replace("<jid>bob@ejabberd.test/lab-cap</jid>", f"<jid>{self.full_jid}</jid>")
        FakeListener.live[self.full_jid] = self

    def wait_ready(self, timeout):
        return f"<jid>{self.full_jid}</jid>" in self.output

    def wait(self, predicate, timeout):
        return bool(predicate(self.output))

    def stop(self):
        return cli_support.Ran(["go-sendxmpp", "-l"], self.code, self.output, "", False, 1.0, ())

    def strace_text(self):
        return "(strace)"

    def transcript(self):
        return self.stop().text()

    def close(self):
        pass


@pytest.fixture
def listeners(monkeypatch):
    FakeListener.outputs, FakeListener.live = [], {}
    monkeypatch.setattr(gosendxmpp_runner, "Listener", FakeListener)
    return FakeListener


def go_sends(name: str, code: int = 0, arrives: bool = True):
    """go-sendxmpp sending: its captured -d output; the captured arrival is put in the
    recipient listener's output, with this message's sender and body."""
    def answer(argv, stdin):
        body, sender, to = stdin.strip(), argv[argv.index("-u") + 1], argv[-1]
        if arrives:
            FakeListener.live[to].output += (ARRIVAL.replace("lab capture body", body)
                                             .replace("alice@prosody.test", sender))
        return cli_support.Ran(argv, code, gosendxmpp_output(name), "", False, 1.0, ())
    return answer


@pytest.fixture
def go_dns(monkeypatch):
    monkeypatch.setattr(gosendxmpp_runner, "srv_lookup", lambda name: [(0, 5, 5222, "prosody.test")]
                        if name.startswith("_xmpp-client") else [(10, 5, 5223, "prosody.test")])
    monkeypatch.setattr(gosendxmpp_runner, "srv_addresses", lambda records: {("10.0.0.3", 5223): "prosody.test"})
    monkeypatch.setattr(cli_support, "srv_addresses", lambda records: {("10.0.0.3", 5222): "prosody.test"})
    monkeypatch.setattr(gosendxmpp_runner, "observed",
                        lambda text: (["_xmpp-client._tcp.prosody.test"], [("10.0.0.3", 5222)]))


def test_gosendxmpp_c1_passes_on_a_starttls_login_refused_with_the_system_ca_and_records_each_login(listeners, go_dns):
    listeners.outputs = [("listener", 0), ("gosendxmpp-system-ca", 1)]
    result = run_case(gosendxmpp_runner, "C1", [])
    assert result["status"] == "pass", result["detail"]
    assert "; one login; with the system CA store instead: x509: certificate signed by unknown authority" \
        in result["detail"]
    assert result["evidence"]["logins"] == [{"login": 1, "outcome": "STARTTLS via _xmpp-client",
                                             "address": "10.0.0.3:5222"}]


def test_gosendxmpp_c1_fails_when_the_system_ca_is_trusted_too(listeners, go_dns):
    listeners.outputs = [("listener", 0), ("listener", 0)]
    result = run_case(gosendxmpp_runner, "C1", [])
    assert result["status"] == "fail" and result["detail"].startswith("with the system CA store instead")


def test_gosendxmpp_c1_fails_when_its_server_is_cut_off(listeners, go_dns):
    listeners.outputs = [("gosendxmpp-listener-cut", -15)]
    result = run_case(gosendxmpp_runner, "C1", [])
    assert result["status"] == "fail"
    assert result["detail"] == "login 1 failed: no session before the timeout, nothing printed"
    assert result["evidence"]["logins"] == [{"login": 1, "outcome": "failed"}]


def test_gosendxmpp_c2_passes_on_a_login_and_a_refused_wrong_password(listeners):
    listeners.outputs = [("listener", 0), ("gosendxmpp-wrong-password", 1)]
    result = run_case(gosendxmpp_runner, "C2", [])
    assert result["status"] == "pass", result["detail"]
    assert result["detail"].startswith("logged in (<success/> without SCRAM server signature, i.e. PLAIN")


def test_gosendxmpp_c2_fails_when_a_wrong_password_logs_in(listeners):
    listeners.outputs = [("listener", 0), ("listener", 0)]
    assert run_case(gosendxmpp_runner, "C2", [])["detail"] == "logged in with a wrong password"


def test_gosendxmpp_c2_fails_when_the_right_password_is_refused(listeners):
    listeners.outputs = [("gosendxmpp-wrong-password", 1)]
    result = run_case(gosendxmpp_runner, "C2", [])
    assert result["status"] == "fail" and result["detail"].startswith("right password: login failed: auth failure")


def test_gosendxmpp_c2_never_says_scram_without_a_sasl_success():
    # the output of a login that never got to SASL (refused certificate): no <success/> at all
    assert gosendxmpp_runner.sasl_success(gosendxmpp_output("gosendxmpp-system-ca")) == (
        "no SASL <success/> in go-sendxmpp's output, so the mechanism is not known")
    assert gosendxmpp_runner.sasl_success(LISTENER_LOGIN) == "<success/> without SCRAM server signature, i.e. PLAIN"


def test_gosendxmpp_c5_passes_on_a_delivery(listeners):
    listeners.outputs = [("listener", 0)]
    result = run_case(gosendxmpp_runner, "C5", [go_sends("gosendxmpp-send")])
    assert result["status"] == "pass", result["detail"]
    assert result["detail"].endswith("from/type/body intact (no id set by the tool)")


def test_gosendxmpp_s1_fails_when_the_recipients_server_is_cut_off(listeners):
    listeners.outputs = [("listener", 0)]
    result = run_case(gosendxmpp_runner, "S1", [go_sends("gosendxmpp-send-cut", arrives=False)], target="ejabberd")
    assert result["status"] == "fail"
    assert result["detail"].endswith("sent (exit 0) but not received within 2s")


def test_gosendxmpp_s1_passes_both_ways(listeners):
    listeners.outputs = [("listener", 0), ("listener", 0)]
    result = run_case(gosendxmpp_runner, "S1", [go_sends("gosendxmpp-send")] * 2, target="ejabberd")
    assert result["status"] == "pass" and "; back: " in result["detail"]


def test_gosendxmpp_send_refused_before_login_is_the_passing_fault_and_after_login_a_fail(listeners):
    before = gosendxmpp_output("gosendxmpp-internal-server-error")
    listeners.outputs = [("listener", 0), ("listener", 0)]
    result = run_case(gosendxmpp_runner, "C5", [go_sends("gosendxmpp-internal-server-error", code=1, arrives=False),
                                                go_sends("gosendxmpp-send")])
    assert result["status"] == "flaky" and [a["status"] for a in result["attempts"]] == ["transient", "pass"]
    # The same stream error after the SASL <success/> (a logged-in sender's output, then the
    # captured error): a real server failure, never retried into a flaky.
    error = before[before.index("<stream:error"):]
    after_login = gosendxmpp_output("gosendxmpp-send") + error

    def sends_then_error(argv, stdin):
        return cli_support.Ran(argv, 1, after_login, "", False, 1.0, ())
    listeners.outputs = [("listener", 0)]
    result = run_case(gosendxmpp_runner, "C5", [sends_then_error])
    assert result["status"] == "fail" and len(result["attempts"]) == 1
    assert "go-sendxmpp exit 1: expected <success> or <failure>, got <error>" in result["detail"]


# --- captured with the recipient's (or the sender's own) server cut off ----------------------------

def test_xmppc_s1_to_a_cut_off_server_fails_and_names_the_id_it_sent(receiver):
    receiver.arrive = lambda self, body: None
    result = run_case(xmppc_runner, "S1", [xmppc_sends("xmppc-message-cut")] * 2, target="ejabberd")
    assert result["status"] == "fail"
    assert "not received within 12s (xmppc sent it (id aa6930a7-c7b1-486d-9d2e-ef7b0de2b6e6))" in result["detail"]


def test_xmppc_c2_on_a_cut_off_server_hangs_and_is_an_error():
    # xmppc connected, sent its stream header and waited: killed at the runner's timeout
    result = run_case(xmppc_runner, "C2", [gives("xmppc-login-cut", timed_out=True)])
    assert result["status"] == "error"
    assert result["detail"].endswith("its log ends: conn DEBUG SENT: <?xml version=\"1.0\"?><stream:stream "
                                     "to=\"ejabberd.test\" xml:lang=\"en\" version=\"1.0\" xmlns=\"jabber:client\" "
                                     "xmlns:stream=\"http://etherx.jabber.org/streams\">")


def test_sendxmpp_s1_to_a_cut_off_server_fails(receiver):
    receiver.arrive = lambda self, body: None
    result = run_case(sendxmpp_runner, "S1", [sendxmpp_sends("sendxmpp-message-cut")], target="ejabberd")
    assert result["status"] == "fail" and result["detail"].endswith("sent (exit 0) but not received within 2s")


def test_a_hung_sender_is_an_error_for_sendxmpp_and_go_sendxmpp_too(receiver, listeners):
    receiver.arrive = lambda self, body: None
    result = run_case(sendxmpp_runner, "C5", [lambda argv, stdin: captured("sendxmpp-message-cut", timed_out=True)])
    assert result["status"] == "error" and result["detail"].endswith("did not finish within 2s and was killed")
    listeners.outputs = [("listener", 0)]
    result = run_case(gosendxmpp_runner, "C5", [lambda argv, stdin: cli_support.Ran(
        argv, -9, gosendxmpp_output("gosendxmpp-send-cut"), "", True, 7.0, ())])
    assert result["status"] == "error" and result["detail"].endswith("did not finish and was killed after 7s")
