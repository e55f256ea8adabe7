"""What the runners of the command-line client stacks share (xmppc, go-sendxmpp, sendxmpp):
running tools, observing their SRV use, and a small receiving end. The harness (harness.py)
runs their cases.

Put beside each runner at /opt/xmpp-lab/ (``support`` of its stack in lab/stacks/), so a
runner imports it by name: the script's own folder is on sys.path. Standard library only,
and dnslib (Debian's python3-dnslib, in every client image) for SRV lookups.

- running tools: Ran, run() (killed with its children at a timeout), Context.run()
- SRV use: srv_lookup() (dnslib), observed() (strace output), srv_verdict()
- Receiver: a small stdlib XMPP client that logs in and waits for one message
"""

from __future__ import annotations

import base64
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

from dnslib import QTYPE, RCODE, DNSRecord  # Debian's python3-dnslib, in every client image
from harness import Case, CaseFailed, clip, kill_group, login_refused, token

SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


# --- subprocesses ----------------------------------------------------------------------------


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


def run(argv, timeout: float, *, stdin: str | None = None, env: dict | None = None, secrets=(),
        running: set | None = None, lock: threading.Lock | None = None) -> Ran:
    """Run a tool to its end, killed (with its children) after ``timeout`` seconds; while it
    runs, its process is in ``running`` (a case's: killed when the case's budget runs out)."""
    started = time.monotonic()
    running, lock = (set() if running is None else running), lock or threading.Lock()
    process = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, **(env or {})}, start_new_session=True)
    with lock:
        running.add(process)
    timed_out = False
    try:
        out, err = process.communicate(stdin.encode() if stdin is not None else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(process)
        out, err = process.communicate()
    finally:
        with lock:
            running.discard(process)
    return Ran(argv, process.returncode, out.decode(errors="replace"), err.decode(errors="replace"),
               timed_out, time.monotonic() - started, secrets)

# --- DNS and strace: observing SRV use --------------------------------------------------------

def nameserver() -> str:
    """The container's resolver (Docker's, which forwards to the lab DNS)."""
    with open("/etc/resolv.conf") as resolv:
        for line in resolv:
            if line.split()[:1] == ["nameserver"]:
                return line.split()[1]
    return "127.0.0.11"


def srv_lookup(name: str, timeout: float = 3.0, server: str | None = None,
               port: int = 53) -> list[tuple[int, int, int, str]]:
    """(priority, weight, port, target) of the SRV records of ``name``, asked of ``server``
    (default: the container's resolver); [] for an answer with an error code."""
    reply = DNSRecord.parse(DNSRecord.question(name, "SRV").send(server or nameserver(), port, timeout=timeout))
    if reply.header.rcode != RCODE.NOERROR:
        return []
    return sorted((r.rdata.priority, r.rdata.weight, r.rdata.port, str(r.rdata.target).rstrip("."))
                  for r in reply.rr if r.rtype == QTYPE.SRV)


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


def srv_verdict(tool: str, domain: str, records, names, connects, addresses: dict | None = None) -> str:
    """Which SRV record was used; CaseFailed when the connection did not follow it.
    ``addresses``: srv_addresses(records), looked up now when not given."""
    wanted = f"_xmpp-client._tcp.{domain}"
    if wanted not in names:
        raise CaseFailed(f"{tool} never asked DNS for {wanted} (asked: {sorted(set(names)) or 'nothing'})")
    if not connects:
        raise CaseFailed(f"{tool} made no TCP connection")
    addresses = srv_addresses(records) if addresses is None else addresses
    ip, port = connects[-1]
    if (ip, port) not in addresses:
        raise CaseFailed(f"{tool} connected to {ip}:{port}, not to the SRV answer "
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

    def login(self) -> str:
        """The bound full JID (a stream error before it: see login_refused)."""
        try:
            return self._login()
        except StreamError as error:
            raise login_refused(f"receiver {self.user}@{self.domain}", str(error)) from None

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


# --- one case ---------------------------------------------------------------------------------

class Context(Case):
    """One case of a command-line stack: its tool runs are traced, passwords hidden."""

    def run(self, argv, timeout, **kwargs) -> Ran:
        ran = run(argv, timeout, secrets=self.secrets(), running=self.processes, lock=self.lock, **kwargs)
        self.trace.append(ran.text())
        return ran


def env(ca: str) -> dict:
    """Environment of a tool run that trusts only ``ca`` (OpenSSL and Go's crypto/x509 read it)."""
    return {"SSL_CERT_FILE": ca, "SSL_CERT_DIR": "/nonexistent", "HOME": "/root"}
