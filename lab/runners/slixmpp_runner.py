"""Test runner for the slixmpp client stack, run inside the client container: the case
functions of the interop catalogue's C1-C12 and S1-S10 (S8-S10 are S1's exchange, judged by
the lab), on the harness (harness.py) and slixmpp_expect.py's CaseRun. Usage:
    slixmpp_runner.py ready SPEC_JSON      # XMPP-level readiness of servers (probe.py)
    slixmpp_runner.py cases SPEC_JSON      # the cases
Each prints one JSON document on stdout (its last line).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import socket
import ssl
import struct
import time
import xml.etree.ElementTree as ET

from harness import CaseFailed, Runner, Transient, main, token
from probe import c2s_features, ready, s2s_offer
from slixmpp_client import (IQ, MESSAGE, NS_BIND, NS_CARBONS, NS_CLIENT, NS_DATA, NS_FORWARD, NS_MUC, NS_MUC_OWNER,
                            NS_MUC_USER, NS_REGISTER, NS_REGISTER_FEATURE, NS_ROSTER, NS_SM, PRESENCE, bare, describe_error,
                            error_condition, esc)
from slixmpp_expect import CaseRun
import slixmpp_compliance as compliance
import slixmpp_turn
import slixmpp_jingle as jingle


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
    outcome = run.watch(client, ["failed_auth", "session_start", "unreachable", "ssl_invalid_chain",
                                 "disconnected"])
    client.start()
    event, data = await run.within(outcome, "the SASL failure for a wrong password")
    if event == "session_start":
        raise CaseFailed("logged in with a wrong password")
    if event != "failed_auth":
        client.cancel_connection_attempt()
        raise run.refused(client, event, data, "wrong-password attempt")
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
    return await run.deliver(alice, bob, bob.boundjid.bare, run.case)


async def case_c6(run: CaseRun) -> str:
    client = await run.login(run.server, "alice", presence=False)
    detail = await run.disco_info(client, run.domain(run.server), keep=True)
    # Every namespace in the stream features after STARTTLS (SASL2 and what it carries),
    # asked with the sender named: slixmpp does not name it, and a server may then leave SASL2 out.
    domain = run.domain(run.server)
    try:
        features = await asyncio.get_running_loop().run_in_executor(
            None, c2s_features, domain, run.jid(run.server, "alice"), run.ca)
    except (OSError, ValueError) as error:
        raise CaseFailed(f"the stream features after STARTTLS: {error}") from None
    element = ET.fromstring(f"<w xmlns:stream='http://etherx.jabber.org/streams'>{features}</w>")
    run.evidence["stream_features"] = features
    run.evidence["stream_namespaces"] = sorted({e.tag[1:].split("}")[0] for e in element.iter() if e.tag.startswith("{")})
    return detail


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
                                "unreachable", "ssl_invalid_chain"])
    alice.start()
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
    outcome = run.watch(client, ["session_start", "failed_all_auth", "no_auth", "unreachable",
                                 "ssl_invalid_chain", "disconnected"])
    client.start()
    await run.within(asyncio.wait([registered, outcome], return_when=asyncio.FIRST_COMPLETED),
                     lambda: f"in-band registration (it got as far as: {client.stage})")
    if not registered.done():
        offered = any(e.find(f"{{{NS_REGISTER_FEATURE}}}register") is not None for e in client.inbox
                      if e.tag.endswith("}features"))
        event, data = outcome.result()
        client.cancel_connection_attempt()
        refused = run.refused(client, event, data, client.label)
        if isinstance(refused, Transient):  # a passing server fault, not registration's
            raise refused
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
    client = await run.login(run.server, "alice", presence=False, direct_tls=True)
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
    return f"{there}; {back}"


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
    muc = run.servers[run.target].get("muc")
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


# --- faults -----------------------------------------------------------------------------------

async def case_f8(run: CaseRun) -> str:
    """While the lab takes its DNS down and back (the spec's "outage": down_at, up_at,
    give_up_at, unix times): both users log in before, then alice messages bob every 5 s
    from just after the DNS went down until one arrives. The lab judges the recovery time."""
    outage = run.spec["outage"]
    alice = await run.login(run.server, "alice")
    bob = await run.login(run.target, "bob")
    await asyncio.sleep(max(0.0, outage["down_at"] + 1 - time.time()))
    marker, to, tries = token(12), bob.boundjid.full, 0
    while time.time() < outage["give_up_at"]:
        tries += 1
        run.send(alice, f"<message to={esc(to)} type='chat' id='lab-{token(10)}'><body>F8 {marker} "
                        f"try {tries}</body></message>")
        try:
            got = await run.expect(bob, lambda e: e.tag == MESSAGE and marker in (e.findtext(f"{{{NS_CLIENT}}}body")
                                                                                  or ""),
                                   "the message", limit=min(5.0, max(0.1, outage["give_up_at"] - time.time())))
        except CaseFailed:
            continue
        run.evidence["delivered_at"] = time.time()
        return f"{got.findtext(f'{{{NS_CLIENT}}}body')!r} arrived (try {tries}, one every 5 s)"
    raise CaseFailed(f"none of {tries} messages (one every 5 s) arrived by the end of the budget")


async def case_f1(run: CaseRun) -> str:
    """Under the zone where every _xmpp-server SRV target is ".": a message to the target
    server must come back at once as remote-server-not-found (RFC 6120 3.2.1, 8.3.3.16)."""
    alice = await run.login(run.server, "alice", presence=False)
    to, message_id = run.jid(run.target, "bob"), f"lab-{token(12)}"
    started = time.monotonic()
    run.send(alice, f"<message to={esc(to)} type='chat' id='{message_id}'><body>F1 {token()}</body></message>")
    expected = "refused: remote-server-not-found, at once (RFC 6120 3.2.1, 8.3.3.16; RFC 2782)"
    run.evidence["expected"] = expected
    try:
        reply = await run.expect(alice, lambda e: e.tag == MESSAGE and e.get("id") == message_id,
                                 f"an error for the message to {to}")
    except CaseFailed:
        run.evidence["observed"] = f"no answer within {run.timeout:g}s"
        raise
    took = (time.monotonic() - started) * 1000
    if reply.get("type") != "error":
        run.evidence["observed"] = f"a non-error message came back after {took:.0f} ms"
        raise CaseFailed(f"observed: {run.evidence['observed']}; expected: {expected}")
    condition, kind = error_condition(reply)
    run.evidence["observed"] = f"refused: {condition} after {took:.0f} ms"
    if condition != "remote-server-not-found":
        raise CaseFailed(f"observed: refused with {condition} ({kind}) after {took:.0f} ms; expected: {expected}")
    return f"observed: refused: {condition} ({kind}) from {reply.get('from')} after {took:.0f} ms"


async def case_f6(run: CaseRun) -> str:
    """Under the IPv6-only zone: C1's login through SRV (the session must be over IPv6), or
    S1's exchange for a pair (the lab checks the servers' AAAA lookups)."""
    if run.target:
        return await case_s1(run)
    client = await run.login(run.server, "alice", presence=False)
    host, port = client.transport.get_extra_info("peername")[:2]
    tls = client.transport.get_extra_info("ssl_object")
    if ":" not in host or host.startswith("::ffff:"):
        raise CaseFailed(f"the session runs over IPv4 ({host}:{port}) although only AAAA records are served")
    if tls is None or "starttls" not in client.features:
        raise CaseFailed("the session is not encrypted with STARTTLS")
    return f"logged in over IPv6 to [{host}]:{port} via SRV, STARTTLS {tls.version()}, certificate verified"


def unchecked_tls(client) -> None:
    """``client`` takes any certificate: for a login to a server whose c2s presents the
    faulty certificate of F3/F4 (its c2s side is not what the fault is about)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    client.get_ssl_context = lambda: context


async def fate(run: CaseRun, sender, recipient, what: str) -> dict:
    """What became of a message from ``sender`` to ``recipient``'s bare JID, observed until
    just before the case's deadline: delivered, refused (the error that came back) or none."""
    message_id, marker = f"lab-{token(12)}", token(12)
    to = recipient.boundjid.bare
    started = time.monotonic()
    run.send(sender, f"<message to={esc(to)} type='chat' id={esc(message_id)}><body>{what} {marker}</body></message>")
    try:
        index, got = await run.expect_first(
            (recipient, lambda e: e.tag == MESSAGE and marker in (e.findtext(f"{{{NS_CLIENT}}}body") or "")),
            (sender, run.bounced(sender, message_id)),
            what=f"{what}", limit=max(0.1, run.remaining() - 1.5))
    except CaseFailed:
        return {"outcome": "none", "seconds": round(time.monotonic() - started, 1),
                "detail": f"{sender.boundjid.full} -> {to}: neither delivered nor refused"}
    ms = round((time.monotonic() - started) * 1000)
    if index == 0:
        return {"outcome": "delivered", "ms": ms, "detail": f"{sender.boundjid.full} -> {to}: delivered in {ms} ms"}
    condition, _ = error_condition(got)
    return {"outcome": "refused", "condition": condition, "ms": ms, "error": describe_error(got),
            "detail": f"{sender.boundjid.full} -> {to}: refused by {got.get('from')}: {describe_error(got)} "
                      f"after {ms} ms"}


async def case_server_fault(run: CaseRun) -> str:
    """F3a-e, F4, F5, the fault on the target server B (its certificate, or s2s TLS off):
    alice@A messages bob@B and bob messages alice at the same time; what became of each goes
    to the evidence ("there", "back"), for the lab to judge against the servers' logs."""
    alice, bob = await asyncio.gather(
        run.login(run.server, "alice"),
        run.login(run.target, "bob", setup=unchecked_tls if run.entry.get("unchecked_tls") else None))
    there, back = await asyncio.gather(fate(run, alice, bob, f"{run.case} A->B"), fate(run, bob, alice, f"{run.case} B->A"))
    run.evidence.update(there=there, back=back)
    return f"{there['detail']}; {back['detail']}"


NS_VERSION = "jabber:iq:version"


def software_versions(spec: dict) -> dict:
    """What each server says it is (XEP-0092), asked by alice of its own domain: {server:
    {"name", "version", "os"}} or {server: {"error": why}}. spec: as for cases, without them."""
    async def ask(server: str) -> dict:
        run = CaseRun(spec, {"case": "XEP-0092", "server": server}, float(spec.get("timeout", 10)))
        try:
            client = await run.login(server, "alice", presence=False)
            reply = await run.iq(client, "get", run.domain(server), f"<query xmlns='{NS_VERSION}'/>",
                                 "the answer to a software version request")
            query = reply.find(f"{{{NS_VERSION}}}query")
            if reply.get("type") == "error" or query is None:
                return {"error": describe_error(reply) if reply.get("type") == "error" else "a result without <query/>"}
            return {field: query.findtext(f"{{{NS_VERSION}}}{field}") for field in ("name", "version", "os")}
        except CaseFailed as failure:
            return {"error": str(failure)}
        finally:
            await run.close()

    async def every() -> dict:
        return dict(zip(spec["servers"], await asyncio.gather(*(ask(server) for server in spec["servers"]))))
    return asyncio.run(every())


# The case functions by catalogue ID. S8-S10, F2 and F7 are S1's exchange: the lab sets up
# and judges what makes them differ (fresh connections, a DNS variant). The lab reads this
# table to know what the stack can express: keep it one literal.
CASES = {
    "C1": case_c1, "C2": case_c2, "C3": case_c3, "C4": case_c4, "C5": case_c5, "C6": case_c6, "C7": case_c7,
    "C8": case_c8, "C9": case_c9, "C10": case_c10, "C11": case_c11, "C12": case_c12,
    "S1": case_s1, "S2": case_s2, "S3": case_s3, "S4": case_s4, "S5": case_s5, "S6": case_s6, "S7": case_s7,
    "S8": case_s1, "S9": case_s1, "S10": case_s1,
    "F1": case_f1, "F2": case_s1, "F3a": case_server_fault, "F3b": case_server_fault, "F3c": case_server_fault,
    "F3d": case_server_fault, "F3e": case_server_fault, "F4": case_server_fault, "F5": case_server_fault,
    "F6": case_f6, "F7": case_s1, "F8": case_f8,
    "X0054": compliance.vcard, "X0191": compliance.blocking, "X0163": compliance.pep_caps, "X0045": compliance.muc, "X0313M": compliance.muc_archive,
    "X0049": compliance.private_xml, "X0223": compliance.private_pep, "X0157": compliance.contact_addresses,
    "X0363": compliance.http_upload, "X0114": compliance.component,
    "X0398": compliance.avatar, "ROOM": compliance.event_room,
    "J4": slixmpp_turn.external_services,
    "J1": jingle.j1_ibb, "J2": jingle.j2_socks5, "J3": jingle.j3_decline, "J5": jingle.j5_propose,
    "J6": jingle.j6_fallback,
}


def own_cases() -> dict:
    """The lab's own cases (cases/ beside lab.yml, put in ./cases/ beside this runner): ID ->
    the module's ``run``. The lab checked each file before it put it here."""
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases")
    found = {}
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".py"):
            spec = importlib.util.spec_from_file_location(f"own_case_{name[:-3]}", os.path.join(folder, name))
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            found[module.ID] = module.run
    return found


def budget(case: str, timeout: float) -> float:
    """Every wait of a case ends at its deadline (``timeout`` from its start, the case's own
    where the lab gives one); then closing its clients and its event loop."""
    return timeout + 8


if __name__ == "__main__":
    logging.basicConfig(level=logging.CRITICAL)
    main(Runner("slixmpp", {**CASES, **own_cases()}, case_class=CaseRun, budget=budget,
                commands={"ready": ready, "s2s-offer": s2s_offer, "software-version": software_versions,
                          "event-room": compliance.open_event_room}))
