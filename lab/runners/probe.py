"""Servers looked at the XMPP level, standard library only: `ready` of the slixmpp runner
(lab up waits with it until every server speaks XMPP), `s2s-offer` (what a server's s2s
port presents, for the fault scenarios) and `c2s_features` (what a client is offered
after STARTTLS, for C6)."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

STREAM_HEADER = ("<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' "
                 "xmlns:stream='http://etherx.jabber.org/streams'>")
TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"


def read_until(sock, end: bytes, limit: int = 65536) -> str:
    received = b""
    while end not in received and len(received) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received.decode(errors="replace")


def probe(domain: str, port: int = 5222) -> str | None:
    """None when the server at ``domain`` opens a stream and offers STARTTLS, else why not."""
    try:
        with socket.create_connection((domain, port), timeout=3) as sock:
            sock.sendall(STREAM_HEADER.format(domain=domain).encode())
            text = read_until(sock, b"</stream:features>")
        if "</stream:features>" not in text:
            return f"no stream features from {domain}:{port} (got {text[:120]!r})"
        if TLS_NS not in text:
            return f"{domain}:{port} does not offer STARTTLS"
        return None
    except OSError as error:
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
        if TLS_NS not in read_until(sock, b"</stream:features>"):
            raise ValueError(f"{domain}:{port} offers no STARTTLS")
        sock.sendall(f"<starttls xmlns='{TLS_NS}'/>".encode())
        if "proceed" not in read_until(sock, b"/>"):
            raise ValueError(f"{domain}:{port}: STARTTLS not proceeding")
        with ssl.create_default_context(cafile=ca_file).wrap_socket(sock, server_hostname=domain) as tls:
            header = STREAM_HEADER.format(domain=domain).replace("<stream:stream ", f"<stream:stream from='{sender}' ")
            tls.sendall(header.encode())
            text = read_until(tls, b"</stream:features>")
    if "</stream:features>" not in text:
        raise ValueError(f"no stream features from {domain}:{port} after STARTTLS (got {text[-160:]!r})")
    return text[text.index("<stream:features"):text.index("</stream:features>") + len("</stream:features>")]


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
            features = read_until(sock, b"</stream:features>")
            if "</stream:features>" not in features:
                return {"starttls": False, "certificate": None,
                        "error": f"no stream features from {domain}:{port} (got {features[:160]!r})"}
            if TLS_NS not in features:
                return {"starttls": False, "certificate": None, "error": None, "features": features[-400:]}
            sock.sendall(f"<starttls xmlns='{TLS_NS}'/>".encode())
            answer = read_until(sock, b"/>")
            if "proceed" not in answer:
                return {"starttls": True, "certificate": None, "error": f"STARTTLS not proceeding: {answer[:160]!r}"}
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # looked at, not trusted
            with context.wrap_socket(sock, server_hostname=domain) as tls:
                der = tls.getpeercert(binary_form=True)
        return {"starttls": True, "certificate": base64.b64encode(der).decode() if der else None, "error": None}
    except OSError as error:
        return {"starttls": None, "certificate": None, "error": f"{domain}:{port}: {error}"}
