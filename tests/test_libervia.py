"""The libervia runner's judging (lab/runners/libervia_runner.py) on a backend log captured
from a real J1 run (libervia 0.9.0~hg4352, alice@prosody.test -> bob@ejabberd.test, IBB;
tests/fixtures/libervia/j1_ibb_backend.log, the part of the log the runner traces). Each
verdict made red: a truncated file, an altered byte, no file, a transfer over SOCKS5
instead of IBB; and the import block that leaves the S5B plugin out really blocks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

RUNNERS = Path(__file__).resolve().parent.parent / "lab" / "runners"
LOG = (Path(__file__).resolve().parent / "fixtures" / "libervia" / "j1_ibb_backend.log").read_text()
sys.path.insert(0, str(RUNNERS))
import libervia_runner as runner  # noqa: E402

SENT = os.urandom(runner.FILE_SIZE)


@pytest.fixture
def jingle_module():
    return runner.jingle


def test_j1_passes_on_the_real_log_with_the_file_whole():
    detail = runner.judge_transfer(SENT, SENT, "lab-x.bin", LOG, runner.IBB)
    assert detail.startswith("20000 bytes over IBB (XEP-0261), sha-256 matches the file sent (checked by the runner)")
    assert "libervia's checksum: checked by libervia" in detail


def test_j1_fails_on_a_truncated_file():
    with pytest.raises(runner.CaseFailed, match=r"is not the one sent: 16384 of 20000 bytes; sha-256 "):
        runner.judge_transfer(SENT, SENT[:16384], "lab-x.bin", LOG, runner.IBB)


def test_j1_fails_on_an_altered_byte_and_says_what_libervia_checked():
    altered = bytes([SENT[0] ^ 1]) + SENT[1:]
    with pytest.raises(runner.CaseFailed, match=r"not the one sent: sha-256 .*; libervia's checksum: checked"):
        runner.judge_transfer(SENT, altered, "lab-x.bin", LOG, runner.IBB)
    mismatch = LOG.replace(runner.HASH_CHECKED, runner.HASH_BAD)
    with pytest.raises(runner.CaseFailed, match=r"libervia's checksum: mismatch"):
        runner.judge_transfer(SENT, altered, "lab-x.bin", mismatch, runner.IBB)


def test_j1_fails_when_no_file_arrived():
    with pytest.raises(runner.CaseFailed, match=r"no file lab-x.bin arrived"):
        runner.judge_transfer(SENT, None, "lab-x.bin", LOG, runner.IBB)


def test_j1_fails_when_the_file_came_over_socks5():
    s5b = LOG.replace("IBB stream opening", "Found best peer candidate: Candidate (direct)").replace(
        "IBB stream closing", "File transfer completed, closing connection")
    assert runner.transports_in(s5b) == ["SOCKS5 (XEP-0260)"]
    with pytest.raises(runner.CaseFailed, match=r"arrived whole, but over SOCKS5 \(XEP-0260\), not IBB"):
        runner.judge_transfer(SENT, SENT, "lab-x.bin", s5b, runner.IBB)


def test_a_checksum_that_never_came_is_said_and_not_a_fail():
    missing = LOG.replace(runner.HASH_CHECKED, "sender didn't sent hash checksum, we can't check the file")
    assert "never came" in runner.judge_transfer(SENT, SENT, "lab-x.bin", missing, runner.IBB)


def test_the_skip_list_makes_a_module_unimportable(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(runner.SKIPPING_SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "LAB_LIBERVIA_SKIP": "json.tool"}
    blocked = subprocess.run([sys.executable, "-c", "import json.tool"], env=env, capture_output=True, text=True)
    assert blocked.returncode != 0 and "left out by the lab: json.tool" in blocked.stderr
    fine = subprocess.run([sys.executable, "-c", "import json.decoder"], env=env, capture_output=True, text=True)
    assert fine.returncode == 0, fine.stderr


def test_j1_fails_when_the_servers_cannot_reach_each_other_and_says_what_libervia_logged():
    """Captured with Prosody's s2s switched off (modules_disabled, a template override)."""
    log = (Path(__file__).resolve().parent / "fixtures" / "libervia" / "j1_no_s2s_backend.log").read_text()
    failure = runner.missing_file("bob@ejabberd.test/r", 20, log, ended=False)
    assert str(failure).startswith("no file arrived at bob@ejabberd.test/r within 20s; libervia logged: can't request "
                                   "disco infos from bob@ejabberd.test/")
    assert "Communication with remote domains is not enabled" in str(failure)
    assert str(runner.missing_file("b", 20, "", ended=False)).endswith("and libervia logged no end of the transfer")


# --- the pairs with the lab's slixmpp ends ----------------------------------------------------

# J1/libervia->slixmpp/ejabberd->prosody, 2026-12-06: the slixmpp responder's check of the file
# against the checksum libervia sent (XEP-0234 hash-used, then a checksum session-info).
CAPTURED_MISMATCH = ("the file received over IBB is not the one offered: sha-256 "
                     "Q55tS+B+COYF1qPkNPaqjRYIFNQW++7VOzy3WEfy5XY=, offered "
                     "NDM5ZTZkNGJlMDdlMDhlNjA1ZDZhM2U0MzRmNmFhOGQxNjA4MTRkNDE2ZmJlZWQ1M2IzY2I3NTg0N2YyZTU3Ng==")


def test_libervia_to_slixmpp_fails_on_libervias_hex_checksum_and_shows_the_file_was_whole():
    note = runner.hex_digest_note(CAPTURED_MISMATCH)
    assert "base64 of the hex digest 439e6d4be07e08e605d6a3e434f6aa8d160814d416fbeed53b3cb75847f2e576" in note
    # decoded as hex, libervia's value is the sha-256 of what arrived: the bytes were whole
    assert note.endswith("decoded as hex it is Q55tS+B+COYF1qPkNPaqjRYIFNQW++7VOzy3WEfy5XY=)")
    assert runner.hex_digest_note("the file received over IBB is not the one offered: 16384 of 20000 bytes") == ""


def test_libervia_to_slixmpp_the_responder_fails_a_hash_used_offer_whose_checksum_never_comes(jingle_module):
    offered = jingle_module.Offered("f", 3, {}, "sha-256")
    with pytest.raises(runner.CaseFailed, match=r"no sha-256 hash to check the file against"):
        jingle_module.check_received(offered, b"abc", "over IBB")


def test_slixmpp_to_libervia_fails_when_libervia_ends_the_session_and_says_why():
    """Captured: libervia 0.9.0~hg4352 answering a standard XEP-0300 <hash/> in the offer."""
    log = (Path(__file__).resolve().parent / "fixtures" / "libervia" / "j1_slixmpp_to_libervia_backend.log").read_text()
    failure = str(runner.missing_file("bob@ejabberd.test/r", 20, log, True, "failed-application"))
    assert failure.startswith("bob@ejabberd.test/r ended the session with <failed-application/> and no file arrived; "
                              "libervia logged: Unmanaged jingle exception: [Failure instance: Traceback: "
                              "<class 'UnicodeDecodeError'>")


# --- J2, J3, J5 in the pairs with slixmpp (and J3 at both ends) --------------------------------

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "libervia"


def test_j2_libervia_to_slixmpp_fails_when_libervia_falls_back_to_ibb_and_says_what_became_of_socks5():
    """Captured (J2/libervia->slixmpp/prosody->ejabberd, 2026-12-06): the lab's responder connected to
    A's proxy and said candidate-used; libervia's activation broke (plugin_xep_0260 calls
    Candidate.activate with the wrong arguments), it sent proxy-error and transport-replace to IBB."""
    log = (FIXTURES / "j2_libervia_to_slixmpp_backend.log").read_text()
    steps = ["B's user: direct alice@prosody.test/r at 10.0.0.5:33659: not tried (...); proxy proxy.prosody.test at "
             "proxy.prosody.test:5000 (10.0.0.2): connected",
             "A's user: transport-info proxy-error (it could not activate the proxy B's user connected to)"]
    notes = {"streamhost": {"jid": "proxy.prosody.test", "host": "proxy.prosody.test", "port": 5000,
                            "address": "10.0.0.2", "type": "proxy"}}
    failure = str(runner.s5b_failure(runner.CaseFailed(CAPTURED_MISMATCH.replace("over IBB", "over IBB after "
                                                                                   "transport-replace")),
                                     steps, notes, log))
    assert "transport-info proxy-error" in failure
    assert "B's user was connected to proxy.prosody.test at proxy.prosody.test:5000" in failure
    assert "libervia logged: Can't connect to any peer candidate | Cant start transfert, we'll try fallback method: " \
           "'TypeError' object has no attribute 'condition'" in failure
    assert "then: the file received over IBB after transport-replace is not the one offered" in failure
    assert "libervia's value is base64 of the hex digest" in failure


def test_j2_fails_unless_the_file_came_through_a_proxy_of_a():
    proxy = {"jid": "proxy.prosody.test", "host": "proxy.prosody.test", "port": 5000, "address": "10.0.0.2",
             "type": "proxy"}
    assert runner.judge_streamhost({"streamhost": proxy}, "prosody.test").startswith(
        "streamhost used: proxy proxy.prosody.test at proxy.prosody.test:5000")
    with pytest.raises(runner.CaseFailed, match=r"did not come through A's proxy \(ejabberd.test\)"):
        runner.judge_streamhost({"streamhost": proxy}, "ejabberd.test")  # B's proxy, not A's
    direct = {**proxy, "type": "direct", "jid": "alice@prosody.test/r"}
    with pytest.raises(runner.CaseFailed, match=r"did not come through A's proxy"):
        runner.judge_streamhost({"streamhost": direct}, "prosody.test")
    with pytest.raises(runner.CaseFailed, match=r"no streamhost used \(candidates: none offered\)"):
        runner.judge_streamhost({}, "prosody.test")


def test_j2_slixmpp_to_libervia_fails_when_libervia_does_not_take_the_checksum_and_shows_the_transport():
    """Captured (J2/slixmpp->libervia/prosody->ejabberd): the file came whole through A's proxy;
    libervia never answered the checksum session-info (UnicodeDecodeError reading a standard
    XEP-0300 value) and logged that the checksum never came."""
    log = (FIXTURES / "j2_slixmpp_to_libervia_backend.log").read_text()
    steps = ["A's user: connected to proxy.prosody.test at proxy.prosody.test:5000 (10.0.0.2), activated it, sent "
             "20000 B through it", "A's user: checksum session-info (sha-256 x) -> no answer within 6 s"]
    with pytest.raises(runner.CaseFailed) as failed:
        runner.judge_received(SENT, SENT, "f", log, runner.SOCKS5, "success", steps, "bob@b/r", 20)
    failure = str(failed.value)
    assert failure.startswith("the file arrived whole (20000 bytes over SOCKS5 (XEP-0260), sha-256 matches")
    assert "but libervia did not take the standard XEP-0300 checksum (no answer within 6 s)" in failure
    assert "libervia logged: UnicodeDecodeError: 'utf-8' codec can't decode byte 0xbc" in failure
    # the same exchange with the checksum answered passes; a truncated file or another transport fails
    answered = steps[:1] + ["A's user: checksum session-info (sha-256 x) -> result"]
    assert runner.judge_received(SENT, SENT, "f", log, runner.SOCKS5, "success", answered, "b", 20)
    with pytest.raises(runner.CaseFailed, match=r"not the one sent: 16384 of 20000 bytes"):
        runner.judge_received(SENT, SENT[:16384], "f", log, runner.SOCKS5, "success", answered, "b", 20)
    with pytest.raises(runner.CaseFailed, match=r"over SOCKS5 \(XEP-0260\), not IBB"):
        runner.judge_received(SENT, SENT, "f", log, runner.IBB, "success", answered, "b", 20)
    with pytest.raises(runner.CaseFailed, match=r"ended the session with <failed-application/>"):
        runner.judge_received(SENT, None, "f", log, runner.SOCKS5, "failed-application", answered, "b", 20)


def test_j3_slixmpp_to_libervia_fails_without_decline_and_is_an_error_without_a_dialog():
    with pytest.raises(runner.CaseFailed, match=r"got session-terminate with 'failed-application', not <decline/>"):
        runner.judge_declined("failed-application", ["s"], {"action": "a1", "from_jid": "alice@a/r"})
    with pytest.raises(runner.NotObserved, match=r"showed no file dialog"):
        runner.judge_declined("decline", ["s"], None)
    assert runner.judge_declined("decline", ["s"], {"action": "a1"}).endswith("session-terminate with <decline/>")


def test_j3_with_libervia_sending_fails_when_its_backend_does_not_signal_the_decline():
    """Captured: dbus-monitor on the case's bus after bob declined (J3/libervia/prosody->ejabberd)."""
    monitored = (FIXTURES / "j3_declined.dbus-monitor").read_text()
    assert runner.progress_errors(monitored, "alice") == ["declined"]
    assert "signalled progress_error \"declined\"" in runner.judge_sender_saw_decline(monitored, ["declined"])
    silent = monitored[:monitored.index("signal time=1796549309")]
    with pytest.raises(runner.CaseFailed, match=r"did not signal the transfer declined \(progress_error for alice: "
                                                r"none\)"):
        runner.judge_sender_saw_decline(silent, ["B's user declined"])
    other = monitored.replace('"declined"', '"timeout"')
    with pytest.raises(runner.CaseFailed, match=r"progress_error for alice: timeout"):
        runner.judge_sender_saw_decline(other, ["B's user declined"])


def test_j5_libervia_to_slixmpp_fails_with_why_libervia_proposed_nothing():
    """Captured (J5/libervia->slixmpp/prosody->ejabberd): libervia asks the disco#info of B's bare
    JID before proposing; ejabberd answers a non-contact subscription-required, and libervia
    gives up instead of proposing."""
    log = (FIXTURES / "j5_libervia_to_ejabberd_backend.log").read_text()
    failure = str(runner.sender_failure(runner.CaseFailed("timed out waiting for libervia's propose of f.bin"),
                                        None, log, session_came=False))
    assert failure.startswith("timed out waiting for libervia's propose of f.bin; libervia logged: Can't send ")
    assert "subscription-required" in failure and "Can't find any method to send file to bob@ejabberd.test" in failure
    proposed = str(runner.sender_failure(runner.CaseFailed(CAPTURED_MISMATCH), "propose p1 from a -> proceed from b",
                                         log, session_came=True))
    assert proposed.startswith("propose p1 from a -> proceed from b; then: the file received over IBB is not the one")
    assert "libervia logged" not in proposed  # the session came: its log is not the reason


def test_j3_at_both_ends_fails_when_no_offer_reached_bob_and_says_what_libervia_logged():
    """Captured with Prosody's s2s off (the J1 fixture): alice's offer goes nowhere."""
    log = (FIXTURES / "j1_no_s2s_backend.log").read_text()
    failure = runner.no_dialog(log)
    assert isinstance(failure, runner.CaseFailed)
    assert str(failure).startswith("no offer reached bob's backend (no file dialog to refuse); libervia logged: ")
    assert "Communication with remote domains is not enabled" in str(failure)
    assert isinstance(runner.no_dialog(""), runner.NotObserved)


def test_j6_slixmpp_to_libervia_fails_unless_libervia_answers_the_transport_replace_with_transport_accept():
    """J6/slixmpp->libervia, 2026-12-06: libervia said candidate-error and answered transport-accept
    (evidence reaction); a wrong session-accept or no answer must fail."""
    detail = "20000 bytes over IBB (XEP-0261), sha-256 matches the file sent (checked by the runner)"
    runner.judge_fallback("transport-accept", detail)
    for reaction in ("session-accept", "ignored", "transport-reject", None):
        with pytest.raises(runner.CaseFailed, match=rf"answered the transport-replace with {reaction}, not "
                                                    rf"transport-accept"):
            runner.judge_fallback(reaction, detail)
