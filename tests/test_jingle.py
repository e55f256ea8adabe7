"""The Jingle case functions (lab/runners/slixmpp_jingle.py) without a server: two stand-in
clients behind a stand-in router that delivers each stanza as a server would (from stamped,
by full or bare JID) and answers its users' discovery of a proxy. The functions' own code
runs as in the client container; slixmpp's modules are stood in for. Each verdict made red:
a truncated file (J1), a decline without <decline/> (J3), no reachable candidate (J2), a
responder that answers the fallback with session-accept or not at all (J6)."""

import asyncio
import sys
import time
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

RUNNERS = Path(__file__).resolve().parent.parent / "lab" / "runners"
NS_CLIENT = "jabber:client"
IQ, MESSAGE = f"{{{NS_CLIENT}}}iq", f"{{{NS_CLIENT}}}message"


@pytest.fixture
def jingle(monkeypatch):
    """slixmpp_jingle with slixmpp's handler modules stood in for."""
    base = types.ModuleType("slixmpp.xmlstream.matcher.base")
    base.MatcherBase = type("MatcherBase", (), {"__init__": lambda self, criteria: None})
    handler = types.ModuleType("slixmpp.xmlstream.handler")
    handler.Callback = lambda name, matcher, callback: (name, matcher, callback)
    for name in ("slixmpp", "slixmpp.xmlstream", "slixmpp.xmlstream.matcher"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "slixmpp.xmlstream.handler", handler)
    monkeypatch.setitem(sys.modules, "slixmpp.xmlstream.matcher.base", base)
    monkeypatch.syspath_prepend(str(RUNNERS))
    monkeypatch.delitem(sys.modules, "slixmpp_jingle", raising=False)
    import slixmpp_jingle
    return slixmpp_jingle


class Client:
    def __init__(self, full: str):
        bare, _ = full.split("/")
        self.boundjid = types.SimpleNamespace(full=full, bare=bare, host=bare.split("@")[1])
        self.inbox, self.waiters, self.handlers = [], [], []

    def register_handler(self, handler):
        self.handlers.append(handler)


class Router:
    """Two users on a.test and b.test; a.test has a SOCKS5 proxy, announced at ``proxy``."""

    def __init__(self, proxy=("127.0.0.1", 1)):
        self.alice, self.bob = Client("alice@a.test/j"), Client("bob@b.test/j")
        self.proxy = proxy

    def deliver(self, client, element):
        client.inbox.append(element)
        for predicate, future in list(client.waiters):
            try:
                hit = predicate(element)
            except Exception:
                hit = False
            if hit and not future.done():
                future.set_result(element)

    def route(self, sender, element):
        if element.tag.endswith("}presence"):
            return
        element.set("from", sender.boundjid.full)
        to = element.get("to") or sender.boundjid.host
        for client in (self.alice, self.bob):
            if to == client.boundjid.full or (to == client.boundjid.bare and element.tag == MESSAGE):
                return self.deliver(client, element)
        if to in ("a.test", "b.test", "proxy.a.test") and element.tag == IQ:
            return self.deliver(sender, self.service(to, element))
        raise AssertionError(f"nowhere to route {ET.tostring(element)}")

    def service(self, to, iq):
        query = next(iter(iq), None)
        ns = query.tag[1:].split("}")[0] if query is not None else ""
        payload = {"http://jabber.org/protocol/disco#items": "<item jid='proxy.a.test'/>",
                   "http://jabber.org/protocol/disco#info": "<identity category='proxy' type='bytestreams'/>",
                   "http://jabber.org/protocol/bytestreams": (
                       f"<streamhost jid='proxy.a.test' host='{self.proxy[0]}' port='{self.proxy[1]}'/>"
                       if query.find(f"{{{ns}}}activate") is None else ""),
                   "urn:xmpp:ping": ""}[ns]
        return ET.fromstring(f"<iq xmlns='{NS_CLIENT}' type='result' id='{iq.get('id')}' from='{to}'>"
                             f"<query xmlns='{ns}'>{payload}</query></iq>")


class Run:
    """What the Jingle functions use of slixmpp_expect.CaseRun, over the Router."""

    def __init__(self, router: Router, spec: dict | None = None, timeout: float = 5.0):
        self.router, self.spec, self.timeout = router, {"servers": {}, **(spec or {})}, timeout
        self.server, self.target, self.evidence = "a", "b", {}
        self.deadline = time.monotonic() + timeout

    async def login(self, server, role, presence=True):
        return self.router.alice if role == "alice" else self.router.bob

    def remaining(self):
        return max(0.0, self.deadline - time.monotonic())

    async def within(self, awaitable, what, limit=None):
        from harness import CaseFailed
        try:
            return await asyncio.wait_for(awaitable, self.remaining() if limit is None else limit)
        except asyncio.TimeoutError:
            raise CaseFailed(f"timed out waiting for {what}") from None

    def send(self, client, xml):
        element = ET.fromstring(f"<w xmlns='{NS_CLIENT}'>{xml}</w>")[0]
        asyncio.get_running_loop().call_soon(self.router.route, client, element)

    async def expect(self, client, predicate, what, since=0, limit=None):
        for element in client.inbox[since:]:
            if predicate(element):
                return element
        entry = (predicate, asyncio.get_running_loop().create_future())
        client.waiters.append(entry)
        try:
            return await self.within(entry[1], what, limit)
        finally:
            client.waiters.remove(entry)

    async def expect_first(self, *expectations, what, limit=None):
        futures = [asyncio.ensure_future(self.expect(c, p, what, limit=limit)) for c, p in expectations]
        done, pending = await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
        for future in pending:
            future.cancel()
        for future in done:
            future.exception()  # (each one's is looked at: raised below for the first)
        index = futures.index(next(iter(done)))
        return index, futures[index].result()

    def bounced(self, sender, message_id):
        return lambda e: e.get("id") == message_id and e.get("type") == "error"

    async def iq(self, client, kind, to, payload, what, limit=None):
        iq_id = f"iq-{time.monotonic_ns()}"
        self.send(client, f"<iq type='{kind}' id='{iq_id}'{f' to={chr(39)}{to}{chr(39)}' if to else ''}>{payload}</iq>")
        return await self.expect(client, lambda e: e.tag == IQ and e.get("id") == iq_id
                                 and e.get("type") in ("result", "error"), what, limit=limit)

    def jid(self, server, role):
        return "bob@b.test"


def play(function, run):
    return asyncio.run(function(run))


def test_j1_passes_when_the_file_arrives_whole(jingle):
    run = Run(Router())
    detail = play(jingle.j1_ibb, run)
    assert "20000 bytes over IBB, sha-256 matches the offer" in detail and "session-terminate success" in detail
    assert run.evidence["bytes"] == 20000


def test_j1_fails_on_a_truncated_file(jingle):
    run = Run(Router(), {"jingle": {"initiator": {"truncate": True}}})
    with pytest.raises(Exception) as failure:
        play(jingle.j1_ibb, run)
    assert type(failure.value).__name__ == "CaseFailed"
    assert "not the one offered: 16384 of 20000 bytes; sha-256" in str(failure.value)


def test_j3_passes_on_decline_and_fails_when_the_decline_is_missing(jingle):
    assert "session-terminate with <decline/>" in play(jingle.j3_decline, Run(Router()))
    with pytest.raises(Exception, match=r"reason 'no reason', not <decline/>"):
        play(jingle.j3_decline, Run(Router(), {"jingle": {"responder": {"decline_reason": False}}}))


def test_j2_fails_when_the_responder_reaches_no_candidate_and_says_why(jingle):
    with pytest.raises(Exception, match=r"could reach none of A's SOCKS5 candidates \(candidate-error\): proxy "
                                         r"proxy.a.test at 127.0.0.1:1: ConnectionRefusedError"):
        play(jingle.j2_socks5, Run(Router()))


def test_j6_falls_back_to_ibb_with_transport_accept(jingle):
    run = Run(Router())
    detail = play(jingle.j6_fallback, run)
    assert detail.startswith("B's reaction: transport-accept") and "over IBB after transport-replace" in detail
    assert run.evidence["reaction"] == "transport-accept"


def test_j6_records_a_wrong_session_accept_and_fails_though_the_file_arrives(jingle):
    """Gajim's known answer to an IBB fallback, played by the lab's responder."""
    run = Run(Router(), {"jingle": {"responder": {"on_fallback": "session-accept"}}})
    with pytest.raises(Exception, match=r"the file arrived over IBB, but B's user answered the transport-replace "
                                        r"with session-accept, not transport-accept") as failure:
        play(jingle.j6_fallback, run)
    assert "20000 bytes over IBB after transport-replace, sha-256 matches" in str(failure.value)
    assert run.evidence["reaction"] == "session-accept"  # recorded for the report, fail or not


def test_j6_a_fallback_left_unanswered_fails(jingle):
    """Dino's known reaction: the transport-replace acknowledged, never answered."""
    run = Run(Router(), {"jingle": {"responder": {"on_fallback": "ignore"}}}, timeout=6.0)
    with pytest.raises(Exception, match=r"acknowledged the transport-replace but never answered it"):
        play(jingle.j6_fallback, run)


def test_j5_fails_when_the_propose_gets_no_proceed(jingle, monkeypatch):
    async def silent(run, bob, alice_bare, sid):
        await asyncio.sleep(10)
    monkeypatch.setattr(jingle, "answer_propose", silent)
    run = Run(Router(), timeout=2.0)
    with pytest.raises(Exception, match=r"timed out waiting for B's proceed"):
        play(jingle.j5_propose, run)


def test_an_unknown_behaviour_is_refused(jingle):
    with pytest.raises(ValueError, match="on_fallback 'shrug'"):
        jingle.Behaviour.from_spec({"jingle": {"responder": {"on_fallback": "shrug"}}})
    with pytest.raises(ValueError, match="unknown behaviour truncated"):
        jingle.Behaviour.from_spec({"jingle": {"initiator": {"truncated": True}}})


def test_the_receivers_check_needs_a_sha256_hash_in_the_offer(jingle):
    offered = jingle.Offered("f", 3, {"sha-1": "x"})
    with pytest.raises(Exception, match="no sha-256 hash"):
        jingle.check_received(offered, b"abc", "over IBB")


def test_the_reaction_to_a_transport_replace_is_named(jingle):
    def element(action):
        return ET.fromstring(f"<jingle xmlns='urn:xmpp:jingle:1' action='{action}' sid='s'/>")
    assert jingle.fallback_reaction(element("transport-accept")) == "transport-accept"
    assert jingle.fallback_reaction(element("session-accept")).startswith("session-accept (wrong")
    assert jingle.fallback_reaction(element("content-add")) == "content-add (unexpected)"


def test_the_example_case_reproducing_gajims_answer_loads_and_fails(jingle, monkeypatch):
    from lab.cases import user_case
    case = user_case(Path(__file__).resolve().parent.parent / "examples" / "cases" / "j6_gajim.py")
    assert (case.id, case.scope, case.needs) == ("J6G", "s2s", "proxy65")
    module = sys.modules["lab_user_case_j6_gajim"]
    run = Run(Router())
    with pytest.raises(Exception, match=r"answered the transport-replace with session-accept"):
        asyncio.run(module.run(run))
    assert run.evidence["reaction"] == "session-accept"


def test_j2_and_j6_need_the_proxy_at_the_sender_only(default_lab):
    from lab.cases import by_id, builtin
    from lab.interop import plan
    cases = by_id(builtin())
    servers = list(default_lab.servers)
    pairs = [(a, b) for a in servers for b in servers if a is not b]
    planned, skipped = plan(default_lab.primary, [cases["J2"], cases["J6"], cases["J1"]], servers, pairs)
    assert {(p["case"], p["server"], p["target"]) for p in planned if p["case"] == "J2"} == {
        ("J2", "prosody", "ejabberd"), ("J2", "prosody", "jabberd2"), ("J2", "ejabberd", "prosody"),
        ("J2", "ejabberd", "jabberd2")}
    assert {(r.case, r.server, r.target, r.detail) for r in skipped} == {
        (case, "jabberd2", target, "jabberd2 at bookworm does not declare proxy65")
        for case in ("J2", "J6") for target in ("prosody", "ejabberd")}
    assert len([p for p in planned if p["case"] == "J1"]) == 6  # s2s routing alone: every pair


def test_the_responder_alone_takes_a_session_it_did_not_make(jingle):
    """How a stack of another implementation's initiator meets the lab's responder: the
    Session comes from the session-initiate, the accept echoes the offer's description."""
    router = Router()
    run = Run(router)
    offer = jingle.Offer.random()
    mine = jingle.Session("foreign-1", router.alice.boundjid.full, router.bob.boundjid.full, offer, jingle.Behaviour())

    async def both_ends():
        return await jingle.both(jingle.initiate(run, router.alice, mine, "ibb"),
                                 jingle.respond(run, router.bob, jingle.sessions_at(router.bob, jingle.Behaviour()),
                                                jingle.Behaviour()))
    reason, (theirs, data) = asyncio.run(both_ends())
    assert reason == "success" and data == offer.data
    assert theirs is not mine and theirs.sid == "foreign-1" and theirs.initiator == "alice@a.test/j"
    accept = next(e for e in router.alice.inbox if e.tag == IQ and e.find(
        "{urn:xmpp:jingle:1}jingle[@action='session-accept']") is not None)
    hashes = accept.findall(".//{urn:xmpp:hashes:2}hash")
    assert [h.text for h in hashes] == [offer.sha256]


def test_an_offer_with_hash_used_gets_its_checksum_after_the_data(jingle):
    """The offer libervia can read (the libervia runner's slixmpp -> libervia J2, J3, J5): <desc/>
    and <hash-used/> in the offer, the sha-256 in a checksum session-info after the data."""
    router = Router()
    run = Run(router)
    behaviour = jingle.Behaviour(hash_used=True, desc=True)
    offer = jingle.Offer.random()
    assert "<hash-used xmlns='urn:xmpp:hashes:2' algo='sha-256'/>" in offer.description(True, True)
    assert "<desc>" in offer.description(True, True) and "<hash " not in offer.description(True, True)
    session = jingle.Session("hu-1", router.alice.boundjid.full, router.bob.boundjid.full, offer, behaviour)

    async def both_ends():
        return await jingle.both(jingle.initiate(run, router.alice, session, "ibb"),
                                 jingle.respond(run, router.bob, jingle.sessions_at(router.bob, behaviour), behaviour))
    reason, (_, data) = asyncio.run(both_ends())
    assert reason == "success" and data == offer.data
    assert any(step.startswith("A's user: checksum session-info (sha-256 ") and step.endswith("-> result")
               for step in session.steps)


def test_the_responder_does_not_try_a_direct_candidate_and_fails_without_a_proxy_one(jingle):
    """Another implementation's initiator (libervia) offers direct candidates too: both of the lab's
    ends share one container, so the responder tries proxy candidates alone and says why."""
    router = Router()
    run = Run(router)
    session = jingle.new_session(run, router.alice, router.bob.boundjid.full)
    session.notes.update(proxy=jingle.Streamhost("proxy.a.test", "127.0.0.1", 1), offer_cid="d1",
                         offer_candidates="<candidate cid='d1' host='127.0.0.1' jid='alice@a.test/j' port='1' "
                                          "priority='8257536' type='direct'/>")

    async def both_ends():
        return await jingle.both(jingle.initiate(run, router.alice, session, "s5b"),
                                 jingle.respond(run, router.bob, jingle.sessions_at(router.bob, session.behaviour,
                                                                                   session), session.behaviour))
    from harness import CaseFailed
    with pytest.raises(CaseFailed, match=r"could reach none of A's SOCKS5 candidates \(candidate-error\): direct "
                                         r"alice@a.test/j at 127.0.0.1:1: not tried \(the lab's ends share one client "
                                         r"container"):
        asyncio.run(both_ends())
