"""slixmpp's client as the lab uses it: trusting only the lab CA, tracing the raw XML it
sends and receives, keeping every element it received (its inbox) for the expectations of
slixmpp_expect.py; and the XML names and helpers the cases share."""

from __future__ import annotations

import re
import ssl
import time
from xml.sax.saxutils import escape, quoteattr

NS_CLIENT = "jabber:client"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_ROSTER = "jabber:iq:roster"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_PING = "urn:xmpp:ping"
NS_SM = "urn:xmpp:sm:3"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_MAM = "urn:xmpp:mam:2"
NS_SID = "urn:xmpp:sid:0"
NS_REGISTER = "jabber:iq:register"
NS_REGISTER_FEATURE = "http://jabber.org/features/iq-register"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
NS_DATA = "jabber:x:data"
NS_RSM = "http://jabber.org/protocol/rsm"
MESSAGE, PRESENCE, IQ = (f"{{{NS_CLIENT}}}{name}" for name in ("message", "presence", "iq"))

TRACE_HEAD, TRACE_TAIL, TRACE_LINE = 60, 300, 4000
OLD_CONNECT_API = True  # set by deep_client_class, once slixmpp is imported


def esc(value: str) -> str:
    """An XML attribute value, quotes included."""
    return quoteattr(str(value))


def text_esc(text: str) -> str:
    return escape(str(text))


def bare(jid: str | None) -> str:
    return (jid or "").split("/", 1)[0]


def error_condition(element) -> tuple[str | None, str | None]:
    """(condition, type) of a stanza's <error/>, or (None, None)."""
    error = element.find(f"{{{NS_CLIENT}}}error")
    if error is None:
        return None, None
    for child in error:
        if child.tag.startswith(f"{{{NS_STANZAS}}}") and not child.tag.endswith("}text"):
            return child.tag.split("}", 1)[1], error.get("type")
    return "(no condition)", error.get("type")


def describe_error(element) -> str:
    condition, kind = error_condition(element)
    error = element.find(f"{{{NS_CLIENT}}}error")
    text = error.findtext(f"{{{NS_STANZAS}}}text") if error is not None else None
    return f"{condition} ({kind})" + (f": {text}" if text else "")


def old_connect_api() -> bool:
    """slixmpp before 1.10: connect(use_ssl=...) and ``dns_service``; from 1.10, connect()
    returns the attempt's Future and TLS is chosen by ``enable_direct_tls`` and
    ``enable_starttls``."""
    import inspect

    import slixmpp
    return "use_ssl" in inspect.signature(slixmpp.ClientXMPP.connect).parameters


def lab_client_class(ca_file: str):
    import slixmpp

    class LabClient(slixmpp.ClientXMPP):
        """Trusts only the lab CA, as a real client configured for the lab would."""

        def get_ssl_context(self) -> ssl.SSLContext:
            context = ssl.create_default_context(cafile=ca_file)
            context.check_hostname = True
            return context

    return LabClient




class Tracer:
    """The raw XML of every client of one case, in order, with the time since the case began."""

    def __init__(self):
        self.started = time.monotonic()
        self.lines: list[str] = []

    def add(self, label: str, direction: str, data: str) -> None:
        data = re.sub(r"(<auth\b[^>]*>)[^<]+(</auth>)", r"\1[redacted]\2", data)
        data = re.sub(r"(<password>)[^<]*(</password>)", r"\1[redacted]\2", data)
        if len(data) > TRACE_LINE:
            data = data[:TRACE_LINE] + f"... ({len(data) - TRACE_LINE} more characters)"
        self.lines.append(f"{time.monotonic() - self.started:7.3f} {label} {direction} {data}")

    def text(self) -> str:
        lines = self.lines
        if len(lines) > TRACE_HEAD + TRACE_TAIL:
            lines = (lines[:TRACE_HEAD] + [f"... {len(lines) - TRACE_HEAD - TRACE_TAIL} lines left out ..."]
                     + lines[-TRACE_TAIL:])
        return "\n".join(lines)


def deep_client_class(ca_file: str):
    global OLD_CONNECT_API
    OLD_CONNECT_API = old_connect_api()
    base = lab_client_class(ca_file)

    class DeepClient(base):
        """A LabClient that traces its raw XML and keeps every element it received."""

        def __init__(self, jid: str, password: str, tracer: Tracer):
            super().__init__(jid, password)
            self.tracer, self.label = tracer, jid
            self.inbox: list = []
            self.waiters: list = []
            self.stage = "connecting"
            self.auth_failures: list[str] = []
            self.stream_errors: list[str] = []
            # Subscription requests are answered by the cases themselves, never automatically.
            self.auto_authorize = None
            self.auto_subscribe = False
            for event, stage in (("connected", "connected, before TLS"), ("tls_success", "TLS up, before SASL"),
                                 ("auth_success", "authenticated, before binding"),
                                 ("session_bind", "bound, before session"), ("session_start", "session started"),
                                 ("session_resumed", "session resumed")):
                self.add_event_handler(event, lambda _, stage=stage: setattr(self, "stage", stage))
            self.add_event_handler("failed_auth", lambda failure: self.auth_failures.append(
                f"{self['feature_mechanisms'].mech.name if self['feature_mechanisms'].mech else '?'}: "
                f"{failure['condition']}"))
            self.add_event_handler("stream_error", lambda error: self.stream_errors.append(
                f"{error['condition']}" + (f" ({error['text']})" if error["text"] else "")))
            self.connect_failures: list[str] = []
            self.add_event_handler("connection_failed", self.connection_failed)
            self.add_event_handler("disconnected", lambda reason: self.note(f"disconnected ({reason or 'closed'})"))

            self.reached = False
            self.add_event_handler("connected", lambda _: setattr(self, "reached", True))

        def start(self, direct_tls: bool = False) -> None:
            """Connect as SRV says: STARTTLS (_xmpp-client) or direct TLS (_xmpps-client)
            only. The event ``unreachable`` comes once every address DNS gave has failed
            (slixmpp itself then starts over, after a back-off, until cancelled)."""
            self.reached = False
            if OLD_CONNECT_API:
                self.connect(use_ssl=direct_tls)
                if direct_tls:
                    self.dns_service = "xmpps-client"  # connect() set xmpp-client; the lookup runs later
                return
            self.enable_direct_tls, self.enable_starttls = direct_tls, not direct_tls
            self.connect().add_done_callback(self.attempt_over)

        def attempt_over(self, attempt) -> None:
            if not attempt.cancelled() and not self.reached:
                self.event("unreachable", self.connect_failures[-1] if self.connect_failures else "no address")

        def connection_failed(self, error) -> None:
            # slixmpp's address: the one it tried (before 1.10 only)
            where = (f" ({self.address[0]}:{self.address[1]})"
                     if isinstance(error, OSError) and hasattr(self, "address") else "")
            self.connect_failures.append(f"{error}{where}")
            self.note(f"connection failed: {error}{where}")
            # Before 1.10 slixmpp moves on to the next address by itself, and the failure of
            # the last one comes with _dns_answers reset to None.
            if OLD_CONNECT_API and getattr(self, "_dns_answers", None) is None:
                self.event("unreachable", f"{error}{where}")

        def note(self, text: str) -> None:
            self.tracer.add(self.label, "--", text)

        def connection_made(self, transport, *args, **kwargs) -> None:
            # (1.10+ calls it again after STARTTLS, with send_event=False)
            peer = transport.get_extra_info("peername") or ("?", "?")
            tls = transport.get_extra_info("ssl_object")
            self.note(f"TLS up with {peer[0]}:{peer[1]}: {tls.version()} {tls.cipher()[0]}" if tls
                      else f"TCP connected to {peer[0]}:{peer[1]}")
            super().connection_made(transport, *args, **kwargs)

        def send_raw(self, data) -> None:
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
            if text.strip():
                self.tracer.add(self.label, ">>", text)
            super().send_raw(data)

        def data_received(self, data) -> None:
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
            if text.strip():
                self.tracer.add(self.label, "<<", text)
            super().data_received(data)

        def incoming_filter(self, xml):
            self.inbox.append(xml)
            for predicate, future in list(self.waiters):
                if not future.done() and _matches(predicate, xml):
                    future.set_result(xml)
            return xml

    return DeepClient


def _matches(predicate, element) -> bool:
    try:
        return bool(predicate(element))
    except Exception:  # a predicate looking at an element it does not expect
        return False
