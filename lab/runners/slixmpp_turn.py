"""J4's exchange (lab/cases/turn.py says what it checks and when it passes): A's user asks its
server for external services (XEP-0215), then aioice's TURN client (aiortc's ICE library,
Debian's python3-aioice) allocates two relays on each TURN service with the credentials it
got, binds a channel on each to the other's relay, relays one message each way between
them, and is refused with a credential changed by one character. slixmpp_runner.py keys it
by ID.

Why aioice: a well-kept TURN client (RFC 8656 Allocate with long-term credentials, the 401
challenge, ChannelBind, ChannelData, over udp and tcp), packaged by Debian at every release
the slixmpp stack builds at (0.8.0 at bookworm, 0.10.1 at trixie); its Allocate carries
LIFETIME and REQUESTED-TRANSPORT and nothing else. Why not coturn's turnutils_uclient: with
-c it puts EVEN-PORT into half of its Allocate requests at random (startuclient.c), and
ejabberd's own TURN answers those 420 Unknown Attribute; a verdict must not hang on a coin
the client tosses (docs/jingle.md)."""

from __future__ import annotations

import asyncio
import os

from aioice import stun, turn

from harness import CaseFailed, NotObserved
from slixmpp_client import describe_error, esc
from slixmpp_expect import CaseRun

NS_EXTDISCO = "urn:xmpp:extdisco:2"
# One check takes well under a second when all goes well; a TURN service that never answers
# is given this long (aioice sends each request again after 0.5, 1.5, 3.5 and 7.5 s, RFC 8489
# 6.2.1) before it counts as silent.
CLIENT_LIMIT = 8.0
# How long a relayed message may take to arrive once the sender's channel is bound.
ARRIVAL_LIMIT = 2.0


def q(name: str) -> str:
    return f"{{{NS_EXTDISCO}}}{name}"


class Inbox(asyncio.DatagramProtocol):
    """What aioice hands on from one allocation: each payload and the peer (relay) it came from."""

    def __init__(self):
        self.waiting: dict[bytes, asyncio.Future] = {}

    def expect(self, payload: bytes) -> asyncio.Future:
        self.waiting[payload] = asyncio.get_running_loop().create_future()
        return self.waiting[payload]

    def datagram_received(self, data: bytes, addr: tuple[str, int]):
        waiter = self.waiting.get(data)
        if waiter is not None and not waiter.done():
            waiter.set_result(tuple(addr[:2]))


def error_of(error: stun.TransactionFailed) -> str:
    code = error.response.attributes.get("ERROR-CODE")
    return f"{code[0]} {code[1]}".strip() if code else "an error answer without ERROR-CODE"


async def turn_client(service: dict, username: str, password: str):
    """An aioice TURN client connected to ``service`` (not yet allocated), with an Inbox as its
    receiver. aioice's own create_turn_endpoint does the same, but wraps the client in a
    transport whose sendto neither waits for the channel to be bound nor reports its errors;
    J4 needs both, so it holds the client itself."""
    loop = asyncio.get_running_loop()
    server = (service["host"], int(service["port"]))

    def make(kind):
        return kind(server, username=username, password=password, lifetime=turn.DEFAULT_ALLOCATION_LIFETIME,
                    channel_refresh_time=turn.DEFAULT_CHANNEL_REFRESH_TIME)

    if service["transport"] == "tcp":
        _, client = await loop.create_connection(lambda: make(turn.TurnClientTcpProtocol), *server)
    else:
        _, client = await loop.create_datagram_endpoint(lambda: make(turn.TurnClientUdpProtocol), remote_addr=server)
    client.receiver = Inbox()
    return client


async def release(client):
    """Deletes the allocation (Refresh with LIFETIME 0) if there is one, and closes the socket."""
    if client.relayed_address is not None:
        try:
            await asyncio.wait_for(client.delete(), 1.0)
        except (stun.TransactionError, asyncio.TimeoutError, OSError):
            pass  # the allocation expires by itself on the service
    client.transport.close()


def wrong(password: str) -> str:
    """The password with its first character changed."""
    return ("B" if password[:1] != "B" else "C") + password[1:]


def address(peer: tuple[str, int]) -> str:
    return f"{peer[0]}:{peer[1]}"


async def exchange(service: dict, username: str, password: str, outcome: dict, ends: list):
    """relay_exchange's steps; ``outcome`` and ``ends`` are filled in as they go, so that what
    happened before a timeout is kept."""
    log = outcome["log"]
    for name in ("A", "B"):
        outcome["step"] = f"{name}: Allocate"
        client = await turn_client(service, username, password)
        ends.append(client)
        try:
            relayed = await client.connect()
        except stun.TransactionFailed as error:
            outcome["answered"] = True
            if client.realm is not None:  # aioice answered the 401 challenge, then was refused
                log.append(f"{name}: Allocate: 401 challenge, realm {client.realm!r}")
                log.append(f"{name}: Allocate as {username!r}: error {error_of(error)}")
            else:
                log.append(f"{name}: Allocate: error {error_of(error)}")
            outcome["refused"] = error_of(error)
            return
        outcome["answered"] = True
        challenge = f"realm {client.realm!r} (after a 401 challenge)" if client.realm is not None else "no challenge"
        log.append(f"{name}: Allocate as {username!r}, {challenge}: success, relayed address {address(relayed)}")
        outcome["relays"].append(tuple(relayed[:2]))
    (a, b), (relay_a, relay_b) = ends, outcome["relays"]
    # aioice binds a channel to a peer on the first send_data to it, and a channel is also a
    # permission for the peer (RFC 8656 12). B binds first, so that A's message is let in at
    # B's relay; this first datagram finds no permission at A's relay yet and is not counted.
    outcome["step"] = f"B: ChannelBind to {address(relay_a)}"
    try:
        await b.send_data(b"channel", relay_a)
        log.append(f"B: ChannelBind to {address(relay_a)}: success")
        for (sender, name, peer), (receiver, source) in [((a, "A", relay_b), (b, relay_a)),
                                                         ((b, "B", relay_a), (a, relay_b))]:
            payload = os.urandom(16).hex().encode()
            arrival = receiver.receiver.expect(payload)
            outcome["step"] = f"{name}: send to {address(peer)}" + (" (ChannelBind first)" if sender is a else "")
            await sender.send_data(payload, peer)
            if sender is a:
                log.append(f"A: ChannelBind to {address(peer)}: success")
            outcome["sent"] += 1
            try:
                came_from = await asyncio.wait_for(arrival, ARRIVAL_LIMIT)
            except asyncio.TimeoutError:
                came_from = None
            log.append(f"{name} -> {address(peer)}: "
                       + (f"arrived from {address(came_from)}" if came_from else f"nothing arrived in {ARRIVAL_LIMIT} s"))
            if came_from == source:
                outcome["received"] += 1
    except stun.TransactionFailed as error:
        log.append(f"{outcome['step']}: error {error_of(error)}")
        outcome["refused"] = f"ChannelBind: {error_of(error)}"


async def relay_exchange(service: dict, username: str, password: str, limit: float) -> dict:
    """Two allocations on ``service`` with these credentials, a channel on each to the other's
    relayed address, and one message each way between them (ChannelData). What happened:
    answered (anything came back), relays (the relayed addresses), sent and received
    (messages), refused (the error that ended it), log."""
    outcome = {"answered": False, "relays": [], "sent": 0, "received": 0, "refused": None, "log": [], "step": ""}
    ends = []
    try:
        await asyncio.wait_for(exchange(service, username, password, outcome, ends), limit)
    except (asyncio.TimeoutError, stun.TransactionTimeout):
        outcome["log"].append(f"{outcome['step']}: no answer within {limit:.1f} s")
    except OSError as error:
        outcome["log"].append(f"{service['host']}:{service['port']} ({service['transport']}): {error}")
    finally:
        await asyncio.gather(*(release(client) for client in ends))
    # a 401 challenge answered even where the Allocate with credentials never was
    outcome["answered"] = outcome["answered"] or any(client.nonce is not None for client in ends)
    del outcome["step"]
    return outcome


async def relay_check(run: CaseRun, service: dict, username: str, password: str) -> dict:
    limit = max(1.0, min(CLIENT_LIMIT, run.remaining() - 1))
    outcome = await relay_exchange(service, username, password, limit)
    label = f"TURN {service['transport']} {service['host']}:{service['port']}"
    for line in outcome["log"]:
        run.tracer.add(label, f"(password {'as given' if password == service['password'] else 'changed'})", line)
    return outcome


async def external_services(run: CaseRun) -> str:
    alice = await run.login(run.server, "alice", presence=False)
    domain = run.domain(run.server)
    reply = await run.iq(alice, "get", domain, f"<services xmlns='{NS_EXTDISCO}'/>",
                         f"the answer to {alice.boundjid.bare}'s external services query (XEP-0215)")
    if reply.get("type") == "error":
        raise CaseFailed(f"{domain} refused the external services query (XEP-0215 3.2): {describe_error(reply)}")
    services = reply.find(q("services"))
    listed = [dict(s.attrib) for s in (services.findall(q("service")) if services is not None else [])]
    turn = [s for s in listed if s.get("type") == "turn" and s.get("transport", "udp") in ("udp", "tcp")]
    if not turn:
        raise CaseFailed(f"{domain}'s external services hold no TURN service over udp or tcp: "
                         f"{[(s.get('type'), s.get('host'), s.get('port'), s.get('transport')) for s in listed]}")
    for service in turn:
        service.setdefault("transport", "udp")
        if not service.get("username") or not service.get("password"):
            # XEP-0215 3.3: credentials asked for one service where the list left them out.
            answer = await run.iq(alice, "get", domain,
                                  f"<credentials xmlns='{NS_EXTDISCO}'><service host={esc(service.get('host', ''))} "
                                  f"type='turn' port={esc(service.get('port', ''))}/></credentials>",
                                  f"the answer to the credentials request for {service.get('host')}")
            if answer.get("type") == "error":
                raise CaseFailed(f"{domain} refused credentials for TURN at {service.get('host')}: "
                                 f"{describe_error(answer)}")
            given = answer.find(f"{q('credentials')}/{q('service')}")
            service.update({k: v for k, v in (given.attrib if given is not None else {}).items()
                            if k in ("username", "password", "expires")})
        if not service.get("username") or not service.get("password"):
            raise CaseFailed(f"{domain} gave no credentials for TURN at {service.get('host')}:{service.get('port')}")
        if not service.get("host") or not service.get("port", "").isdigit():
            raise CaseFailed(f"{domain}'s TURN service has no usable host and port: {service}")

    own = run.servers[run.server].get("own_turn")
    # Each service with its credentials, and with a wrong one, all at once.
    checks = [(service, password) for service in turn for password in (service["password"], wrong(service["password"]))]
    outcomes = await asyncio.gather(*(relay_check(run, service, service["username"], password)
                                      for service, password in checks))
    run.evidence["external_services"] = [{k: v for k, v in s.items() if k != "password"} for s in listed]
    return judge(domain, listed, turn, own, [(service, password == service["password"], outcome)
                                             for (service, password), outcome in zip(checks, outcomes)])


def is_own(service: dict, own: dict | None) -> bool:
    return bool(own) and service.get("host") in own["hosts"] and service.get("port") == str(own["port"])


def judge(domain: str, listed: list[dict], turn: list[dict], own: dict | None,
          runs: list[tuple[dict, bool, dict]]) -> str:
    """J4's verdict on every TURN service ``domain`` listed: ``runs`` holds, per service, the
    exchange with the handed-out password (True) and with a changed one (False): (service,
    right password, relay_exchange's outcome). Each service's outcome is in the detail; any
    fail makes the case fail; else a service that never answered makes it an error. ``own``:
    the server's own TURN service (turn-server), which must be among them."""
    said, failed, unobserved = [], [], []
    if own and not any(is_own(service, own) for service in turn):
        failed.append(f"its own TURN service at {' or '.join(own['hosts'])}, port {own['port']} (the kind declares "
                      f"turn-server) is not among them")
    for service, right, outcome in runs:
        whose = " (the server's own)" if is_own(service, own) else ""
        where = f"TURN {service['transport']} {service['host']}:{service['port']}{whose}"
        relays = ", ".join(f"{host}:{port}" for host, port in outcome["relays"])
        sent, received, refused = outcome["sent"], outcome["received"], outcome["refused"]
        user = service["username"]
        if not outcome["answered"]:
            unobserved.append(f"{where} did not answer {user!r}'s Allocate requests "
                              f"({'the handed-out' if right else 'a changed'} password) within {CLIENT_LIMIT} s: "
                              f"{' | '.join(outcome['log'][-2:]) or 'nothing sent'}")
        elif not right:
            if outcome["relays"]:
                failed.append(f"{where} allocated {relays} for {user!r} with a wrong password")
            else:
                said.append(f"{where} refused a changed password ({refused or 'no answer to the second Allocate'})")
        elif len(outcome["relays"]) < 2:
            failed.append(f"{where} refused the credentials {domain} handed out (user {user!r}): "
                          f"{'allocated ' + relays + ', then ' if relays else ''}{refused or 'no answer'}")
        elif refused:
            failed.append(f"{where} allocated {relays} for {user!r}, then refused: {refused}")
        elif sent == 0 or received < sent:
            failed.append(f"{where} allocated {relays} for {user!r}, but of {sent} messages relayed between the two "
                          f"allocations {received} came back")
        else:
            said.append(f"{where} allocated relays {relays} for {user!r} (expires "
                        f"{service.get('expires', 'not said')}) and relayed {received}/{sent} messages between them")
    head = f"{domain} listed {len(listed)} external services ({len(turn)} TURN)"
    if failed:
        raise CaseFailed(f"{head}: " + "; ".join(failed + unobserved) + (f"; and {'; '.join(said)}" if said else ""))
    if unobserved:
        raise NotObserved(f"{head}: " + "; ".join(unobserved) + " (is the TURN service up?)"
                          + (f"; and {'; '.join(said)}" if said else ""))
    return f"{head}: " + "; ".join(said)
