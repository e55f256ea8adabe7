"""Test runner for the slixmpp client stack, run inside the client container.

It needs only the standard library and slixmpp, as the container has them. Usage:
    slixmpp_runner.py ready SPEC_JSON      # XMPP-level readiness of servers
    slixmpp_runner.py cases SPEC_JSON      # the catalogue's C1-C12 and S1-S10 checks
Each prints one JSON document on stdout (its last line).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
import uuid
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from xml.sax.saxutils import escape, quoteattr

from cli_support import concurrency, passed  # beside this file in the container

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


# --- deep interop cases (interop catalogue C1-C12, S1-S10) ---------------------------------
#
# Each case gets a fresh CaseRun: its own clients (unique resources), a trace of the raw XML
# they sent and received, and a deadline (the spec's timeout) bounding every wait. Checks work
# on the raw XML the server sent (each client keeps an inbox of every top-level element it
# received), so they depend on slixmpp only for connecting, TLS, SASL and binding.

NS_CLIENT = "jabber:client"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_ROSTER = "jabber:iq:roster"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_PING = "urn:xmpp:ping"
NS_SM = "urn:xmpp:sm:3"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_MAM = "urn:xmpp:mam:2"
NS_SID = "urn:xmpp:sid:0"
NS_REGISTER = "jabber:iq:register"
NS_REGISTER_FEATURE = "http://jabber.org/features/iq-register"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
NS_DATA = "jabber:x:data"
NS_RSM = "http://jabber.org/protocol/rsm"
MESSAGE, PRESENCE, IQ = (f"{{{NS_CLIENT}}}{name}" for name in ("message", "presence", "iq"))

TRACE_HEAD, TRACE_TAIL, TRACE_LINE = 60, 300, 4000


class CaseFailed(Exception):
    """The server did not behave as the catalogue's pass criterion says."""


def token(length: int = 8) -> str:
    return uuid.uuid4().hex[:length]


def esc(value: str) -> str:
    """An XML attribute value, quotes included."""
    return quoteattr(str(value))


def text_esc(text: str) -> str:
    return escape(str(text))


def bare(jid: str | None) -> str:
    return (jid or "").split("/", 1)[0]


def error_condition(element) -> tuple[str | None, str | None]:
    """(condition, type) of a stanza's <error/>, or (None, None)."""
    error = element.find(f"{{{NS_CLIENT}}}error")
    if error is None:
        return None, None
    for child in error:
        if child.tag.startswith(f"{{{NS_STANZAS}}}") and not child.tag.endswith("}text"):
            return child.tag.split("}", 1)[1], error.get("type")
    return "(no condition)", error.get("type")


def describe_error(element) -> str:
    condition, kind = error_condition(element)
    error = element.find(f"{{{NS_CLIENT}}}error")
    text = error.findtext(f"{{{NS_STANZAS}}}text") if error is not None else None
    return f"{condition} ({kind})" + (f": {text}" if text else "")


class Tracer:
    """The raw XML of every client of one case, in order, with the time since the case began."""

    def __init__(self):
        self.started = time.monotonic()
        self.lines: list[str] = []

    def add(self, label: str, direction: str, data: str) -> None:
        data = re.sub(r"(<auth\b[^>]*>)[^<]+(</auth>)", r"\1[redacted]\2", data)
        data = re.sub(r"(<password>)[^<]*(</password>)", r"\1[redacted]\2", data)
        if len(data) > TRACE_LINE:
            data = data[:TRACE_LINE] + f"... ({len(data) - TRACE_LINE} more characters)"
        self.lines.append(f"{time.monotonic() - self.started:7.3f} {label} {direction} {data}")

    def text(self) -> str:
        lines = self.lines
        if len(lines) > TRACE_HEAD + TRACE_TAIL:
            lines = (lines[:TRACE_HEAD] + [f"... {len(lines) - TRACE_HEAD - TRACE_TAIL} lines left out ..."]
                     + lines[-TRACE_TAIL:])
        return "\n".join(lines)


def deep_client_class(ca_file: str):
    base = lab_client_class(ca_file)

    class DeepClient(base):
        """A LabClient that traces its raw XML and keeps every element it received."""

        def __init__(self, jid: str, password: str, tracer: Tracer):
            super().__init__(jid, password)
            self.tracer, self.label = tracer, jid
            self.inbox: list = []
            self.waiters: list = []
            self.stage = "connecting"
            self.auth_failures: list[str] = []
            self.stream_errors: list[str] = []
            # Subscription requests are answered by the cases themselves, never automatically.
            self.auto_authorize = None
            self.auto_subscribe = False
            for event, stage in (("connected", "connected, before TLS"), ("tls_success", "TLS up, before SASL"),
                                 ("auth_success", "authenticated, before binding"),
                                 ("session_bind", "bound, before session"), ("session_start", "session started"),
                                 ("session_resumed", "session resumed")):
                self.add_event_handler(event, lambda _, stage=stage: setattr(self, "stage", stage))
            self.add_event_handler("failed_auth", lambda failure: self.auth_failures.append(
                f"{self['feature_mechanisms'].mech.name if self['feature_mechanisms'].mech else '?'}: "
                f"{failure['condition']}"))
            self.add_event_handler("stream_error", lambda error: self.stream_errors.append(
                f"{error['condition']}" + (f" ({error['text']})" if error["text"] else "")))
            self.connect_failures: list[str] = []
            self.add_event_handler("connection_failed", self.connection_failed)
            self.add_event_handler("disconnected", lambda reason: self.note(f"disconnected ({reason or 'closed'})"))

        def connection_failed(self, error) -> None:
            where = f" ({self.address[0]}:{self.address[1]})" if isinstance(error, OSError) else ""
            self.connect_failures.append(f"{error}{where}")
            self.note(f"connection failed: {error}{where}")

        def note(self, text: str) -> None:
            self.tracer.add(self.label, "--", text)

        def connection_made(self, transport) -> None:
            peer = transport.get_extra_info("peername") or ("?", "?")
            tls = transport.get_extra_info("ssl_object")
            self.note(f"TLS up with {peer[0]}:{peer[1]}: {tls.version()} {tls.cipher()[0]}" if tls
                      else f"TCP connected to {peer[0]}:{peer[1]}")
            super().connection_made(transport)

        def send_raw(self, data) -> None:
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
            if text.strip():
                self.tracer.add(self.label, ">>", text)
            super().send_raw(data)

        def data_received(self, data: bytes) -> None:
            text = data.decode("utf-8", "replace")
            if text.strip():
                self.tracer.add(self.label, "<<", text)
            super().data_received(data)

        def incoming_filter(self, xml):
            self.inbox.append(xml)
            for predicate, future in list(self.waiters):
                if not future.done() and _matches(predicate, xml):
                    future.set_result(xml)
            return xml

    return DeepClient


def _matches(predicate, element) -> bool:
    try:
        return bool(predicate(element))
    except Exception:  # a predicate looking at an element it does not expect
        return False


class CaseRun:
    """One case: its clients, its trace, its deadline."""

    def __init__(self, runner: "DeepRunner", entry: dict):
        self.runner, self.entry = runner, entry
        self.case, self.server, self.target = entry["case"], entry.get("server"), entry.get("target")
        self.timeout = runner.timeout
        self.deadline = time.monotonic() + self.timeout
        self.tracer = Tracer()
        self.clients: list = []
        self.notes: list[str] = []  # said after the detail of a passing case
        self.evidence: dict = {}
        self.loop = asyncio.get_running_loop()

    # --- bounded waiting ---------------------------------------------------------------------

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    async def within(self, awaitable, what, limit: float | None = None):
        """``awaitable``'s result, or CaseFailed when the case's time is up first."""
        budget = self.remaining() if limit is None else limit
        try:
            return await asyncio.wait_for(awaitable, budget)
        except asyncio.TimeoutError:
            what = what() if callable(what) else what
            raise CaseFailed(f"timed out waiting for {what} ({self.timeout:g}s case limit)"
                             if limit is None else f"timed out waiting for {what} ({limit:g}s)") from None

    def watch(self, client, events: list[str]) -> asyncio.Future:
        """A future for the first of ``events`` on ``client``: (event name, data).

        ``connection_failed`` counts only once slixmpp has tried every address DNS gave (it
        then falls back to the last one again, with _dns_answers reset to None); before that
        it moves on to the next address by itself (after a back-off of 1 s, then 3 s, ...).
        """
        future = self.loop.create_future()

        def handler_for(name):
            def handler(data):
                if name == "connection_failed" and getattr(client, "_dns_answers", None) is not None:
                    client.add_event_handler(name, handler, disposable=True)  # not the last address yet
                    return
                if not future.done():
                    future.set_result((name, data))
            return handler
        for name in events:
            client.add_event_handler(name, handler_for(name), disposable=True)
        return future

    @staticmethod
    def mark(client) -> int:
        return len(client.inbox)

    async def expect(self, client, predicate, what, since: int = 0, limit: float | None = None):
        """The first element ``client`` received (from index ``since``) matching ``predicate``."""
        for element in client.inbox[since:]:
            if _matches(predicate, element):
                return element
        entry = (predicate, self.loop.create_future())
        client.waiters.append(entry)
        try:
            return await self.within(entry[1], what, limit)
        finally:
            client.waiters.remove(entry)

    async def expect_first(self, *expectations, what: str):
        """The first of several (client, predicate) expectations met: (index, element)."""
        futures = []
        for client, predicate in expectations:
            future = self.loop.create_future()
            for element in client.inbox:
                if _matches(predicate, element):
                    future.set_result(element)
                    break
            else:
                client.waiters.append((predicate, future))
            futures.append(future)
        try:
            await self.within(asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED), what)
            index = next(i for i, future in enumerate(futures) if future.done())
            return index, futures[index].result()
        finally:
            for (client, predicate), future in zip(expectations, futures):
                if (predicate, future) in client.waiters:
                    client.waiters.remove((predicate, future))

    def bounced(self, sender, message_id: str):
        """A predicate: an error reply to ``sender``'s stanza ``message_id``."""
        return lambda e: e.get("id") == message_id and e.get("type") == "error"

    # --- sending ----------------------------------------------------------------------------

    def send(self, client, xml: str) -> None:
        """Send one stanza given as XML text (default namespace jabber:client)."""
        from slixmpp.stanza import Iq, Message, Presence
        element = ET.fromstring(f"<wrapper xmlns='{NS_CLIENT}'>{xml}</wrapper>")[0]
        kind = {MESSAGE: Message, PRESENCE: Presence, IQ: Iq}[element.tag]
        client.send(kind(client, element))

    async def iq(self, client, kind: str, to: str | None, payload: str, what: str, limit: float | None = None):
        """Send an IQ; its result or error element."""
        iq_id = f"lab-{token(10)}"
        self.send(client, f"<iq type='{kind}' id='{iq_id}'{f' to={esc(to)}' if to else ''}>{payload}</iq>")
        return await self.expect(client, lambda e: e.tag == IQ and e.get("id") == iq_id
                                 and e.get("type") in ("result", "error"), what, limit=limit)

    # --- sessions ---------------------------------------------------------------------------

    def domain(self, server: str) -> str:
        return self.runner.servers[server]["domain"]

    def user(self, server: str, role: str) -> str:
        """The account that plays ``role`` (alice, bob) on ``server``: spec "users" may map it."""
        return self.runner.servers[server].get("users", {}).get(role, role)

    def jid(self, server: str, role: str) -> str:
        return f"{self.user(server, role)}@{self.domain(server)}"

    def new_client(self, server: str, role: str, password: str | None = None, resource: str | None = None):
        settings = self.runner.servers[server]
        user = self.user(server, role)
        if password is None:
            if user not in settings["accounts"]:
                raise RuntimeError(f"no account {user!r} for server {server} in the spec")
            password = settings["accounts"][user]
        resource = resource or f"{self.case.lower()}-{token(6)}"
        client = self.runner.client_class(f"{user}@{settings['domain']}/{resource}", password, self.tracer)
        self.clients.append(client)
        return client

    @staticmethod
    def connect_failures(client) -> str:
        failures = list(dict.fromkeys(client.connect_failures))
        return f"; connection attempts failed: {'; '.join(failures)}" if failures else ""

    def login_failure(self, client, event: str, data) -> str:
        if event == "failed_all_auth" or event == "no_auth":
            return "SASL failed: " + ("; ".join(client.auth_failures) or "no usable mechanism offered")
        if event == "connection_failed":
            return f"connection failed: {'; '.join(dict.fromkeys(client.connect_failures)) or data}"
        if event == "ssl_invalid_chain":
            return f"TLS handshake failed (certificate not accepted): {data}"
        if event == "stream_error":
            return f"stream error {data['condition']}" + (f": {data['text']}" if data["text"] else "")
        if event == "disconnected":
            errors = f" (stream error {', '.join(client.stream_errors)})" if client.stream_errors else ""
            return f"disconnected while {client.stage}{errors}"
        return f"{event}: {data}"

    async def login(self, server: str, user: str, *, password: str | None = None, resource: str | None = None,
                    presence: bool = True, plugins=(), use_mech: str | None = None, use_ssl: bool = False,
                    dns_service: str | None = None, setup=None, retried: bool = False):
        """A client with a session (and available, when ``presence``), or CaseFailed."""
        client = self.new_client(server, user, password, resource)
        for plugin in plugins:
            client.register_plugin(plugin)
        if use_mech:
            client["feature_mechanisms"].use_mech = use_mech
        if setup:
            setup(client)
        outcome = self.watch(client, ["session_start", "failed_all_auth", "no_auth", "connection_failed",
                                      "ssl_invalid_chain", "stream_error", "disconnected"])
        client.connect(use_ssl=use_ssl)  # SRV lookup (aiodns) as no address is given
        if dns_service:
            client.dns_service = dns_service  # connect() set xmpp-client; the lookup runs later
        event, data = await self.within(outcome, lambda: f"{client.label} to log in (it got as far as: "
                                                         f"{client.stage}{self.connect_failures(client)})")
        if event != "session_start":
            client.cancel_connection_attempt()  # slixmpp would otherwise retry forever
            reason = self.login_failure(client, event, data)
            # jabberd2 now and then refuses a login under concurrent logins with
            # internal-server-error; one more try, and the pass says it was needed.
            if event == "stream_error" and data["condition"] == "internal-server-error" and not retried:
                self.notes.append(f"{client.label}: first login refused ({reason}), second worked")
                return await self.login(server, user, password=password, resource=resource, presence=presence,
                                        plugins=plugins, use_mech=use_mech, use_ssl=use_ssl,
                                        dns_service=dns_service, setup=setup, retried=True)
            raise CaseFailed(f"{client.label} could not log in: {reason}")
        if presence:
            await self.go_online(client)
        return client

    async def go_online(self, client) -> None:
        """Send initial presence, then wait until the server has processed it (so that bare-JID
        routing sees the resource): the answer to an IQ sent after it, result or error, comes
        only then. Not every server reflects initial presence back to the sender (jabberd2
        does not), so that is not waited for."""
        self.send(client, f"<presence id='lab-{token(10)}'/>")
        await self.iq(client, "get", client.boundjid.host, f"<ping xmlns='{NS_PING}'/>",
                      f"the server's answer to an IQ after {client.boundjid.full}'s initial presence")

    async def close(self, clients=None) -> None:
        async def close_one(client):
            try:
                client.cancel_connection_attempt()
                if client.transport:
                    await asyncio.wait_for(client.disconnect(wait=1), 1.5)
            except Exception:
                pass
            finally:
                try:
                    client.abort()
                except Exception:
                    pass
        clients = list(self.clients if clients is None else clients)
        await asyncio.gather(*(close_one(client) for client in clients))

    async def srv(self, name: str) -> tuple[list, str | None]:
        """SRV records of ``name`` through the lab DNS (sorted by priority), and why none."""
        import aiodns
        resolver = aiodns.DNSResolver(timeout=2, tries=2)
        try:
            records = await self.within(resolver.query(name, "SRV"), f"the SRV lookup of {name}")
        except aiodns.error.DNSError as error:
            return [], (error.args[1] if len(error.args) > 1 else str(error))
        return sorted(records, key=lambda r: (r.priority, -r.weight)), None

    # --- building blocks shared by several cases ---------------------------------------------

    async def deliver(self, sender, recipient, to: str, what: str) -> float:
        """``sender`` messages ``to``; ``recipient`` must get it with from, id and body intact."""
        message_id, marker = f"lab-{token(12)}", token(12)
        body = f"{what} {marker} <&> ünïcödé"
        started = time.monotonic()
        self.send(sender, f"<message to={esc(to)} type='chat' id={esc(message_id)}>"
                          f"<body>{text_esc(body)}</body></message>")
        _, got = await self.expect_first(
            (recipient, lambda e: e.tag == MESSAGE and (
                e.get("id") == message_id or marker in (e.findtext(f"{{{NS_CLIENT}}}body") or ""))),
            (sender, self.bounced(sender, message_id)),
            what=f"{what}: {sender.boundjid.full} -> {to} to reach {recipient.boundjid.full}")
        if got.get("type") == "error":
            raise CaseFailed(f"{what}: {sender.boundjid.full} -> {to} came back as an error: {describe_error(got)}")
        problems = []
        if got.get("id") != message_id:
            problems.append(f"id {got.get('id')!r} instead of {message_id!r}")
        if got.get("from") != sender.boundjid.full:
            problems.append(f"from {got.get('from')!r} instead of {sender.boundjid.full!r}")
        if got.findtext(f"{{{NS_CLIENT}}}body") != body:
            problems.append(f"body {got.findtext(f'{{{NS_CLIENT}}}body')!r} instead of {body!r}")
        if problems:
            raise CaseFailed(f"{what}: {sender.boundjid.full} -> {to} arrived altered: {'; '.join(problems)}")
        return time.monotonic() - started

    def roster_item(self, element, jid: str):
        query = element.find(f"{{{NS_ROSTER}}}query")
        if query is None:
            return None
        return next((item for item in query.findall(f"{{{NS_ROSTER}}}item") if item.get("jid") == jid), None)

    def roster_push(self, client, jid: str, condition=lambda item: True):
        own = client.boundjid.bare

        def predicate(element):
            if element.tag != IQ or element.get("type") != "set" or element.get("from") not in (None, own):
                return False
            item = self.roster_item(element, jid)
            return item is not None and condition(item)
        return predicate

    async def roster_set(self, client, item_xml: str, what: str, limit: float | None = None):
        reply = await self.iq(client, "set", None, f"<query xmlns='{NS_ROSTER}'>{item_xml}</query>", what, limit)
        if reply.get("type") == "error":
            raise CaseFailed(f"{what} refused: {describe_error(reply)}")
        return reply

    async def roster_get(self, client):
        """The roster (fresh, no versioning: slixmpp would send the version of its last push)."""
        reply = await self.iq(client, "get", None, f"<query xmlns='{NS_ROSTER}'/>", "the roster get result")
        if reply.get("type") == "error":
            raise CaseFailed(f"roster get refused: {describe_error(reply)}")
        if reply.find(f"{{{NS_ROSTER}}}query") is None:
            raise CaseFailed("roster get result has no <query/> (empty result to a request without version)")
        return reply

    async def remove_roster_item(self, client, jid: str, limit: float = 3.0) -> None:
        """Best-effort cleanup: remove ``jid`` from ``client``'s roster."""
        try:
            await self.iq(client, "set", None, f"<query xmlns='{NS_ROSTER}'><item jid={esc(jid)} "
                                               f"subscription='remove'/></query>", f"removal of {jid}", limit)
        except (CaseFailed, Exception):
            pass

    async def ping(self, client, to: str) -> str:
        started = time.monotonic()
        reply = await self.iq(client, "get", to, f"<ping xmlns='{NS_PING}'/>", f"the ping result from {to}")
        if reply.get("type") == "error":
            raise CaseFailed(f"ping of {to} answered with error {describe_error(reply)}")
        if reply.get("from") not in (to, None if to == client.boundjid.host else to):
            raise CaseFailed(f"ping result came from {reply.get('from')!r}, not {to}")
        return f"pong from {to} in {(time.monotonic() - started) * 1000:.0f} ms"

    async def disco_info(self, client, to: str, keep: bool = False) -> str:
        reply = await self.iq(client, "get", to, f"<query xmlns='{NS_DISCO_INFO}'/>",
                              f"the disco#info result from {to}")
        if reply.get("type") == "error":
            raise CaseFailed(f"disco#info of {to} answered with error {describe_error(reply)}")
        query = reply.find(f"{{{NS_DISCO_INFO}}}query")
        if query is None:
            raise CaseFailed(f"disco#info result from {to} has no <query/>")
        identities = query.findall(f"{{{NS_DISCO_INFO}}}identity")
        features = [f.get("var") for f in query.findall(f"{{{NS_DISCO_INFO}}}feature")]
        if not identities:
            raise CaseFailed(f"disco#info of {to}: no identity ({len(features)} features)")
        if not features:
            raise CaseFailed(f"disco#info of {to}: no features")
        names = ", ".join(f"{i.get('category')}/{i.get('type')}" + (f" '{i.get('name')}'" if i.get("name") else "")
                          for i in identities)
        if keep:
            self.evidence.update(features=features, identities=[f"{i.get('category')}/{i.get('type')}"
                                                                for i in identities])
        return f"{names}; {len(features)} features"

    async def mam_check(self, sender, recipient) -> str:
        """``sender`` messages ``recipient``'s bare JID; found in the recipient's MAM with its stanza-id."""
        owner = recipient.boundjid.bare
        marker = token(12)
        body = f"mam check {marker}"
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 300))
        message_id = f"lab-{token(12)}"
        self.send(sender, f"<message to={esc(owner)} type='chat' id={esc(message_id)}>"
                          f"<body>{body}</body></message>")
        _, live = await self.expect_first(
            (recipient, lambda e: e.tag == MESSAGE and e.findtext(f"{{{NS_CLIENT}}}body") == body),
            (sender, self.bounced(sender, message_id)),
            what=f"the message {sender.boundjid.full} -> {owner} to arrive")
        if live.get("type") == "error":
            raise CaseFailed(f"the message {sender.boundjid.full} -> {owner} came back as an error: "
                             f"{describe_error(live)}")
        sids = [s for s in live.findall(f"{{{NS_SID}}}stanza-id") if s.get("by") == owner]
        if not sids:
            found = [s.get("by") for s in live.findall(f"{{{NS_SID}}}stanza-id")]
            raise CaseFailed(f"the delivered message carries no XEP-0359 stanza-id by {owner}"
                             + (f" (only by {found})" if found else ""))
        stanza_id = sids[0].get("id")
        for attempt in range(2):
            found = await self.mam_query(recipient, bare(sender.boundjid.full), since, body)
            if found or attempt:
                break
            await asyncio.sleep(1)  # give an asynchronous archive a moment
        if not found:
            raise CaseFailed(f"message {marker} (stanza-id {stanza_id}) not found in {owner}'s archive "
                             f"(query with={bare(sender.boundjid.full)}, start={since})")
        matching = [(archive_id, message) for archive_id, message in found if archive_id == stanza_id]
        if not matching:
            raise CaseFailed(f"archived with id {', '.join(repr(i) for i, _ in found)} but delivered with "
                             f"stanza-id {stanza_id!r}")
        forwarded_message = matching[0][1]
        if forwarded_message.get("from") and bare(forwarded_message.get("from")) != bare(sender.boundjid.full):
            raise CaseFailed(f"archived message has from {forwarded_message.get('from')!r}")
        return f"archived in {owner}'s MAM with stanza-id {stanza_id}"

    async def mam_query(self, client, with_jid: str, since: str, body: str) -> list:
        """[(archive id, forwarded message)] of the archived messages with ``body``."""
        query_id = f"q{token(10)}"
        mark = self.mark(client)
        reply = await self.iq(client, "set", None,
                              f"<query xmlns='{NS_MAM}' queryid='{query_id}'><x xmlns='{NS_DATA}' type='submit'>"
                              f"<field var='FORM_TYPE' type='hidden'><value>{NS_MAM}</value></field>"
                              f"<field var='with'><value>{text_esc(with_jid)}</value></field>"
                              f"<field var='start'><value>{since}</value></field></x>"
                              f"<set xmlns='{NS_RSM}'><max>100</max><before/></set></query>",
                              "the MAM query result")
        if reply.get("type") == "error":
            raise CaseFailed(f"MAM query refused: {describe_error(reply)}")
        own, found = client.boundjid.bare, []
        for element in client.inbox[mark:]:
            if element.tag != MESSAGE or element.get("from") not in (None, own):
                continue
            result = element.find(f"{{{NS_MAM}}}result")
            if result is None or result.get("queryid") != query_id:
                continue
            forwarded = result.find(f"{{{NS_FORWARD}}}forwarded/{{{NS_CLIENT}}}message")
            if forwarded is not None and forwarded.findtext(f"{{{NS_CLIENT}}}body") == body:
                found.append((result.get("id"), forwarded))
        return found


# --- c2s cases --------------------------------------------------------------------------------

async def case_c1(run: CaseRun) -> str:
    domain = run.domain(run.server)
    records, why = await run.srv(f"_xmpp-client._tcp.{domain}")
    if not records:
        raise CaseFailed(f"no SRV record _xmpp-client._tcp.{domain} ({why})")
    client = await run.login(run.server, "alice", presence=False)
    tls = client.transport.get_extra_info("ssl_object")
    if tls is None:
        raise CaseFailed("the session is not encrypted")
    if "starttls" not in client.features:
        raise CaseFailed("TLS was not negotiated with STARTTLS")
    cert = tls.getpeercert()  # only filled in for a verified certificate
    names = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    if domain not in names:
        raise CaseFailed(f"certificate names {names}, not {domain}")
    peer = client.transport.get_extra_info("peername")
    ports = {r.port for r in records}
    if peer[1] not in ports:
        raise CaseFailed(f"connected to port {peer[1]}, but SRV says {sorted(ports)}")
    issuer = dict(pair[0] for pair in cert.get("issuer", ())).get("commonName", "?")
    return (f"SRV -> {records[0].host}:{records[0].port}; STARTTLS {tls.version()} {tls.cipher()[0]}; "
            f"cert for {domain} issued by '{issuer}', verified")


async def case_c2(run: CaseRun) -> str:
    client = await run.login(run.server, "alice", presence=False)
    mechanisms = client["feature_mechanisms"]
    used, offered, fallbacks = mechanisms.mech.name, sorted(mechanisms.mech_list), list(client.auth_failures)
    await run.close([client])
    if fallbacks:
        raise CaseFailed(f"right password refused with {'; '.join(fallbacks)} before {used} succeeded")
    also = []
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"):
        if mechanism in offered and mechanism != used:
            try:
                other = await run.login(run.server, "alice", presence=False, use_mech=mechanism)
            except CaseFailed as failure:
                raise CaseFailed(f"login with {mechanism} (offered) failed: {failure}") from None
            also.append(mechanism)
            await run.close([other])
    condition = await wrong_password(run)
    if condition != "not-authorized":
        raise CaseFailed(f"wrong password answered with <{condition}/>, not <not-authorized/>")
    return (f"{used} (offered: {' '.join(offered)})" + (f"; also {', '.join(also)}" if also else "")
            + "; wrong password -> not-authorized")


async def wrong_password(run: CaseRun) -> str:
    client = run.new_client(run.server, "alice", password=f"wrong-{token()}")

    def give_up(_):  # no other mechanism: slixmpp would try every offered one in turn
        client["feature_mechanisms"].use_mechs = set()
    client.add_event_handler("failed_auth", give_up)
    outcome = run.watch(client, ["failed_auth", "session_start", "connection_failed", "ssl_invalid_chain",
                                 "disconnected"])
    client.connect()
    event, data = await run.within(outcome, "the SASL failure for a wrong password")
    if event == "session_start":
        raise CaseFailed("logged in with a wrong password")
    if event != "failed_auth":
        client.cancel_connection_attempt()
        raise CaseFailed(f"wrong-password attempt: {run.login_failure(client, event, data)}")
    return data["condition"] or "(no condition)"


async def case_c3(run: CaseRun) -> str:
    resource = f"c3-{token(6)}"
    client = await run.login(run.server, "alice", resource=resource, presence=False)
    results = [e.find(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid") for e in client.inbox
               if e.tag == IQ and e.get("type") == "result"]
    bound = next((r.text for r in results if r is not None), None)
    if not bound:
        raise CaseFailed("no bind result with a <jid/>")
    expected = run.jid(run.server, "alice")
    if "/" not in bound or not bound.split("/", 1)[1]:
        raise CaseFailed(f"bind returned {bound!r}, not a full JID")
    if bare(bound) != expected:
        raise CaseFailed(f"bind returned {bound!r}, bare JID is not {expected}")
    note = "" if bound.split("/", 1)[1] == resource else f" (server replaced requested resource {resource})"
    return f"bound {bound}{note}"


async def case_c4(run: CaseRun) -> str:
    client = await run.login(run.server, "alice", presence=False)
    contact = f"lab-roster-{token()}@{run.domain(run.server)}"
    name, group = f"Lab {token(4)}", "xmpp-lab"
    removed = False
    try:
        await run.roster_get(client)  # roster pushes go only to "interested" resources (RFC 6121 2.1.6)
        mark = run.mark(client)
        await run.roster_set(client, f"<item jid={esc(contact)} name={esc(name)}><group>{group}</group></item>",
                             "the roster set result")
        push = await run.expect(client, run.roster_push(client, contact, lambda i: i.get("subscription") != "remove"),
                                f"the roster push for {contact}", since=mark)
        pushed = run.roster_item(push, contact)
        if pushed.get("name") != name or group not in [g.text for g in pushed.findall(f"{{{NS_ROSTER}}}group")]:
            raise CaseFailed(f"roster push altered the item: name {pushed.get('name')!r}, groups "
                             f"{[g.text for g in pushed.findall(f'{{{NS_ROSTER}}}group')]}")
        roster = await run.roster_get(client)
        item = run.roster_item(roster, contact)
        if item is None:
            raise CaseFailed(f"{contact} pushed but missing from the roster get result")
        if item.get("name") != name or group not in [g.text for g in item.findall(f"{{{NS_ROSTER}}}group")]:
            raise CaseFailed(f"roster get shows the item altered: name {item.get('name')!r}")
        count = len(roster.find(f"{{{NS_ROSTER}}}query"))
        mark = run.mark(client)
        await run.roster_set(client, f"<item jid={esc(contact)} subscription='remove'/>", "the roster remove result")
        removed = True
        await run.expect(client, run.roster_push(client, contact, lambda i: i.get("subscription") == "remove"),
                         f"the roster push removing {contact}", since=mark)
        if run.roster_item(await run.roster_get(client), contact) is not None:
            raise CaseFailed(f"{contact} still in the roster after removal")
        return f"push received, item persisted (roster get: {count} items), removed again (push too)"
    finally:
        if not removed:
            await run.remove_roster_item(client, contact)


async def case_c5(run: CaseRun) -> str:
    bob = await run.login(run.server, "bob")
    alice = await run.login(run.server, "alice")
    seconds = await run.deliver(alice, bob, bob.boundjid.bare, "C5")
    return f"alice -> bob@{run.domain(run.server)} delivered in {seconds * 1000:.0f} ms, from/id/body intact"


async def case_c6(run: CaseRun) -> str:
    client = await run.login(run.server, "alice", presence=False)
    return await run.disco_info(client, run.domain(run.server), keep=True)


async def case_c7(run: CaseRun) -> str:
    client = await run.login(run.server, "alice", presence=False)
    return await run.ping(client, run.domain(run.server))


async def case_c8(run: CaseRun) -> str:
    watched = {}
    alice = await run.login(run.server, "alice", plugins=["xep_0198"], presence=False,
                            setup=lambda c: watched.update(sm=run.watch(c, ["sm_enabled", "sm_failed"])))
    if not any(e.find(f"{{{NS_SM}}}sm") is not None for e in alice.inbox if e.tag.endswith("}features")):
        raise CaseFailed(f"stream management ({NS_SM}) not offered in the stream features")
    event, enabled = await run.within(watched["sm"], "the answer to <enable resume='true'/>")
    if event == "sm_failed":
        raise CaseFailed("server refused to enable stream management")
    sm_id, resume = enabled["id"], enabled.xml.get("resume") in ("true", "1")
    if not sm_id or not resume:
        raise CaseFailed(f"stream management enabled without resumption (id {sm_id!r}, "
                         f"resume {enabled.xml.get('resume')!r})")
    await run.go_online(alice)
    bob = await run.login(run.server, "bob", presence=False)
    full = alice.boundjid.full
    await run.deliver(bob, alice, full, "C8 before the break")
    # Break the TCP connection abruptly: RST, no </stream:stream>, no TLS close_notify.
    gone = run.watch(alice, ["disconnected"])
    try:
        raw = alice.transport.get_extra_info("socket")
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except (OSError, AttributeError):
        pass
    alice.transport.abort()
    await run.within(gone, "the connection to drop")
    marker = token(12)
    away_id = f"lab-{token(12)}"
    run.send(bob, f"<message to={esc(full)} type='chat' id='{away_id}'><body>while away {marker}</body></message>")
    await asyncio.sleep(0.2)
    outcome = run.watch(alice, ["session_resumed", "session_start", "sm_failed", "failed_all_auth",
                                "connection_failed", "ssl_invalid_chain"])
    alice.connect()
    event, data = await run.within(outcome, lambda: f"the resumption (it got as far as: {alice.stage})")
    if event == "sm_failed":
        failed = next((e for e in reversed(alice.inbox) if e.tag == f"{{{NS_SM}}}failed"), None)
        condition = next((c.tag.split("}")[1] for c in failed), "no condition") if failed is not None else "?"
        raise CaseFailed(f"resumption of {sm_id} refused: <failed/> with {condition}")
    if event == "session_start":
        raise CaseFailed("a new session was started instead of resuming the old one")
    if event != "session_resumed":
        alice.cancel_connection_attempt()
        raise CaseFailed(f"reconnecting for resumption: {run.login_failure(alice, event, data)}")
    resumed = next((e for e in reversed(alice.inbox) if e.tag == f"{{{NS_SM}}}resumed"), None)
    if resumed is not None and resumed.get("previd") != sm_id:
        raise CaseFailed(f"<resumed previd={resumed.get('previd')!r}/> does not name the session {sm_id!r}")
    if alice.boundjid.full != full:
        raise CaseFailed(f"resumed as {alice.boundjid.full}, not {full}")
    got = await run.expect(alice, lambda e: e.tag == MESSAGE and marker in (e.findtext(f"{{{NS_CLIENT}}}body") or ""),
                           "the message sent while the connection was down (lost?)")
    if got.get("id") != away_id:
        raise CaseFailed(f"message sent while away arrived with id {got.get('id')!r}, not {away_id!r}")
    await run.deliver(bob, alice, full, "C8 after resumption")
    return (f"enabled (resume, id {sm_id[:12]}...), TCP reset, resumed {full} "
            f"(h={resumed.get('h') if resumed is not None else '?'}); message sent while away delivered")


async def case_c9(run: CaseRun) -> str:
    first = await run.login(run.server, "alice")
    second = await run.login(run.server, "alice")
    enable = await run.iq(second, "set", None, f"<enable xmlns='{NS_CARBONS}'/>", "the carbons enable result")
    if enable.get("type") == "error":
        raise CaseFailed(f"enabling carbons refused: {describe_error(enable)}")
    bob = await run.login(run.server, "bob")
    own = first.boundjid.bare

    def carbon(kind, message_id):
        def predicate(element):
            if element.tag != MESSAGE:
                return False
            wrapper = element.find(f"{{{NS_CARBONS}}}{kind}")
            inner = wrapper.find(f"{{{NS_FORWARD}}}forwarded/{{{NS_CLIENT}}}message")
            return inner.get("id") == message_id
        return predicate

    problems = []
    # bob -> alice/first (full JID): a received carbon on alice/second
    message_id = f"lab-{token(12)}"
    run.send(bob, f"<message to={esc(first.boundjid.full)} type='chat' id='{message_id}'>"
                  f"<body>carbon received check {token()}</body></message>")
    try:
        received = await run.expect(second, carbon("received", message_id),
                                    "a <received/> carbon on the second resource", limit=min(5, run.remaining()))
        if received.get("from") != own:
            problems.append(f"received carbon from {received.get('from')!r}, not {own}")
    except CaseFailed as failure:
        problems.append(f"no received carbon ({failure})")
    # alice/first -> bob: a sent carbon on alice/second
    message_id = f"lab-{token(12)}"
    run.send(first, f"<message to={esc(bob.boundjid.bare)} type='chat' id='{message_id}'>"
                    f"<body>carbon sent check {token()}</body></message>")
    try:
        sent = await run.expect(second, carbon("sent", message_id),
                                "a <sent/> carbon on the second resource", limit=min(5, run.remaining()))
        if sent.get("from") != own:
            problems.append(f"sent carbon from {sent.get('from')!r}, not {own}")
    except CaseFailed as failure:
        problems.append(f"no sent carbon ({failure})")
    if problems:
        raise CaseFailed("; ".join(problems))
    return "received and sent carbons on the second resource (from the bare JID)"


async def case_c10(run: CaseRun) -> str:
    alice = await run.login(run.server, "alice")
    bob = await run.login(run.server, "bob")
    return await run.mam_check(bob, alice)


async def case_c11(run: CaseRun) -> str:
    username, password = f"lab{token(10)}", f"pw-{token(16)}"
    client = run.new_client(run.server, username, password=password)
    client.register_plugin("xep_0077")
    # slixmpp 1.8.3 holds back every IQ until the session has started, so the plugin's
    # pre-authentication registration IQs would never leave: let them through.
    client._always_send_everything = True
    registered = run.loop.create_future()

    async def on_register(form):
        try:
            reply = await run.iq(client, "set", None, f"<query xmlns='{NS_REGISTER}'><username>{username}</username>"
                                                      f"<password>{password}</password></query>",
                                 "the registration result")
            if not registered.done():
                registered.set_result(reply)
        except BaseException as error:
            if not registered.done():
                registered.set_exception(error)
    client.add_event_handler("register", on_register)
    # An error to the plugin's registration-form request stalls slixmpp: catch it here.
    client.waiters.append((lambda e: e.tag == IQ and e.get("type") == "error" and not client.authenticated,
                           registered))
    outcome = run.watch(client, ["session_start", "failed_all_auth", "no_auth", "connection_failed",
                                 "ssl_invalid_chain", "disconnected"])
    client.connect()
    await run.within(asyncio.wait([registered, outcome], return_when=asyncio.FIRST_COMPLETED),
                     lambda: f"in-band registration (it got as far as: {client.stage})")
    if not registered.done():
        offered = any(e.find(f"{{{NS_REGISTER_FEATURE}}}register") is not None for e in client.inbox
                      if e.tag.endswith("}features"))
        event, data = outcome.result()
        client.cancel_connection_attempt()
        raise CaseFailed(("" if offered else "in-band registration not offered in the stream features; ")
                         + f"{client.label}: {run.login_failure(client, event, data)}")
    reply = registered.result()
    if reply.get("type") == "error":
        raise CaseFailed(f"registration of {username} refused: {describe_error(reply)}")
    await run.close([client])
    fresh = await run.login(run.server, username, password=password, presence=False)
    removal = await run.iq(fresh, "set", None, f"<query xmlns='{NS_REGISTER}'><remove/></query>",
                           "the account removal result", limit=min(3, max(run.remaining(), 0.5)))
    cleanup = "removed again" if removal.get("type") == "result" else f"removal failed: {describe_error(removal)}"
    return (f"registered {username}@{run.domain(run.server)}, logged in with it "
            f"({fresh['feature_mechanisms'].mech.name}); {cleanup}")


async def case_c12(run: CaseRun) -> str:
    domain = run.domain(run.server)
    records, why = await run.srv(f"_xmpps-client._tcp.{domain}")
    if not records:
        raise CaseFailed(f"no SRV record _xmpps-client._tcp.{domain} ({why})")
    client = await run.login(run.server, "alice", presence=False, use_ssl=True, dns_service="xmpps-client")
    tls = client.transport.get_extra_info("ssl_object")
    if tls is None:
        raise CaseFailed("the session is not encrypted")
    if "starttls" in client.features:
        raise CaseFailed("TLS came from STARTTLS, not direct TLS")
    peer = client.transport.get_extra_info("peername")
    ports = {r.port for r in records}
    if peer[1] not in ports:
        raise CaseFailed(f"connected to port {peer[1]}, but SRV says {sorted(ports)}")
    return (f"direct TLS {tls.version()} to {records[0].host}:{peer[1]} via SRV, logged in with "
            f"{client['feature_mechanisms'].mech.name}")


# --- s2s cases ----------------------------------------------------------------------------------

async def case_s1(run: CaseRun) -> str:
    alice = await run.login(run.server, "alice")
    bob = await run.login(run.target, "bob")
    there = await run.deliver(alice, bob, bob.boundjid.bare, f"{run.case} A->B")
    back = await run.deliver(bob, alice, alice.boundjid.bare, f"{run.case} B->A")
    return (f"{alice.boundjid.bare} -> {bob.boundjid.bare} {there * 1000:.0f} ms, back {back * 1000:.0f} ms; "
            f"from/id/body intact")


async def case_s2(run: CaseRun) -> str:
    alice = await run.login(run.server, "alice")
    bob = await run.login(run.target, "bob")
    a, b = alice.boundjid.bare, bob.boundjid.bare
    try:
        # Start from no relation at all (leftovers of an earlier, interrupted run). The roster
        # get also makes both resources "interested" in roster pushes (RFC 6121 2.1.6).
        leftovers = False
        for client, other in ((alice, b), (bob, a)):
            if run.roster_item(await run.roster_get(client), other) is not None:
                leftovers = True
                mark = run.mark(client)
                await run.roster_set(client, f"<item jid={esc(other)} subscription='remove'/>",
                                     f"removal of leftover {other}")
                await run.expect(client, run.roster_push(client, other, lambda i: i.get("subscription") == "remove"),
                                 f"the push removing leftover {other}", since=mark)
        if leftovers:
            await asyncio.sleep(0.5)  # let the unsubscriptions that caused cross before subscribing
        await subscribe(run, alice, bob, "to", "from")
        await subscribe(run, bob, alice, "both", "both")
        return f"{a} and {b} subscribed both ways (subscription=both on both sides, pushes and presence seen)"
    finally:
        await asyncio.gather(run.remove_roster_item(alice, b), run.remove_roster_item(bob, a))


async def subscribe(run: CaseRun, user, contact, user_state: str, contact_state: str) -> None:
    """``user`` subscribes to ``contact``'s presence, ``contact`` approves; every step checked."""
    u, c = user.boundjid.bare, contact.boundjid.bare
    mark_u, mark_c = run.mark(user), run.mark(contact)
    run.send(user, f"<presence to={esc(c)} type='subscribe' id='lab-{token(10)}'/>")
    await run.expect(user, run.roster_push(user, c, lambda i: i.get("ask") == "subscribe"),
                     f"{u}'s roster push for {c} with ask='subscribe'", since=mark_u)
    await run.expect(contact, lambda e: e.tag == PRESENCE and e.get("type") == "subscribe" and bare(e.get("from")) == u,
                     f"the subscription request from {u} at {c}", since=mark_c)
    mark_u, mark_c = run.mark(user), run.mark(contact)
    run.send(contact, f"<presence to={esc(u)} type='subscribed' id='lab-{token(10)}'/>")
    await run.expect(contact, run.roster_push(contact, u, lambda i: i.get("subscription") == contact_state),
                     f"{c}'s roster push for {u} with subscription='{contact_state}'", since=mark_c)
    await run.expect(user, lambda e: e.tag == PRESENCE and e.get("type") == "subscribed" and bare(e.get("from")) == c,
                     f"the approval (subscribed) from {c} at {u}", since=mark_u)
    await run.expect(user, run.roster_push(user, c, lambda i: i.get("subscription") == user_state
                                           and i.get("ask") is None),
                     f"{u}'s roster push for {c} with subscription='{user_state}'", since=mark_u)
    full = contact.boundjid.full
    await run.expect(user, lambda e: e.tag == PRESENCE and e.get("from") == full and e.get("type") is None,
                     f"{full}'s available presence at {u} after the approval", since=mark_u)


async def case_s3(run: CaseRun) -> str:
    alice = await run.login(run.server, "alice", presence=False)
    nobody = f"nosuchuser-{token()}@{run.domain(run.target)}"
    message_id = f"lab-{token(12)}"
    run.send(alice, f"<message to={esc(nobody)} type='chat' id='{message_id}'><body>anyone there?</body></message>")
    error = await run.expect(alice, lambda e: e.tag == MESSAGE and e.get("id") == message_id,
                             f"an error for the message to {nobody} (silently dropped?)")
    if error.get("type") != "error":
        raise CaseFailed(f"got a non-error message back: type {error.get('type')!r}")
    condition, kind = error_condition(error)
    if condition == "service-unavailable":
        return f"service-unavailable ({kind}) from {error.get('from')}"
    if condition == "item-not-found":
        raise CaseFailed(f"item-not-found ({kind}) from {error.get('from')} instead of service-unavailable "
                         f"(reveals that the account does not exist)")
    raise CaseFailed(f"{describe_error(error)} from {error.get('from')} instead of service-unavailable")


async def case_s4(run: CaseRun) -> str:
    alice = await run.login(run.server, "alice", presence=False)
    return await run.ping(alice, run.domain(run.target))


async def case_s5(run: CaseRun) -> str:
    alice = await run.login(run.server, "alice", presence=False)
    return await run.disco_info(alice, run.domain(run.target))


async def case_s6(run: CaseRun) -> str:
    muc = run.runner.servers[run.target].get("muc")
    if not muc:
        raise CaseFailed(f"no MUC service of {run.target} in the spec")
    alice = await run.login(run.server, "alice")
    room, nick = f"lab-{token(10)}@{muc}", f"alice-{token(4)}"
    occupant = f"{room}/{nick}"
    mark = run.mark(alice)
    run.send(alice, f"<presence to={esc(occupant)} id='lab-{token(10)}'><x xmlns='{NS_MUC}'/></presence>")
    joined = await run.expect(alice, lambda e: e.tag == PRESENCE and e.get("from") == occupant
                              or (e.tag == PRESENCE and e.get("type") == "error" and bare(e.get("from")) == room),
                              f"the self-presence from {occupant}", since=mark)
    if joined.get("type") == "error":
        raise CaseFailed(f"joining {room} failed: {describe_error(joined)}")
    codes = {s.get("code") for s in joined.findall(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}status")}
    missing = [code for code in ("110", "201") if code not in codes]
    if missing:
        raise CaseFailed(f"self-presence status codes {sorted(codes)}: missing {', '.join(missing)}"
                         + (" (201: the room was new)" if "201" in missing else ""))
    # A new room may be locked until configured: accept the default configuration (instant room).
    configured = await run.iq(alice, "set", room, f"<query xmlns='{NS_MUC_OWNER}'><x xmlns='{NS_DATA}' "
                                                  f"type='submit'/></query>", "the instant-room configuration result")
    if configured.get("type") == "error":
        raise CaseFailed(f"instant room configuration refused: {describe_error(configured)}")
    message_id, marker = f"lab-{token(12)}", token(12)
    run.send(alice, f"<message to={esc(room)} type='groupchat' id='{message_id}'><body>hello {marker}</body></message>")
    echo = await run.expect(alice, lambda e: e.tag == MESSAGE and bare(e.get("from")) == room and (
        e.get("id") == message_id or marker in (e.findtext(f"{{{NS_CLIENT}}}body") or "")),
        f"the reflection of the groupchat message in {room}")
    if echo.get("type") == "error":
        raise CaseFailed(f"groupchat message refused: {describe_error(echo)}")
    if echo.get("from") != occupant or echo.get("type") != "groupchat":
        raise CaseFailed(f"reflected from {echo.get('from')!r} type {echo.get('type')!r}, "
                         f"not {occupant} groupchat")
    if echo.findtext(f"{{{NS_CLIENT}}}body") != f"hello {marker}":
        raise CaseFailed(f"reflected body {echo.findtext(f'{{{NS_CLIENT}}}body')!r} altered")
    id_note = "id kept" if echo.get("id") == message_id else f"id changed to {echo.get('id')!r}"
    run.send(alice, f"<presence to={esc(occupant)} type='unavailable'/>")
    try:
        await run.expect(alice, lambda e: e.tag == PRESENCE and e.get("from") == occupant
                         and e.get("type") == "unavailable", "leaving the room", limit=min(2, run.remaining()))
    except CaseFailed:
        pass
    return f"joined {room}: status 110 + 201; groupchat message reflected ({id_note})"


async def case_s7(run: CaseRun) -> str:
    alice = await run.login(run.server, "alice")
    bob = await run.login(run.target, "bob")
    return await run.mam_check(alice, bob)


C2S_CASES = {"C1": case_c1, "C2": case_c2, "C3": case_c3, "C4": case_c4, "C5": case_c5, "C6": case_c6,
             "C7": case_c7, "C8": case_c8, "C9": case_c9, "C10": case_c10, "C11": case_c11, "C12": case_c12}
S2S_CASES = {"S1": case_s1, "S2": case_s2, "S3": case_s3, "S4": case_s4, "S5": case_s5, "S6": case_s6,
             "S7": case_s7, "S8": case_s1, "S9": case_s1, "S10": case_s1}


class DeepRunner:
    def __init__(self, spec: dict):
        self.spec = spec
        self.timeout = float(spec.get("timeout", 20))
        self.servers = spec["servers"]
        self.client_class = deep_client_class(spec["ca"])

    async def run_case(self, entry: dict) -> dict:
        started = time.monotonic()
        case, server, target = entry.get("case"), entry.get("server"), entry.get("target")
        result = {"case": case, "server": server, "target": target, "status": "error", "detail": "", "trace": "",
                  "started": time.time()}
        run = None
        try:
            if case not in C2S_CASES and case not in S2S_CASES:
                result["detail"] = f"unknown case {case!r}"
            elif case in S2S_CASES and not target:
                result["detail"] = f"{case} needs a target server"
            elif server not in self.servers or (case in S2S_CASES and target not in self.servers):
                result["detail"] = f"server {server if server not in self.servers else target!r} not in the spec"
            else:
                run = CaseRun(self, entry)
                function = C2S_CASES.get(case) or S2S_CASES[case]
                try:
                    try:
                        detail = await asyncio.wait_for(function(run), self.timeout + 3)
                    except CaseFailed as failure:
                        # jabberd2 now and then refuses a connection with internal-server-error
                        # under concurrent logins: the whole case once more, and it says so.
                        if "stream error internal-server-error" not in str(failure):
                            raise
                        await run.close()
                        run = CaseRun(self, entry)
                        run.notes.append(f"first attempt failed ({failure}), second worked")
                        detail = await asyncio.wait_for(function(run), self.timeout + 3)
                    result.update(passed(detail, run.notes))
                except CaseFailed as failure:
                    result.update(status="fail", detail=str(failure))
                except asyncio.TimeoutError:
                    result.update(status="fail", detail=f"case exceeded {self.timeout:g}s")
                except Exception as error:
                    frames = traceback.extract_tb(error.__traceback__)
                    where = next((f"line {f.lineno} in {f.name}" for f in reversed(frames)
                                  if f.filename == __file__), "")
                    result.update(status="error", detail=f"runner error: {type(error).__name__}: {error} ({where})")
        finally:
            if run is not None:
                await run.close()
                if result["status"] != "pass" or self.spec.get("trace_all"):
                    result["trace"] = run.tracer.text()
            result["seconds"] = round(time.monotonic() - started, 3)
            result["ended"] = time.time()
            if run is not None and run.evidence:
                result["evidence"] = run.evidence
        return result

    async def run(self, results: list) -> None:
        """Fill ``results`` (one slot per case): each (server, target) group's cases in turn,
        at most spec["concurrency"] cases in flight. A case's budget starts once it has its
        slot (CaseRun is made then), so queued cases never eat into it."""
        entries = self.spec["cases"]
        groups: dict = {}
        for index, entry in enumerate(entries):
            groups.setdefault((entry.get("server"), entry.get("target")), []).append(index)
        slots = asyncio.Semaphore(concurrency(self.spec))

        async def run_group(indexes):
            for index in indexes:
                async with slots:
                    results[index] = await self.run_case(entries[index])

        await asyncio.gather(*(run_group(indexes) for indexes in groups.values()))


def cases(spec: dict) -> None:
    """Run the cases, print the JSON list, and exit (leaving no slixmpp task to wind down).

    Whatever happens, one JSON list comes out: cases the runner could not finish are
    reported as "error" (a broken spec, an exception outside any case, or the watchdog).
    """
    entries = spec.get("cases") or []
    results: list = [None] * len(entries)
    lock = threading.Lock()

    def emit(reason: str) -> None:
        with lock:  # once only: the watchdog thread and the event loop may race here
            final = [result or {"case": entry.get("case"), "server": entry.get("server"),
                                "target": entry.get("target"), "status": "error", "detail": reason,
                                "trace": "", "seconds": 0.0}
                     for result, entry in zip(results, entries)]
            sys.stdout.write("\n" + json.dumps(final) + "\n")
            sys.stdout.flush()
            os._exit(0)

    # A blocked event loop must not hang the host either.
    per_group: dict = {}
    for entry in entries:
        key = (entry.get("server"), entry.get("target"))
        per_group[key] = per_group.get(key, 0) + 1
    # Cases wait for a slot: the whole run takes up to every case's budget over the slots.
    waves = max(max(per_group.values(), default=1), -(-len(entries) // concurrency(spec)))
    limit = (float(spec.get("timeout", 20)) + 8) * waves + 30
    timer = threading.Timer(limit, emit, args=(f"not finished: the runner's watchdog stopped it after {limit:g}s",))
    timer.daemon = True
    timer.start()

    async def main_cases():
        try:
            await DeepRunner(spec).run(results)
            reason = "not run"
        except Exception as error:
            reason = f"runner error: {type(error).__name__}: {error}"
        emit(reason)

    try:
        asyncio.run(main_cases())
    except BaseException as error:
        emit(f"runner error: {type(error).__name__}: {error}")


def main() -> None:
    logging.basicConfig(level=logging.CRITICAL)
    command, spec = sys.argv[1], json.loads(sys.argv[2])
    if command == "ready":
        result = ready(spec)
    elif command == "cases":
        cases(spec)
        return
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
