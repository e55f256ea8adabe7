"""What the runners of the command-line client stacks share (xmppc, go-sendxmpp, sendxmpp),
and the few pieces nbxmpp's runner uses as well (CaseFailed, token, SYSTEM_CA, the grouping
of cases).

Put beside each runner at /opt/xmpp-lab/ (``support`` of its stack in lab/stacks/), so a
runner imports it by name: the script's own folder is on sys.path. Standard library only.

- running tools: Ran, run() (killed with its children at a timeout), clip(), kill()
- SRV use: srv_lookup() (stdlib DNS client), observed() (strace output), srv_verdict()
- Receiver: a small stdlib XMPP client that logs in and waits for one message
- Context (one case) and main(): `RUNNER cases SPEC_JSON` runs every (server, target)
  group in a thread of its own under a watchdog and prints one JSON list of results
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

SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
S2S = {"S1"}                   # cases that need a second (target) server


class CaseFailed(Exception):
    pass


def token(n: int = 8) -> str:
    return uuid.uuid4().hex[:n]


# --- subprocesses ----------------------------------------------------------------------------

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


def srv_verdict(tool: str, domain: str, records, names, connects) -> str:
    """Which SRV record was used; CaseFailed when the connection did not follow it."""
    wanted = f"_xmpp-client._tcp.{domain}"
    if wanted not in names:
        raise CaseFailed(f"{tool} never asked DNS for {wanted} (asked: {sorted(set(names)) or 'nothing'})")
    if not connects:
        raise CaseFailed(f"{tool} made no TCP connection")
    addresses = srv_addresses(records)
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


# --- one case ---------------------------------------------------------------------------------

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
    """Environment of a tool run that trusts only ``ca`` (OpenSSL and Go's crypto/x509 read it)."""
    return {"SSL_CERT_FILE": ca, "SSL_CERT_DIR": "/nonexistent", "HOME": "/root"}




# --- running the spec -------------------------------------------------------------------------

def concurrency(spec: dict) -> int:
    """Cases (or nbxmpp groups) in flight at once, as the lab asked."""
    return max(1, int(spec.get("concurrency") or 4))


def passed(detail: str, notes: list) -> dict:
    """The result of a case that passed. Every note is a retry that was needed: then it is
    flaky, never pass, and the notes say why."""
    notes = list(dict.fromkeys(notes))
    return {"status": "flaky" if notes else "pass", "detail": "; ".join([detail, *notes])}


def groups(entries: list) -> dict:
    """{(server, target): [indexes of its entries]}, groups and indexes in the order of ``entries``."""
    found: dict = {}
    for index, entry in enumerate(entries):
        found.setdefault((entry.get("server"), entry.get("target")), []).append(index)
    return found


def stopped(entry: dict, detail: str, seconds: float) -> dict:
    """The result of a case that was stopped before it reported one."""
    return {**{k: entry.get(k) for k in ("case", "server", "target")}, "status": "error",
            "detail": detail, "trace": "", "seconds": seconds}


def run_case(tool: str, case_functions: dict, spec: dict, entry: dict) -> dict:
    started = time.monotonic()
    case, server, target = entry.get("case"), entry.get("server"), entry.get("target")
    result = {"case": case, "server": server, "target": target, "status": "error", "detail": "", "trace": ""}
    ctx = None
    try:
        if case not in case_functions:
            result["detail"] = f"the {tool} runner cannot express {case}"
        elif server not in spec["servers"] or (case in S2S and target not in spec["servers"]):
            result["detail"] = f"server {server if server not in spec['servers'] else target!r} not in the spec"
        else:
            ctx = Context(spec, entry)
            result["started"] = time.time()
            try:
                result.update(passed(case_functions[case](ctx), ctx.notes))
            except CaseFailed as failure:
                result.update(status="fail", detail=str(failure))
            except Exception as error:  # a runner bug: report it as an error, not a verdict
                result.update(status="error", detail=f"runner error: {type(error).__name__}: {error}")
    finally:
        if ctx is not None:
            ctx.close()
            if result["status"] != "pass":
                result["trace"] = ctx.trace_text()
        result["seconds"] = round(time.monotonic() - started, 3)
        result["ended"] = time.time()
    return result


def run_cases(tool: str, case_functions: dict, budget, spec: dict) -> list:
    """Every (server, target) group in its own thread, the cases of a group in order; a
    watchdog bounds the whole run (``budget(case, timeout)`` seconds a case), kills what
    is left and reports it as error."""
    entries = spec.get("cases", [])
    timeout = float(spec.get("timeout", 20))
    results: list = [None] * len(entries)
    by_group = groups(entries)

    slots = threading.Semaphore(concurrency(spec))

    def run_group(indexes):
        for index in indexes:
            with slots:  # the case's budget starts once it has its slot
                results[index] = run_case(tool, case_functions, spec, entries[index])

    threads = [threading.Thread(target=run_group, args=(indexes,), daemon=True) for indexes in by_group.values()]
    for thread in threads:
        thread.start()
    budgets = [budget(entry["case"], timeout) for entry in entries]
    limit = max(max((sum(budgets[i] for i in g) for g in by_group.values()), default=0),
                sum(budgets) / concurrency(spec) + max(budgets, default=0)) + 15
    deadline = time.monotonic() + limit
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with PROCESS_LOCK:
        for process in list(PROCESSES):
            kill(process)
    return [result or stopped(entries[i], f"the runner's watchdog stopped it after {limit:.0f}s", round(limit, 3))
            for i, result in enumerate(results)]


def main(tool: str, case_functions: dict, budget, prepare=None) -> None:
    """`RUNNER cases SPEC_JSON`: ``prepare()`` (if given), then the cases; prints, as the
    last stdout line, one JSON list with one result per case of the spec (same order)."""
    command, spec = sys.argv[1], json.loads(sys.argv[2])
    if command != "cases":
        raise SystemExit(f"unknown command {command} (only: cases)")
    if prepare is not None:
        prepare()
    results = run_cases(tool, case_functions, budget, spec)
    sys.stdout.write("\n" + json.dumps(results) + "\n")
    sys.stdout.flush()
    os._exit(0)  # threads still stuck in a tool are not waited for
