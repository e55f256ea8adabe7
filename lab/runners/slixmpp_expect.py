"""What a slixmpp case expects, and the waiting for it: CaseRun, one case's clients, trace
and deadline; every wait bounded by it; expectations met by the raw XML a client received;
and the protocol steps several cases share (login, delivery, roster, ping, disco, MAM)."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET

from harness import Case, CaseFailed, Transient, delivered, login_refused, message_fields, token
from slixmpp_client import (IQ, MESSAGE, NS_CLIENT, NS_DATA, NS_DISCO_INFO, NS_FORWARD, NS_MAM, NS_PING, NS_ROSTER,
                            NS_RSM, NS_SID, PRESENCE, Tracer, _matches, bare, deep_client_class, describe_error, esc,
                            text_esc)


class CaseRun(Case):
    """One case: its clients, its trace (their raw XML), its deadline for every wait."""

    def __init__(self, spec: dict, entry: dict, budget: float):
        super().__init__(spec, entry, budget)
        self.servers = spec["servers"]
        self.client_class = deep_client_class(spec["ca"])
        self.deadline = time.monotonic() + self.timeout
        self.tracer = Tracer()
        self.clients: list = []

    @property
    def loop(self):
        return asyncio.get_running_loop()

    def trace_text(self) -> str:
        return self.tracer.text()

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
        """A future for the first of ``events`` on ``client``: (event name, data). For a
        connection, watch ``unreachable`` (every address failed; see DeepClient.start)."""
        future = self.loop.create_future()

        def handler_for(name):
            def handler(data):
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

    async def expect_first(self, *expectations, what: str, limit: float | None = None):
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
            await self.within(asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED), what, limit)
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
        return self.servers[server]["domain"]

    def user(self, server: str, role: str) -> str:
        """The account that plays ``role`` (alice, bob) on ``server``: spec "users" may map it."""
        return self.servers[server].get("users", {}).get(role, role)

    def jid(self, server: str, role: str) -> str:
        return f"{self.user(server, role)}@{self.domain(server)}"

    def new_client(self, server: str, role: str, password: str | None = None, resource: str | None = None):
        settings = self.servers[server]
        user = self.user(server, role)
        if password is None:
            if user not in settings["accounts"]:
                raise RuntimeError(f"no account {user!r} for server {server} in the spec")
            password = settings["accounts"][user]
        resource = resource or f"{self.case.lower()}-{token(6)}"
        client = self.client_class(f"{user}@{settings['domain']}/{resource}", password, self.tracer)
        self.clients.append(client)
        return client

    @staticmethod
    def connect_failures(client) -> str:
        failures = list(dict.fromkeys(client.connect_failures))
        return f"; connection attempts failed: {'; '.join(failures)}" if failures else ""

    def login_failure(self, client, event: str, data) -> str:
        if event == "failed_all_auth" or event == "no_auth":
            return "SASL failed: " + ("; ".join(client.auth_failures) or "no usable mechanism offered")
        if event == "unreachable":
            return f"connection failed: {'; '.join(dict.fromkeys(client.connect_failures)) or data}"
        if event == "ssl_invalid_chain":
            return f"TLS handshake failed (certificate not accepted): {data}"
        if event == "stream_error":
            return f"stream error {data['condition']}" + (f": {data['text']}" if data["text"] else "")
        if event == "disconnected":
            errors = f" (stream error {', '.join(client.stream_errors)})" if client.stream_errors else ""
            return f"disconnected while {client.stage}{errors}"
        return f"{event}: {data}"

    def refused(self, client, event: str, data, what: str) -> Exception:
        """The exception for a session that did not come: a passing server fault (see
        login_refused) or a fail."""
        if client.stage != "session started":
            # The stream error itself, or the disconnection that follows it (whichever
            # event the case was watching came first).
            condition = (data["condition"] if event == "stream_error" else
                         client.stream_errors[-1].split(" ")[0] if event == "disconnected" and client.stream_errors
                         else None)
            if isinstance(login_refused(what, condition), Transient):
                return login_refused(what, condition)
        return CaseFailed(f"{what}: {self.login_failure(client, event, data)}")

    async def login(self, server: str, user: str, *, password: str | None = None, resource: str | None = None,
                    presence: bool = True, plugins=(), use_mech: str | None = None, direct_tls: bool = False,
                    setup=None):
        """A client with a session (and available, when ``presence``), or CaseFailed."""
        client = self.new_client(server, user, password, resource)
        for plugin in plugins:
            client.register_plugin(plugin)
        if use_mech:
            client["feature_mechanisms"].use_mech = use_mech
        if setup:
            setup(client)
        outcome = self.watch(client, ["session_start", "failed_all_auth", "no_auth", "unreachable",
                                      "ssl_invalid_chain", "stream_error", "disconnected"])
        client.start(direct_tls=direct_tls)
        event, data = await self.within(outcome, lambda: f"{client.label} to log in (it got as far as: "
                                                         f"{client.stage}{self.connect_failures(client)})")
        if event != "session_start":
            client.cancel_connection_attempt()  # slixmpp would otherwise retry forever
            raise self.refused(client, event, data, f"{client.label} could not log in")
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

    async def deliver(self, sender, recipient, to: str, what: str) -> str:
        """``sender`` messages ``to``; ``recipient`` must get it (see harness.delivered)."""
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
        fields = message_fields(got)
        if got.get("type") == "error":
            fields["error"] = describe_error(got)
        return delivered(f"{what}: {sender.boundjid.full} -> {to}",
                         {"from": sender.boundjid.full, "id": message_id, "type": "chat", "body": body},
                         fields, time.monotonic() - started, self.timeout)

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
        found = await self.mam_query(recipient, bare(sender.boundjid.full), since, body)
        queries = 1
        if not found:  # an archive may store asynchronously: one more query after a second, said below
            await asyncio.sleep(1)
            found = await self.mam_query(recipient, bare(sender.boundjid.full), since, body)
            queries = 2
        self.evidence["mam_queries"] = queries
        if not found:
            raise CaseFailed(f"message {marker} (stanza-id {stanza_id}) not found in {owner}'s archive by "
                             f"{queries} queries 1 s apart (with={bare(sender.boundjid.full)}, start={since})")
        matching = [(archive_id, message) for archive_id, message in found if archive_id == stanza_id]
        if not matching:
            raise CaseFailed(f"archived with id {', '.join(repr(i) for i, _ in found)} but delivered with "
                             f"stanza-id {stanza_id!r}")
        forwarded_message = matching[0][1]
        if forwarded_message.get("from") and bare(forwarded_message.get("from")) != bare(sender.boundjid.full):
            raise CaseFailed(f"archived message has from {forwarded_message.get('from')!r}")
        return (f"archived in {owner}'s MAM with stanza-id {stanza_id}"
                + ("; found by the second query, 1 s after the first found nothing" if queries == 2 else ""))

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
