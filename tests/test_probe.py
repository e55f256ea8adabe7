"""probe.py (lab up's readiness, the fault scenarios' look at B's s2s port, C6's stream
features) reads the stream as XML, not by substring: against a scripted server on loopback."""

import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lab" / "runners"))
import probe  # noqa: E402  (lab/runners/ is not a package)

HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
          "from='x.test' id='1' version='1.0'>")
STARTTLS = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
SASL = "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>"


def serve(*replies: str) -> int:
    """A server on loopback that answers each thing the client sends with the next reply
    (sent in two pieces, as TCP may deliver it); its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def run():
        connection, _ = listener.accept()
        with connection, listener:
            for reply in replies:
                connection.recv(4096)
                data = reply.encode()
                connection.sendall(data[:len(data) // 2])
                connection.sendall(data[len(data) // 2:])
    threading.Thread(target=run, daemon=True).start()
    return listener.getsockname()[1]


def test_a_server_offering_starttls_is_ready():
    assert probe.probe("127.0.0.1", serve(HEADER + f"<stream:features>{STARTTLS}{SASL}</stream:features>")) is None


def test_features_under_another_prefix_are_still_the_stream_features():
    header = HEADER.replace("xmlns:stream=", "xmlns:s=").replace("<stream:stream", "<s:stream")
    port = serve(header + f"<s:features>{STARTTLS}</s:features>")
    assert probe.probe("127.0.0.1", port) is None  # the substring probe saw no "</stream:features>"


def test_the_tls_namespace_named_elsewhere_is_no_starttls_offer():
    text = "<text xmlns='urn:x'>starttls (urn:ietf:params:xml:ns:xmpp-tls) is off here</text>"
    port = serve(HEADER + f"<stream:features>{SASL}{text}</stream:features>")
    assert probe.probe("127.0.0.1", port) == "127.0.0.1:%d does not offer STARTTLS" % port


def test_a_stream_error_instead_of_features_says_so():
    error = ("<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
             "</stream:stream>")
    port = serve(HEADER + error)
    assert probe.probe("127.0.0.1", port).startswith(
        f"no stream features from 127.0.0.1:{port} (got {{http://etherx.jabber.org/streams}}error")


def test_not_xml_is_a_located_problem_not_a_crash():
    port = serve("HTTP/1.1 400 Bad Request\r\n\r\n")
    assert probe.probe("127.0.0.1", port).startswith(f"127.0.0.1:{port}: not XML")


def test_s2s_offer_reads_the_answer_to_starttls_as_xml():
    failure = "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>"
    port = serve(HEADER + f"<stream:features>{STARTTLS}</stream:features>", failure)
    offer = probe.s2s_offer_once({"domain": "127.0.0.1", "port": port, "sender": "a.test"})
    assert offer["starttls"] is True and offer["certificate"] is None
    assert offer["error"].startswith("STARTTLS not proceeding: got {urn:ietf:params:xml:ns:xmpp-tls}failure")


def test_s2s_offer_without_starttls_shows_the_features():
    port = serve(HEADER + "<stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>")
    offer = probe.s2s_offer_once({"domain": "127.0.0.1", "port": port, "sender": "a.test"})
    assert (offer["starttls"], offer["error"]) == (False, None)
    assert "urn:xmpp:features:dialback" in offer["features"]
