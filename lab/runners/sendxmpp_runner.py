"""Test runner for the Perl Net::XMPP client stack, driven by sendxmpp.

Run inside the client container (sendxmpp 1.24 on Net::XMPP / XML::Stream, Python with python3-dnslib).
Usage:
    sendxmpp_runner.py cases SPEC_JSON
prints, as its last stdout line, one JSON list with one result per requested case (same
order): {"case", "server", "target", "status": pass|fail|error, "detail", "trace", "seconds"}.

What sendxmpp can and cannot do here:
- It only sends. The receiving end of every case is the runner's own small stdlib client
  (Receiver in cli_support.py), logged in before sendxmpp starts; messages go to its full
  JID.
- TLS: `-t` (STARTTLS) with `-a <lab CA>`, which IO::Socket::SSL takes as the only trust
  anchor.
- No SRV with a working login: XML::Stream looks up _xmpp-client only when the user name
  has an '@' and no -j is given, and then Net::XMPP puts the whole 'user@domain' into the
  SASL PLAIN authcid and the servers refuse it. So the runner names the server with
  `-u USER -j DOMAIN`: the domain's A record, port 5222. C1 is therefore not claimed.
- Exit code: 0 when the message went out, 1 with "Error 'AuthSend': error: not-authorized"
  (stderr) for a wrong password.
"""

from __future__ import annotations

import re
import time

from cli_support import Context, Ran, Receiver
from harness import CaseFailed, NotObserved, Runner, delivered, login_refused, main, message_fields, token

TOOL = "sendxmpp"


# --- cases -------------------------------------------------------------------------------------

def sendxmpp(ctx: Context, server: str, user: str, to: str, body: str, *, password: str | None = None,
             resource: str | None = None) -> Ran:
    """sendxmpp -t (STARTTLS, lab CA only) as ``user`` of ``server``: one chat message to ``to``;
    a stream error before the login is raised (see login_refused)."""
    _, right = ctx.account(server, user)
    argv = ["sendxmpp", "-d", "-t", "-a", ctx.ca, "-u", user, "-j", ctx.domain(server), "-p", password or right,
            "-r", resource or f"lab-{ctx.case.lower()}-{token()}", "--message-type=chat", to]
    ran = ctx.run(argv, ctx.timeout, stdin=body + "\n")
    log = ran.out + ran.err
    if ran.code != 0 and "internal-server-error" in log and "We authed!" not in log:
        raise login_refused(f"{TOOL} {user}@{ctx.domain(server)}", "internal-server-error")
    if ran.timed_out:  # the tool hung: nothing to judge the server by
        raise NotObserved(f"{TOOL} {user}@{ctx.domain(server)} -> {to}: did not finish within {ctx.timeout:g}s "
                          f"and was killed")
    return ran


def complaint(ran: Ran) -> str:
    """sendxmpp's own error line (its debug log is on the same stream)."""
    lines = [line.strip() for line in (ran.err + "\n" + ran.out).splitlines()]
    return next((line.replace("[?]", "").strip() for line in lines if line.startswith("Error")), None) or \
        ("killed after the timeout" if ran.timed_out else f"exit {ran.code}, no error line")


def deliver(ctx: Context, sender: tuple[str, str], recipient: tuple[str, str]) -> tuple[str, Ran]:
    """``sender`` (server, user) sends with sendxmpp to a Receiver of ``recipient``."""
    jid, _ = ctx.account(*sender)
    rjid, rpassword = ctx.account(*recipient)
    receiver = ctx.opened(Receiver(rjid, rpassword, ctx.ca, ctx.timeout))
    to = receiver.login()
    body = f"lab {ctx.case} {TOOL} {token(12)}"
    resource = f"lab-{ctx.case.lower()}-{token()}"
    started = time.monotonic()
    ran = sendxmpp(ctx, *sender, to, body, resource=resource)
    if ran.code != 0:
        raise CaseFailed(f"{jid} -> {to}: sendxmpp failed: {complaint(ran)}")
    message = receiver.wait_for(body, ctx.timeout)
    arrived = time.monotonic() - started
    receiver.close()
    if message is None:
        raise CaseFailed(f"{jid} -> {to}: sent (exit 0) but not received within {ctx.timeout:g}s")
    full = f"{jid}/{resource}"
    # sendxmpp sends what it read, the newline that ended it included
    return delivered(f"{full} -> {to}", {"from": full, "id": None, "type": "chat", "body": body + "\n"},
                     message_fields(message), arrived, ctx.timeout), ran


def case_c2(ctx: Context) -> str:
    sent, ran = deliver(ctx, (ctx.server, "alice"), (ctx.server, "bob"))
    log = ran.out + ran.err
    mechanism = (re.findall(r"mechanism='([^']+)'", log) or ["?"])[-1]
    if "We authed!" not in log:
        raise CaseFailed(f"delivered, but sendxmpp's log shows no SASL success ({sent})")
    wrong = sendxmpp(ctx, ctx.server, "alice", ctx.account(ctx.server, "bob")[0], "never delivered",
                     password=f"wrong-{token()}")
    said = complaint(wrong)
    conditions = re.findall(r"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><([a-z-]+)", wrong.out + wrong.err)
    if wrong.code == 0:
        raise CaseFailed("sendxmpp exited 0 with a wrong password")
    if "not-authorized" not in said and conditions != ["not-authorized"]:
        raise CaseFailed(f"wrong password refused, but not with not-authorized: {said}")
    return (f"logged in with SASL {mechanism} (alice sent a message to bob, delivered); wrong password -> "
            f"not-authorized, exit {wrong.code} \"{said}\"")


def case_c5(ctx: Context) -> str:
    return deliver(ctx, (ctx.server, "alice"), (ctx.server, "bob"))[0]


def case_s1(ctx: Context) -> str:
    there = deliver(ctx, (ctx.server, "alice"), (ctx.target, "bob"))[0]
    back = deliver(ctx, (ctx.target, "bob"), (ctx.server, "alice"))[0]
    return f"{there}; back: {back}"


CASES = {"C2": case_c2, "C5": case_c5, "S1": case_s1}


def budget(case: str, timeout: float) -> float:
    """Seconds a case may take at most (the watchdog adds these up per group)."""
    return {"S1": 6 * timeout + 10}.get(case, 4 * timeout + 10)


if __name__ == "__main__":
    main(Runner(TOOL, CASES, case_class=Context, budget=budget))
