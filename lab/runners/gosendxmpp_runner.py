"""Test runner for the go-xmpp client stack, driven by go-sendxmpp.

Run inside the client container (go-sendxmpp 0.5.6+git20221206 of bookworm, on go-xmpp, strace, Python with python3-dnslib). Usage:
    gosendxmpp_runner.py cases SPEC_JSON
prints, as its last stdout line, one JSON list with one result per requested case (same
order): {"case", "server", "target", "status": pass|fail|error, "detail", "trace", "seconds"}.

What go-sendxmpp gives us and how the runner reads it:
- TLS trust: Go's crypto/x509 reads SSL_CERT_FILE / SSL_CERT_DIR, so the runner sets
  SSL_CERT_FILE=<lab CA> and SSL_CERT_DIR=/nonexistent: only the lab CA is trusted.
- A session is opened with the listen mode (`-d -l`): -d prints every stanza received
  (stream features, SASL <success/>/<failure/>, the bind result, messages). The runner
  reads it as it comes and ends the process once it knows enough. go-xmpp enables no
  stream management, so an ended listener leaves no session behind.
- go-sendxmpp looks up BOTH _xmpp-client and _xmpps-client and picks among them by
  priority/weight: where a server publishes both with equal values (as in the lab), a
  connection is direct TLS or STARTTLS at random, with no option to choose. C1 is about
  STARTTLS, so it logs in again (strace shows which record was used) until a STARTTLS one,
  at most C1_LOGINS times; every login is in the detail and in evidence["logins"].
- On a failed login go-sendxmpp tries the next SRV record, so one wrong password is
  refused two or three times, and exits 1 with 'auth failure: ...'.
- Messages: the sender is `go-sendxmpp -u JID -p PW RECIPIENT` with the body on stdin
  (sent as type chat); the receiving end is a go-sendxmpp listener whose unique resource
  the message is addressed to (full JID: bare-JID messages could be routed to another test
  session of the same account).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time

from cli_support import STRACE, SYSTEM_CA, Context, Ran, env, observed, srv_addresses, srv_lookup, srv_verdict
from harness import CaseFailed, NotObserved, Runner, delivered, kill_group, login_refused, main, token

TOOL = "go-sendxmpp"


# --- cases -------------------------------------------------------------------------------------

NO_SESSION = "no session before the timeout, nothing printed"
SASL_FAILURE = re.compile(r"<failure xmlns=['\"]urn:ietf:params:xml:ns:xmpp-sasl['\"]><([a-z-]+)")
SASL_SUCCESS = re.compile(r"<success xmlns=['\"]urn:ietf:params:xml:ns:xmpp-sasl['\"]")


class Listener:
    """A go-sendxmpp listener (`-d -l`) whose output is read while it runs."""

    def __init__(self, ctx: Context, jid: str, password: str, *, ca: str | None = None, strace: bool = False):
        self.jid, self.ctx = jid, ctx
        self.resource = f"lab-{ctx.case.lower()}-{token()}"
        self.full_jid = f"{jid}/{self.resource}"
        self.strace_path = f"/tmp/strace-{token()}.txt" if strace else None
        self.argv = ["go-sendxmpp", "-d", "-l", "-u", jid, "-p", password, "-r", self.resource]
        argv = [*STRACE, "-o", self.strace_path, *self.argv] if strace else self.argv
        self.started = time.monotonic()
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, env={**os.environ, **env(ca or ctx.ca)},
                                        start_new_session=True)
        with ctx.lock:
            ctx.processes.add(self.process)
        self.output, self.ended, self.ran, self.ready = "", False, None, None
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            chunk = os.read(self.process.stdout.fileno(), 65536)
            with self.changed:
                if not chunk:
                    self.ended = True
                else:
                    self.output += chunk.decode(errors="replace")
                self.changed.notify_all()
            if not chunk:
                return

    def wait(self, predicate, timeout: float) -> bool:
        """Until ``predicate(output)`` holds (True), or the process ended / time ran out (False)."""
        with self.changed:
            self.changed.wait_for(lambda: predicate(self.output) or self.ended, timeout)
            return bool(predicate(self.output))

    def bound(self, output: str) -> bool:
        return f"<jid>{self.full_jid}</jid>" in output

    def wait_ready(self, timeout: float) -> bool:
        """Bound, and its initial presence handled: seen echoed back (Prosody, ejabberd) or,
        for a server that does not echo it (jabberd2), one second after the bind result."""
        if self.ready is None:
            echo = re.compile(r"<presence[^>]*from=['\"]" + re.escape(self.full_jid) + "['\"]")
            if not self.wait(self.bound, timeout):
                return False
            self.wait(lambda out: echo.search(out), 1.0)
            self.ready = True
        return self.ready

    def stop(self) -> Ran:
        if self.ran is None:
            if self.process.poll() is None:  # SIGTERM first: strace then writes out what it saw
                try:
                    os.killpg(self.process.pid, 15)
                    self.process.wait(2)
                except (OSError, subprocess.TimeoutExpired):
                    kill_group(self.process)
            self.process.wait()
            self.reader.join(2)
            with self.ctx.lock:
                self.ctx.processes.discard(self.process)
            self.ran = Ran(self.argv, self.process.returncode, self.output, "", False,
                           time.monotonic() - self.started, self.ctx.secrets())
        return self.ran

    def strace_text(self) -> str:
        self.stop()
        try:
            with open(self.strace_path, errors="replace") as file:
                text = file.read()
            os.unlink(self.strace_path)
        except OSError:
            text = ""
        if not text:
            raise CaseFailed(f"strace cannot trace here, so SRV use cannot be observed: "
                             f"{self.output.strip().splitlines()[:1]}")
        return text

    def transcript(self) -> str:
        return self.stop().text()

    def close(self) -> None:
        self.stop()


def listen(ctx: Context, server: str, user: str, *, password: str | None = None, ca: str | None = None,
           strace: bool = False) -> Listener:
    """A listener that got its session (or ended trying); a stream error before the login is
    raised (see login_refused)."""
    jid, right = ctx.account(server, user)
    listener = ctx.opened(Listener(ctx, jid, password or right, ca=ca, strace=strace))
    if not listener.wait_ready(ctx.timeout) and refused_before_login(listener.output):
        raise login_refused(f"{TOOL} listener {jid}", "internal-server-error")
    return listener


def refused_before_login(output: str) -> bool:
    """The server ended the stream with internal-server-error before SASL succeeded (the
    SASL element itself: go-sendxmpp's own error line names "<success>" too)."""
    return "<internal-server-error" in output and not SASL_SUCCESS.search(output)


def refusal(output: str, default: str = "no error printed") -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip() and not line.lstrip().startswith("<")]
    last = next((line for line in reversed(lines) if "Deprecated" not in line), default)
    return re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", last)  # log.Fatal's time stamp


def sasl_success(output: str) -> str:
    """What a logged-in listener's -d output says of the SASL <success/> it got."""
    success = re.findall(r"<success xmlns=['\"]urn:ietf:params:xml:ns:xmpp-sasl['\"]\s*(/>|>([^<]*)</success>)",
                         output)
    if not success:
        return "no SASL <success/> in go-sendxmpp's output, so the mechanism is not known"
    if not success[-1][1]:
        return "<success/> without SCRAM server signature, i.e. PLAIN"
    return "<success/> with a server signature, i.e. SCRAM"


# go-sendxmpp picks between _xmpp-client and _xmpps-client at random where they have the
# same priority and weight: C1 logs in until a login went by STARTTLS, at most this often,
# and says how each login went.
C1_LOGINS = 8


def case_c1(ctx: Context) -> str:
    domain = ctx.domain(ctx.server)
    records = srv_lookup(f"_xmpp-client._tcp.{domain}")
    if not records:
        raise CaseFailed(f"no SRV record _xmpp-client._tcp.{domain}")
    direct = srv_addresses(srv_lookup(f"_xmpps-client._tcp.{domain}"))
    logins = ctx.evidence["logins"] = []  # every login, each with the record it went by
    for attempt in range(1, C1_LOGINS + 1):
        listener = listen(ctx, ctx.server, "alice", strace=True)
        if not listener.wait_ready(0):
            logins.append({"login": attempt, "outcome": "failed"})
            raise CaseFailed(f"login {attempt} failed: {refusal(listener.stop().out, NO_SESSION)}")
        names, connects = observed(listener.strace_text())
        address = f"{connects[-1][0]}:{connects[-1][1]}" if connects else None
        if connects and connects[-1] in direct and "<proceed" not in listener.output:
            logins.append({"login": attempt, "outcome": "direct TLS via _xmpps-client", "address": address})
            continue
        logins.append({"login": attempt, "outcome": "STARTTLS via _xmpp-client", "address": address})
        srv = srv_verdict(TOOL, domain, records, names, connects)
        if not re.search(r"<proceed xmlns=['\"]urn:ietf:params:xml:ns:xmpp-tls['\"]", listener.output):
            raise CaseFailed(f"{srv}, but no <proceed/> to a <starttls/> in go-sendxmpp's log")
        break
    else:
        raise CaseFailed(f"{C1_LOGINS} logins, all direct TLS via _xmpps-client._tcp.{domain}: go-sendxmpp never "
                         f"chose the _xmpp-client record (STARTTLS)")
    went_direct = attempt - 1
    control = listen(ctx, ctx.server, "alice", ca=SYSTEM_CA)
    if control.wait_ready(0):
        raise CaseFailed("with the system CA store instead of the lab CA the login still worked: "
                         "the certificate is not verified")
    control.wait(lambda out: False, ctx.timeout)  # until it gives up
    why = refusal(control.stop().out)
    if "certificate" not in why and "x509" not in why:
        raise CaseFailed(f"with the system CA store instead of the lab CA: refused, but not for the "
                         f"certificate: {why}")
    chose = (f"; login {attempt} of {attempt}: the first {went_direct} went direct TLS via _xmpps-client (same "
             f"priority and weight; go-sendxmpp picks at random)" if went_direct else "; one login")
    return (f"{srv}; STARTTLS, certificate verified against the lab CA{chose}; with the system CA store "
            f"instead: {why.split(': ', 1)[-1] if 'x509' in why else why}")


def case_c2(ctx: Context) -> str:
    listener = listen(ctx, ctx.server, "alice")
    if not listener.wait_ready(0):
        raise CaseFailed(f"right password: login failed: {refusal(listener.stop().out, NO_SESSION)}")
    output = listener.stop().out
    offered = re.findall(r"<mechanism>([^<]+)</mechanism>", output)
    how = sasl_success(output)
    wrong = listen(ctx, ctx.server, "alice", password=f"wrong-{token()}")
    if wrong.wait_ready(0):
        raise CaseFailed("logged in with a wrong password")
    wrong.wait(lambda out: False, ctx.timeout)
    ran = wrong.stop()
    conditions = SASL_FAILURE.findall(ran.out)
    if not conditions:
        raise CaseFailed(f"wrong password: no SASL <failure/> received ({refusal(ran.out)})")
    if set(conditions) != {"not-authorized"}:
        raise CaseFailed(f"wrong password answered with {', '.join(conditions)}, not not-authorized")
    if ran.code == 0:
        raise CaseFailed("wrong password refused, but go-sendxmpp exited 0")
    tries = f" on each of the {len(conditions)} connections it tried" if len(conditions) > 1 else ""
    return (f"logged in ({how}; offered {' '.join(dict.fromkeys(offered))}); wrong password -> "
            f"not-authorized{tries}, exit {ran.code} '{refusal(ran.out)[:80]}'")


def deliver(ctx: Context, sender: tuple[str, str], recipient: tuple[str, str]) -> str:
    """``sender`` (server, user) sends with go-sendxmpp to a listener of ``recipient``."""
    jid, password = ctx.account(*sender)
    listener = listen(ctx, *recipient)
    if not listener.wait_ready(0):
        raise CaseFailed(f"the receiving listener {listener.jid} got no session: "
                         f"{refusal(listener.stop().out, NO_SESSION)}")
    body = f"lab {ctx.case} {TOOL} {token(12)}"
    started = time.monotonic()
    # -d: what the server sent is printed, so a stream error is known to come before the login or not
    ran = ctx.run(["go-sendxmpp", "-d", "-u", jid, "-p", password, listener.full_jid], ctx.timeout + 5,
                  stdin=body + "\n", env=env(ctx.ca))
    if ran.code != 0 and refused_before_login(ran.out + ran.err):
        raise login_refused(f"{TOOL} {jid}", "internal-server-error")
    if ran.timed_out:  # the tool hung: nothing to judge the server by
        raise NotObserved(f"{jid} -> {listener.full_jid}: go-sendxmpp did not finish and was killed after "
                          f"{ran.seconds:.0f}s")
    if ran.code != 0:
        raise CaseFailed(f"{jid} -> {listener.full_jid}: go-sendxmpp exit {ran.code}: {refusal(ran.out + ran.err)}")
    # go-sendxmpp prints 'TIME FROM: BODY' (-d output may precede it on the same line)
    line = re.compile(r"\d{4}-\d\d-\d\dT\S+ " + re.escape(jid) + r": " + re.escape(body) + r"\s*$", re.M)
    if not listener.wait(lambda out: line.search(out), ctx.timeout):
        raise CaseFailed(f"{jid} -> {listener.full_jid}: sent (exit 0) but not received within {ctx.timeout:g}s")
    arrived = time.monotonic() - started
    output = listener.stop().out
    return delivered(f"{jid} -> {listener.full_jid}", {"from": None, "from_bare": jid, "id": None, "type": "chat",
                                                       "body": body},
                     received(output, body), arrived, ctx.timeout)


def received(output: str, body: str) -> dict:
    """from, id, type, body of the message with ``body`` in a listener's -d output."""
    stanza = next(iter(re.findall(r"<message\b[^>]*>", output.split(f"<body>{body}</body>")[0])[-1:]), "")
    attributes = dict(re.findall(r"(\w+)=['\"]([^'\"]*)['\"]", stanza))
    return {"from": attributes.get("from"), "id": attributes.get("id"), "type": attributes.get("type"),
            "body": body if stanza else None}


def case_c5(ctx: Context) -> str:
    return deliver(ctx, (ctx.server, "alice"), (ctx.server, "bob"))


def case_s1(ctx: Context) -> str:
    there = deliver(ctx, (ctx.server, "alice"), (ctx.target, "bob"))
    back = deliver(ctx, (ctx.target, "bob"), (ctx.server, "alice"))
    return f"{there}; back: {back}"


CASES = {"C1": case_c1, "C2": case_c2, "C5": case_c5, "S1": case_s1}


def budget(case: str, timeout: float) -> float:
    """Seconds a case may take at most (the watchdog adds these up per group)."""
    return {"C1": 10 * timeout + 10, "S1": 6 * timeout + 20, "C5": 3 * timeout + 10}.get(case, 4 * timeout + 10)


if __name__ == "__main__":
    main(Runner(TOOL, CASES, case_class=Context, budget=budget))
