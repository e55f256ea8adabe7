"""Servers looked at the XMPP level, standard library only: `ready` of the slixmpp runner
(lab up waits with it until every server speaks XMPP), `s2s-offer` (what a server's s2s
port presents, for the fault scenarios) and `c2s_features` (what a client is offered
after STARTTLS, for C6)."""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

STREAM_HEADER = ("<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' "
                 "xmlns:stream='http://etherx.jabber.org/streams'>")
NS_STREAM = "http://etherx.jabber.org/streams"
TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
FEATURES = f"{{{NS_STREAM}}}features"
ET.register_namespace("stream", NS_STREAM)  # features shown as <stream:features>, as sent


class StreamReader:
    """The top-level elements of an XMPP stream, parsed as they arrive (as
    cli_support.Receiver reads its stream): never a substring match on the raw bytes."""

    def __init__(self, sock, limit: int = 65536):
        self.sock, self.limit = sock, limit
        self.parser = ET.XMLPullParser(("start", "end"))
        self.depth, self.root, self.text = 0, None, ""

    def next(self) -> ET.Element | None:
        """The next complete top-level element; None when the stream, the connection or
        ``limit`` bytes end first. ValueError for what is not XML."""
        try:
            return self._next()
        except ET.ParseError as error:
            raise ValueError(f"not XML ({error}): {self.text[:160]!r}") from None

    def _next(self) -> ET.Element | None:
        while True:
            for event, element in self.parser.read_events():
                if event == "start":
                    self.depth += 1
                    self.root = element if self.root is None else self.root
                    continue
                self.depth -= 1
                if self.depth == 1:
                    self.root.remove(element)
                    return element
                if self.depth == 0:
                    return None
            if len(self.text) >= self.limit:
                return None
            chunk = self.sock.recv(4096)
            if not chunk:
                return None
            self.text += chunk.decode(errors="replace")
            self.parser.feed(chunk)


def tag(element: ET.Element | None) -> str:
    return "nothing" if element is None else element.tag


def offers_starttls(features: ET.Element) -> bool:
    return features.find(f"{{{TLS_NS}}}starttls") is not None


def probe(domain: str, port: int = 5222) -> str | None:
    """None when the server at ``domain`` opens a stream and offers STARTTLS, else why not."""
    try:
        with socket.create_connection((domain, port), timeout=3) as sock:
            sock.sendall(STREAM_HEADER.format(domain=domain).encode())
            reader = StreamReader(sock)
            features = reader.next()
        if features is None or features.tag != FEATURES:
            return f"no stream features from {domain}:{port} (got {tag(features)}: {reader.text[:120]!r})"
        if not offers_starttls(features):
            return f"{domain}:{port} does not offer STARTTLS"
        return None
    except (OSError, ValueError) as error:
        return f"{domain}:{port}: {error}"


def ready(spec: dict) -> dict:
    """Wait until every domain is ready or the timeout passes. spec: {"domains": [...],
    "ports": {domain: port} (default 5222), "timeout": seconds}."""
    deadline = time.monotonic() + spec["timeout"]
    ports = spec.get("ports") or {}

    def wait(domain: str) -> dict:
        started = time.monotonic()
        while True:
            problem = probe(domain, ports.get(domain, 5222))
            if problem is None:
                return {"ready": True, "seconds": round(time.monotonic() - started, 2)}
            if time.monotonic() > deadline:
                return {"ready": False, "error": problem}
            time.sleep(0.25)

    with ThreadPoolExecutor(max_workers=len(spec["domains"])) as pool:
        return dict(zip(spec["domains"], pool.map(wait, spec["domains"])))


S2S_HEADER = ("<?xml version='1.0'?><stream:stream to='{domain}' from='{sender}' version='1.0' "
              "xmlns='jabber:server' xmlns:db='jabber:server:dialback' xmlns:stream='http://etherx.jabber.org/streams'>")


def c2s_features(domain: str, sender: str, ca_file: str, port: int = 5222) -> str:
    """The stream features ``domain`` offers after STARTTLS (the lab CA checked) to a
    stream header that names its sender, as XEP-0388 asks of a client: a server may offer
    SASL2 only then (ejabberd 24.12 does). An OSError or ValueError says why there are none."""
    import ssl
    with socket.create_connection((domain, port), timeout=3) as sock:
        sock.sendall(STREAM_HEADER.format(domain=domain).encode())
        reader = StreamReader(sock)
        features = reader.next()
        if features is None or features.tag != FEATURES or not offers_starttls(features):
            raise ValueError(f"{domain}:{port} offers no STARTTLS (got {tag(features)})")
        sock.sendall(f"<starttls xmlns='{TLS_NS}'/>".encode())
        answer = reader.next()
        if answer is None or answer.tag != f"{{{TLS_NS}}}proceed":
            raise ValueError(f"{domain}:{port}: STARTTLS not proceeding (got {tag(answer)})")
        with ssl.create_default_context(cafile=ca_file).wrap_socket(sock, server_hostname=domain) as tls:
            header = STREAM_HEADER.format(domain=domain).replace("<stream:stream ", f"<stream:stream from='{sender}' ")
            tls.sendall(header.encode())
            secured = StreamReader(tls)
            features = secured.next()
    if features is None or features.tag != FEATURES:
        raise ValueError(f"no stream features from {domain}:{port} after STARTTLS (got {tag(features)}: "
                         f"{secured.text[-160:]!r})")
    return ET.tostring(features, encoding="unicode")


def s2s_offer(spec: dict) -> dict:
    """What a server offers another server on its s2s port, as the fault scenarios see it:
    whether it offers STARTTLS and, if so, the certificate it presents (DER, base64), taken
    without checking it. Asked again until spec "timeout" while the port is not there yet
    or drops the connection: a server's s2s side can come up after its c2s side (jabberd2's
    is a process of its own; ejabberd loads certificates after it listens). spec: {"domain",
    "port", "sender", "timeout"}."""
    deadline = time.monotonic() + spec.get("timeout", 10)
    while True:
        offer = s2s_offer_once(spec)
        if offer["starttls"] is not None or time.monotonic() > deadline:
            return offer
        time.sleep(0.25)


def s2s_offer_once(spec: dict) -> dict:
    import base64
    import ssl
    domain, port = spec["domain"], spec["port"]
    try:
        with socket.create_connection((domain, port), timeout=3) as sock:
            sock.sendall(S2S_HEADER.format(domain=domain, sender=spec["sender"]).encode())
            reader = StreamReader(sock)
            features = reader.next()
            if features is None or features.tag != FEATURES:
                return {"starttls": False, "certificate": None,
                        "error": f"no stream features from {domain}:{port} (got {tag(features)}: {reader.text[:160]!r})"}
            if not offers_starttls(features):
                return {"starttls": False, "certificate": None, "error": None,
                        "features": ET.tostring(features, encoding="unicode")[-400:]}
            sock.sendall(f"<starttls xmlns='{TLS_NS}'/>".encode())
            answer = reader.next()
            if answer is None or answer.tag != f"{{{TLS_NS}}}proceed":
                return {"starttls": True, "certificate": None,
                        "error": f"STARTTLS not proceeding: got {tag(answer)} ({reader.text[-160:]!r})"}
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # looked at, not trusted
            with context.wrap_socket(sock, server_hostname=domain) as tls:
                der = tls.getpeercert(binary_form=True)
        return {"starttls": True, "certificate": base64.b64encode(der).decode() if der else None, "error": None}
    except ValueError as error:
        return {"starttls": False, "certificate": None, "error": f"{domain}:{port}: {error}"}
    except OSError as error:
        return {"starttls": None, "certificate": None, "error": f"{domain}:{port}: {error}"}
