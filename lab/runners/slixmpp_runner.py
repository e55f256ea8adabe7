"""Test runner for the slixmpp client stack, run inside the client container.

It needs only the standard library and slixmpp, as the container has them. Usage:
    slixmpp_runner.py ready SPEC_JSON      # XMPP-level readiness of servers
    slixmpp_runner.py federate SPEC_JSON   # cross-server message delivery
Each prints one JSON document on stdout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

STREAM_HEADER = ("<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' "
                 "xmlns:stream='http://etherx.jabber.org/streams'>")
TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"


def probe(domain: str, port: int = 5222) -> str | None:
    """None when the server at ``domain`` opens a stream and offers STARTTLS, else why not."""
    try:
        with socket.create_connection((domain, port), timeout=3) as sock:
            sock.sendall(STREAM_HEADER.format(domain=domain).encode())
            received = b""
            while b"</stream:features>" not in received and len(received) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
        text = received.decode(errors="replace")
        if "</stream:features>" not in text:
            return f"no stream features from {domain}:{port} (got {text[:120]!r})"
        if TLS_NS not in text:
            return f"{domain}:{port} does not offer STARTTLS"
        return None
    except OSError as error:
        return f"{domain}:{port}: {error}"


def ready(spec: dict) -> dict:
    """Wait until every domain is ready or the timeout passes."""
    deadline = time.monotonic() + spec["timeout"]

    def wait(domain: str) -> dict:
        started = time.monotonic()
        while True:
            problem = probe(domain)
            if problem is None:
                return {"ready": True, "seconds": round(time.monotonic() - started, 2)}
            if time.monotonic() > deadline:
                return {"ready": False, "error": problem}
            time.sleep(0.25)

    with ThreadPoolExecutor(max_workers=len(spec["domains"])) as pool:
        return dict(zip(spec["domains"], pool.map(wait, spec["domains"])))


def lab_client_class(ca_file: str):
    import slixmpp

    class LabClient(slixmpp.ClientXMPP):
        """Trusts only the lab CA, as a real client configured for the lab would."""

        def get_ssl_context(self) -> ssl.SSLContext:
            context = ssl.create_default_context(cafile=ca_file)
            context.check_hostname = True
            return context

    return LabClient


async def _session(cls, jid: str, password: str, timeout: float):
    client = cls(jid, password)
    started, failed = asyncio.Event(), []
    client.add_event_handler("session_start", lambda _: started.set())
    client.add_event_handler("failed_auth", lambda _: (failed.append("authentication failed"), started.set()))
    client.add_event_handler("connection_failed",
                             lambda error: (failed.append(f"connection failed: {error}"), started.set()))
    client.connect()  # SRV _xmpp-client._tcp through the lab DNS, then STARTTLS
    try:
        await asyncio.wait_for(started.wait(), timeout)
    except asyncio.TimeoutError:
        failed.append(f"no session within {timeout}s")
    if failed:
        client.disconnect()
        raise RuntimeError(f"{jid}: {failed[0]}")
    client.send_presence()
    return client


async def federate(spec: dict) -> dict:
    """Every pair [sender, recipient] exchanges one message; each is checked on arrival."""
    cls = lab_client_class(spec["ca"])
    timeout = spec["timeout"]
    accounts = spec["accounts"]
    sessions, errors = {}, {}
    results = {}

    async def open_session(jid):
        try:
            sessions[jid] = await _session(cls, jid, accounts[jid], timeout)
        except RuntimeError as error:
            errors[jid] = str(error)

    await asyncio.gather(*(open_session(jid) for jid in accounts))
    arrivals: dict[str, asyncio.Future] = {}
    loop = asyncio.get_running_loop()

    def on_message(message):
        future = arrivals.get(message["id"])
        if future and not future.done():
            future.set_result((str(message["from"].bare), message["body"]))

    for client in sessions.values():
        client.add_event_handler("message", on_message)
    await asyncio.sleep(0.5)  # let initial presence settle so bare-JID messages go online

    async def exchange(sender, recipient):
        key = f"{sender} -> {recipient}"
        if sender not in sessions or recipient not in sessions:
            results[key] = {"delivered": False, "error": errors.get(sender) or errors.get(recipient)}
            return
        message_id, body = f"lab-{uuid.uuid4().hex[:12]}", f"interop check {sender} -> {recipient}"
        arrivals[message_id] = loop.create_future()
        started = time.monotonic()
        message = sessions[sender].make_message(mto=recipient, mbody=body, mtype="chat")
        message["id"] = message_id
        message.send()
        try:
            came_from, came_body = await asyncio.wait_for(arrivals[message_id], timeout)
        except asyncio.TimeoutError:
            results[key] = {"delivered": False, "error": f"not delivered within {timeout}s"}
            return
        intact = came_from == sender and came_body == body
        results[key] = {"delivered": intact, "seconds": round(time.monotonic() - started, 2),
                        **({} if intact else {"error": f"arrived altered: from {came_from}, body {came_body!r}"})}

    await asyncio.gather(*(exchange(sender, recipient) for sender, recipient in spec["pairs"]))
    for client in sessions.values():
        client.disconnect()
    return results


def main() -> None:
    logging.basicConfig(level=logging.CRITICAL)
    command, spec = sys.argv[1], json.loads(sys.argv[2])
    if command == "ready":
        result = ready(spec)
    elif command == "federate":
        result = asyncio.run(federate(spec))
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
