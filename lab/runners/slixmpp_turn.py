"""J4's exchange (lab/cases/turn.py says what it checks and when it passes): A's user asks its
server for external services (XEP-0215), then coturn's own TURN client (turnutils_uclient,
in this image) allocates relays with the credentials it got, relays data between them, and
is refused with a credential changed by one character. slixmpp_runner.py keys it by ID."""

from __future__ import annotations

import asyncio
import re
import subprocess

from harness import CaseFailed, NotObserved, clip
from slixmpp_client import describe_error, esc
from slixmpp_expect import CaseRun

NS_EXTDISCO = "urn:xmpp:extdisco:2"
# turnutils_uclient runs for about 6 s when all goes well (its send loop); a TURN service
# that never answers leaves it sending allocate requests until it is killed.
CLIENT_LIMIT = 15.0


def q(name: str) -> str:
    return f"{{{NS_EXTDISCO}}}{name}"


async def turn_client(run: CaseRun, service: dict, username: str, password: str) -> tuple[int | None, str]:
    """turnutils_uclient against ``service`` with these credentials: two allocations of its
    own (-y, client to client) relaying one message each way; (exit code or None when it was
    stopped at CLIENT_LIMIT, its output)."""
    command = ["turnutils_uclient", "-v", "-y", "-c", "-n", "1", "-m", "1", "-u", username, "-w", password,
               "-p", str(service["port"]), *(["-t"] if service["transport"] == "tcp" else []), service["host"]]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    with run.lock:
        run.processes.add(process)
    limit = max(1.0, min(CLIENT_LIMIT, run.remaining() - 1))
    try:
        out, _ = await asyncio.get_running_loop().run_in_executor(None, lambda: _communicate(process, limit))
    finally:
        with run.lock:
            run.processes.discard(process)
    text = out.decode(errors="replace")
    run.trace.append(f"$ {' '.join(command[:-1])} {service['host']}  (password {'as given' if password else 'empty'})\n"
                     + clip(text, 3000))
    return process.returncode, text


def _communicate(process, limit: float):
    try:
        return process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        process.returncode = None
        return out, err


def relayed(text: str) -> tuple[list[str], int, int]:
    """The relay addresses the client got, and the messages it sent and got back through them."""
    addresses = re.findall(r"Received relay addr: (\S+)", text)
    totals = re.findall(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", text)
    sent, received = (int(totals[-1][0]), int(totals[-1][1])) if totals else (0, 0)
    return addresses, sent, received


def wrong(password: str) -> str:
    """The password with its first character changed."""
    return ("B" if password[:1] != "B" else "C") + password[1:]


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

    # Each service with its credentials, and with a wrong one, all at once.
    checks = [(service, password) for service in turn for password in (service["password"], wrong(service["password"]))]
    outcomes = await asyncio.gather(*(turn_client(run, service, service["username"], password)
                                      for service, password in checks))
    said = []
    for (service, password), (code, text) in zip(checks, outcomes):
        where = f"TURN {service['transport']} {service['host']}:{service['port']}"
        addresses, sent, received = relayed(text)
        answered = "response received" in text
        if password == service["password"]:
            if not addresses:
                if not answered:
                    raise NotObserved(f"{where} did not answer {service['username']}'s allocate requests"
                                      f"{' within ' + str(CLIENT_LIMIT) + ' s' if code is None else ''} "
                                      f"(is the lab's TURN service up?): {clip(text, 300)}")
                raise CaseFailed(f"{where} refused the credentials {domain} handed out (user "
                                 f"{service['username']!r}): no relay allocated: {clip(text, 300)}")
            if sent == 0 or received < sent:
                raise CaseFailed(f"{where} allocated {', '.join(addresses)} for {service['username']!r}, but of "
                                 f"{sent} messages relayed between the two allocations {received} came back")
            said.append(f"{where} allocated relays {', '.join(addresses)} for {service['username']!r} "
                        f"(expires {service.get('expires', 'not said')}) and relayed {received}/{sent} messages")
        else:
            if addresses:
                raise CaseFailed(f"{where} allocated {', '.join(addresses)} for {service['username']!r} with a "
                                 f"wrong password")
            if not answered:
                raise NotObserved(f"{where} did not answer the wrong-password allocate requests: {clip(text, 300)}")
            said.append(f"with the password changed it answered but allocated nothing"
                        f"{' (Cannot complete Allocation)' if 'Cannot complete Allocation' in text else ''}")
    run.evidence["external_services"] = [{k: v for k, v in s.items() if k != "password"} for s in listed]
    return f"{domain} listed {len(listed)} external services ({len(turn)} TURN); " + "; ".join(said)
