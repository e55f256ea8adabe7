"""Test runner for the nbxmpp client stack (Debian's python3-nbxmpp, Gajim's library).

Run inside the client container; needs only the standard library, the harness beside it,
and nbxmpp (GLib main loop through PyGObject, headless). Usage:
    nbxmpp_runner.py cases SPEC_JSON      # interop catalogue cases C1 C2 C3 C5 C7 S1
    nbxmpp_runner.py login SPEC_JSON      # connect + STARTTLS + SASL + bind (C1's control)

nbxmpp runs on one GLib main loop, so the harness runs every (server, target) group in a
child process of its own, cases of a group in order. Messages of C5/S1 go to the
recipient's full JID (its session has presence priority -1), so a bare-JID message meant
for another test session of the same account is never taken, nor one of ours lost to
another session.

SPEC for login: {"jid": "alice@prosody.test", "password": "...", "ca": "/etc/xmpp-lab/ca.pem",
"timeout": 20}

Connection: only STARTTLS on the addresses of SRV _xmpp-client._tcp.<domain> (resolved by
Gio, i.e. glibc and /etc/resolv.conf; Gio itself falls back to the domain's A/AAAA when
there is no SRV record, and nbxmpp then tries <domain>:5222). Direct TLS (_xmpps-client)
and plaintext are switched off. The TLS database of the connection is replaced by one
holding only the CA file of the spec, so the system store is NOT trusted; the host name
is checked by GnuTLS (glib-networking) against the JID's domain.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid

from harness import Case, CaseFailed, Runner, delivered, login_refused, main, token

SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


def _imports():
    import gi
    gi.require_version("GLib", "2.0")
    gi.require_version("Gio", "2.0")
    from gi.repository import Gio, GLib
    from nbxmpp.client import Client
    from nbxmpp.const import ConnectionType
    from nbxmpp.protocol import JID, Message, Presence
    from nbxmpp.structs import StanzaHandler
    from nbxmpp.tcp import TCPConnection
    return Gio, GLib, Client, ConnectionType, JID, Message, Presence, StanzaHandler, TCPConnection


(Gio, GLib, Client, ConnectionType, JID, Message, Presence, StanzaHandler,
 TCPConnection) = _imports()


def lab_client_class(ca_file: str):
    """A Client whose STARTTLS trusts exactly the certificates in ``ca_file``."""
    database = Gio.TlsFileDatabase.new(ca_file)  # raises GLib.Error on an unreadable file

    class LabTCPConnection(TCPConnection):
        def start_tls_negotiation(self):
            super().start_tls_negotiation()
            # self._con now wraps the Gio.TlsClientConnection; the handshake starts on
            # the next read or write, so the database is in place before it.
            self._con.get_base_io_stream().set_database(database)

    class LabClient(Client):
        def _get_connection(self, *args):
            if self.is_websocket:
                raise RuntimeError("websocket connections are not used by the lab")
            return LabTCPConnection(*args)

    return LabClient


def wait_until(predicate, timeout: float) -> bool:
    context = GLib.MainContext.default()
    deadline = time.monotonic() + timeout
    ticker = GLib.timeout_add(50, lambda: True)
    try:
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            context.iteration(True)
        return True
    finally:
        GLib.source_remove(ticker)


class Session:
    """One logged-in account; collects the chat messages it receives."""

    def __init__(self, cls, jid: str, password: str):
        self.jid = JID.from_string(jid)
        self.client = cls(log_context=jid)
        self.client.set_username(self.jid.localpart)
        self.client.set_domain(self.jid.domain)
        self.client.set_password(password)
        self.client.set_resource(f"lab-{uuid.uuid4().hex[:8]}")
        self.client.set_connection_types([ConnectionType.START_TLS])
        self.client.set_http_session(None)  # no XEP-0156 host-meta lookup over HTTPS
        self.client.subscribe("connected", self._on_connected)
        self.client.subscribe("disconnected", self._on_down)
        self.client.subscribe("connection-failed", self._on_down)
        self.client.register_handler(StanzaHandler(name="message", callback=self._on_message))
        self.state = "connecting"  # -> active | failed
        self.failure: dict | None = None
        self.messages: list[dict] = []
        self.started = time.monotonic()
        self.seconds: float | None = None

    def _on_connected(self, client, _signal):
        self.state = "active"
        self.seconds = round(time.monotonic() - self.started, 2)

    def _on_down(self, client, signal):
        if self.state == "closing":
            self.state = "closed"
            return
        if self.state in ("failed", "closed"):
            return
        self.state = "failed"
        domain, error, text = client.get_error()
        failure = {"signal": signal, "error_domain": str(domain) if domain else None,
                   "error": str(error) if error else None, "text": str(text) if text else None}
        cert, errors = client.peer_certificate if client.peer_certificate else (None, None)
        if errors:
            failure["certificate_errors"] = sorted(_nick(e) for e in errors)
        failure["stage"] = _stage(failure)
        self.failure = failure

    def _on_message(self, _client, stanza, properties):
        if properties.body is None:
            return
        self.messages.append({
            "from": str(properties.jid.bare) if properties.jid else None,
            "from_full": str(properties.from_) if properties.from_ else None,
            "type": str(properties.type.value) if properties.type else None,
            "id": properties.id,
            "body": properties.body,
            "delayed": bool(properties.has_server_delay),
        })

    def connect(self, timeout: float) -> bool:
        self.client.connect()
        if not wait_until(lambda: self.state != "connecting", timeout):
            self.state = "failed"
            self.failure = {"stage": "timeout", "error": f"no session within {timeout}s"}
            self.client.disconnect(immediate=True)
            return False
        return self.state == "active"

    def info(self) -> dict:
        client = self.client
        info = {"jid": str(self.jid), "bound_jid": str(client.get_bound_jid()),
                "seconds": self.seconds}
        address = client.current_address
        if address is not None:
            info["address"] = {"service": address.service, "host": address.host,
                               "type": str(address.type.name)}
        info["remote"] = str(client.remote_address) if client.remote_address else None
        try:
            info["tls_version"] = _nick(client.tls_version) if client.tls_version is not None else None
            info["ciphersuite"] = client.ciphersuite
        except Exception:  # older GLib: not available
            pass
        mechanism = getattr(client._sasl, "_mechanism", None)
        info["sasl_mechanism"] = getattr(mechanism, "name", None)
        return info

    def send_presence(self, priority: int | None = None) -> None:
        self.client.send_stanza(Presence(priority=priority))

    def send_chat(self, to: str, body: str, message_id: str) -> None:
        message = Message(to=to, body=body, typ="chat")
        message.setID(message_id)
        self.client.send_stanza(message)

    def ping_server(self, timeout: float) -> str | None:
        """None when the server answered a ping (so it processed what we sent before)."""
        done: list = []

        def on_pong(task):
            try:
                task.finish()
                done.append(None)
            except Exception as error:  # an error reply still proves the server read it
                done.append(f"ping error: {error}")

        self.client.get_module("Ping").ping(self.jid.domain, callback=on_pong, timeout=timeout)
        if not wait_until(lambda: done, timeout):
            return f"no ping reply within {timeout}s"
        return done[0]

    def close(self) -> None:
        if self.state == "active":
            self.state = "closing"
            self.client.disconnect()
            wait_until(lambda: self.state == "closed", 3)


def _nick(value) -> str:
    """'tls-1-3', 'unknown-ca', ... for a GLib enum or flag value."""
    return getattr(value, "value_nick", None) or getattr(value, "first_value_nick", None) or str(value)


def _stage(failure: dict) -> str:
    domain = (failure.get("error_domain") or "").upper()
    if "BAD_CERTIFICATE" in domain or failure.get("certificate_errors"):
        return "tls-certificate"
    if "SASL" in domain:
        return "auth"
    if "TLS" in domain:
        return "tls"
    return "connect"


def _login(spec: dict) -> tuple[Session, dict]:
    cls = lab_client_class(spec["ca"])
    session = Session(cls, spec["jid"], spec["password"])
    ok = session.connect(spec.get("timeout", 20))
    result = {"ok": ok, **session.info()} if ok else {"ok": False, "jid": spec["jid"], **session.failure}
    return session, result


def login(spec: dict) -> dict:
    session, result = _login(spec)
    session.close()
    return result


# --- interop catalogue cases (the lab's `lab test`) -----------------------------------------

class TraceHandler(logging.Handler):
    """nbxmpp logs every stanza sent and received (and its state changes) at INFO."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(f"{record.name}: {record.getMessage()}".replace("::::: DATA ", "").strip())


TRACE = TraceHandler()


def _describe(failure: dict | None) -> str:
    failure = failure or {}
    parts = [failure.get("stage"), failure.get("error_domain"), failure.get("error"), failure.get("text")]
    if failure.get("certificate_errors"):
        parts.append("certificate: " + ", ".join(failure["certificate_errors"]))
    return " / ".join(p for p in parts if p) or "no session"


class CaseRun(Case):
    """One case: its sessions, and nbxmpp's log of them as the trace."""

    def __init__(self, spec: dict, entry: dict, budget: float):
        super().__init__(spec, entry, budget)
        self.cls = lab_client_class(spec["ca"])
        self.sessions: list[Session] = []
        TRACE.lines = []  # one case at a time in this process

    def attempt(self, server: str, user: str, password: str | None = None, cls=None) -> Session:
        """A session, connected or failed (see .state / .failure)."""
        jid, right = self.account(server, user)
        session = Session(cls or self.cls, jid, password or right)
        session.client.set_resource(f"lab-{self.case.lower()}-{token()}")
        self.sessions.append(session)
        session.connect(self.timeout)
        return session

    def login(self, server: str, user: str, presence: bool = False) -> Session:
        session = self.attempt(server, user)
        if session.state != "active" and (session.failure or {}).get("error") == "internal-server-error":
            raise login_refused(str(session.jid), "internal-server-error")
        if session.state != "active":
            raise CaseFailed(f"{session.jid}: login failed: {_describe(session.failure)}")
        if presence:
            # Priority -1: only messages to this full JID come here. The ping answer
            # (result or error) shows the server has handled the presence before it.
            session.send_presence(priority=-1)
            session.ping_server(self.timeout)
        return session

    def close(self) -> None:
        for session in self.sessions:
            try:
                session.close()
            except Exception:
                pass

    def trace_text(self) -> str:
        text = "\n".join(TRACE.lines)
        return text if len(text) <= 12000 else text[:3000] + "\n[...]\n" + text[-9000:]


def _srv_addresses(domain: str) -> tuple[list[str], set]:
    """(SRV answer as 'host:port', {(ip, port)}) of _xmpp-client._tcp.<domain>, through
    Gio's resolver (the one nbxmpp's connection uses)."""
    try:
        targets = Gio.Resolver.get_default().lookup_service("xmpp-client", "tcp", domain, None)
    except GLib.Error as error:
        raise CaseFailed(f"no SRV record _xmpp-client._tcp.{domain} ({error.message})") from None
    answer, addresses = [], set()
    for target in targets:
        host, port = target.get_hostname(), target.get_port()
        answer.append(f"{host}:{port}")
        try:
            addresses |= {(info[4][0], port) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
        except OSError:
            pass
    return answer, addresses


def case_c1(run: CaseRun) -> str:
    domain = run.domain(run.server)
    answer, addresses = _srv_addresses(domain)
    session = run.login(run.server, "alice")
    info = session.info()
    address = info.get("address") or {}
    if address.get("service") != "xmpp-client" or address.get("host"):
        raise CaseFailed(f"nbxmpp connected to {address}, not through the _xmpp-client service")
    if address.get("type") != "START_TLS":
        raise CaseFailed(f"connection type {address.get('type')}, not STARTTLS")
    host, _, port = (info.get("remote") or "").rpartition(":")
    if (host.strip("[]"), int(port or 0)) not in addresses:
        raise CaseFailed(f"connected to {info.get('remote')}, not to the SRV answer {', '.join(answer)} "
                         f"({sorted(addresses)})")
    # The control runs in a process of its own: glib-networking keeps TLS sessions per process
    # and resumes one (jabberd2 offers resumption) without checking the server against the
    # trust database of the new connection.
    jid, password = run.account(run.server, "alice")
    checked = subprocess.run([sys.executable, os.path.abspath(__file__), "login",
                              json.dumps({"jid": jid, "password": password, "ca": SYSTEM_CA,
                                          "timeout": run.timeout})],
                             capture_output=True, text=True, timeout=run.timeout + 10)
    try:
        control = json.loads(checked.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise CaseFailed(f"the control login (system CA store) printed no result: {checked.stderr[-300:]}") from None
    if control.get("ok"):
        raise CaseFailed("with the system CA store instead of the lab CA the login still worked: "
                         "the certificate is not verified")
    if control.get("stage") != "tls-certificate":
        raise CaseFailed(f"with the system CA store: refused, but not for the certificate: {_describe(control)}")
    return (f"SRV _xmpp-client._tcp.{domain} -> {', '.join(answer)} followed ({info['remote']}); STARTTLS "
            f"{info.get('tls_version')} {info.get('ciphersuite')}, certificate verified against the lab CA only, "
            f"SASL {info.get('sasl_mechanism')}; with the system CA store instead: "
            f"{', '.join(control.get('certificate_errors') or ['bad certificate'])}")


def case_c2(run: CaseRun) -> str:
    session = run.login(run.server, "alice")
    mechanism = session.info().get("sasl_mechanism")
    wrong = run.attempt(run.server, "alice", password=f"wrong-{token()}")
    if wrong.state == "active":
        raise CaseFailed("logged in with a wrong password")
    failure = wrong.failure or {}
    if failure.get("stage") != "auth" and failure.get("error") == "internal-server-error":
        raise login_refused(f"{wrong.jid} (wrong password)", "internal-server-error")  # a passing server fault
    if failure.get("stage") != "auth":
        raise CaseFailed(f"wrong password: failed before SASL: {_describe(failure)}")
    if failure.get("error") != "not-authorized":
        raise CaseFailed(f"wrong password answered with {failure.get('error')}, not not-authorized")
    return (f"SASL {mechanism}; wrong password -> not-authorized"
            + (f" ('{failure['text']}')" if failure.get("text") else ""))


def case_c3(run: CaseRun) -> str:
    session = run.login(run.server, "alice")
    asked = session.client._resource
    bound = session.client.get_bound_jid()
    if bound is None or not bound.resource:
        raise CaseFailed(f"bind returned {bound}, not a full JID")
    if str(bound.bare) != str(session.jid.bare):
        raise CaseFailed(f"bind returned {bound}, bare JID is not {session.jid.bare}")
    return f"bound {bound}" + ("" if bound.resource == asked else f" (server replaced requested resource {asked})")


def _deliver(run: CaseRun, sender: Session, recipient: Session) -> str:
    to, me = str(recipient.client.get_bound_jid()), str(sender.client.get_bound_jid())
    message_id, body = f"lab-{token(12)}", f"lab {run.case} nbxmpp {token(12)}"
    started = time.monotonic()
    sender.send_chat(to, body, message_id)
    wait_until(lambda: any(m["body"] == body for m in recipient.messages), run.timeout)
    message = next((m for m in recipient.messages if m["body"] == body), None)
    got = message and {**message, "from": message["from_full"]}
    return delivered(f"{me} -> {to}", {"from": me, "id": message_id, "type": "chat", "body": body},
                     got, time.monotonic() - started, run.timeout)


def case_c5(run: CaseRun) -> str:
    alice = run.login(run.server, "alice")
    bob = run.login(run.server, "bob", presence=True)
    return _deliver(run, alice, bob)


def case_c7(run: CaseRun) -> str:
    session = run.login(run.server, "alice")
    started = time.monotonic()
    problem = session.ping_server(run.timeout)
    if problem:
        raise CaseFailed(f"ping {run.domain(run.server)}: {problem}")
    return f"ping {run.domain(run.server)}: result in {(time.monotonic() - started) * 1000:.0f} ms"


def case_s1(run: CaseRun) -> str:
    alice = run.login(run.server, "alice", presence=True)
    bob = run.login(run.target, "bob", presence=True)
    there = _deliver(run, alice, bob)
    back = _deliver(run, bob, alice)
    return f"{there}; back: {back}"


CASES = {"C1": case_c1, "C2": case_c2, "C3": case_c3, "C5": case_c5, "C7": case_c7, "S1": case_s1}


def budget(case: str, timeout: float) -> float:
    return {"C1": 2 * timeout + 10, "C2": 2 * timeout + 10, "C5": 3 * timeout + 10, "S1": 4 * timeout + 10}.get(
        case, timeout + 10)


if __name__ == "__main__":
    logging.basicConfig(level=logging.CRITICAL, stream=sys.stderr)
    logger = logging.getLogger("nbxmpp")  # every stanza, into the case's trace
    logger.setLevel(logging.INFO)
    logger.addHandler(TRACE)
    logger.propagate = False
    main(Runner("nbxmpp", CASES, case_class=CaseRun, budget=budget, isolate_groups=True,
                commands={"login": login}))
