"""The compliance cases' exchanges (lab/cases/compliance.py says what each checks and when it
passes), on slixmpp_expect.py's CaseRun: per ordered pair, A's user (alice on run.server)
acts and B's user (bob on run.target) observes. Every check is of what arrived, never of
what a server advertises. slixmpp_runner.py keys these functions by case ID."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import threading
import xml.etree.ElementTree as ET

from harness import CaseFailed, token
from slixmpp_client import (MESSAGE, NS_CLIENT, NS_DATA, NS_DISCO_INFO, NS_FORWARD, NS_MAM, NS_MUC, NS_MUC_OWNER,
                            NS_MUC_USER, NS_PING, NS_RSM, PRESENCE, bare, describe_error, error_condition, esc)
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
        raise CaseFailed(f"{run.jid(server, role)}'s {store} stayed in use by another pair's case")
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
                             f"error XEP-0191 3.5 asks for (<service-unavailable/>), none within 8 s") from None
        if index == 0:
            raise CaseFailed(f"{blocked}'s message reached {alice.boundjid.bare}, who had blocked it")
        condition, kind = error_condition(got)
        # Give a late delivery a moment to show: the error alone does not prove the message stayed out.
        await asyncio.sleep(1.0)
        if any(arrived[1](e) for e in alice.inbox):
            raise CaseFailed(f"{blocked} got an error, but the message reached {alice.boundjid.bare} too")
        if condition != "service-unavailable":
            raise CaseFailed(f"the blocked message came back with {describe_error(got)}, not <service-unavailable/> "
                             f"(XEP-0191 3.5)")
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

async def join(run: CaseRun, client, occupant: str, what: str):
    mark = run.mark(client)
    run.send(client, f"<presence to={esc(occupant)}><x xmlns='{NS_MUC}'/></presence>")
    room = bare(occupant)
    joined = await run.expect(client, lambda e: e.tag == PRESENCE and (
        e.get("from") == occupant or (e.get("type") == "error" and bare(e.get("from")) == room)),
        f"{what}: the self-presence from {occupant}", since=mark)
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
