"""Test runner for the Perl Net::XMPP client stack, driven by sendxmpp.

Run inside the client container (sendxmpp 1.24 on Net::XMPP / XML::Stream, Python stdlib).
Usage:
    sendxmpp_runner.py cases SPEC_JSON
prints, as its last stdout line, one JSON list with one result per requested case (same
order): {"case", "server", "target", "status": pass|fail|error, "detail", "trace", "seconds"}.

What sendxmpp can and cannot do here:
- It only sends. The receiving end of every case is the runner's own small stdlib client
  (Receiver below), logged in before sendxmpp starts; messages go to its full JID.
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

import base64
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET

TOOL = "sendxmpp"


class CaseFailed(Exception):
    pass


def token(n: int = 8) -> str:
    return uuid.uuid4().hex[:n]


# --- subprocesses (shared by the CLI runners) ----------------------------------------------

PROCESSES: set = set()
PROCESS_LOCK = threading.Lock()


class Ran:
    """One finished (or killed) tool run."""

    def __init__(self, argv, code, out, err, timed_out, seconds, secrets):
        self.argv, self.code, self.out, self.err = argv, code, out, err
        self.timed_out, self.seconds, self.secrets = timed_out, seconds, secrets

    def text(self, limit: int = 3000) -> str:
        shown = " ".join(a if " " not in a else repr(a) for a in self.argv)
        end = f"killed after {self.seconds:.1f}s" if self.timed_out else f"exit {self.code} after {self.seconds:.1f}s"
        body = f"$ {shown}\n[{end}]\n"
        if self.out.strip():
            body += "--- stdout\n" + clip(self.out, limit) + "\n"
        if self.err.strip():
            body += "--- stderr\n" + clip(self.err, limit) + "\n"
        for secret in self.secrets:
            body = body.replace(secret, "***")
        return body


def clip(text: str, limit: int) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    head = limit // 3
    return text[:head] + f"\n[... {len(text) - limit} characters left out ...]\n" + text[-(limit - head):]


def kill(process) -> None:
    try:
        os.killpg(process.pid, 9)
    except OSError:
        pass


def run(argv, timeout: float, *, stdin: str | None = None, env: dict | None = None, secrets=()) -> Ran:
    """Run a tool to its end, killed (with its children) after ``timeout`` seconds."""
    started = time.monotonic()
    process = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, **(env or {})}, start_new_session=True)
    with PROCESS_LOCK:
        PROCESSES.add(process)
    timed_out = False
    try:
        out, err = process.communicate(stdin.encode() if stdin is not None else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill(process)
        out, err = process.communicate()
    finally:
        with PROCESS_LOCK:
            PROCESSES.discard(process)
    return Ran(argv, process.returncode, out.decode(errors="replace"), err.decode(errors="replace"),
               timed_out, time.monotonic() - started, secrets)


# --- the runner's own receiving end (stdlib only) --------------------------------------------

NS_STREAM = "http://etherx.jabber.org/streams"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_CLIENT = "jabber:client"


class StreamError(Exception):
    """The server ended the stream with <stream:error/>; the message is its condition."""


class Receiver:
    """Logs in (STARTTLS trusting only the lab CA, SASL PLAIN, bind, presence) and waits
    for one message. Its presence has priority -1: it gets only messages sent to its full
    JID, never bare-JID messages meant for other test sessions of the same account."""

    def __init__(self, jid: str, password: str, ca: str, timeout: float):
        self.user, self.domain = jid.split("@")
        self.password, self.ca, self.timeout = password, ca, timeout
        self.resource = f"lab-rx-{token()}"
        self.full_jid = None
        self.sock = None
        self.log: list[str] = []

    def _send(self, data: str, shown: str | None = None) -> None:
        self.log.append(f"receiver SENT {shown or data}")
        self.sock.sendall(data.encode())

    def _stream(self) -> ET.Element:
        self.parser, self.depth, self.root = ET.XMLPullParser(("start", "end")), 0, None
        self._send(f"<?xml version='1.0'?><stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAM}' "
                   f"to='{self.domain}' version='1.0'>")
        features = self._next()
        if features.tag != f"{{{NS_STREAM}}}features":
            raise CaseFailed(f"receiver: expected stream features, got {features.tag}")
        return features

    def _next(self) -> ET.Element:
        """The next top-level element of the stream; TimeoutError at the deadline."""
        while True:
            for event, element in self.parser.read_events():
                if event == "start":
                    self.depth += 1
                    self.root = self.root if self.root is not None else element
                    continue
                self.depth -= 1
                if self.depth == 1:
                    self.root.remove(element)
                    if element.tag == f"{{{NS_STREAM}}}error":
                        raise StreamError(next((c.tag.split("}")[-1] for c in element
                                                if not c.tag.endswith("}text")), "(no condition)"))
                    return element
                if self.depth == 0:
                    raise CaseFailed("receiver: the server closed the stream")
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError from None
            if not data:
                raise CaseFailed("receiver: the server closed the connection")
            self.log.append(f"receiver RECV {data.decode(errors='replace')}")
            self.parser.feed(data)

    def _iq(self, xml: str, iq_id: str) -> ET.Element:
        self._send(xml)
        while True:
            element = self._next()
            if element.tag == f"{{{NS_CLIENT}}}iq" and element.get("id") == iq_id:
                if element.get("type") != "result":
                    raise CaseFailed(f"receiver: iq {iq_id} answered with an error")
                return element

    def login(self, notes: list) -> str:
        """The bound full JID. A server that answers <internal-server-error/> before the session
        (jabberd2 does when a connection reuses a just-closed one's descriptor) gets one retry."""
        try:
            return self._login()
        except StreamError as error:
            if str(error) != "internal-server-error" or self.full_jid:
                raise CaseFailed(f"receiver: {self.user}@{self.domain}: stream error {error}") from None
            notes.append(f"{self.domain} answered the receiver's login with internal-server-error once; retried")
            self.close()
            time.sleep(0.5)
            try:
                return self._login()
            except StreamError as again:
                raise CaseFailed(f"receiver: {self.user}@{self.domain}: stream error {again}") from None

    def _login(self) -> str:
        self.deadline = time.monotonic() + self.timeout
        try:
            self.sock = socket.create_connection((self.domain, 5222), timeout=self.timeout)
            if self._stream().find(f"{{{NS_TLS}}}starttls") is None:
                raise CaseFailed("receiver: no STARTTLS offered")
            self._send(f"<starttls xmlns='{NS_TLS}'/>")
            if self._next().tag != f"{{{NS_TLS}}}proceed":
                raise CaseFailed("receiver: STARTTLS refused")
            context = ssl.create_default_context(cafile=self.ca)  # this CA only, no system store
            self.sock = context.wrap_socket(self.sock, server_hostname=self.domain)
            features = self._stream()
            plain = base64.b64encode(f"\0{self.user}\0{self.password}".encode()).decode()
            self._send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{plain}</auth>",
                       "<auth mechanism='PLAIN'>(credentials)</auth>")
            answer = self._next()
            if answer.tag != f"{{{NS_SASL}}}success":
                raise CaseFailed(f"receiver: login of {self.user}@{self.domain} refused "
                                 f"({' '.join(c.tag.split('}')[-1] for c in answer)})")
            features = self._stream()
            bound = self._iq(f"<iq type='set' id='bind1'><bind xmlns='{NS_BIND}'><resource>{self.resource}"
                             f"</resource></bind></iq>", "bind1")
            self.full_jid = bound.findtext(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid")
            session = features.find(f"{{{NS_SESSION}}}session")
            if session is not None and session.find(f"{{{NS_SESSION}}}optional") is None:
                self._iq(f"<iq type='set' id='sess1'><session xmlns='{NS_SESSION}'/></iq>", "sess1")
            self._send("<presence><priority>-1</priority></presence>")
            # Stanzas are handled in order: once the roster answer is back, so is our presence.
            self._iq("<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>", "roster1")
        except TimeoutError:
            raise CaseFailed(f"receiver: no session for {self.user}@{self.domain} within {self.timeout:g}s") from None
        except (OSError, ssl.SSLError, ET.ParseError) as error:
            raise CaseFailed(f"receiver: {self.user}@{self.domain}: {error}") from None
        return self.full_jid

    def wait_for(self, body: str, timeout: float) -> ET.Element | None:
        """The message whose body is ``body``, or None after ``timeout`` seconds."""
        self.deadline = time.monotonic() + timeout
        try:
            while True:
                element = self._next()
                if (element.tag == f"{{{NS_CLIENT}}}message"
                        and (element.findtext(f"{{{NS_CLIENT}}}body") or "").strip() == body):
                    return element
        except TimeoutError:
            return None
        except (OSError, ssl.SSLError, ET.ParseError) as error:
            raise CaseFailed(f"receiver: {error}") from None
        except StreamError as error:
            raise CaseFailed(f"receiver: stream error {error}") from None

    def transcript(self) -> str:
        return clip("\n".join(self.log), 3000)

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.settimeout(1)
                self.sock.sendall(b"</stream:stream>")
            except OSError:
                pass
            self.sock.close()
            self.sock = None


# --- cases -------------------------------------------------------------------------------------

class Context:
    """One case: the spec, where it runs, and everything worth showing when it fails."""

    def __init__(self, spec: dict, entry: dict):
        self.spec, self.case = spec, entry["case"]
        self.server, self.target = entry["server"], entry.get("target")
        self.timeout = float(spec.get("timeout", 20))
        self.ca = spec["ca"]
        self.trace: list[str] = []
        self.notes: list[str] = []     # worth knowing even when the case passes (retries)
        self.ends: list = []           # receivers/listeners: closed at the end, their logs traced

    def domain(self, server: str) -> str:
        return self.spec["servers"][server]["domain"]

    def account(self, server: str, user: str) -> tuple[str, str]:
        return f"{user}@{self.domain(server)}", self.spec["servers"][server]["accounts"][user]

    def secrets(self) -> list[str]:
        return [password for server in self.spec["servers"].values() for password in server["accounts"].values()]

    def run(self, argv, timeout, **kwargs) -> Ran:
        ran = run(argv, timeout, secrets=self.secrets(), **kwargs)
        self.trace.append(ran.text())
        return ran

    def opened(self, end):
        self.ends.append(end)
        return end

    def close(self) -> None:
        for end in self.ends:
            end.close()
            self.trace.append(end.transcript())

    def trace_text(self) -> str:
        return clip("\n\n".join(self.trace), 12000)


def sendxmpp(ctx: Context, server: str, user: str, to: str, body: str, *, password: str | None = None) -> Ran:
    """sendxmpp -t (STARTTLS, lab CA only) as ``user`` of ``server``: one chat message to ``to``;
    retried once when the server said <internal-server-error/> before the login (jabberd2)."""
    _, right = ctx.account(server, user)
    argv = ["sendxmpp", "-d", "-t", "-a", ctx.ca, "-u", user, "-j", ctx.domain(server), "-p", password or right,
            "-r", f"lab-{ctx.case.lower()}-{token()}", "--message-type=chat", to]
    for attempt in (1, 2):
        ran = ctx.run(argv, ctx.timeout, stdin=body + "\n")
        log = ran.out + ran.err
        if ran.code == 0 or attempt == 2 or "internal-server-error" not in log or "We authed!" in log:
            return ran
        ctx.notes.append(f"{ctx.domain(server)} answered sendxmpp's connection with internal-server-error "
                         f"before the login once; retried")
        time.sleep(0.5)


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
    to = receiver.login(ctx.notes)
    body = f"lab {ctx.case} {TOOL} {token(12)}"
    started = time.monotonic()
    ran = sendxmpp(ctx, *sender, to, body)
    if ran.code != 0:
        raise CaseFailed(f"{jid} -> {to}: sendxmpp failed: {complaint(ran)}")
    message = receiver.wait_for(body, ctx.timeout)
    arrived = time.monotonic() - started
    receiver.close()
    if message is None:
        raise CaseFailed(f"{jid} -> {to}: sent (exit 0) but not received within {ctx.timeout:g}s")
    problems = []
    if (message.get("from") or "").split("/")[0] != jid:
        problems.append(f"from {message.get('from')!r}")
    if message.get("type") != "chat":
        problems.append(f"type {message.get('type')!r}")
    if problems:
        raise CaseFailed(f"{jid} -> {to}: arrived altered: {', '.join(problems)}")
    ident = f", id {message.get('id')}" if message.get("id") else " (sendxmpp sends no id)"
    return f"{jid} -> {to} in {arrived:.1f}s, body intact, from {message.get('from')}{ident}", ran


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
S2S = {"S1"}


def budget(case: str, timeout: float) -> float:
    """Seconds a case may take at most (the watchdog adds these up per group)."""
    return {"S1": 6 * timeout + 10}.get(case, 4 * timeout + 10)


# --- running the spec (shared by the CLI runners) -----------------------------------------

def run_case(spec: dict, entry: dict) -> dict:
    started = time.monotonic()
    case, server, target = entry.get("case"), entry.get("server"), entry.get("target")
    result = {"case": case, "server": server, "target": target, "status": "error", "detail": "", "trace": ""}
    ctx = None
    try:
        if case not in CASES:
            result["detail"] = f"the {TOOL} runner cannot express {case}"
        elif server not in spec["servers"] or (case in S2S and target not in spec["servers"]):
            result["detail"] = f"server {server if server not in spec['servers'] else target!r} not in the spec"
        else:
            ctx = Context(spec, entry)
            try:
                result.update(status="pass", detail=CASES[case](ctx))
            except CaseFailed as failure:
                result.update(status="fail", detail=str(failure))
            except Exception as error:  # a runner bug: report it as an error, not a verdict
                result.update(status="error", detail=f"runner error: {type(error).__name__}: {error}")
            if ctx.notes:
                result["detail"] += f" [{'; '.join(dict.fromkeys(ctx.notes))}]"
    finally:
        if ctx is not None:
            ctx.close()
            if result["status"] != "pass":
                result["trace"] = ctx.trace_text()
        result["seconds"] = round(time.monotonic() - started, 3)
    return result


def cases(spec: dict) -> list:
    """Every (server, target) group in its own thread, the cases of a group in order; a
    watchdog bounds the whole run, kills what is left and reports it as error."""
    entries = spec.get("cases", [])
    timeout = float(spec.get("timeout", 20))
    results: list = [None] * len(entries)
    groups: dict = {}
    for index, entry in enumerate(entries):
        groups.setdefault((entry.get("server"), entry.get("target")), []).append(index)

    def run_group(indexes):
        for index in indexes:
            results[index] = run_case(spec, entries[index])

    threads = [threading.Thread(target=run_group, args=(indexes,), daemon=True) for indexes in groups.values()]
    for thread in threads:
        thread.start()
    limit = max((sum(budget(entries[i]["case"], timeout) for i in g) for g in groups.values()), default=0) + 15
    deadline = time.monotonic() + limit
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with PROCESS_LOCK:
        for process in list(PROCESSES):
            kill(process)
    return [result or {**{k: entries[i].get(k) for k in ("case", "server", "target")}, "status": "error",
                       "detail": f"the runner's watchdog stopped it after {limit:.0f}s", "trace": "",
                       "seconds": round(limit, 3)}
            for i, result in enumerate(results)]


def main() -> None:
    command, spec = sys.argv[1], json.loads(sys.argv[2])
    if command != "cases":
        raise SystemExit(f"unknown command {command} (only: cases)")
    results = cases(spec)
    sys.stdout.write("\n" + json.dumps(results) + "\n")
    sys.stdout.flush()
    os._exit(0)  # threads still stuck in a tool are not waited for


if __name__ == "__main__":
    main()
