"""The compliance cases' exchanges (lab/cases/compliance.py says what each checks and when it
passes), on slixmpp_expect.py's CaseRun: per ordered pair, A's user (alice on run.server)
acts and B's user (bob on run.target) observes. Every check is of what arrived, never of
what a server advertises. slixmpp_runner.py keys these functions by case ID."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import threading
import xml.etree.ElementTree as ET

from harness import CaseFailed, NotObserved, clip, token
from slixmpp_client import (MESSAGE, NS_CLIENT, NS_DATA, NS_DISCO_INFO, NS_FORWARD, NS_MAM, NS_MUC, NS_MUC_OWNER,
                            NS_MUC_USER, NS_PING, NS_RSM, PRESENCE, bare, describe_error, error_condition, esc,
                            text_esc)
from slixmpp_expect import CaseRun

NS_VCARD = "vcard-temp"
NS_BLOCKING = "urn:xmpp:blocking"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_TUNE = "http://jabber.org/protocol/tune"
NS_CAPS = "http://jabber.org/protocol/caps"
NS_CONFERENCE = "jabber:x:conference"
NS_PRIVATE = "jabber:iq:private"
NS_BOOKMARKS = "storage:bookmarks"
NS_BOOKMARKS2 = "urn:xmpp:bookmarks:1"
NS_SERVERINFO = "http://jabber.org/network/serverinfo"


# One account's single stores (its vCard, its private XML slot) are written by every pair
# that has it as A's user, and the harness runs pairs side by side, each case in a thread of
# its own: a case holds its account's lock from its write to its last read.
_STORE_LOCKS: dict = {}
_STORE_LOCKS_GUARD = threading.Lock()


@contextlib.asynccontextmanager
async def store_of(run: CaseRun, server: str, role: str, store: str):
    """Hold ``store`` of ``role``'s account on ``server`` for this case alone (CaseFailed if
    another pair's case keeps it past this case's deadline)."""
    with _STORE_LOCKS_GUARD:
        lock = _STORE_LOCKS.setdefault((server, run.user(server, role), store), threading.Lock())
    acquired = await asyncio.get_running_loop().run_in_executor(None, lock.acquire, True, max(run.remaining() - 2, 0.1))
    if not acquired:
        # Not the server's doing: the lab could not run this case's check in its time.
        raise NotObserved(f"{run.jid(server, role)}'s {store} stayed in use by another pair's case until this "
                          f"case's time was up")
    try:
        yield
    finally:
        lock.release()


def q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


async def expect_result(run: CaseRun, client, kind: str, to, payload: str, what: str):
    """An IQ's result, or CaseFailed naming the error it got."""
    reply = await run.iq(client, kind, to, payload, f"the answer to {what}")
    if reply.get("type") == "error":
        raise CaseFailed(f"{what} refused: {describe_error(reply)}")
    return reply


async def refused_to(run: CaseRun, client, kind: str, to: str, payload: str, what: str, secret: str) -> str:
    """``client``'s IQ must be refused with an error that does not carry ``secret``."""
    reply = await run.iq(client, kind, to, payload, f"the answer to {what}")
    if reply.get("type") != "error":
        leaked = secret in xml_text(reply)
        raise CaseFailed(f"{what} answered with a result" + (f" holding the stored data ({secret})" if leaked else ""))
    if secret in xml_text(reply):
        raise CaseFailed(f"{what} refused, but the error echoes the stored data ({secret})")
    return describe_error(reply)


def xml_text(element) -> str:
    return ET.tostring(element, encoding="unicode")


# --- XEP-0054 vcard-temp ----------------------------------------------------------------------

async def vcard(run: CaseRun) -> str:
    alice = await run.login(run.server, "alice", presence=False)
    bob = await run.login(run.target, "bob", presence=False)
    name = f"Alice Lab {token(8)}"
    owner = alice.boundjid.bare
    async with store_of(run, run.server, "alice", "vCard"):
        await expect_result(run, alice, "set", None, f"<vCard xmlns='{NS_VCARD}'><FN>{name}</FN>"
                                                     f"<NICKNAME>alice-{token(4)}</NICKNAME></vCard>",
                            f"{owner}'s vCard set")
        reply = await expect_result(run, bob, "get", owner, f"<vCard xmlns='{NS_VCARD}'/>",
                                    f"{bob.boundjid.bare}'s vCard get of {owner}")
    card = reply.find(q(NS_VCARD, "vCard"))
    if card is None:
        raise CaseFailed(f"the vCard result from {owner} has no <vCard/>")
    got = card.findtext(q(NS_VCARD, "FN"))
    if got != name:
        raise CaseFailed(f"{bob.boundjid.bare} got FN {got!r} from {owner}, not the {name!r} just set")
    return f"{owner} set FN {name!r}; {bob.boundjid.bare} fetched it across federation"


# --- XEP-0191 blocking ------------------------------------------------------------------------

async def blocking(run: CaseRun) -> str:
    # One pair at a time per blocking account: other pairs' cases edit the same blocklist (the
    # lock makes this case's verdict about its own block; docs/compliance.md says what ejabberd
    # 23.01 once did without it).
    async with store_of(run, run.server, "alice", "blocklist"):
        return await blocking_alone(run)


async def blocking_alone(run: CaseRun) -> str:
    alice = await run.login(run.server, "alice")
    bob = await run.login(run.target, "bob")
    blocked = bob.boundjid.bare
    await expect_result(run, alice, "set", None, f"<block xmlns='{NS_BLOCKING}'><item jid={esc(blocked)}/></block>",
                        f"{alice.boundjid.bare} blocking {blocked}")
    unblocked = False
    try:
        message_id, marker = f"lab-{token(12)}", token(12)
        run.send(bob, f"<message to={esc(alice.boundjid.bare)} type='chat' id={esc(message_id)}>"
                      f"<body>while blocked {marker}</body></message>")
        arrived = (alice, lambda e: e.tag == MESSAGE and marker in (e.findtext(q(NS_CLIENT, "body")) or ""))
        try:
            index, got = await run.expect_first(arrived, (bob, run.bounced(bob, message_id)),
                                                what="the blocked message's error", limit=min(8.0, run.remaining()))
        except CaseFailed:
            raise CaseFailed(f"{blocked}'s message to the blocking {alice.boundjid.bare} was dropped without the "
                             f"error XEP-0191 3.3 asks for (SHOULD: <service-unavailable/>), none within 8 s") from None
        if index == 0:
            raise CaseFailed(f"{blocked}'s message reached {alice.boundjid.bare}, who had blocked it")
        condition, kind = error_condition(got)
        # Give a late delivery a moment to show: the error alone does not prove the message stayed out.
        await asyncio.sleep(1.0)
        if any(arrived[1](e) for e in alice.inbox):
            raise CaseFailed(f"{blocked} got an error, but the message reached {alice.boundjid.bare} too")
        if condition != "service-unavailable":
            raise CaseFailed(f"the blocked message came back with {describe_error(got)}, not <service-unavailable/> "
                             f"(XEP-0191 3.3)")
        await expect_result(run, alice, "set", None,
                            f"<unblock xmlns='{NS_BLOCKING}'><item jid={esc(blocked)}/></unblock>",
                            f"{alice.boundjid.bare} unblocking {blocked}")
        unblocked = True
        after = await run.deliver(bob, alice, alice.boundjid.bare, "after unblocking")
        return f"blocked: {blocked}'s message refused with {condition} ({kind}), not delivered; unblocked: {after}"
    finally:
        if not unblocked:
            try:
                await run.iq(alice, "set", None, f"<unblock xmlns='{NS_BLOCKING}'><item jid={esc(blocked)}/></unblock>",
                             "the cleanup unblock", limit=min(2.0, max(run.remaining(), 0.5)))
            except Exception:
                pass


# --- XEP-0163 + XEP-0115: PEP to a contact who asks for it through caps ------------------------

def caps_ver(identity: str, features: list[str]) -> str:
    """XEP-0115 5.1 verification string (one identity, no forms)."""
    text = f"{identity}<" + "".join(f"{feature}<" for feature in sorted(features))
    return base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()


def advertise_notify(run: CaseRun, client, askers: list, by: tuple, asked: asyncio.Future) -> str:
    """Make ``client`` answer disco#info of its caps node with +notify for user tune; note
    every asker in ``askers``, and set ``asked`` once one of ``by`` (bare JIDs, domains) asked.
    Returns the caps element for its presence (a ver of this run alone, so no server has it
    cached: the server that wants to know must ask)."""
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath
    node, name = "https://xmpp-lab.test/caps", f"xmpp-lab {token(8)}"
    features = [NS_DISCO_INFO, NS_CAPS, NS_TUNE, f"{NS_TUNE}+notify"]
    ver = caps_ver(f"client/pc//{name}", features)

    def answer(iq):
        query = iq.xml.find(q(NS_DISCO_INFO, "query"))
        if iq["type"] != "get" or query is None:
            return
        asked_node = query.get("node")
        items = "".join(f"<feature var={esc(f)}/>" for f in features)
        run.send(client, f"<iq type='result' id={esc(iq['id'])} to={esc(iq['from'].full)}>"
                         f"<query xmlns='{NS_DISCO_INFO}'{f' node={esc(asked_node)}' if asked_node else ''}>"
                         f"<identity category='client' type='pc' name={esc(name)}/>{items}</query></iq>")
        asker = iq["from"].full
        askers.append(asker)
        if bare(asker) in by and not asked.done():
            asked.set_result(asker)
    client.register_handler(Callback(f"caps answer {token(4)}",
                                     MatchXPath(f"{{{NS_CLIENT}}}iq/{{{NS_DISCO_INFO}}}query"), answer))
    return f"<c xmlns='{NS_CAPS}' hash='sha-1' node='{node}' ver='{ver}'/>"


async def subscribe_both_ways(run: CaseRun, alice, bob) -> None:
    """alice and bob subscribe to each other; both rosters pushed up to subscription='both'."""
    a, b = alice.boundjid.bare, bob.boundjid.bare
    await asyncio.gather(run.roster_get(alice), run.roster_get(bob))  # pushes go to "interested" resources
    marks = run.mark(alice), run.mark(bob)
    for user, contact, other in ((alice, bob, a), (bob, alice, b)):
        run.send(user, f"<presence to={esc(contact.boundjid.bare)} type='subscribe'/>")
        await run.expect(contact, lambda e, other=other: e.tag == PRESENCE and e.get("type") == "subscribe"
                         and bare(e.get("from")) == other, f"the subscription request from {other}")
        run.send(contact, f"<presence to={esc(other)} type='subscribed'/>")
    await run.expect(alice, run.roster_push(alice, b, lambda i: i.get("subscription") == "both"),
                     f"{a}'s roster push for {b} with subscription='both'", since=marks[0])
    await run.expect(bob, run.roster_push(bob, a, lambda i: i.get("subscription") == "both"),
                     f"{b}'s roster push for {a} with subscription='both'", since=marks[1])


async def pep_caps(run: CaseRun) -> str:
    async with store_of(run, run.server, "publisher", "roster and PEP"):  # (X0398 uses it too)
        return await pep_caps_alone(run)


async def pep_caps_alone(run: CaseRun) -> str:
    # A's user is publisher, an account nothing else logs into: ejabberd 24.12 can lose the event
    # while another session of the publisher is connected without presence (docs/compliance.md).
    alice = await run.login(run.server, "publisher")
    bob = await run.login(run.target, "bob", presence=False)
    # A non-contact of alice's on B: B's alice, who tells alice@A of its +notify by directed presence.
    stranger = await run.login(run.target, "alice", presence=False)
    a, b, s = alice.boundjid.bare, bob.boundjid.bare, stranger.boundjid.bare
    bob_askers, stranger_askers = [], []
    bob_asked, stranger_asked = run.loop.create_future(), run.loop.create_future()
    side_a = (a, run.domain(run.server))  # alice's PEP service asks from her bare JID or her domain
    bob_caps = advertise_notify(run, bob, bob_askers, side_a, bob_asked)
    stranger_caps = advertise_notify(run, stranger, stranger_askers, side_a, stranger_asked)
    await asyncio.gather(run.remove_roster_item(alice, b), run.remove_roster_item(bob, a))
    try:
        await run.go_online(bob)
        await subscribe_both_ways(run, alice, bob)
        run.send(bob, f"<presence>{bob_caps}</presence>")
        run.send(stranger, f"<presence to={esc(a)}>{stranger_caps}</presence>")
        # A's server learns bob's +notify by asking what his caps mean (XEP-0115 6.3). Not a
        # verdict by itself: the event arriving is; the wait only avoids publishing too early.
        try:
            await run.within(asyncio.shield(bob_asked), "A's server to ask bob's caps", limit=min(5.0, run.remaining()))
            await asyncio.sleep(0.5)  # the server's own handling of the answer
        except CaseFailed:
            pass
        asked = (f"caps asked by {', '.join(dict.fromkeys(bob_askers))}" if bob_askers
                 else "caps never asked")
        title = f"lab tune {token(10)}"
        await expect_result(run, alice, "set", None,
                            f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{NS_TUNE}'><item>"
                            f"<tune xmlns='{NS_TUNE}'><title>{title}</title></tune></item></publish></pubsub>",
                            f"{a}'s user tune publish")

        def event_from_alice(element):
            return (element.tag == MESSAGE and bare(element.get("from")) == a
                    and title in xml_text(element) and element.find(q(NS_PUBSUB_EVENT, "event")) is not None)
        try:
            await run.expect(bob, event_from_alice, "the event", limit=min(6.0, run.remaining()))
        except CaseFailed:
            raise CaseFailed(f"{b} (subscribed both ways, +notify in its caps; {asked}) got no tune event "
                             f"from {a} within 6 s") from None
        await asyncio.sleep(1.5)  # the stranger's event, if any, would come with bob's
        if any(event_from_alice(e) for e in stranger.inbox):
            raise CaseFailed(f"{s}, no contact of {a}, got its tune event too: the presence access model "
                             f"does not hold (XEP-0163 4.3)")
        note = "asked its caps too" if stranger_asked.done() else "never asked its caps"
        return (f"{a} published a tune; {b} (+notify; {asked}) got the event; non-contact {s} did "
                f"not ({a} {note})")
    finally:
        run.send(stranger, f"<presence to={esc(a)} type='unavailable'/>")
        await asyncio.gather(run.remove_roster_item(alice, b), run.remove_roster_item(bob, a))


# --- XEP-0045 + XEP-0249 + XEP-0313 (MUC) + XEP-0410 ------------------------------------------

async def join(run: CaseRun, client, occupant: str, what: str, limit: float | None = None):
    mark = run.mark(client)
    run.send(client, f"<presence to={esc(occupant)}><x xmlns='{NS_MUC}'/></presence>")
    room = bare(occupant)
    joined = await run.expect(client, lambda e: e.tag == PRESENCE and (
        e.get("from") == occupant or (e.get("type") == "error" and bare(e.get("from")) == room)),
        f"{what}: the self-presence from {occupant}", since=mark, limit=limit)
    if joined.get("type") == "error":
        raise CaseFailed(f"{what}: joining {room} failed: {describe_error(joined)}")
    codes = {s.get("code") for s in joined.findall(f"{q(NS_MUC_USER, 'x')}/{q(NS_MUC_USER, 'status')}")}
    if "110" not in codes:
        raise CaseFailed(f"{what}: self-presence without status 110 (codes {sorted(codes)})")
    return codes


async def muc(run: CaseRun) -> str:
    """X0045: invitation, join, subject, messages, self-ping."""
    return await room_session(run, archive=False)


async def muc_archive(run: CaseRun) -> str:
    """X0313M: the same room session, then the room's archive asked by the remote occupant."""
    return await room_session(run, archive=True)


async def room_session(run: CaseRun, archive: bool) -> str:
    service = run.servers[run.server].get("muc")
    if not service:
        raise CaseFailed(f"no MUC service of {run.server} in the spec")
    alice = await run.login(run.server, "alice")
    bob = await run.login(run.target, "bob")
    room = f"lab-{token(10)}@{service}"
    alice_at, bob_at = f"{room}/alice-{token(4)}", f"{room}/bob-{token(4)}"
    try:
        codes = await join(run, alice, alice_at, f"{alice.boundjid.bare} creating the room")
        if "201" in codes:  # a new room may stay locked until configured: take the defaults
            await expect_result(run, alice, "set", room, f"<query xmlns='{NS_MUC_OWNER}'><x xmlns='{NS_DATA}' "
                                                         f"type='submit'/></query>", "the instant-room configuration")
        # XEP-0249: the invitation is a message from alice to bob (his bare JID), across federation.
        reason = f"invite {token(8)}"
        run.send(alice, f"<message to={esc(bob.boundjid.bare)}><x xmlns='{NS_CONFERENCE}' jid={esc(room)} "
                        f"reason={esc(reason)}/></message>")
        invitation = await run.expect(bob, lambda e: e.tag == MESSAGE and any(
            x.get("reason") == reason for x in e.findall(q(NS_CONFERENCE, "x"))), "the direct invitation")
        invited_to = invitation.find(q(NS_CONFERENCE, "x")).get("jid")
        if invited_to != room:
            raise CaseFailed(f"the direct invitation names {invited_to!r}, not {room}")
        mark_alice = run.mark(alice)
        await join(run, bob, bob_at, f"{bob.boundjid.bare} joining on the invitation")
        await run.expect(alice, lambda e: e.tag == PRESENCE and e.get("from") == bob_at and e.get("type") is None,
                         f"{bob_at}'s presence at the room's other occupant", since=mark_alice)
        # The subject, then a message each way: every occupant gets each.
        subject = f"lab subject {token(8)}"
        marks = run.mark(alice), run.mark(bob)
        run.send(alice, f"<message to={esc(room)} type='groupchat'><subject>{subject}</subject></message>")
        for client, mark in zip((alice, bob), marks):
            await run.expect(client, lambda e: e.tag == MESSAGE and e.get("from") == alice_at
                             and e.findtext(q(NS_CLIENT, "subject")) == subject,
                             f"the subject at {client.boundjid.full}", since=mark)
        bodies = {}
        for sender, sender_at in ((alice, alice_at), (bob, bob_at)):
            body = f"groupchat from {sender_at.rsplit('/', 1)[1]} {token(8)}"
            bodies[sender_at] = body
            marks = run.mark(alice), run.mark(bob)
            run.send(sender, f"<message to={esc(room)} type='groupchat'><body>{body}</body></message>")
            for client, mark in zip((alice, bob), marks):
                got = await run.expect(client, lambda e: e.tag == MESSAGE and e.findtext(q(NS_CLIENT, "body")) == body,
                                       f"{sender_at}'s message at {client.boundjid.full}", since=mark)
                if got.get("from") != sender_at or got.get("type") != "groupchat":
                    raise CaseFailed(f"{sender_at}'s message reached {client.boundjid.full} from "
                                     f"{got.get('from')!r}, type {got.get('type')!r}")
        done = (f"{alice.boundjid.bare} made {room}, invited {bob.boundjid.bare} (XEP-0249), who joined; subject "
                f"and a message each way reached both")
        if archive:
            # XEP-0313 on the room: bob (remote) asks the room's archive for what was said.
            archived = await room_archive(run, bob, room)
            missing = [body for body in bodies.values() if body not in archived]
            if missing:
                raise CaseFailed(f"the room's MAM answer to {bob.boundjid.bare} ({len(archived)} messages) lacks "
                                 f"{', '.join(repr(m) for m in missing)}")
            return f"{done}; room MAM gave {bob.boundjid.bare} both messages ({len(archived)} archived)"
        # XEP-0410: bob's self-ping answers while he is joined.
        ping = await run.iq(bob, "get", bob_at, f"<ping xmlns='{NS_PING}'/>", f"the self-ping of {bob_at}")
        condition, _ = error_condition(ping)
        if ping.get("type") == "error" and condition not in ("service-unavailable", "feature-not-implemented"):
            raise CaseFailed(f"self-ping of {bob_at} while joined answered {describe_error(ping)} "
                             f"(XEP-0410 4: joined means a result, service-unavailable or feature-not-implemented)")
        pinged = "result" if ping.get("type") == "result" else f"{condition} (joined, per XEP-0410)"
        return f"{done}; self-ping: {pinged}"
    finally:
        run.send(alice, f"<iq type='set' to={esc(room)} id='lab-{token(8)}'><query xmlns='{NS_MUC_OWNER}'>"
                        f"<destroy/></query></iq>")
        await asyncio.sleep(0.2)


async def room_archive(run: CaseRun, client, room: str) -> list[str]:
    """The bodies of the last messages in ``room``'s archive, asked by ``client``."""
    query_id = f"q{token(10)}"
    mark = run.mark(client)
    for attempt in range(2):
        await expect_result(run, client, "set", room,
                            f"<query xmlns='{NS_MAM}' queryid='{query_id}'><set xmlns='{NS_RSM}'><max>50</max>"
                            f"<before/></set></query>", f"{client.boundjid.bare}'s MAM query of {room}")
        bodies = []
        for element in client.inbox[mark:]:
            result = element.find(q(NS_MAM, "result")) if element.tag == MESSAGE else None
            if result is None or result.get("queryid") != query_id or bare(element.get("from")) not in (room, ""):
                continue
            message = result.find(f"{q(NS_FORWARD, 'forwarded')}/{q(NS_CLIENT, 'message')}")
            if message is not None and message.findtext(q(NS_CLIENT, "body")):
                bodies.append(message.findtext(q(NS_CLIENT, "body")))
        if bodies or attempt:
            return bodies
        await asyncio.sleep(1)  # give an asynchronous archive a moment
        query_id, mark = f"q{token(10)}", run.mark(client)
    return []


# --- XEP-0049 private XML (XEP-0048 bookmarks in it) ---------------------------------------------

async def private_xml(run: CaseRun) -> str:
    alice = await run.login(run.server, "alice", presence=False)
    name = f"lab room {token(10)}"
    storage = (f"<storage xmlns='{NS_BOOKMARKS}'><conference jid='lab-{token(6)}@conference.example.test' "
               f"name={esc(name)} autojoin='false'/></storage>")
    again = await run.login(run.server, "alice", presence=False)
    async with store_of(run, run.server, "alice", "bookmarks"):  # (ejabberd syncs them with XEP-0402's)
        await expect_result(run, alice, "set", None, f"<query xmlns='{NS_PRIVATE}'>{storage}</query>",
                            f"{alice.boundjid.bare} storing XEP-0048 bookmarks in private XML")
        reply = await expect_result(run, again, "get", None,
                                    f"<query xmlns='{NS_PRIVATE}'><storage xmlns='{NS_BOOKMARKS}'/></query>",
                                    f"a second session of {alice.boundjid.bare} fetching them")
    names = [c.get("name") for c in reply.iter(q(NS_BOOKMARKS, "conference"))]
    if name not in names:
        raise CaseFailed(f"the second session got bookmarks {names}, not the {name!r} just stored")
    bob = await run.login(run.target, "bob", presence=False)
    error = await refused_to(run, bob, "get", alice.boundjid.bare,
                             f"<query xmlns='{NS_PRIVATE}'><storage xmlns='{NS_BOOKMARKS}'/></query>",
                             f"{bob.boundjid.bare}'s private XML get of {alice.boundjid.bare}", name)
    return (f"stored {name!r}, read back from a second session; {bob.boundjid.bare} asking for it got {error}")


# --- XEP-0223 private PEP: XEP-0402 bookmarks ----------------------------------------------------

def publish_options(fields: dict) -> str:
    values = "".join(f"<field var='pubsub#{var}'><value>{value}</value></field>" for var, value in fields.items())
    return (f"<publish-options><x xmlns='{NS_DATA}' type='submit'><field var='FORM_TYPE' type='hidden'>"
            f"<value>{NS_PUBSUB}#publish-options</value></field>{values}</x></publish-options>")


async def private_pep(run: CaseRun) -> str:
    alice = await run.login(run.server, "alice", presence=False)
    a = alice.boundjid.bare
    name = f"lab bookmark {token(10)}"
    item_id = f"lab-{token(8)}@conference.example.test"
    # XEP-0402 3.3 / XEP-0223 5: the node's options, asserted on publish.
    options = publish_options({"persist_items": "true", "max_items": "max", "send_last_published_item": "never",
                               "access_model": "whitelist"})
    again = await run.login(run.server, "alice", presence=False)
    # ejabberd's mod_private replaces these items with what a XEP-0048 private XML store holds
    # (another pair's X0049 case of the same account): the same lock as that case.
    try:
        async with store_of(run, run.server, "alice", "bookmarks"):
            await expect_result(run, alice, "set", None,
                                f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{NS_BOOKMARKS2}'><item id={esc(item_id)}>"
                                f"<conference xmlns='{NS_BOOKMARKS2}' name={esc(name)} autojoin='false'/></item>"
                                f"</publish>{options}</pubsub>",
                                f"{a} publishing a XEP-0402 bookmark (whitelist, persistent)")
            reply = await expect_result(run, again, "get", None,
                                        f"<pubsub xmlns='{NS_PUBSUB}'><items node='{NS_BOOKMARKS2}'/></pubsub>",
                                        f"a second session of {a} fetching its bookmarks")
        if name not in xml_text(reply):
            raise CaseFailed(f"the second session's items of {NS_BOOKMARKS2} lack the bookmark {name!r}")
        bob = await run.login(run.target, "bob", presence=False)
        error = await refused_to(run, bob, "get", a,
                                 f"<pubsub xmlns='{NS_PUBSUB}'><items node='{NS_BOOKMARKS2}'/></pubsub>",
                                 f"{bob.boundjid.bare}'s items get of {a}'s bookmarks", name)
        return f"{a} stored {name!r} in a whitelist PEP node, read back from a second session; " \
               f"{bob.boundjid.bare} asking for it got {error}"
    finally:
        run.send(alice, f"<iq type='set' id='lab-{token(8)}'><pubsub xmlns='{NS_PUBSUB}'><retract "
                        f"node='{NS_BOOKMARKS2}'><item id={esc(item_id)}/></retract></pubsub></iq>")


# --- XEP-0157 contact addresses ---------------------------------------------------------------

async def contact_addresses(run: CaseRun) -> str:
    alice = await run.login(run.server, "alice", presence=False)
    domain = run.domain(run.server)
    reply = await expect_result(run, alice, "get", domain, f"<query xmlns='{NS_DISCO_INFO}'/>",
                                f"the disco#info of {domain}")
    forms = [x for x in reply.iter(q(NS_DATA, "x"))
             if any(f.get("var") == "FORM_TYPE" and f.findtext(q(NS_DATA, "value")) == NS_SERVERINFO
                    for f in x.findall(q(NS_DATA, "field")))]
    if not forms:
        raise CaseFailed(f"{domain}'s disco#info has no {NS_SERVERINFO} form (XEP-0157 3)")
    fields = {f.get("var"): [v.text for v in f.findall(q(NS_DATA, "value"))]
              for f in forms[0].findall(q(NS_DATA, "field"))}
    expected = f"xmpp:admin@{domain}"  # what the lab's templates configure
    if expected not in fields.get("admin-addresses", []):
        raise CaseFailed(f"{domain}'s serverinfo form has admin-addresses {fields.get('admin-addresses')}, "
                         f"not {expected} as configured")
    listed = "; ".join(f"{var}: {' '.join(values)}" for var, values in fields.items() if var != "FORM_TYPE")
    return f"{domain} serverinfo form: {listed}"


# --- XEP-0363 HTTP upload ------------------------------------------------------------------------

NS_UPLOAD = "urn:xmpp:http:upload:0"
NS_OOB = "jabber:x:oob"
UPLOAD_HEADERS = ("authorization", "cookie", "expires")  # XEP-0363 5: the only ones a slot may set


def https(run: CaseRun, method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    """One HTTPS request with the lab CA trusted and the name checked (blocking: run it in an
    executor): (status, response body, the address the URL's host resolved to)."""
    import http.client
    import socket
    import ssl
    import urllib.parse
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https":
        raise CaseFailed(f"{url} is not an https URL (XEP-0363 5 asks for HTTPS)")
    port = parts.port or 443
    address = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)[0][4][0]
    context = ssl.create_default_context(cafile=run.ca)
    connection = http.client.HTTPSConnection(parts.hostname, port, context=context,
                                             timeout=max(min(5.0, run.remaining()), 0.5))
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), address
    except (OSError, http.client.HTTPException) as error:
        raise CaseFailed(f"{method} {url} ({parts.hostname} at {address}) failed: {type(error).__name__}: "
                         f"{error}") from None
    finally:
        connection.close()


async def http_upload(run: CaseRun) -> str:
    service = run.servers[run.server].get("upload")
    if not service:
        raise CaseFailed(f"no upload service of {run.server} in the spec")
    alice = await run.login(run.server, "alice", presence=False)
    bob = await run.login(run.target, "bob")
    data = f"xmpp-lab upload {token(16)}\n".encode() * 64
    digest = hashlib.sha256(data).hexdigest()
    filename = f"lab-{token(8)}.txt"
    reply = await expect_result(run, alice, "get", service,
                                f"<request xmlns='{NS_UPLOAD}' filename={esc(filename)} size='{len(data)}' "
                                f"content-type='text/plain'/>", f"{alice.boundjid.bare}'s slot request to {service}")
    put, get = reply.find(f"{q(NS_UPLOAD, 'slot')}/{q(NS_UPLOAD, 'put')}"), \
        reply.find(f"{q(NS_UPLOAD, 'slot')}/{q(NS_UPLOAD, 'get')}")
    if put is None or get is None or not put.get("url") or not get.get("url"):
        raise CaseFailed(f"{service}'s slot lacks a put or get URL: {xml_text(reply)[:300]}")
    headers = {h.get("name"): h.text or "" for h in put.findall(q(NS_UPLOAD, "header"))
               if (h.get("name") or "").lower() in UPLOAD_HEADERS}
    put_status, _, put_address = await run.loop.run_in_executor(
        None, lambda: https(run, "PUT", put.get("url"), data,
                            {**headers, "Content-Type": "text/plain", "Content-Length": str(len(data))}))
    if put_status not in (200, 201):
        raise CaseFailed(f"PUT {put.get('url')} answered HTTP {put_status}, not 200/201")
    # The URL goes to B's user in a message; B's user takes it from what arrived.
    url = get.get("url")
    mark = run.mark(bob)
    run.send(alice, f"<message to={esc(bob.boundjid.bare)} type='chat'><body>{text_esc(url)}</body>"
                    f"<x xmlns='{NS_OOB}'><url>{text_esc(url)}</url></x></message>")
    got = await run.expect(bob, lambda e: e.tag == MESSAGE and e.find(f"{q(NS_OOB, 'x')}/{q(NS_OOB, 'url')}")
                           is not None and bare(e.get("from")) == alice.boundjid.bare,
                           f"{alice.boundjid.bare}'s message with the file's URL", since=mark)
    received = got.findtext(f"{q(NS_OOB, 'x')}/{q(NS_OOB, 'url')}")
    status, body, get_address = await run.loop.run_in_executor(None, lambda: https(run, "GET", received))
    if status != 200:
        raise CaseFailed(f"{bob.boundjid.bare}'s GET {received} answered HTTP {status}, not 200")
    if hashlib.sha256(body).hexdigest() != digest:
        raise CaseFailed(f"{bob.boundjid.bare}'s GET {received} returned {len(body)} bytes of SHA-256 "
                         f"{hashlib.sha256(body).hexdigest()[:16]}..., not the {len(data)} bytes put "
                         f"({digest[:16]}...)")
    return (f"{service} gave {alice.boundjid.bare} a slot; PUT {put.get('url')} ({put_address}): HTTP "
            f"{put_status}; {bob.boundjid.bare} got the URL by message and GET it over HTTPS (lab CA, "
            f"{get_address}): {len(body)} bytes, SHA-256 {digest[:16]}... as put")


# --- XEP-0114 external component -----------------------------------------------------------------

async def component_connected(run: CaseRun, server: str):
    """A ComponentXMPP connected to ``server``'s component port with the lab's secret,
    handshake accepted; it echoes every message it gets back to its sender. CaseFailed when
    the server does not take it."""
    from slixmpp.componentxmpp import ComponentXMPP
    settings = run.servers[server]["component"]
    component = ComponentXMPP(settings["domain"], settings["secret"] or "no-secret-in-the-spec")
    # raw XML of the component's stream in the case's trace (the handshake's digest left out)
    component.add_event_handler("send_raw", lambda data: run.tracer.add(
        settings["domain"], "SENT", re.sub(r"(<handshake>)[^<]+", r"\1[redacted]", str(data))))
    component.add_event_handler("receive_raw", lambda data: run.tracer.add(settings["domain"], "RECV", str(data)))
    component.seen = []

    def echo(message):
        component.seen.append(message["from"].full)
        component.send_raw(f"<message from={esc(settings['domain'])} to={esc(message['from'].full)} type='chat'>"
                           f"<body>{text_esc('echo ' + message['body'])}</body></message>")
    component.add_event_handler("message", echo)
    # Every message stanza as it arrived, taken as a message or not: the evidence when no
    # echo comes (slixmpp takes a message only with a body in the stream's namespace).
    component.messages_in = []

    def arrived(stanza):
        if stanza.xml.tag.endswith("}message"):
            component.messages_in.append(str(stanza))
        return stanza
    component.add_filter("in", arrived)
    component.register_plugin("xep_0199")  # answers pings: the IQ round trip
    outcome = run.watch(component, ["session_start", "stream_error", "disconnected", "connection_failed"])
    domain = run.domain(server)
    component.connect(domain, settings["port"])
    event, data = await run.within(outcome, f"{settings['domain']}'s handshake with {domain}:{settings['port']}")
    if event != "session_start":
        component.disconnect()
        why = (f"stream error {data['condition']}" + (f" ({data['text']})" if data["text"] else "")
               if event == "stream_error" else f"{event}: {data}")
        raise CaseFailed(f"{domain} did not take the component {settings['domain']} on port {settings['port']} "
                         f"(XEP-0114 handshake with the lab's secret): {why}")
    return component


async def component(run: CaseRun) -> str:
    if not run.servers[run.server].get("component"):
        raise CaseFailed(f"no component of {run.server} in the spec")
    bob = await run.login(run.target, "bob")
    # One component domain per server: the pairs with the same A take turns.
    async with store_of(run, run.server, "alice", "component"):
        connected = await component_connected(run, run.server)
        try:
            return await component_reached(run, bob, connected)
        finally:
            gone = run.watch(connected, ["disconnected"])
            connected.disconnect()
            with contextlib.suppress(Exception):
                await run.within(gone, "the component's disconnection", limit=2.0)


async def component_reached(run: CaseRun, bob, connected) -> str:
    service = run.servers[run.server]["component"]["domain"]
    pinged = await run.iq(bob, "get", service, f"<ping xmlns='{NS_PING}'/>", f"{service}'s answer to a ping")
    if pinged.get("type") != "result":
        raise CaseFailed(f"{bob.boundjid.bare}'s ping of {service} answered {describe_error(pinged)}")
    marker = token(12)
    mark = run.mark(bob)
    run.send(bob, f"<message to={esc(service)} type='chat'><body>hello component {marker}</body></message>")
    echoed = (lambda e: e.tag == MESSAGE and e.get("from") == service
              and f"echo hello component {marker}" in (e.findtext(q(NS_CLIENT, "body")) or ""))
    what = f"{service}'s echo of {bob.boundjid.bare}'s message"
    # The wait ends on evidence: the echo, or the message seen at the component without its
    # message handler taking it (then it never echoes; a grace of ECHO_GRACE for a late one).
    deadline, arrived = run.loop.time() + run.remaining(), None
    while not any(echoed(e) for e in bob.inbox[mark:]):
        got = [m for m in connected.messages_in if marker in m]
        if got and not connected.seen and arrived is None:
            arrived = run.loop.time()
        if arrived is not None and run.loop.time() - arrived > ECHO_GRACE:
            # It reached the component, but not as XEP-0114 has it (jabber:component:accept).
            raise CaseFailed(f"no {what} within {ECHO_GRACE:g}s of its arrival; the component received it, but not "
                             f"as a message with a body in jabber:component:accept (XEP-0114 7.1), so it never "
                             f"echoed: {clip(got[0], 400)}")
        if run.loop.time() > deadline:
            raise CaseFailed(f"timed out waiting for {what}" + (f"; the component received: {clip(got[0], 400)}"
                                                                  if got else "; it never reached the component"))
        await asyncio.sleep(0.1)
    return (f"{service} connected to {run.domain(run.server)} (XEP-0114 handshake); {bob.boundjid.bare} across "
            f"federation pinged it (result) and got its echo of a message, sent to "
            f"{', '.join(dict.fromkeys(connected.seen))}")


ECHO_GRACE = 3.0  # seconds an echo may take once the message reached the component (seen in ms)


# --- XEP-0398 + XEP-0153: a PEP avatar seen as a vcard-temp photo hash ---------------------------

NS_AVATAR_DATA = "urn:xmpp:avatar:data"
NS_AVATAR_METADATA = "urn:xmpp:avatar:metadata"
NS_VCARD_UPDATE = "vcard-temp:x:update"


def lab_png(text: str) -> bytes:
    """A 1x1 PNG carrying ``text`` (a tEXt chunk): an image of this run alone, so its hash
    is nowhere before this run."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"tEXt", b"Comment\x00" + text.encode()) + chunk(b"IDAT", zlib.compress(b"\x00\x80\x40\x20"))
            + chunk(b"IEND", b""))


async def avatar(run: CaseRun) -> str:
    # publisher: X0163's account too (its roster with B's bob is this case's), so the two take turns.
    async with store_of(run, run.server, "publisher", "roster and PEP"):
        return await avatar_alone(run)


async def avatar_alone(run: CaseRun) -> str:
    alice = await run.login(run.server, "publisher")
    bob = await run.login(run.target, "bob")
    a, b = alice.boundjid.bare, bob.boundjid.bare
    image = lab_png(f"xmpp-lab avatar {token(12)}")
    digest = hashlib.sha1(image).hexdigest()
    await asyncio.gather(run.remove_roster_item(alice, b), run.remove_roster_item(bob, a))
    try:
        await subscribe_both_ways(run, alice, bob)
        await expect_result(run, alice, "set", None,
                            f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{NS_AVATAR_DATA}'><item id='{digest}'>"
                            f"<data xmlns='{NS_AVATAR_DATA}'>{base64.b64encode(image).decode()}</data></item>"
                            f"</publish></pubsub>", f"{a}'s avatar data publish")
        await expect_result(run, alice, "set", None,
                            f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{NS_AVATAR_METADATA}'><item id='{digest}'>"
                            f"<metadata xmlns='{NS_AVATAR_METADATA}'><info id='{digest}' bytes='{len(image)}' "
                            f"type='image/png' width='1' height='1'/></metadata></item></publish></pubsub>",
                            f"{a}'s avatar metadata publish")
        # XEP-0398 3: the server puts the hash into the user's presence; the client sends it without.
        mark = run.mark(bob)
        status = f"avatar {token(6)}"
        run.send(alice, f"<presence><status>{status}</status></presence>")
        got = await run.expect(bob, lambda e: e.tag == PRESENCE and bare(e.get("from")) == a
                               and e.findtext(q(NS_CLIENT, "status")) == status,
                               f"{a}'s presence after the avatar publish", since=mark)
        photo = got.find(f"{q(NS_VCARD_UPDATE, 'x')}/{q(NS_VCARD_UPDATE, 'photo')}")
        if photo is None:
            raise CaseFailed(f"{a}'s presence reached {b} without a {NS_VCARD_UPDATE} photo (XEP-0398 3, "
                             f"XEP-0153): {xml_text(got)[:300]}")
        if (photo.text or "").strip() != digest:
            raise CaseFailed(f"{a}'s presence carries photo hash {photo.text!r}, not the SHA-1 of the avatar just "
                             f"published ({digest})")
        # XEP-0398 4: the vcard-temp of the user holds the same image.
        reply = await expect_result(run, bob, "get", a, f"<vCard xmlns='{NS_VCARD}'/>", f"{b}'s vCard get of {a}")
        binval = reply.findtext(f"{q(NS_VCARD, 'vCard')}/{q(NS_VCARD, 'PHOTO')}/{q(NS_VCARD, 'BINVAL')}") or ""
        try:
            photo_bytes = base64.b64decode("".join(binval.split()))
        except ValueError:
            photo_bytes = b""
        vcard = ("holds the avatar" if hashlib.sha1(photo_bytes).hexdigest() == digest else
                 f"has no PHOTO of it ({len(photo_bytes)} bytes of PHOTO)")
        if not vcard.startswith("holds"):
            raise CaseFailed(f"{a}'s presence carried the hash, but {a}'s vcard-temp fetched by {b} {vcard} "
                             f"(XEP-0398 4)")
        return (f"{a} published a {len(image)}-byte PNG avatar by PEP (XEP-0084); its presence reached {b} with "
                f"photo {digest} (SHA-1 of the image); {a}'s vcard-temp fetched by {b} {vcard}")
    finally:
        await asyncio.gather(run.remove_roster_item(alice, b), run.remove_roster_item(bob, a))


# --- the event's room: one room, a user of every server in it ------------------------------------

JOIN_LIMIT = 15.0  # seconds a remote occupant's join may take in ROOM


async def event_room(run: CaseRun) -> str:
    service = run.servers[run.server].get("muc")
    if not service:
        raise CaseFailed(f"no MUC service of {run.server} in the spec")
    # The event's room where lab up keeps one on this server (lab.yml room), else one of its own.
    kept = run.servers[run.server].get("room")
    room = kept or f"interop-{token(8)}@{service}"
    # The host's user first (it makes the room), then one user of every other server.
    names = [run.server] + [name for name in run.servers if name != run.server]
    # available first: jabberd2 drops directed presence from a session that has sent none
    clients = await asyncio.gather(*(run.login(name, "bob") for name in names))
    nicks = [f"{name}-{token(4)}" for name in names]
    creator = clients[0]
    try:
        codes = await join(run, creator, f"{room}/{nicks[0]}", f"{creator.boundjid.bare} creating {room}")
        if kept and "201" in codes:
            raise CaseFailed(f"{room}, the event's room lab up made persistent, was not there any more: "
                             f"{creator.boundjid.bare}'s join created it (status 201)")
        if "201" in codes:
            await expect_result(run, creator, "set", room, f"<query xmlns='{NS_MUC_OWNER}'><x xmlns='{NS_DATA}' "
                                                           f"type='submit'/></query>", "the instant-room configuration")
        # A join answers within seconds or not at all (a lost self-presence, finding 7 of
        # docs/compliance.md): the case's 40 s are for logging in a user of every server.
        await asyncio.gather(*(join(run, client, f"{room}/{nick}", f"{client.boundjid.bare} joining {room}",
                                    limit=min(JOIN_LIMIT, run.remaining()))
                               for client, nick in zip(clients[1:], nicks[1:])))
        # Every occupant says something; every occupant gets every message, from its occupant JID.
        bodies = {f"{room}/{nick}": f"hello from {nick} {token(8)}" for nick in nicks}
        marks = [run.mark(client) for client in clients]
        for client, (occupant, body) in zip(clients, bodies.items()):
            run.send(client, f"<message to={esc(room)} type='groupchat'><body>{text_esc(body)}</body></message>")

        async def all_arrive(client, mark):
            for occupant, body in bodies.items():
                got = await run.expect(client, lambda e, body=body: e.tag == MESSAGE and e.get("type") == "groupchat"
                                       and e.findtext(q(NS_CLIENT, "body")) == body,
                                       f"{occupant}'s message at {client.boundjid.bare}", since=mark)
                if got.get("from") != occupant:
                    raise CaseFailed(f"{occupant}'s message reached {client.boundjid.bare} from {got.get('from')!r}")
        await asyncio.gather(*(all_arrive(client, mark) for client, mark in zip(clients, marks)))
        # The history: a latecomer from another server (or the host's) gets every message, delayed.
        late_server = names[1] if len(names) > 1 else names[0]
        late = await run.login(late_server, "alice", presence=False)
        mark = run.mark(late)
        late_at = f"{room}/late-{token(4)}"
        run.send(late, f"<presence to={esc(late_at)}><x xmlns='{NS_MUC}'><history maxstanzas='50'/></x></presence>")
        await run.expect(late, lambda e: e.tag == PRESENCE and e.get("from") == late_at,
                         f"{late.boundjid.bare}'s self-presence in {room}", since=mark)
        history = {}
        deadline = run.loop.time() + min(5.0, run.remaining())
        while run.loop.time() < deadline and len(history) < len(bodies):
            history = {e.get("from"): e.findtext(q(NS_CLIENT, "body")) for e in late.inbox[mark:]
                       if e.tag == MESSAGE and e.find("{urn:xmpp:delay}delay") is not None
                       and e.findtext(q(NS_CLIENT, "body")) in bodies.values()}
            await asyncio.sleep(0.2)
        missing = [occupant for occupant, body in bodies.items() if history.get(occupant) != body]
        if missing:
            raise CaseFailed(f"{late.boundjid.bare} joining {room} later got {len(history)} of the {len(bodies)} "
                             f"messages as history (XEP-0045 7.2.15); none from {', '.join(missing)}")
        domains = sorted({client.boundjid.domain for client in clients})
        return (f"{'the event room ' if kept else ''}{room}: {len(clients)} occupants from {len(domains)} domains ({', '.join(domains)}); each one's "
                f"message reached all {len(clients)}; {late.boundjid.bare} joining later got all {len(bodies)} "
                f"as history")
    finally:
        if not kept:  # the event's room stays for people's clients: its occupants just leave
            run.send(creator, f"<iq type='set' to={esc(room)} id='lab-{token(8)}'><query xmlns='{NS_MUC_OWNER}'>"
                              f"<destroy/></query></iq>")
        await asyncio.sleep(0.2)


# --- `lab up`: the event's room, kept open -------------------------------------------------------

ROOM_CONFIG = {"muc#roomconfig_persistentroom": "1", "muc#roomconfig_publicroom": "1",
               "muc#roomconfig_roomname": "the event's room (xmpp interop lab)"}


def open_event_room(spec: dict) -> dict:
    """The event's room, spec["room"] = {"server", "jid"}: alice of that server joins it (making
    it), configures it persistent and public, checks its disco#info says so, and leaves, so
    the room stays for people's own clients. {"detail": what was seen} or {"error": why}."""
    server, room = spec["room"]["server"], spec["room"]["jid"]

    async def make() -> dict:
        run = CaseRun(spec, {"case": "event room", "server": server}, float(spec.get("timeout", 20)))
        try:
            owner = await run.login(server, "alice")
            occupant = f"{room}/lab-{token(4)}"
            codes = await join(run, owner, occupant, f"{owner.boundjid.bare} opening {room}")
            fields = "".join(f"<field var='{var}'><value>{text_esc(value)}</value></field>"
                             for var, value in ROOM_CONFIG.items())
            await expect_result(run, owner, "set", room, f"<query xmlns='{NS_MUC_OWNER}'><x xmlns='{NS_DATA}' "
                                f"type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig"
                                f"</value></field>{fields}</x></query>", f"the configuration of {room}")
            info = await expect_result(run, owner, "get", room, f"<query xmlns='{NS_DISCO_INFO}'/>",
                                       f"disco#info of {room}")
            features = {f.get("var") for f in info.iter(q(NS_DISCO_INFO, "feature"))}
            missing = [f for f in ("muc_persistent", "muc_public") if f not in features]
            if missing:
                raise CaseFailed(f"{room} configured persistent and public, but its disco#info lacks "
                                 f"{', '.join(missing)}")
            run.send(owner, f"<presence to={esc(occupant)} type='unavailable'/>")
            await asyncio.sleep(0.2)
            made = "made" if "201" in codes else "already there"
            return {"detail": f"{room}: {made}, configured by {owner.boundjid.bare}; its disco#info says "
                              f"muc_persistent, muc_public"}
        except CaseFailed as failure:
            return {"error": str(failure)}
        finally:
            await run.close()
    return asyncio.run(make())
