"""Test runner for the libstrophe client stack, driven by the xmppc command-line client.

Run inside the client container (xmppc 0.1.0 on libstrophe, strace, Python stdlib). Usage:
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
  stdlib client (Receiver below); messages go to its full JID.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET

TOOL = "xmppc"
XMPPC_SEND_DELAY = 10.0        # xmppc's message mode waits this long before it sends
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


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


def in_background(function, *args, **kwargs):
    """Start ``function`` in a thread; the returned callable waits for and returns its result."""
    box: list = []
    thread = threading.Thread(target=lambda: box.append(function(*args, **kwargs)), daemon=True)
    thread.start()

    def result(timeout: float):
        thread.join(timeout)
        if not box:
            raise CaseFailed(f"{TOOL} did not finish")
        return box[0]
    return result


# --- DNS and strace: observing SRV use --------------------------------------------------------

def srv_lookup(name: str, timeout: float = 3.0) -> list[tuple[int, int, int, str]]:
    """(priority, weight, port, target) of the SRV records of ``name``, asked of the
    container's resolver (the lab DNS behind Docker's), with the stdlib only."""
    nameserver = "127.0.0.11"
    with open("/etc/resolv.conf") as resolv:
        for line in resolv:
            if line.split()[:1] == ["nameserver"]:
                nameserver = line.split()[1]
                break
    query_id = random.randrange(1 << 16)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.strip(".").split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 33, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (nameserver, 53))
        data = sock.recv(65535)
    answer_id, flags, _, answers, _, _ = struct.unpack(">HHHHHH", data[:12])
    if answer_id != query_id or flags & 0x000F:
        return []

    def read_name(offset: int) -> tuple[str, int]:
        labels, end = [], None
        while data[offset]:
            if data[offset] & 0xC0 == 0xC0:
                end = end or offset + 2
                offset = struct.unpack(">H", data[offset:offset + 2])[0] & 0x3FFF
                continue
            labels.append(data[offset + 1:offset + 1 + data[offset]].decode())
            offset += 1 + data[offset]
        return ".".join(labels), end or offset + 1

    _, offset = read_name(12)
    offset += 4
    records = []
    for _ in range(answers):
        _, offset = read_name(offset)
        kind, _, _, length = struct.unpack(">HHIH", data[offset:offset + 10])
        offset += 10
        if kind == 33:
            priority, weight, port = struct.unpack(">HHH", data[offset:offset + 6])
            records.append((priority, weight, port, read_name(offset + 6)[0]))
        offset += length
    return sorted(records)


def srv_addresses(records) -> dict[tuple[str, int], str]:
    """{(ip, port): target} for every address of every SRV target."""
    found = {}
    for _, _, port, target in records:
        try:
            for info in socket.getaddrinfo(target, port, type=socket.SOCK_STREAM):
                found[(info[4][0], port)] = target
        except OSError:
            pass
    return found


STRACE = ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,sendmmsg,write", "-e", "signal=none",
          "-s", "200"]
CONNECT = re.compile(r'connect\(\d+, \{sa_family=AF_INET6?, sin6?_port=htons\((\d+)\), '
                     r'(?:sin_addr=inet_addr\("([^"]+)"\)|sin6_flowinfo=[^,]*, inet_pton\(AF_INET6, "([^"]+)"\))')


def observed(strace_text: str) -> tuple[list[str], list[tuple[str, int]]]:
    """(DNS names the process asked about, (ip, port) of its TCP/UDP connects except DNS)."""
    names, connects = [], []
    for line in strace_text.splitlines():
        match = CONNECT.search(line)
        if match:
            port = int(match.group(1))
            if port != 53:
                connects.append((match.group(2) or match.group(3), port))
        elif "_xmpp" in line:
            flat = re.sub(r'\\(?:[0-7]{1,3}|[a-z]|x[0-9a-f]{2})', ".", line)
            names += re.findall(r"(_xmpps?-client\._tcp\.[A-Za-z0-9.-]+?)\.\.", flat)
    return names, connects


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


def srv_verdict(domain: str, records, names, connects) -> str:
    """Which SRV record was used; CaseFailed when the connection did not follow it."""
    wanted = f"_xmpp-client._tcp.{domain}"
    if wanted not in names:
        raise CaseFailed(f"{TOOL} never asked DNS for {wanted} (asked: {sorted(set(names)) or 'nothing'})")
    if not connects:
        raise CaseFailed(f"{TOOL} made no TCP connection")
    addresses = srv_addresses(records)
    ip, port = connects[-1]
    if (ip, port) not in addresses:
        raise CaseFailed(f"{TOOL} connected to {ip}:{port}, not to the SRV answer "
                         f"{', '.join(f'{t}:{p}' for _, _, p, t in records)} ({sorted(addresses)})")
    return f"SRV {wanted} -> {addresses[(ip, port)]}:{port} asked and followed ({ip}:{port})"


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


def env(ca: str) -> dict:
    return {"SSL_CERT_FILE": ca, "SSL_CERT_DIR": "/nonexistent", "HOME": "/root"}


def xmppc(ctx: Context, jid: str, password: str, *args, ca: str | None = None, timeout: float | None = None,
          strace: bool = False):
    """One xmppc run (under strace: (run, strace output)); retried once when the server
    answered <internal-server-error/> before the login (a jabberd2 fault, see Receiver.login)."""
    argv = ["xmppc", "-vvv", "-j", jid, "-p", password, *args]
    bound = timeout or ctx.timeout
    for attempt in (1, 2):
        result = traced(ctx, argv, bound, env=env(ca or ctx.ca)) if strace else \
            ctx.run(argv, bound, env=env(ca or ctx.ca))
        log = (result[0] if strace else result).err
        if attempt == 2 or "<internal-server-error" not in log or "auth successful" in log:
            return result
        ctx.notes.append(f"{jid.split('@')[1].split('/')[0]} answered xmppc's connection with "
                         f"internal-server-error before the login once; retried")
        time.sleep(0.5)


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
    srv = srv_verdict(domain, records, names, connects)
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
    to = receiver.login(ctx.notes)
    body = f"lab {ctx.case} {TOOL} {token(12)}"
    sent_at = time.monotonic()
    finished = in_background(xmppc, ctx, f"{jid}/lab-{ctx.case.lower()}-{token()}", password,
                             "-m", "message", "chat", to, body, timeout=XMPPC_SEND_DELAY + ctx.timeout)
    message = receiver.wait_for(body, XMPPC_SEND_DELAY + ctx.timeout)
    arrived = time.monotonic() - sent_at
    ran = finished(XMPPC_SEND_DELAY + ctx.timeout + 5)
    receiver.close()
    sent_id = (re.findall(r'SENT: <message id="([^"]+)"', ran.err) or [None])[0]
    if message is None:
        facts = login_facts(ran)
        why = (f"xmppc sent it (id {sent_id})" if sent_id else
               "; ".join(facts["errors"][:2]) or "no <message/> in xmppc's log")
        raise CaseFailed(f"{jid} -> {to}: not received within {XMPPC_SEND_DELAY + ctx.timeout:g}s ({why})")
    problems = []
    if (message.get("from") or "").split("/")[0] != jid:
        problems.append(f"from is {message.get('from')!r}")
    if sent_id and message.get("id") != sent_id:
        problems.append(f"id {message.get('id')!r}, sent {sent_id!r}")
    if message.get("type") != "chat":
        problems.append(f"type {message.get('type')!r}")
    if problems:
        raise CaseFailed(f"{jid} -> {to}: arrived altered: {', '.join(problems)}")
    return f"{jid} -> {to} in {arrived:.1f}s, from/id/body intact"


WAITS = f" (xmppc waits {XMPPC_SEND_DELAY:g}s before it sends)"


def case_c5(ctx: Context) -> str:
    return deliver(ctx, (ctx.server, "alice"), (ctx.server, "bob")) + WAITS


def case_s1(ctx: Context) -> str:
    there = deliver(ctx, (ctx.server, "alice"), (ctx.target, "bob"))
    back = deliver(ctx, (ctx.target, "bob"), (ctx.server, "alice"))
    return f"{there}; back: {back}{WAITS}"


CASES = {"C1": case_c1, "C2": case_c2, "C5": case_c5, "S1": case_s1}
S2S = {"S1"}


def budget(case: str, timeout: float) -> float:
    """Seconds a case may take at most (the watchdog adds these up per group)."""
    return {"S1": 2 * (XMPPC_SEND_DELAY + 2 * timeout + 5), "C5": XMPPC_SEND_DELAY + 2 * timeout + 5}.get(
        case, 3 * timeout + 5)


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
    os.makedirs(os.path.expanduser("~/.config"), exist_ok=True)
    config = os.path.expanduser("~/.config/xmppc.conf")  # xmppc refuses to start without one
    if not os.path.exists(config):
        open(config, "w").close()
    results = cases(spec)
    sys.stdout.write("\n" + json.dumps(results) + "\n")
    sys.stdout.flush()
    os._exit(0)  # threads still stuck in a tool are not waited for


if __name__ == "__main__":
    main()
