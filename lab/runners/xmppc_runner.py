"""Test runner for the libstrophe client stack, driven by the xmppc command-line client.

Run inside the client container (xmppc 0.1.0 on libstrophe, strace, Python with python3-dnslib). Usage:
    xmppc_runner.py cases SPEC_JSON
prints, as its last stdout line, one JSON list with one result per requested case (same
order): {"case", "server", "target", "status": pass|fail|error, "detail", "trace", "seconds"}.

What xmppc gives us and how the runner reads it:
- TLS trust: libstrophe uses OpenSSL's default verify paths, so the runner sets
  SSL_CERT_FILE=<lab CA> and SSL_CERT_DIR=/nonexistent: only the lab CA is trusted.
- xmppc's exit code is always 0, so every verdict comes from its -vvv log (libstrophe's
  XML trace on stderr): 'Secure connection!', 'SASL ... auth successful', the <failure/>
  of a refused login, 'tls ERROR ...' for an untrusted certificate.
- SRV use is observed, not assumed: C1 runs xmppc under strace and checks that it queried
  _xmpp-client._tcp.<domain> and connected to an address:port of that SRV answer.
- Receiving: xmppc's monitor mode never closes its stream (no signal handling), so with
  stream management each run would leave a resumable session with available presence on
  the server for minutes. The receiving end of C5/S1 is therefore the runner's own small
  stdlib client (Receiver in cli_support.py); messages go to its full JID.
"""

from __future__ import annotations

import os
import re
import threading
import time

from cli_support import STRACE, SYSTEM_CA, Context, Ran, Receiver, env, observed, srv_lookup, srv_verdict
from harness import CaseFailed, NotObserved, Runner, delivered, login_refused, main, message_fields, token

TOOL = "xmppc"
XMPPC_SEND_DELAY = 10.0        # xmppc's message mode waits this long before it sends


def in_background(function, *args, **kwargs):
    """Start ``function`` in a thread; the returned callable waits for and returns its result."""
    box: dict = {}

    def work():
        try:
            box["result"] = function(*args, **kwargs)
        except Exception as error:  # raised again in the case's thread
            box["error"] = error
    thread = threading.Thread(target=work, daemon=True)
    thread.start()

    def result(timeout: float):
        thread.join(timeout)
        if "error" in box:
            raise box["error"]
        if "result" not in box:  # the tool hung: nothing to judge the server by
            raise NotObserved(f"{TOOL} did not finish within {timeout:g}s")
        return box["result"]
    return result


# --- strace: observing SRV use ----------------------------------------------------------------

def traced(ctx, argv, timeout, **kwargs) -> tuple[Ran, str]:
    """Run ``argv`` under strace; (the run, strace's output). CaseFailed when strace cannot trace."""
    path = f"/tmp/strace-{token()}.txt"
    ran = ctx.run([*STRACE, "-o", path, *argv], timeout, **kwargs)
    try:
        with open(path, errors="replace") as file:
            text = file.read()
        os.unlink(path)
    except OSError:
        text = ""
    if not text and ("strace:" in ran.err):
        raise CaseFailed(f"strace cannot trace here, so SRV use cannot be observed: "
                         f"{ran.err.strip().splitlines()[0]}")
    return ran, text


# --- cases -------------------------------------------------------------------------------------

def xmppc(ctx: Context, jid: str, password: str, *args, ca: str | None = None, timeout: float | None = None,
          strace: bool = False):
    """One xmppc run (under strace: (run, strace output)); a stream error before the login
    is raised (see login_refused)."""
    argv = ["xmppc", "-vvv", "-j", jid, "-p", password, *args]
    bound = timeout or ctx.timeout
    result = traced(ctx, argv, bound, env=env(ca or ctx.ca)) if strace else ctx.run(argv, bound, env=env(ca or ctx.ca))
    ran = result[0] if strace else result
    if "<internal-server-error" in ran.err and "auth successful" not in ran.err:
        raise login_refused(f"{TOOL} {jid}", "internal-server-error")
    if ran.timed_out:  # xmppc hung (it exits 0 on every error it sees): a tool problem, not a verdict
        raise NotObserved(f"{TOOL} {jid} {' '.join(args[:2])}: did not finish within {bound:g}s and was killed; "
                          f"its log ends: {tail(ran.err)}")
    return result


def tail(log: str) -> str:
    lines = [line.strip() for line in log.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(nothing)"


def login_facts(ran: Ran) -> dict:
    """What xmppc's -vvv log says about one login attempt."""
    log = ran.err + "\n" + ran.out  # the -v messages go to stdout, libstrophe's log to stderr
    return {
        "starttls": 'SENT: <starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>' in log and "RECV: <proceed" in log,
        "verified": "Certificate verification passed" in log,
        "secure": "Secure connection!" in log,
        "mechanism": (re.findall(r"SASL (\S+) auth successful", log) or [None])[-1],
        "bound": (re.findall(r"<jid>([^<]+)</jid>", log) or [None])[-1],
        "failures": re.findall(r'<failure xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><([a-z-]+)', log),
        "errors": [line.strip() for line in log.splitlines() if " ERROR " in line]
        + ([f"xmppc killed after {ran.seconds:.0f}s without a session"] if ran.timed_out else []),
    }


def sent_message_id(log: str) -> str | None:
    """The id xmppc gave the message it sent (libstrophe logs every stanza it sends)."""
    return (re.findall(r'SENT: <message id="([^"]+)"', log) or [None])[0]


def login(ctx: Context, server: str, user: str, *, strace: bool = False, password: str | None = None,
          ca: str | None = None) -> tuple[dict, str]:
    """(login facts, strace output or '') of one `xmppc -m roster list` (a login and nothing else)."""
    jid, right = ctx.account(server, user)
    resource = f"lab-{ctx.case.lower()}-{token()}"
    result = xmppc(ctx, f"{jid}/{resource}", password or right, "-m", "roster", "list", ca=ca, strace=strace)
    ran, strace_text = result if strace else (result, "")
    return login_facts(ran), strace_text


def ok_login(facts: dict, what: str) -> None:
    if facts["mechanism"] and facts["bound"]:
        return
    why = "; ".join(facts["errors"][:3]) or "no 'auth successful' and no bound JID in xmppc's log"
    raise CaseFailed(f"{what}: login failed: {why}")


def case_c1(ctx: Context) -> str:
    domain = ctx.domain(ctx.server)
    records = srv_lookup(f"_xmpp-client._tcp.{domain}")
    if not records:
        raise CaseFailed(f"no SRV record _xmpp-client._tcp.{domain}")
    facts, strace_text = login(ctx, ctx.server, "alice", strace=True)
    ok_login(facts, "with the lab CA")
    if not facts["starttls"]:
        raise CaseFailed("logged in, but not after <starttls/> / <proceed/>")
    if not (facts["verified"] and facts["secure"]):
        raise CaseFailed("libstrophe did not report 'Certificate verification passed'")
    names, connects = observed(strace_text)
    srv = srv_verdict(TOOL, domain, records, names, connects)
    control = login(ctx, ctx.server, "alice", ca=SYSTEM_CA)[0]
    if control["mechanism"] or control["secure"]:
        raise CaseFailed("with the system CA store instead of the lab CA the login still worked: "
                         "the certificate is not verified")
    refusal = next((e for e in control["errors"] if "tls" in e.lower() or "cert" in e.lower()),
                   "; ".join(control["errors"][:2]) or "refused").split(", canceling")[0]
    return (f"{srv}; STARTTLS, certificate verified against the lab CA, SASL {facts['mechanism']}; "
            f"with the system CA store instead: {refusal}")


def case_c2(ctx: Context) -> str:
    facts = login(ctx, ctx.server, "alice")[0]
    ok_login(facts, "right password")
    wrong = login(ctx, ctx.server, "alice", password=f"wrong-{token()}")[0]
    if wrong["mechanism"] or wrong["bound"]:
        raise CaseFailed("logged in with a wrong password")
    if not wrong["failures"]:
        raise CaseFailed(f"wrong password: no SASL <failure/> in xmppc's log "
                         f"({'; '.join(wrong['errors'][:2]) or 'nothing'})")
    if set(wrong["failures"]) != {"not-authorized"}:
        raise CaseFailed(f"wrong password answered with {', '.join(wrong['failures'])}, not not-authorized")
    said = next((e for e in wrong["errors"] if "auth" in e), "")
    return (f"SASL {facts['mechanism']}, bound {facts['bound']}; wrong password -> not-authorized"
            + (f" ({len(wrong['failures'])} attempts)" if len(wrong["failures"]) > 1 else "")
            + (f"; xmppc: '{said.split('ERROR', 1)[-1].strip()}'" if said else ""))


def deliver(ctx: Context, sender: tuple[str, str], recipient: tuple[str, str]) -> str:
    """``sender`` (server, user) sends with xmppc to ``recipient``'s receiver (full JID)."""
    jid, password = ctx.account(*sender)
    rjid, rpassword = ctx.account(*recipient)
    receiver = ctx.opened(Receiver(rjid, rpassword, ctx.ca, ctx.timeout))
    to = receiver.login()
    body = f"lab {ctx.case} {TOOL} {token(12)}"
    sent_at = time.monotonic()
    full = f"{jid}/lab-{ctx.case.lower()}-{token()}"
    finished = in_background(xmppc, ctx, full, password,
                             "-m", "message", "chat", to, body, timeout=XMPPC_SEND_DELAY + ctx.timeout)
    message = receiver.wait_for(body, XMPPC_SEND_DELAY + ctx.timeout)
    arrived = time.monotonic() - sent_at
    ran = finished(XMPPC_SEND_DELAY + ctx.timeout + 5)
    receiver.close()
    sent_id = sent_message_id(ran.err)
    if message is None:
        facts = login_facts(ran)
        why = (f"xmppc sent it (id {sent_id})" if sent_id else
               "; ".join(facts["errors"][:2]) or "no <message/> in xmppc's log")
        raise CaseFailed(f"{jid} -> {to}: not received within {XMPPC_SEND_DELAY + ctx.timeout:g}s ({why})")
    return delivered(f"{full} -> {to}", {"from": full, "id": sent_id, "type": "chat", "body": body},
                     message_fields(message), arrived, XMPPC_SEND_DELAY + ctx.timeout)


WAITS = f" (xmppc waits {XMPPC_SEND_DELAY:g}s before it sends)"


def case_c5(ctx: Context) -> str:
    return deliver(ctx, (ctx.server, "alice"), (ctx.server, "bob")) + WAITS


def case_s1(ctx: Context) -> str:
    """Both ways at once: each is a delivery of its own (its own sender run and receiver),
    and xmppc's wait before it sends is then spent once, not twice."""
    back = in_background(deliver, ctx, (ctx.target, "bob"), (ctx.server, "alice"))
    there = deliver(ctx, (ctx.server, "alice"), (ctx.target, "bob"))
    return f"{there}; back: {back(XMPPC_SEND_DELAY + 2 * ctx.timeout + 10)}{WAITS}"


CASES = {"C1": case_c1, "C2": case_c2, "C5": case_c5, "S1": case_s1}


def budget(case: str, timeout: float) -> float:
    """Seconds a case may take at most."""
    return {"S1": 2 * (XMPPC_SEND_DELAY + 2 * timeout + 5), "C5": XMPPC_SEND_DELAY + 2 * timeout + 5}.get(
        case, 3 * timeout + 5)


def write_config() -> None:
    os.makedirs(os.path.expanduser("~/.config"), exist_ok=True)
    config = os.path.expanduser("~/.config/xmppc.conf")  # xmppc refuses to start without one
    if not os.path.exists(config):
        open(config, "w").close()


if __name__ == "__main__":
    write_config()
    main(Runner(TOOL, CASES, case_class=Context, budget=budget))
