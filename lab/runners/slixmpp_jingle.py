"""Jingle file transfer built from stanzas on slixmpp clients (slixmpp has the stanzas of
XEP-0047, 0065 and 0353 but no Jingle sessions): an initiator and a responder, each driving
one logged-in client (slixmpp_expect.CaseRun's), so that either end can face another
implementation. lab/cases/jingle.py says what each case checks; the case functions at the
end of this file are keyed by ID in slixmpp_runner.py.

XEP-0166 sessions carrying a XEP-0234 file offer (namespace :5, with a XEP-0300 sha-256
hash), over XEP-0261 in-band bytestreams or XEP-0260 SOCKS5 (XEP-0065 proxy, no direct
candidates: both of the lab's ends run in one container, so a direct connection would say
nothing about the servers), XEP-0260's fallback to IBB (transport-replace), and XEP-0353's
propose / proceed before the session.

The responder can play known buggy behaviours (``Behaviour``) so the lab shows how the
other end and the servers react: answering a transport-replace with session-accept (Gajim)
or not at all (Dino). The spec's ``jingle`` field chooses them: {"responder":
{"on_fallback": "session-accept"}, "initiator": {"truncate": true}}; lab runs leave it out.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from harness import CaseFailed, token
from slixmpp_client import IQ, MESSAGE, NS_DISCO_INFO, bare, describe_error, esc

NS_JINGLE = "urn:xmpp:jingle:1"
NS_JINGLE_ERRORS = "urn:xmpp:jingle:errors:1"
NS_FT = "urn:xmpp:jingle:apps:file-transfer:5"
NS_IBB_TRANSPORT = "urn:xmpp:jingle:transports:ibb:1"
NS_S5B_TRANSPORT = "urn:xmpp:jingle:transports:s5b:1"
NS_IBB = "http://jabber.org/protocol/ibb"
NS_BYTESTREAMS = "http://jabber.org/protocol/bytestreams"
NS_HASHES = "urn:xmpp:hashes:2"
NS_JMI = "urn:xmpp:jingle-message:0"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_HINTS = "urn:xmpp:hints"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

FILE_SIZE = 20000       # five IBB blocks, the last one partial
BLOCK_SIZE = 4096
CONTENT = "a-file-offer"
UNREACHABLE_PORT = 1    # J6: A's proxy announced at a port where nothing listens (refused at once)
FALLBACK_ANSWERS = ("transport-accept", "session-accept", "ignore")


def q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


# --- what the two ends agree on -----------------------------------------------------------------

@dataclass
class Offer:
    """The file A's user offers: its bytes, name and the hash the receiver checks."""
    data: bytes
    name: str

    @classmethod
    def random(cls, size: int = FILE_SIZE) -> "Offer":
        return cls(os.urandom(size), f"lab-{token(6)}.bin")

    @property
    def sha256(self) -> str:
        return base64.b64encode(hashlib.sha256(self.data).digest()).decode()

    def description(self, hash_used: bool = False, desc: bool = False) -> str:
        """The offer's <description/>: with its sha-256 <hash/>, or (``hash_used``) with
        <hash-used/> alone, the hash following in a checksum session-info (XEP-0234 8.1);
        ``desc``: with the optional <desc/> too."""
        hashed = (f"<hash-used xmlns='{NS_HASHES}' algo='sha-256'/>" if hash_used else
                  f"<hash xmlns='{NS_HASHES}' algo='sha-256'>{self.sha256}</hash>")
        described = "<desc>a file of the xmpp interop lab</desc>" if desc else ""
        return (f"<description xmlns='{NS_FT}'><file><media-type>application/octet-stream</media-type>"
                f"<name>{self.name}</name>{described}<size>{len(self.data)}</size>{hashed}</file></description>")


@dataclass
class Offered:
    """What a receiver read from a session-initiate's file description."""
    name: str | None
    size: int | None
    hashes: dict  # algo -> base64 value
    hash_used: str | None = None  # XEP-0234 <hash-used/>: the hash comes later, in a checksum session-info


def parse_offer(jingle) -> Offered:
    """The file of a session-initiate's content (CaseFailed when there is none)."""
    content = jingle.find(q(NS_JINGLE, "content"))
    description = content.find(q(NS_FT, "description")) if content is not None else None
    file = description.find(q(NS_FT, "file")) if description is not None else None
    if file is None:
        raise CaseFailed(f"the session-initiate carries no {NS_FT} <description><file/>")
    size = file.findtext(q(NS_FT, "size"))
    used = file.find(q(NS_HASHES, "hash-used"))
    return Offered(file.findtext(q(NS_FT, "name")), int(size) if size and size.isdigit() else None,
                   {h.get("algo"): (h.text or "").strip() for h in file.findall(q(NS_HASHES, "hash"))},
                   used.get("algo") if used is not None else None)


def checksum_of(request_) -> dict:
    """The hashes of a XEP-0234 checksum session-info (algo -> base64 value), {} for another."""
    jingle = request_.find(q(NS_JINGLE, "jingle"))
    checksum = jingle.find(q(NS_FT, "checksum")) if jingle is not None else None
    file = checksum.find(q(NS_FT, "file")) if checksum is not None else None
    return {h.get("algo"): (h.text or "").strip() for h in (file.findall(q(NS_HASHES, "hash")) if file is not None else [])}


def check_received(offered: Offered, data: bytes, how: str) -> str:
    """The receiver's check on receipt (XEP-0234 8, XEP-0300): size and sha-256 as offered."""
    if "sha-256" not in offered.hashes:
        raise CaseFailed(f"the offer has no sha-256 hash to check the file against (hashes: "
                         f"{sorted(offered.hashes) or 'none'})")
    got = base64.b64encode(hashlib.sha256(data).digest()).decode()
    problems = []
    if offered.size is not None and len(data) != offered.size:
        problems.append(f"{len(data)} of {offered.size} bytes")
    if got != offered.hashes["sha-256"]:
        problems.append(f"sha-256 {got}, offered {offered.hashes['sha-256']}")
    if problems:
        raise CaseFailed(f"the file received {how} is not the one offered: {'; '.join(problems)}")
    return f"{len(data)} bytes {how}, sha-256 matches the offer"


def dstaddr(sid: str, requester: str, target: str) -> str:
    """XEP-0065 5.3.2 / XEP-0260 2.2: SHA-1 of the stream ID and the two full JIDs."""
    return hashlib.sha1(f"{sid}{requester}{target}".encode()).hexdigest()


def reason_of(jingle) -> str | None:
    """The condition in a session-terminate's <reason/> (None without one)."""
    reason = jingle.find(q(NS_JINGLE, "reason"))
    if reason is None:
        return None
    return next((child.tag.split("}")[-1] for child in reason if child.tag != q(NS_JINGLE, "text")), "(empty)")


def fallback_reaction(jingle) -> str:
    """What a responder did with a transport-replace, as recorded: its next Jingle action."""
    action = jingle.get("action")
    return {"transport-accept": "transport-accept", "transport-reject": "transport-reject",
            "session-accept": "session-accept (wrong: transport-replace is answered with transport-accept)",
            "session-terminate": f"session-terminate ({reason_of(jingle)})"}.get(action, f"{action} (unexpected)")


# --- how each end behaves -------------------------------------------------------------------------

@dataclass
class Behaviour:
    """How the lab's responder and initiator behave; the defaults follow the XEPs."""
    decline: bool = False              # J3: the responder declines the session
    decline_reason: bool = True        # ... with <decline/> (off: a session-terminate without a reason)
    on_fallback: str = "transport-accept"  # the responder's answer to transport-replace (FALLBACK_ANSWERS)
    truncate: bool = False             # the initiator sends the file without its last block
    block_size: int = BLOCK_SIZE       # the initiator's IBB block size (XEP-0047's usual 4096)
    hash_used: bool = False            # the initiator offers <hash-used/> and sends the hash after the data
    desc: bool = False                 # the initiator's offer carries the optional <desc/> (libervia needs it)

    @classmethod
    def from_spec(cls, spec: dict) -> "Behaviour":
        chosen = {**(spec.get("jingle") or {}).get("responder", {}), **(spec.get("jingle") or {}).get("initiator", {})}
        unknown = sorted(set(chosen) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"jingle: unknown behaviour {', '.join(unknown)} (known: "
                             f"{', '.join(cls.__dataclass_fields__)})")
        behaviour = cls(**chosen)
        if behaviour.on_fallback not in FALLBACK_ANSWERS:
            raise ValueError(f"jingle on_fallback {behaviour.on_fallback!r}: one of {', '.join(FALLBACK_ANSWERS)}")
        return behaviour


@dataclass
class Session:
    """One Jingle session as both ends see it, and the steps for the detail."""
    sid: str
    initiator: str          # full JIDs
    responder: str
    offer: Offer
    behaviour: Behaviour
    steps: list = field(default_factory=list)
    notes: dict = field(default_factory=dict)   # what the ends learnt (streamhost, reaction...)
    description: str | None = None  # the responder's: the offer's <description/> as it came
    content_name: str = CONTENT     # the initiator's name for the content (another implementation's own)

    def step(self, text: str) -> None:
        self.steps.append(text)

    def jingle(self, action: str, inner: str = "", by_initiator: bool = True) -> str:
        who = f" initiator={esc(self.initiator)}" if action == "session-initiate" else ""
        who += f" responder={esc(self.responder)}" if action == "session-accept" else ""
        return f"<jingle xmlns='{NS_JINGLE}' action='{action}' sid={esc(self.sid)}{who}>{inner}</jingle>"

    def content(self, transport: str, description: bool = False) -> str:
        offered = (self.description or self.offer.description(self.behaviour.hash_used, self.behaviour.desc)) if description else ""
        return f"<content creator='initiator' name={esc(self.content_name)} senders='initiator'>{offered}{transport}</content>"


def ibb_transport(sid: str, block_size: int = BLOCK_SIZE) -> str:
    return f"<transport xmlns='{NS_IBB_TRANSPORT}' block-size='{block_size}' sid={esc(sid)}/>"


# --- the stanzas a client gets from its peer, in order --------------------------------------------

def take_over(client) -> None:
    """Jingle and IBB requests to ``client`` are answered by the case, not by slixmpp (which
    answers an IQ nobody handles with feature-not-implemented)."""
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher.base import MatcherBase

    class Ours(MatcherBase):
        def match(self, stanza) -> bool:
            xml = stanza.xml
            return xml.tag == IQ and xml.get("type") in ("get", "set") and any(
                child.tag.startswith((f"{{{NS_JINGLE}}}", f"{{{NS_IBB}}}")) for child in xml)
    client.register_handler(Callback(f"lab jingle {token(4)}", Ours(None), lambda stanza: None))


class Requests:
    """The IQ requests one end receives from its peer for one session (Jingle with the sid,
    IBB with one of the session's stream IDs), one after another."""

    def __init__(self, run, client, session: Session, peer: str):
        self.run, self.client, self.session, self.peer = run, client, session, peer
        self.ibb_sids: set = set()
        self.checksum: dict = {}  # hashes of the initiator's checksum session-info (XEP-0234 hash-used)
        self.cursor = len(client.inbox)

    def ours(self, element) -> bool:
        if element.tag != IQ or element.get("type") != "set" or element.get("from") != self.peer:
            return False
        jingle = element.find(q(NS_JINGLE, "jingle"))
        if jingle is not None:
            return jingle.get("sid") == self.session.sid
        return any(child.tag.startswith(f"{{{NS_IBB}}}") and child.get("sid") in self.ibb_sids for child in element)

    async def next(self, what: str, limit: float | None = None):
        for index in range(self.cursor, len(self.client.inbox)):
            if self.ours(self.client.inbox[index]):
                self.cursor = index + 1
                return self.client.inbox[index]
        element = await self.run.expect(self.client, self.ours, what, since=self.cursor, limit=limit)
        self.cursor = next(i for i in range(self.cursor, len(self.client.inbox)) if self.client.inbox[i] is element) + 1
        return element

    def ack(self, request) -> None:
        self.run.send(self.client, f"<iq type='result' id={esc(request.get('id'))} to={esc(request.get('from'))}/>")

    def refuse(self, request, condition: str, jingle_condition: str | None = None) -> None:
        extra = f"<{jingle_condition} xmlns='{NS_JINGLE_ERRORS}'/>" if jingle_condition else ""
        self.run.send(self.client, f"<iq type='error' id={esc(request.get('id'))} to={esc(request.get('from'))}>"
                                   f"<error type='cancel'><{condition} xmlns='{NS_STANZAS}'/>{extra}</error></iq>")


def action_of(request) -> str:
    jingle = request.find(q(NS_JINGLE, "jingle"))
    if jingle is not None:
        return jingle.get("action")
    return "ibb-" + next(child.tag.split("}")[-1] for child in request if child.tag.startswith(f"{{{NS_IBB}}}"))


async def request(run, client, to: str | None, payload: str, what: str, kind: str = "set"):
    """An IQ whose result the sender needs: CaseFailed naming the error otherwise."""
    reply = await run.iq(client, kind, to, payload, f"the answer to {what}")
    if reply.get("type") == "error":
        raise CaseFailed(f"{what} refused by {reply.get('from')}: {describe_error(reply)}")
    return reply


# --- IBB (XEP-0047 as XEP-0261 carries it) ----------------------------------------------------------

async def ibb_send(run, client, session: Session, sid: str) -> None:
    data = session.offer.data
    size = session.behaviour.block_size
    blocks = [data[i:i + size] for i in range(0, len(data), size)]
    if session.behaviour.truncate:
        blocks = blocks[:-1]
    await request(run, client, session.responder, f"<open xmlns='{NS_IBB}' block-size='{size}' "
                                                  f"sid={esc(sid)} stanza='iq'/>", "the IBB open")
    for seq, block in enumerate(blocks):
        await request(run, client, session.responder, f"<data xmlns='{NS_IBB}' seq='{seq}' sid={esc(sid)}>"
                                                      f"{base64.b64encode(block).decode()}</data>",
                      f"IBB data block {seq}")
    session.step(f"A's user: IBB open, {len(blocks)} blocks of <= {size} B, close"
                 + (" (the last block left out: truncated)" if session.behaviour.truncate else ""))
    await request(run, client, session.responder, f"<close xmlns='{NS_IBB}' sid={esc(sid)}/>", "the IBB close")


async def ibb_receive(requests: Requests, sid: str, first=None) -> bytes:
    """The bytes of IBB stream ``sid``, from its open (``first``, or the next request) to its
    close; every request acknowledged, blocks in sequence."""
    requests.ibb_sids.add(sid)
    received, seq = bytearray(), 0
    request_ = first or await requests.next(f"the IBB open of stream {sid}")
    while True:
        action = action_of(request_)
        ibb = next((c for c in request_ if c.tag.startswith(f"{{{NS_IBB}}}")), None)
        if action == "session-info":  # e.g. XEP-0234's checksum, sent while the stream is open
            requests.ack(request_)
            requests.checksum.update(checksum_of(request_))
            request_ = await requests.next(f"the rest of IBB stream {sid}")
            continue
        if action == "session-terminate":
            requests.ack(request_)
            raise CaseFailed(f"the initiator ended the session ({reason_of(request_.find(q(NS_JINGLE, 'jingle')))}) "
                             f"before IBB stream {sid} closed")
        if ibb is None or ibb.get("sid") != sid:
            raise CaseFailed(f"expected IBB stream {sid}, got {action}")
        if action == "ibb-open" and seq == 0 and not received:
            requests.ack(request_)
        elif action == "ibb-data":
            if ibb.get("seq") != str(seq):
                requests.refuse(request_, "unexpected-request")
                raise CaseFailed(f"IBB block seq {ibb.get('seq')!r} where {seq} was due")
            try:
                received += base64.b64decode(ibb.text or "", validate=True)
            except ValueError:
                requests.refuse(request_, "bad-request")
                raise CaseFailed(f"IBB block {seq} is not base64") from None
            requests.ack(request_)
            seq += 1
        elif action == "ibb-close":
            requests.ack(request_)
            return bytes(received)
        else:
            raise CaseFailed(f"{action} inside IBB stream {sid}")
        request_ = await requests.next(f"IBB block {seq} or the close of stream {sid}")


# --- SOCKS5 (XEP-0065 through a proxy, as XEP-0260 uses it) ----------------------------------------

@dataclass
class Streamhost:
    jid: str
    host: str
    port: int


async def find_proxy(run, client) -> tuple[Streamhost, str]:
    """The SOCKS5 proxy of ``client``'s server, found as XEP-0065 4 says: disco#items of the
    domain, disco#info of each item for identity proxy/bytestreams, its bytestreams query."""
    domain = client.boundjid.host
    items = await request(run, client, domain, f"<query xmlns='{NS_DISCO_ITEMS}'/>", f"disco#items of {domain}",
                          kind="get")
    items = items.find(q(NS_DISCO_ITEMS, "query"))
    jids = [item.get("jid") for item in (items if items is not None else [])]
    for jid in jids:
        info = await run.iq(client, "get", jid, f"<query xmlns='{NS_DISCO_INFO}'/>", f"disco#info of {jid}")
        identities = info.findall(f"{q(NS_DISCO_INFO, 'query')}/{q(NS_DISCO_INFO, 'identity')}")
        if any(i.get("category") == "proxy" and i.get("type") == "bytestreams" for i in identities):
            reply = await run.iq(client, "get", jid, f"<query xmlns='{NS_BYTESTREAMS}'/>",
                                 f"the streamhost of {jid}")
            if reply.get("type") == "error":
                raise CaseFailed(f"{jid} (proxy/bytestreams) refused its streamhost to {client.boundjid.full}: "
                                 f"{describe_error(reply)}")
            host = reply.find(f"{q(NS_BYTESTREAMS, 'query')}/{q(NS_BYTESTREAMS, 'streamhost')}")
            if host is None or not host.get("host") or not (host.get("port") or "").isdigit():
                raise CaseFailed(f"{jid}'s bytestreams result has no streamhost with host and port")
            return Streamhost(host.get("jid") or jid, host.get("host"), int(host.get("port"))), \
                f"{jid} found in disco#items of {domain} (identity proxy/bytestreams)"
    raise CaseFailed(f"no proxy/bytestreams service among the disco#items of {domain} ({', '.join(jids) or 'none'})")


async def socks5_connect(host: str, port: int, address: str, limit: float):
    """A SOCKS5 connection (RFC 1928, no authentication, CONNECT to the domain name
    ``address``) through which the proxy relays once activated: (reader, writer, peer)."""
    async def connect():
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"\x05\x01\x00")
        if await reader.readexactly(2) != b"\x05\x00":
            raise ConnectionError("the SOCKS5 server refused the no-authentication method")
        name = address.encode()
        writer.write(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + b"\x00\x00")
        head = await reader.readexactly(4)
        if head[:2] != b"\x05\x00":
            raise ConnectionError(f"SOCKS5 CONNECT answered with reply code {head[1]}")
        kind = head[3]
        await reader.readexactly({1: 4, 4: 16}.get(kind, 0) or (await reader.readexactly(1))[0])
        await reader.readexactly(2)
        return reader, writer, writer.get_extra_info("peername")
    return await asyncio.wait_for(connect(), limit)


def s5b_candidate(cid: str, host: Streamhost, port: int | None = None) -> str:
    # XEP-0260 2.2: priority = type preference (proxy: 10) << 16 + a local preference
    return (f"<candidate cid={esc(cid)} host={esc(host.host)} jid={esc(host.jid)} port='{port or host.port}' "
            f"priority='{10 << 16}' type='proxy'/>")


# --- the responder --------------------------------------------------------------------------------

CHECKSUM_WAIT = 6.0  # seconds for a checksum the offer's hash-used promised, after the data


async def checksum_after(run, requests: Requests, session: Session, offered: Offered) -> None:
    """XEP-0234 8.1: an offer with <hash-used/> gets its hash in a checksum session-info, here
    after the data (or already during it); taken into ``offered``, or CaseFailed when none came."""
    if offered.hash_used not in requests.checksum:
        try:
            info = await requests.next(f"the checksum the offer's hash-used ({offered.hash_used}) promised",
                                       limit=min(CHECKSUM_WAIT, max(0.5, run.remaining())))
        except CaseFailed:
            raise CaseFailed(f"the file arrived, but the offer named only hash-used {offered.hash_used} and no "
                             f"checksum session-info came within {CHECKSUM_WAIT:g}s: nothing to check it against") from None
        requests.ack(info)
        requests.checksum.update(checksum_of(info))
    offered.hashes.update(requests.checksum)
    session.step(f"A's user: hash-used {offered.hash_used} in the offer, the hash in a checksum session-info")


async def respond(run, bob, session_of, behaviour: Behaviour) -> tuple[Session, bytes | None]:
    """B's user: waits for a session-initiate (``session_of(element)`` names the session it
    is about: the Session, or None for another), answers it as ``behaviour`` says, receives
    the file over whichever transport the initiator opens and checks it on receipt."""
    take_over(bob)
    mark = len(bob.inbox)
    initiate = await run.expect(bob, lambda e: e.tag == IQ and e.get("type") == "set" and session_of(e) is not None
                                and e.find(q(NS_JINGLE, "jingle")).get("action") == "session-initiate",
                                "the session-initiate at B's user", since=mark)
    session = session_of(initiate)
    requests = Requests(run, bob, session, initiate.get("from"))
    requests.cursor = bob.inbox.index(initiate) + 1
    jingle = initiate.find(q(NS_JINGLE, "jingle"))
    requests.ack(initiate)
    offered = parse_offer(jingle)
    content = jingle.find(q(NS_JINGLE, "content"))
    session.content_name = content.get("name") or CONTENT  # XEP-0166: the creator names the content
    session.description = ET.tostring(jingle.find(f"{q(NS_JINGLE, 'content')}/{q(NS_FT, 'description')}"),
                                      encoding="unicode")  # (namespace prefixes of its own: the same XML)
    transport = jingle.find(f"{q(NS_JINGLE, 'content')}/*[@sid]")
    if behaviour.decline:
        reason = "<reason><decline/><text>lab: declined</text></reason>" if behaviour.decline_reason else ""
        await request(run, bob, session.initiator, session.jingle("session-terminate", reason), "the decline")
        return session, None
    if transport is None:
        raise CaseFailed("the session-initiate's content has no transport with a sid")
    if transport.tag == q(NS_IBB_TRANSPORT, "transport"):
        await request(run, bob, session.initiator,
                      session.jingle("session-accept", session.content(ibb_transport(
                          transport.get("sid"), int(transport.get("block-size") or BLOCK_SIZE)), True)),
                      "the session-accept (IBB)")
        data = await ibb_receive(requests, transport.get("sid"))
        how = "over IBB"
    elif transport.tag == q(NS_S5B_TRANSPORT, "transport"):
        data, how = await respond_s5b(run, bob, session, requests, transport, offered.size)
    else:
        raise CaseFailed(f"the session-initiate offers transport {transport.tag}, neither IBB nor SOCKS5")
    if offered.hash_used and offered.hash_used not in offered.hashes:
        await checksum_after(run, requests, session, offered)
    try:
        checked = check_received(offered, data, how)
    except CaseFailed as failure:
        await run.iq(bob, "set", session.initiator, session.jingle(
            "session-terminate", "<reason><media-error/><text>file differs from its offer</text></reason>"),
            "the answer to the session-terminate (media-error)")
        raise failure from None
    session.step(f"B's user: {checked}")
    await request(run, bob, session.initiator, session.jingle("session-terminate", "<reason><success/></reason>"),
                  "the session-terminate (success)")
    return session, data


async def respond_s5b(run, bob, session: Session, requests: Requests, transport,
                      size: int | None) -> tuple[bytes, str]:
    """SOCKS5 at B's end: accept with no candidates of its own, try the initiator's in order
    of priority, say which was used (or candidate-error), then read the file once the proxy
    stream is activated; or follow a transport-replace to IBB."""
    sid = transport.get("sid")
    candidates = sorted(transport.findall(q(NS_S5B_TRANSPORT, "candidate")),
                        key=lambda c: -int(c.get("priority") or 0))
    await request(run, bob, session.initiator, session.jingle("session-accept", session.content(
        f"<transport xmlns='{NS_S5B_TRANSPORT}' sid={esc(sid)} mode='tcp' "
        f"dstaddr='{dstaddr(sid, session.responder, session.initiator)}'/>", True)), "the session-accept (SOCKS5)")
    address = dstaddr(sid, session.initiator, session.responder)
    stream, attempts = None, []
    for candidate in candidates:
        host, port = candidate.get("host"), int(candidate.get("port") or 0)
        if candidate.get("type", "direct") != "proxy":  # XEP-0260: a missing type is direct
            attempts.append(f"{candidate.get('type', 'direct')} {candidate.get('jid')} at {host}:{port}: not tried "
                            f"(the lab's ends share one client container: a direct connection would bypass the "
                            f"servers and their proxies)")
            continue
        try:
            reader, writer, peer = await socks5_connect(host, port, address, min(5.0, run.remaining()))
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError) as error:
            attempts.append(f"{candidate.get('type')} {candidate.get('jid')} at {host}:{port}: "
                            f"{type(error).__name__}: {error or 'timed out'}")
            continue
        stream = (candidate, reader, writer)
        session.notes["streamhost"] = {"jid": candidate.get("jid"), "host": host, "port": port, "address": peer[0],
                                       "type": candidate.get("type")}
        attempts.append(f"{candidate.get('type')} {candidate.get('jid')} at {host}:{port} ({peer[0]}): connected")
        break
    session.notes["candidates_tried"] = attempts
    used = (f"<candidate-used cid={esc(stream[0].get('cid'))}/>" if stream else "<candidate-error/>")
    await request(run, bob, session.initiator, session.jingle("transport-info", session.content(
        f"<transport xmlns='{NS_S5B_TRANSPORT}' sid={esc(sid)}>{used}</transport>")),
        "B's transport-info " + ("(candidate-used)" if stream else "(candidate-error)"))
    session.step(f"B's user: {'; '.join(attempts) or 'no candidates offered'}")
    try:
        while True:
            got = await requests.next("the initiator's next step (transport-info, transport-replace)")
            action, jingle = action_of(got), got.find(q(NS_JINGLE, "jingle"))
            if action == "transport-info":
                requests.ack(got)
                info = jingle.find(f"{q(NS_JINGLE, 'content')}/{q(NS_S5B_TRANSPORT, 'transport')}")
                said = next((child.tag.split("}")[-1] for child in (info if info is not None else [])), None)
                if said in ("proxy-error", "candidate-error", "candidate-used"):
                    session.step(f"A's user: transport-info {said}" + (
                        " (it could not activate the proxy B's user connected to)" if said == "proxy-error" else ""))
                if info is not None and info.find(q(NS_S5B_TRANSPORT, "activated")) is not None and stream:
                    data = await read_stream(run, stream[1], size)
                    return data, f"over SOCKS5 through {stream[0].get('jid')}"
            elif action == "transport-replace":
                return await answer_fallback(run, bob, session, requests, got), "over IBB after transport-replace"
            elif action == "session-terminate":
                requests.ack(got)
                raise CaseFailed(f"the initiator ended the session ({reason_of(jingle)}) before the file came")
            else:
                requests.refuse(got, "unexpected-request", "out-of-order")
                raise CaseFailed(f"unexpected {action} from the initiator during SOCKS5 negotiation")
    finally:
        if stream:
            stream[2].close()


async def read_stream(run, reader, size: int | None) -> bytes:
    """What comes through the activated stream until ``size`` bytes (None: unknown) or its end."""
    data = bytearray()
    while size is None or len(data) < size:
        chunk = await run.within(reader.read(65536), "the file's bytes through the SOCKS5 stream")
        if not chunk:
            break
        data += chunk
    return bytes(data)


async def answer_fallback(run, bob, session: Session, requests: Requests, replace) -> bytes:
    """B's answer to a transport-replace, as its behaviour says; then the IBB stream."""
    transport = replace.find(f"{q(NS_JINGLE, 'jingle')}/{q(NS_JINGLE, 'content')}/{q(NS_IBB_TRANSPORT, 'transport')}")
    if transport is None:
        requests.refuse(replace, "feature-not-implemented")
        raise CaseFailed("transport-replace to a transport other than IBB")
    requests.ack(replace)
    sid, block_size = transport.get("sid"), int(transport.get("block-size") or BLOCK_SIZE)
    answer = session.behaviour.on_fallback
    if answer == "transport-accept":
        await request(run, bob, session.initiator, session.jingle("transport-accept", session.content(
            ibb_transport(sid, block_size))), "the transport-accept")
    elif answer == "session-accept":  # the known buggy answer (Gajim)
        await run.iq(bob, "set", session.initiator, session.jingle("session-accept", session.content(
            ibb_transport(sid, block_size), True)), "the answer to the (wrong) session-accept")
    return await ibb_receive(requests, sid)


# --- the initiator --------------------------------------------------------------------------------

async def initiate(run, alice, session: Session, transport: str, fallback_to_ibb: bool = False) -> str:
    """A's user: session-initiate with ``transport`` ("ibb", or "s5b" with its candidates in
    session.notes["offer_candidates"]), then the transfer as the responder's answers lead;
    returns the reason of the responder's session-terminate."""
    take_over(alice)
    requests = Requests(run, alice, session, session.responder)
    if transport == "ibb":
        ibb_sid = f"ibb-{token(8)}"
        offer_transport = ibb_transport(ibb_sid, session.behaviour.block_size)
    else:
        s5b_sid = f"s5b-{token(8)}"
        offer_transport = (f"<transport xmlns='{NS_S5B_TRANSPORT}' sid={esc(s5b_sid)} mode='tcp' "
                           f"dstaddr='{dstaddr(s5b_sid, session.initiator, session.responder)}'>"
                           f"{session.notes['offer_candidates']}</transport>")
    await request(run, alice, session.responder, session.jingle("session-initiate", session.content(
        offer_transport, True)), "the session-initiate")
    session.step(f"A's user: session-initiate ({'IBB' if transport == 'ibb' else 'SOCKS5'}, {len(session.offer.data)} "
                 f"B, {'hash-used ' if session.behaviour.hash_used else ''}sha-256) -> result")
    answer = await requests.next("B's answer to the session-initiate (session-accept or session-terminate)")
    action, jingle = action_of(answer), answer.find(q(NS_JINGLE, "jingle"))
    if action == "session-terminate":
        requests.ack(answer)
        return reason_of(jingle) or "no reason"
    if action != "session-accept":
        requests.refuse(answer, "unexpected-request", "out-of-order")
        raise CaseFailed(f"B's user answered the session-initiate with {action}, not session-accept")
    requests.ack(answer)
    session.step("B's user: session-accept -> result")
    if transport == "ibb":
        await ibb_send(run, alice, session, ibb_sid)
    else:
        await initiate_s5b(run, alice, session, requests, s5b_sid, fallback_to_ibb)
    if session.behaviour.hash_used:
        await send_checksum(run, alice, session)
    end = await requests.next("B's session-terminate after the transfer")
    if action_of(end) != "session-terminate":
        requests.refuse(end, "unexpected-request", "out-of-order")
        raise CaseFailed(f"after the transfer B's user sent {action_of(end)}, not session-terminate")
    requests.ack(end)
    return reason_of(end.find(q(NS_JINGLE, "jingle"))) or "no reason"


async def send_checksum(run, alice, session: Session) -> None:
    """XEP-0234 8.1: the hash the offer's <hash-used/> promised, in a checksum session-info
    after the data; the answer (a result or an error) is a step of the detail."""
    wait = min(CHECKSUM_WAIT, max(0.5, run.remaining() - 4.0))  # the responder's end of the session follows
    try:
        reply = await run.iq(alice, "set", session.responder, session.jingle("session-info", (
            f"<checksum xmlns='{NS_FT}' creator='initiator' name={esc(session.content_name)}><file>"
            f"<hash xmlns='{NS_HASHES}' algo='sha-256'>{session.offer.sha256}</hash></file></checksum>")),
            "the answer to the checksum session-info", limit=wait)
    except CaseFailed:
        answer = f"no answer within {wait:g} s"
    else:
        answer = "result" if reply.get("type") == "result" else f"error {describe_error(reply)}"
    session.step(f"A's user: checksum session-info (sha-256 {session.offer.sha256}) -> {answer}")


async def initiate_s5b(run, alice, session: Session, requests: Requests, sid: str, fallback_to_ibb: bool) -> None:
    """A's SOCKS5 part: candidate-error (the responder offered none), then either the
    responder's candidate-used (connect to the proxy too, activate, transport-info activated,
    send the file) or its candidate-error (transport-replace to IBB when asked to fall back)."""
    # Not waited for before B's own transport-info: B acknowledges A's only once A has
    # acknowledged B's (each end answers requests in the order they come).
    own_error = asyncio.ensure_future(request(run, alice, session.responder, session.jingle(
        "transport-info", session.content(f"<transport xmlns='{NS_S5B_TRANSPORT}' sid={esc(sid)}><candidate-error/>"
                                          f"</transport>")), "A's transport-info (candidate-error)"))
    try:
        info = await requests.next("B's transport-info (candidate-used or candidate-error)")
    except CaseFailed:
        own_error.cancel()
        raise
    transport = info.find(f"{q(NS_JINGLE, 'jingle')}/{q(NS_JINGLE, 'content')}/{q(NS_S5B_TRANSPORT, 'transport')}")
    if action_of(info) != "transport-info" or transport is None:
        requests.refuse(info, "unexpected-request", "out-of-order")
        raise CaseFailed(f"B's user sent {action_of(info)} where a SOCKS5 transport-info was due")
    requests.ack(info)
    await own_error
    used = transport.find(q(NS_S5B_TRANSPORT, "candidate-used"))
    if used is None:
        tried = "; ".join(session.notes.get("candidates_tried", [])) or "(what it tried is not known)"
        if not fallback_to_ibb:
            raise CaseFailed(f"B's user could reach none of A's SOCKS5 candidates (candidate-error): {tried}")
        session.step(f"B's user: candidate-error ({tried})")
        await fallback(run, alice, session, requests)
        return
    host = session.notes["proxy"]
    if used.get("cid") != session.notes["offer_cid"]:
        raise CaseFailed(f"B's user used candidate {used.get('cid')!r}, which A's user never offered")
    try:
        _, writer, peer = await socks5_connect(host.host, host.port, dstaddr(sid, session.initiator,
                                                                             session.responder),
                                               min(5.0, run.remaining()))
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError) as error:
        raise CaseFailed(f"B's user connected to {host.jid}, but A's user could not, to activate it: "
                         f"{type(error).__name__}: {error or 'timed out'}") from None
    try:
        await request(run, alice, host.jid, f"<query xmlns='{NS_BYTESTREAMS}' sid={esc(sid)}>"
                                            f"<activate>{session.responder}</activate></query>",
                      f"the activation of the stream at {host.jid}")
        await request(run, alice, session.responder, session.jingle("transport-info", session.content(
            f"<transport xmlns='{NS_S5B_TRANSPORT}' sid={esc(sid)}><activated cid={esc(used.get('cid'))}/>"
            f"</transport>")), "A's transport-info (activated)")
        data = session.offer.data[:-1000] if session.behaviour.truncate else session.offer.data
        writer.write(data)
        await writer.drain()
        session.step(f"A's user: connected to {host.jid} at {host.host}:{host.port} ({peer[0]}), activated it, "
                     f"sent {len(data)} B through it")
    finally:
        writer.close()


async def fallback(run, alice, session: Session, requests: Requests) -> None:
    """A's transport-replace to IBB and B's reaction to it, recorded in session.notes["reaction"];
    the file then goes over IBB. A wrong session-accept is refused as out of order (XEP-0166
    7.2.15) but the transfer is tried anyway, to show whether the file still arrives."""
    sid = f"ibb-{token(8)}"
    requests.ibb_sids.add(sid)
    await request(run, alice, session.responder, session.jingle("transport-replace", session.content(
        ibb_transport(sid, session.behaviour.block_size))), "the transport-replace to IBB")
    session.step("A's user: transport-replace (IBB) -> result")
    wait = max(0.5, run.remaining() - 4.0)  # what is left of the case, less the time to close
    try:
        answer = await requests.next("B's answer to the transport-replace", limit=wait)
    except CaseFailed:
        session.notes["reaction"] = "ignored"
        await run.iq(alice, "set", session.responder, session.jingle(
            "session-terminate", "<reason><failed-transport/></reason>"), "the answer to A's session-terminate",
            limit=min(2.0, run.remaining()))
        raise CaseFailed(f"B's user acknowledged the transport-replace but never answered it (no transport-accept "
                         f"or transport-reject within {wait:.0f} s): the fallback stalled") from None
    reaction = fallback_reaction(answer.find(q(NS_JINGLE, "jingle")))
    session.notes["reaction"] = reaction.split(" ")[0]
    session.step(f"B's reaction: {reaction}")
    if action_of(answer) == "transport-accept":
        requests.ack(answer)
    elif action_of(answer) == "session-accept":
        requests.refuse(answer, "unexpected-request", "out-of-order")
        session.step("A's user refused it (unexpected-request, out-of-order) and sends over IBB anyway")
    else:
        requests.ack(answer)
        raise CaseFailed(f"B's user answered the transport-replace with {reaction}")
    await ibb_send(run, alice, session, sid)


# --- XEP-0353 -------------------------------------------------------------------------------------

async def propose(run, alice, bob_bare: str, sid: str) -> str:
    """A's propose to B's bare JID; the full JID of B's resource that proceeded."""
    message_id = f"lab-{token(10)}"
    run.send(alice, f"<message to={esc(bob_bare)} type='chat' id={esc(message_id)}><propose xmlns='{NS_JMI}' "
                    f"id={esc(sid)}><description xmlns='{NS_FT}'/></propose><store xmlns='{NS_HINTS}'/></message>")
    _, proceed = await run.expect_first(
        (alice, lambda e: e.tag == MESSAGE and bare(e.get("from")) == bob_bare and any(
            c.tag in (q(NS_JMI, "proceed"), q(NS_JMI, "reject")) and c.get("id") == sid for c in e)),
        (alice, run.bounced(alice, message_id)), what=f"B's proceed for propose {sid}")
    if proceed.get("type") == "error":
        raise CaseFailed(f"the propose to {bob_bare} came back as an error: {describe_error(proceed)}")
    if proceed.find(q(NS_JMI, "proceed")) is None:
        raise CaseFailed(f"{proceed.get('from')} rejected the propose")
    if "/" not in (proceed.get("from") or ""):
        raise CaseFailed(f"the proceed came from {proceed.get('from')!r}, not a full JID to open the session with")
    return proceed.get("from")


async def answer_propose(run, bob, alice_bare: str, sid: str) -> None:
    """B's resource: the propose arrives (at the bare JID), B answers proceed to its sender."""
    got = await run.expect(bob, lambda e: e.tag == MESSAGE and bare(e.get("from")) == alice_bare
                           and any(c.tag == q(NS_JMI, "propose") and c.get("id") == sid for c in e),
                           f"the propose {sid} at {bob.boundjid.full}")
    run.send(bob, f"<message to={esc(got.get('from'))} type='chat' id='lab-{token(10)}'>"
                  f"<proceed xmlns='{NS_JMI}' id={esc(sid)}/><store xmlns='{NS_HINTS}'/></message>")


# --- the cases ------------------------------------------------------------------------------------

async def both(*coroutines):
    """The coroutines side by side (the initiator's first); the first failure cancels the
    others and is raised, the initiator's where it fails too within 3 s: it knows what it
    asked for (a responder left waiting only sees the session end)."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        if not tasks[0].done() and any(t.done() and t.exception() for t in tasks):
            await asyncio.wait([tasks[0]], timeout=3)
        for task in tasks:
            if task.done() and task.exception():
                raise task.exception()
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()


def sessions_at(bob, behaviour: Behaviour, known: Session | None = None):
    """``respond``'s session_of: ``known``, the session the lab's own initiator opened (both
    ends then share what they learn), or, without one, the Session of the first
    session-initiate that comes from whoever sends it (another implementation's initiator:
    its file is known from the offer)."""
    sessions: dict = {known.sid: known} if known else {}

    def session_of(element):
        jingle = element.find(q(NS_JINGLE, "jingle"))
        if jingle is None or element.get("type") != "set":
            return None
        sid = jingle.get("sid")
        if not sessions and jingle.get("action") == "session-initiate":
            sessions[sid] = Session(sid, element.get("from"), bob.boundjid.full, Offer(b"", "(the initiator's)"),
                                    behaviour)
        return sessions.get(sid)
    session_of.sessions = sessions  # for a caller whose respond() failed: what it learnt
    return session_of


async def transfer(run, alice, bob, session: Session, transport: str, fallback_to_ibb: bool = False) -> str:
    """The whole exchange between two logged-in clients; the steps for the detail."""
    started = time.monotonic()
    reason, (responded, data) = await both(initiate(run, alice, session, transport, fallback_to_ibb),
                                           respond(run, bob, sessions_at(bob, session.behaviour, session), session.behaviour))
    if reason != "success":
        raise CaseFailed(f"the session ended with {reason}, not success")
    run.evidence.update(sid=session.sid, bytes=len(data or b""), sha256=session.offer.sha256,
                        **{k: v for k, v in session.notes.items() if k in ("streamhost", "reaction",
                                                                            "candidates_tried")})
    return f"{'; '.join(session.steps)}; session-terminate success, in {(time.monotonic() - started) * 1000:.0f} ms"


def new_session(run, alice, bob_full: str, sid: str | None = None, behaviour: Behaviour | None = None) -> Session:
    return Session(sid or f"lab-{token(12)}", alice.boundjid.full, bob_full, Offer.random(),
                   behaviour or Behaviour.from_spec(run.spec))


# The case functions. ``behaviour``: how the lab's ends behave (a case of your own may pass
# one, e.g. Behaviour(on_fallback="session-accept")); None: as the spec's jingle field says.

async def j1_ibb(run, behaviour: Behaviour | None = None) -> str:
    alice = await run.login(run.server, "alice")
    bob = await run.login(run.target, "bob")
    return await transfer(run, alice, bob, new_session(run, alice, bob.boundjid.full, behaviour=behaviour), "ibb")


async def offer_proxy(run, alice, session: Session, port: int | None = None) -> str:
    host, how = await find_proxy(run, alice)
    cid = f"c-{token(6)}"
    session.notes.update(proxy=host, offer_cid=cid, offer_candidates=s5b_candidate(cid, host, port))
    return f"A's proxy {host.jid} at {host.host}:{port or host.port} ({how})"


async def j2_socks5(run, behaviour: Behaviour | None = None) -> str:
    alice = await run.login(run.server, "alice")
    bob = await run.login(run.target, "bob")
    session = new_session(run, alice, bob.boundjid.full, behaviour=behaviour)
    found = await offer_proxy(run, alice, session)
    session.step(f"{found}, offered as the only candidate (no direct candidates: both users run in the lab's "
                 f"one client container, a direct connection would bypass the servers)")
    detail = await transfer(run, alice, bob, session, "s5b")
    used = session.notes.get("streamhost")
    if not used:
        raise CaseFailed(f"the file arrived, but not through a SOCKS5 streamhost: {detail}")
    return f"streamhost used: {used['jid']} at {used['host']}:{used['port']} ({used['address']}); {detail}"


async def j3_decline(run, behaviour: Behaviour | None = None) -> str:
    alice = await run.login(run.server, "alice")
    bob = await run.login(run.target, "bob")
    session = new_session(run, alice, bob.boundjid.full, behaviour=behaviour)
    behaviour = Behaviour(**{**session.behaviour.__dict__, "decline": True})
    reason, (responded, data) = await both(initiate(run, alice, session, "ibb"),
                                           respond(run, bob, sessions_at(bob, behaviour, session), behaviour))
    run.evidence["reason"] = reason
    if reason != "decline":
        raise CaseFailed(f"A's user got session-terminate with reason {reason!r}, not <decline/>")
    return f"{'; '.join(session.steps)}; A's user got session-terminate with <decline/> from {session.responder}"


async def j5_propose(run, behaviour: Behaviour | None = None) -> str:
    """B's user available at the default priority, as the other cases' users: a message to
    the bare JID goes to every resource of the top priority, so to this one too (a higher
    priority would take the bare-JID messages of other cases running beside it)."""
    alice = await run.login(run.server, "alice")
    bob = await run.login(run.target, "bob")
    sid = f"lab-{token(12)}"
    started = time.monotonic()
    full, _ = await both(propose(run, alice, bob.boundjid.bare, sid),
                         answer_propose(run, bob, alice.boundjid.bare, sid))
    if full != bob.boundjid.full:
        raise CaseFailed(f"the proceed came from {full}, not the resource that got the propose")
    took = (time.monotonic() - started) * 1000
    proposed = f"propose {sid} to {bob.boundjid.bare} -> proceed from {full} in {took:.0f} ms"
    session = new_session(run, alice, full, sid, behaviour)
    detail = await transfer(run, alice, bob, session, "ibb")
    return f"{proposed}; session {sid}: {detail}"


async def j6_fallback(run, behaviour: Behaviour | None = None) -> str:
    alice = await run.login(run.server, "alice")
    bob = await run.login(run.target, "bob")
    session = new_session(run, alice, bob.boundjid.full, behaviour=behaviour)
    found = await offer_proxy(run, alice, session, port=UNREACHABLE_PORT)
    session.step(f"{found}, offered at port {UNREACHABLE_PORT} where nothing listens (the lab's unreachable "
                 f"candidate)")
    detail = await transfer(run, alice, bob, session, "s5b", fallback_to_ibb=True)
    reaction = session.notes.get("reaction")
    if reaction != "transport-accept":
        raise CaseFailed(f"the file arrived over IBB, but B's user answered the transport-replace with {reaction}, "
                         f"not transport-accept (XEP-0166 7.2.15): {detail}")
    return f"B's reaction: transport-accept; {detail}"
