"""Test runner for the libervia client stack (Debian's libervia-backend + libervia-cli).

Run inside the client container, on the shared harness beside it. Usage:
    libervia_runner.py cases SPEC_JSON      # J1 (IBB), J3 (decline); J2, J5, J6 not at every end (NOT_RUN)

An entry's "ends" (the plan's, for a stack with pairs_with) says who plays which end:
none, libervia at both; "libervia->slixmpp" or "slixmpp->libervia", the lab's slixmpp
initiator or responder (slixmpp_jingle.py, beside this runner) at the other end.

Each case runs a libervia backend of its own: a fresh HOME (so fresh profiles and
database), a private D-Bus bus between the backend and the CLI (the pb bridge of trixie's
0.9.0~hg4352 is broken, docs/jingle.md), the lab CA as the only trusted certificate
(SSL_CERT_FILE, read by OpenSSL's default verify paths that Twisted uses). The bus config
names no service directory, so the CLI can never D-Bus-activate a second backend.

libervia at both ends: A's profile (alice@A) sends the file with `file send`, B's profile
(bob@B) takes it with `file receive`; both profiles live on the one backend and log in to their own servers, so
every Jingle and IBB stanza crosses A -> B over s2s. The runner compares what arrived with
what was sent itself (size, sha-256) and records from the backend's log whether libervia's
own XEP-0300 check happened (the sender's checksum comes after the data, and may never
come) and which transport carried the file.

J2, J3 and J5 (docs/jingle.md, "J2, J3, J5 with libervia"): J2 keeps libervia's S5B plugin,
the lab's slixmpp end tries A's proxy alone; J3 refuses the backend's file dialog over the
bridge (``file receive`` cannot decline) and reads libervia's own view of a decline from its
progress_error signal; J5 sends to the bare JID, so libervia proposes first. Offers from the
lab's initiator in J2, J3, J5 carry <desc/> and <hash-used/> (what libervia can read), so the
steps after the offer are seen.

J1 is IBB: the backend runs without its XEP-0260 (Jingle SOCKS5) plugin, left out at import
(a sitecustomize in the case's HOME makes that one module unimportable, and libervia skips
a plugin it cannot import). IBB (XEP-0261) is then its only streaming transport. With it,
the two profiles of the one backend would take a direct SOCKS5 candidate and bypass the
servers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from harness import CaseFailed, NotObserved, Runner, clip, main, token
from slixmpp_client import MESSAGE, bare, esc
from slixmpp_expect import CaseRun
import slixmpp_jingle as jingle

FILE_SIZE = 20000          # as the slixmpp ends' file: five IBB blocks of 4096, the last partial
CHECKSUM_WAIT = 6.0        # seconds after the data for the sender's checksum (seen at 5 s)
# The backend's own start, not a server's answer: 10-25 s seen with four starting at once on
# two loaded cores (it imports every plugin, OMEMO's among them); one took longer than 20 s.
BACKEND_START = 60.0
S5B_PLUGIN = "libervia.backend.plugins.plugin_xep_0260"

# Lines of the backend's log (libervia/backend/plugins/plugin_xep_0234.py, _0047.py, _0065.py,
# _0260.py at 0.9.0~hg4352; the backend logs no stanzas, so the transport is read from these).
HASH_CHECKED = "Hash checked, file was successfully transfered"
HASH_MISSING = "sender didn't sent hash checksum"
HASH_BAD = "Hash mismatch"
TRANSPORT_LINES = {  # transport -> lines only its exchange logs
    "IBB (XEP-0261)": ("IBB stream opening",),
    "SOCKS5 (XEP-0260)": ("Found best peer candidate", "Other peer best candidate", "Candidate choosed by target"),
}
IBB = "IBB (XEP-0261)"
# The end of the session, or of any hope of one.
ENDED = re.compile(r"Jingle Session \S+ terminated|Can't find any method to send file|Can't send .* with Jingle")
S5B_LEFT_OUT = f"Can't import plugin [{S5B_PLUGIN}]"
# What the backend says when a step of the transfer went wrong (for the detail of a fail).
COMPLAINTS = re.compile(r"^.*(?:can't request disco infos|Can't send|Can't find any method|StanzaError|"
                        r"File transfer failed|Socks5 transfer failed).*$", re.MULTILINE | re.IGNORECASE)
# Its SOCKS5 giving up (plugin_xep_0260.py: _start_eb, _proxy_activated_eb, do_fallback).
S5B_TROUBLE = re.compile(r"^.*(?:Cant start transfert|Can't activate proxy|fallback to IBB|"
                         r"Can't connect to any peer candidate).*$", re.MULTILINE)
# Its reading of a standard XEP-0300 value (base64 of the digest) as base64 of hex text (finding 1).
HASH_TROUBLE = re.compile(r"^.*(?:UnicodeDecodeError|sender didn't sent hash checksum).*$", re.MULTILINE)
JINGLE_EXCEPTION = re.compile(r"^.*Unmanaged jingle exception: .*$", re.MULTILINE)

SKIPPING_SITECUSTOMIZE = """\
# Written by the lab's libervia runner: the modules named in LAB_LIBERVIA_SKIP cannot be
# imported in this process (libervia then skips the plugin as an unavailable module).
import importlib.abc, os, sys
_SKIPPED = set(filter(None, os.environ.get("LAB_LIBERVIA_SKIP", "").split(",")))
class _LabSkip(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name in _SKIPPED:
            raise ModuleNotFoundError(f"left out by the lab: {name}", name=name)
        return None
sys.meta_path.insert(0, _LabSkip())
"""

BUS_CONFIG = """\
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={home}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def transports_in(log: str) -> list[str]:
    """The transports whose exchange the backend's log shows."""
    return [name for name, lines in TRANSPORT_LINES.items() if any(line in log for line in lines)]


def libervia_checksum(log: str) -> str:
    """What libervia's own XEP-0300 check said on the receiving side."""
    if HASH_BAD in log:
        return "mismatch (libervia's own check failed)"
    if HASH_CHECKED in log:
        return "checked by libervia"
    if HASH_MISSING in log:
        return "never came (libervia: \"sender didn't sent hash checksum, we can't check the file\")"
    return "not reported by libervia"


def judge_transfer(sent: bytes, received: bytes | None, name: str, log: str, expected_transport: str,
                   used: list[str] | None = None) -> str:
    """J1's verdict on what arrived: the runner's own size and sha-256 check against the file
    sent (CaseFailed on any difference), and the transport the log shows (``used``: the
    transports as the slixmpp end saw them, where it is the receiver); the detail of a pass."""
    if received is None:
        raise CaseFailed(f"no file {name} arrived at B's profile")
    problems = []
    if len(received) != len(sent):
        problems.append(f"{len(received)} of {len(sent)} bytes")
    if sha256_b64(received) != sha256_b64(sent):
        problems.append(f"sha-256 {sha256_b64(received)}, sent {sha256_b64(sent)}")
    if problems:
        raise CaseFailed(f"the file received ({name}) is not the one sent: {'; '.join(problems)}; "
                         f"libervia's checksum: {libervia_checksum(log)}")
    used = transports_in(log) if used is None else used
    if used != [expected_transport]:
        raise CaseFailed(f"the file arrived whole, but over {', '.join(used) or 'no transport the log shows'}, "
                         f"not {expected_transport} alone")
    return (f"{len(received)} bytes over {expected_transport}, sha-256 matches the file sent (checked by the "
            f"runner); libervia's checksum: {libervia_checksum(log)}")


def hex_digest_note(detail: str) -> str:
    """Where the hash libervia sent is base64 of the hex digest (not of the digest, as XEP-0300
    says), what it decodes to."""
    found = re.search(r"offered ([A-Za-z0-9+/=]{80,})", detail)
    if not found:
        return ""
    try:
        text = base64.b64decode(found.group(1)).decode("ascii")
    except ValueError:
        return ""
    if re.fullmatch(r"[0-9a-f]{64}", text):
        return (f" (libervia's value is base64 of the hex digest {text}, not of the 32-byte digest as "
                f"XEP-0300 says; decoded as hex it is {base64.b64encode(bytes.fromhex(text)).decode()})")
    return ""


def missing_file(receiver: str, seconds: float, log: str, ended: bool, reason: str | None = None) -> CaseFailed:
    """The fail when nothing arrived (``reason``: of the receiver's session-terminate), with the
    backend's last complaints (or its silence)."""
    said = [line.split("+0000 ", 1)[-1].strip()
            for line in JINGLE_EXCEPTION.findall(log)[-1:] + COMPLAINTS.findall(log)[-1:]]
    if reason is not None:
        return CaseFailed(f"{receiver} ended the session with <{reason}/> and no file arrived"
                          + (f"; libervia logged: {' | '.join(said)}" if said else ""))
    return CaseFailed(f"no file arrived at {receiver} within {seconds:g}s"
                      + (f"; libervia logged: {' | '.join(said)}" if said else
                         "" if ended else ", and libervia logged no end of the transfer"))


class LiberviaCase(CaseRun):
    """A case with a libervia backend of its own (started by ``backend()``); for the pairs with
    slixmpp, also the slixmpp end's clients (CaseRun's)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.home = tempfile.mkdtemp(prefix="lab-libervia-")
        self.env: dict = {}
        self.log_path = os.path.join(self.home, "backend.log")
        self.bus = self.backend_process = None

    def spawn(self, command: list[str], **options) -> subprocess.Popen:
        process = subprocess.Popen(command, env=self.env, start_new_session=True, **options)
        with self.lock:
            self.processes.add(process)
        return process

    def cli(self, *arguments: str, timeout: float = BACKEND_START) -> str:
        """One libervia-cli command to its end; its output (CaseFailed when it fails). The
        commands set the backend up: each starts the CLI, which takes seconds on a loaded
        machine (one passed 20 s with four backends starting), hence the start's limit."""
        command = ["libervia-cli", *arguments]
        process = self.spawn(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(process)
            raise NotObserved(f"`{' '.join(self.shown(command))}` did not end within {timeout:g}s")
        finally:
            with self.lock:
                self.processes.discard(process)
        out = "\n".join(line for line in out.splitlines() if "rogress" not in line)  # the missing progressbar module
        self.trace.append(f"$ {' '.join(self.shown(command))} -> exit {process.returncode}\n{out}".strip())
        if process.returncode != 0:
            raise CaseFailed(f"`{' '.join(self.shown(command))}` failed (exit {process.returncode}): {out.strip()[-300:]}")
        return out

    def shown(self, command: list[str]) -> list[str]:
        return ["***" if part in self.secrets() else part for part in command]

    def stop(self, process: subprocess.Popen) -> None:
        try:
            os.killpg(process.pid, 15)
            process.wait(timeout=3)
        except (OSError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, 9)
            except OSError:
                pass
        with self.lock:
            self.processes.discard(process)

    def backend(self, skip: tuple[str, ...] = ()) -> None:
        """Start the bus and the backend; return once the CLI gets an answer from it."""
        config_dir = os.path.join(self.home, ".config", "libervia")
        os.makedirs(config_dir)
        # Made here: the backend and the CLI polling it both create them at import (xdg's
        # save_data_path), and the loser of that race exits with FileExistsError.
        for made in ((".local", "share", "libervia"), (".cache", "libervia")):
            os.makedirs(os.path.join(self.home, *made))
        with open(os.path.join(config_dir, "libervia.conf"), "w") as conf:
            conf.write("[DEFAULT]\nbridge = dbus\nlog_level = debug\n")
        site = os.path.join(self.home, "site")
        os.makedirs(site)
        with open(os.path.join(site, "sitecustomize.py"), "w") as custom:
            custom.write(SKIPPING_SITECUSTOMIZE)
        with open(os.path.join(self.home, "bus.conf"), "w") as bus_conf:
            bus_conf.write(BUS_CONFIG.format(home=self.home))
        self.env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": self.home, "LANG": "C.UTF-8",
                    "SSL_CERT_FILE": self.ca or "", "PYTHONPATH": site,
                    "LAB_LIBERVIA_SKIP": ",".join(skip),
                    "TMPDIR": self.home,  # its PID file (pid_dir) is under the temp dir: one per backend
                    "PYTHONUNBUFFERED": "1"}  # the CLI's output, read after it is stopped (it never ends)
        self.bus = self.spawn(["dbus-daemon", f"--config-file={self.home}/bus.conf", "--nofork", "--print-address=1"],
                              stdout=subprocess.PIPE, text=True)
        address = self.bus.stdout.readline().strip()
        if not address:
            raise NotObserved("the private D-Bus daemon gave no address")
        self.env["DBUS_SESSION_BUS_ADDRESS"] = address
        with open(self.log_path, "w") as log:
            self.backend_process = self.spawn(["libervia-backend", "fg"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + BACKEND_START
        while True:
            try:
                self.cli("profile", "list", timeout=10)
                return
            except (CaseFailed, NotObserved):
                if self.backend_process.poll() is not None:
                    raise NotObserved(f"libervia-backend exited ({self.backend_process.returncode}): "
                                      f"{self.log()[-500:]}")
                if time.monotonic() >= deadline:
                    raise NotObserved(f"libervia-backend did not answer on the bus within {BACKEND_START:g}s")
                time.sleep(0.5)

    def profile(self, name: str, server: str, user: str) -> str:
        """A profile for ``user`` of ``server``, connected; its full JID."""
        jid, password = self.account(server, user)
        full = f"{jid}/lab-libervia-{token(6)}"
        self.cli("profile", "create", name, "-j", full, "-p", "", "-x", password, "-A")
        self.cli("param", "set", "-p", name, "General", "allow_get_ip", "false")
        self.cli("profile", "connect", "-p", name, "-c")
        return full

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as log:
                return log.read()
        except OSError:
            return ""

    def close(self):
        if self.backend_process is not None and self.backend_process.poll() is None:
            self.stop(self.backend_process)
        if self.bus is not None:
            self.stop(self.bus)
        self.trace.append("backend log (last part):\n" + self.log()[-6000:])
        shutil.rmtree(self.home, ignore_errors=True)
        return super().close()  # the slixmpp clients (a coroutine)

    def trace_text(self) -> str:
        return clip("\n\n".join(self.trace), 8000) + "\n\n" + clip(self.tracer.text(), 4000)

    def outgoing(self) -> tuple[bytes, str, str]:
        """A fresh file to send: its bytes, name and path; the inbox made too."""
        data, name = os.urandom(FILE_SIZE), f"lab-{token(6)}.bin"
        os.makedirs(os.path.join(self.home, "outbox"))
        os.makedirs(os.path.join(self.home, "inbox"))
        with open(os.path.join(self.home, "outbox", name), "wb") as out:
            out.write(data)
        return data, name, os.path.join(self.home, "outbox", name)

    def received(self, name: str) -> bytes | None:
        path = os.path.join(self.home, "inbox", name)
        if not os.path.exists(path):
            return None
        with open(path, "rb") as got:
            return got.read()


def wait_for(predicate, seconds: float, step: float = 0.2):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def j1_libervia(case: LiberviaCase) -> str:
    """J1, libervia at both ends: A's profile sends, B's profile receives, over IBB alone."""
    case.backend(skip=(S5B_PLUGIN,))
    alice = case.profile("alice", case.server, "alice")
    bob = case.profile("bob", case.target, "bob")
    data, name, path = case.outgoing()
    started = time.monotonic()
    receiver = case.receive("bob", alice)
    sender = case.spawn(["libervia-cli", "file", "send", "-p", "alice", path, bob],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ended = case.outcome(name)
    took = time.monotonic() - started
    for process in (sender, receiver):  # neither command ends by itself (docs/jingle.md)
        case.stop(process)
    log, received = case.log(), case.received(name)
    case.evidence.update(file=name, bytes=len(received or b""), sha256=sha256_b64(data),
                         transports=transports_in(log), libervia_checksum=libervia_checksum(log),
                         sender=alice, receiver=bob, s5b_left_out=S5B_LEFT_OUT in log)
    if received is None:
        raise missing_file(bob, case.timeout, log, bool(ended))
    detail = judge_transfer(data, received, name, log, IBB)
    return f"{alice} -> {bob}: {detail}; in {took * 1000:.0f} ms"


def receive(case: LiberviaCase, profile: str, sender: str) -> subprocess.Popen:
    """`file receive` for ``profile``, taking files from ``sender``'s bare JID only."""
    receiver = case.spawn(["libervia-cli", "file", "receive", "-p", profile, "--path", os.path.join(case.home, "inbox"),
                           sender.split("/")[0]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # its wait for an offer is set up first (it accepts only what comes after)
    return receiver


def outcome(case: LiberviaCase, name: str):
    """Waits for the backend's end of the session, then briefly for libervia's own checksum."""
    ended = wait_for(lambda: ENDED.search(case.log()), case.timeout)
    if ended and os.path.exists(os.path.join(case.home, "inbox", name)):
        wait_for(lambda: any(line in case.log() for line in (HASH_CHECKED, HASH_MISSING, HASH_BAD)), CHECKSUM_WAIT)
    return ended


LiberviaCase.receive, LiberviaCase.outcome = receive, outcome


SOCKS5 = "SOCKS5 (XEP-0260)"
# What the lab's slixmpp end advertises to libervia's disco#info before its `file send`:
# Jingle and file transfer :5, and the transports the case allows it.
RESPONDER_FEATURES = {"ibb": (jingle.NS_IBB_TRANSPORT, jingle.NS_IBB),
                      "s5b": (jingle.NS_S5B_TRANSPORT, jingle.NS_BYTESTREAMS, jingle.NS_IBB_TRANSPORT, jingle.NS_IBB)}


def streamhost_of(notes: dict) -> str:
    """The streamhost the lab's responder used, and what it did with the others, for a detail."""
    used = notes.get("streamhost")
    tried = "; ".join(notes.get("candidates_tried", [])) or "none offered"
    if not used:
        return f"no streamhost used (candidates: {tried})"
    return f"streamhost used: {used['type']} {used['jid']} at {used['host']}:{used['port']} ({used['address']}) " \
           f"(candidates in priority order: {tried})"


def judge_streamhost(notes: dict, sender_domain: str) -> str:
    """J2: the file must have come through A's proxy (a proxy streamhost of A's domain)."""
    used = notes.get("streamhost")
    if not used or used["type"] != "proxy" or not bare(used["jid"]).endswith("." + sender_domain):
        raise CaseFailed(f"the file did not come through A's proxy ({sender_domain}): {streamhost_of(notes)}")
    return streamhost_of(notes)


async def libervia_sends(case: LiberviaCase, transport: str, propose: bool = False) -> str:
    """libervia's profile on A sends; the lab's slixmpp responder (slixmpp_jingle.respond) on B
    takes the first session-initiate, receives over whichever transport it is offered, checks
    the file against the offer, and ends the session. The runner checks it against the sent file.
    ``transport``: "ibb" (libervia's S5B plugin left out) or "s5b" (kept in: libervia offers
    its direct candidates and its server's proxy; the responder tries the proxy ones alone).
    ``propose``: `file send` to B's bare JID, so that libervia proposes first (XEP-0353, J5);
    B's user answers proceed to the propose that names the file."""
    await asyncio.to_thread(case.backend, (S5B_PLUGIN,) if transport == "ibb" else ())
    alice = await asyncio.to_thread(case.profile, "alice", case.server, "alice")
    case.deadline = time.monotonic() + case.timeout  # the case's waits count from the backend's start on
    bob = await case.login(case.target, "bob", plugins=("xep_0030",))
    for feature in (jingle.NS_JINGLE, jingle.NS_FT, jingle.NS_JMI, *RESPONDER_FEATURES[transport]):
        bob.plugin["xep_0030"].add_feature(feature)  # libervia's file send asks the peer's disco#info first
    behaviour = jingle.Behaviour.from_spec(case.spec)
    data, name, path = case.outgoing()
    case.deadline = time.monotonic() + case.timeout  # the exchange's waits, after the backend's start
    started = time.monotonic()
    session_of = jingle.sessions_at(bob, behaviour)
    proposed = asyncio.ensure_future(answer_file_propose(case, bob, alice, name)) if propose else None
    responding = asyncio.ensure_future(jingle.respond(case, bob, session_of, behaviour))
    sender = case.spawn(["libervia-cli", "file", "send", "-p", "alice", path,
                         bob.boundjid.bare if propose else bob.boundjid.full],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if proposed:
            proposed = await proposed
        session, received = await responding
    except CaseFailed as failure:
        session = next(iter(session_of.sessions.values()), None)
        if transport == "s5b" and session is not None:
            raise s5b_failure(failure, session.steps, session.notes, case.log()) from None
        raise sender_failure(failure, proposed[1] if isinstance(proposed, tuple) else None, case.log(),
                             session is not None) from None
    finally:
        responding.cancel()
        case.stop(sender)
    took = time.monotonic() - started
    log = case.log()
    used = [IBB if "over IBB" in step else SOCKS5 for step in session.steps if " bytes over " in step]
    case.evidence.update(file=name, sid=session.sid, bytes=len(received or b""), sha256=sha256_b64(data),
                         transports=used, sender=alice, receiver=bob.boundjid.full, s5b_left_out=S5B_LEFT_OUT in log,
                         **{k: v for k, v in session.notes.items() if k in ("streamhost", "candidates_tried")})
    detail = judge_transfer(data, received, name, log, IBB if transport == "ibb" else SOCKS5, used=used)
    if transport == "s5b":
        detail = f"{judge_streamhost(session.notes, case.domain(case.server))}; {detail}"
    if proposed:
        if session.sid != proposed[0]:
            raise CaseFailed(f"libervia proposed {proposed[0]} but opened session {session.sid}")
        detail = f"{proposed[1]}; session {session.sid}: {detail}"
    return f"{alice} (libervia) -> {bob.boundjid.full} (slixmpp): {'; '.join(session.steps)}; runner: {detail}; " \
           f"in {took * 1000:.0f} ms"


async def answer_file_propose(case: LiberviaCase, bob, alice: str, name: str) -> tuple[str, str]:
    """B's user: the XEP-0353 propose from A's user whose description names the file (others
    of the same accounts may be in flight beside it), answered with proceed; its id and a step."""
    def names_the_file(element) -> bool:
        if element.tag != MESSAGE or bare(element.get("from")) != bare(alice):
            return False
        offer = element.find(f"{jingle.q(jingle.NS_JMI, 'propose')}")
        return offer is not None and any((node.text or "") == name for node in offer.iter())
    got = await case.expect(bob, names_the_file, f"libervia's propose of {name} at {bob.boundjid.full}")
    sid = got.find(jingle.q(jingle.NS_JMI, "propose")).get("id")
    case.send(bob, f"<message to={esc(got.get('from'))} type='chat' id='lab-{token(10)}'>"
                   f"<proceed xmlns='{jingle.NS_JMI}' id={esc(sid)}/><store xmlns='{jingle.NS_HINTS}'/></message>")
    return sid, f"propose {sid} from {got.get('from')} to {got.get('to')} (the file's description in it) -> " \
                f"proceed from {bob.boundjid.full}"


READABLE_OFFER = ("the offer with <desc/> and <hash-used/>, the hash in a checksum session-info after the data: "
                  "what libervia can read (a <hash/> in the offer or a missing <desc/> ends its session before any "
                  "transport step; docs/jingle.md, libervia findings 1, 3)")


async def slixmpp_sends(case: LiberviaCase, transport: str, propose: bool = False, readable: bool = False,
                        fallback: bool = False) -> str:
    """The lab's slixmpp initiator (slixmpp_jingle.initiate) on A offers the file to
    libervia's profile on B, which takes it with `file receive`; the runner checks the file.
    ``transport``: "ibb" or "s5b" (A's proxy as the one candidate). ``readable``: the offer
    libervia can read (READABLE_OFFER), so that the transport part is seen (J2, J5); without
    it (J1) the offer carries its sha-256 <hash/>, as the lab's ends do. ``propose``: A's
    user proposes to B's bare JID first (J5) and opens the session to the resource that
    proceeded. ``fallback`` (J6): A's proxy offered at a port where nothing listens, then
    transport-replace to IBB; libervia's answer to it is recorded (evidence ``reaction``)."""
    await asyncio.to_thread(case.backend, (S5B_PLUGIN,) if transport == "ibb" else ())
    bob = await asyncio.to_thread(case.profile, "bob", case.target, "bob")
    case.deadline = time.monotonic() + case.timeout  # the case's waits count from the backend's start on
    alice = await case.login(case.server, "alice")
    behaviour = jingle.Behaviour.from_spec(case.spec)
    if readable:
        behaviour = jingle.Behaviour(**{**behaviour.__dict__, "hash_used": True, "desc": True})
    session = jingle.new_session(case, alice, bob, behaviour=behaviour)
    if transport == "s5b":
        found = await jingle.offer_proxy(case, alice, session, port=jingle.UNREACHABLE_PORT if fallback else None)
        session.step(f"{found}, offered as the only candidate" + (
            f" at port {jingle.UNREACHABLE_PORT}, where nothing listens" if fallback else ""))
    if readable:
        session.step(READABLE_OFFER)
    os.makedirs(os.path.join(case.home, "inbox"))
    receiver = await asyncio.to_thread(case.receive, "bob", alice.boundjid.full)
    case.deadline = time.monotonic() + case.timeout
    started = time.monotonic()
    reason = None
    try:
        if propose:
            full = await jingle.propose(case, alice, bare(bob), session.sid)
            session.step(f"propose {session.sid} to {bare(bob)} -> proceed from {full}")
            if full != bob:
                raise CaseFailed(f"the proceed came from {full}, not libervia's resource {bob}")
        try:
            reason = await jingle.initiate(case, alice, session, transport, fallback_to_ibb=fallback)
        except CaseFailed as failure:
            if not fallback:
                raise
            case.evidence["reaction"] = session.notes.get("reaction")
            raise CaseFailed(f"{'; '.join(session.steps)}; then: {failure}") from None
        if reason == "success":
            await asyncio.to_thread(case.outcome, session.offer.name)
    finally:
        case.stop(receiver)
    took = time.monotonic() - started
    log, received = case.log(), case.received(session.offer.name)
    case.evidence.update(file=session.offer.name, sid=session.sid, bytes=len(received or b""),
                         sha256=session.offer.sha256, transports=transports_in(log), reason=reason,
                         libervia_checksum=libervia_checksum(log), sender=alice.boundjid.full, receiver=bob,
                         **({"streamhost": session.notes["proxy"].__dict__} if "proxy" in session.notes else {}),
                         **({"reaction": session.notes.get("reaction")} if fallback else {}))
    detail = judge_received(session.offer.data, received, session.offer.name, log,
                            IBB if transport == "ibb" or fallback else SOCKS5, reason, session.steps, bob, case.timeout)
    if fallback:
        judge_fallback(session.notes.get("reaction"), detail)
    return (f"{alice.boundjid.full} (slixmpp) -> {bob} (libervia): {'; '.join(session.steps)}; session-terminate "
            f"success; runner: {detail}; in {took * 1000:.0f} ms")


def judge_fallback(reaction: str | None, detail: str) -> None:
    """J6: libervia must answer the transport-replace with transport-accept (XEP-0166 7.2.15)."""
    if reaction != "transport-accept":
        raise CaseFailed(f"the file arrived over IBB, but libervia answered the transport-replace with {reaction}, "
                         f"not transport-accept (XEP-0166 7.2.15): {detail}")


def judge_received(sent: bytes, received: bytes | None, name: str, log: str, transport: str, reason: str | None,
                   steps: list[str], receiver: str, seconds: float) -> str:
    """The verdict on what libervia received from the lab's initiator: the file whole over
    ``transport``, the session ended with success (``reason``), and a checksum the initiator
    sent after the data (a step of ``steps``) taken with a result; the detail of a pass."""
    if received is None:
        raise missing_file(receiver, seconds, log, True, None if reason == "success" else reason)
    detail = judge_transfer(sent, received, name, log, transport)
    if reason != "success":
        raise CaseFailed(f"the file arrived whole, but libervia ended the session with {reason}, not success: {detail}")
    refused = [step.rsplit("-> ", 1)[-1] for step in steps if step.startswith("A's user: checksum session-info")
               and not step.endswith("-> result")]
    if refused:
        said = [line.split("+0000 ", 1)[-1].strip() for line in HASH_TROUBLE.findall(log)[-2:]]
        raise CaseFailed(f"the file arrived whole ({detail}; {'; '.join(steps)}), but libervia did not take the "
                         f"standard XEP-0300 checksum ({refused[0]})"
                         + (f"; libervia logged: {' | '.join(said)}" if said else ""))
    return detail


def sender_failure(failure: CaseFailed, proposed: str | None, log: str, session_came: bool) -> CaseFailed:
    """libervia -> slixmpp, the responder failed: the propose step first where there was one
    (J5), then the failure (with what libervia's hash value decodes to), and where no session
    came at all, what libervia logged (why it sent nothing)."""
    said = [line.split("+0000 ", 1)[-1].strip() for line in COMPLAINTS.findall(log)[-2:]]
    return CaseFailed((f"{proposed}; then: " if proposed else "") + f"{failure}{hex_digest_note(str(failure))}"
                      + (f"; libervia logged: {' | '.join(said)}" if said and not session_came else ""))


def s5b_failure(failure: CaseFailed, steps: list[str], notes: dict, log: str) -> CaseFailed:
    """libervia -> slixmpp over SOCKS5, the responder failed: what became of SOCKS5 first (the
    responder's steps, the proxy it was connected to, libervia's complaints), then the failure,
    so that the transport part is visible beside a hash failure."""
    said = [line.split("+0000 ", 1)[-1].strip() for line in S5B_TROUBLE.findall(log)[:2]]
    connected = notes.get("streamhost")
    return CaseFailed(f"{'; '.join(steps)}"
                      + (f"; B's user was connected to {connected['jid']} at {connected['host']}:{connected['port']}"
                         if connected else "")
                      + (f"; libervia logged: {' | '.join(said)}" if said else "")
                      + f"; then: {failure}{hex_digest_note(str(failure))}")


# J3, slixmpp -> libervia: `file receive` cannot decline, so the runner answers the backend's
# file dialog itself over the bridge (actions_get, then action_launch with "cancelled", what
# a frontend's cancel button sends; plugin_misc_file._got_confirmation then refuses and
# plugin_xep_0166 ends the session with <decline/>).
DECLINE_DIALOG = """
import json, sys, time, dbus
core = dbus.Interface(dbus.SessionBus().get_object("org.libervia.Libervia", "/org/libervia/Libervia/bridge"),
                      "org.libervia.Libervia.core")
profile, sender, deadline = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    for data, action_id, _ in core.actions_get(profile):
        data = json.loads(data)
        if data.get("type") == "file" and data.get("from_jid", "").split("/")[0] == sender:
            core.action_launch(action_id, json.dumps({"cancelled": True}), profile)
            print(json.dumps({"action": str(action_id), "from_jid": data.get("from_jid")}))
            sys.exit(0)
    time.sleep(0.3)
sys.exit(3)
"""
# What the backend tells its frontends when the peer declines (plugin_xep_0234.jingle_terminate:
# the bridge signal progress_error with C.PROGRESS_ERROR_DECLINED), read off the private bus
# with dbus-monitor: `file send` would print it, but drops a progress_error that comes before
# it has its progress ID (libervia/cli/base.py caches only progress_started).
PROGRESS_ERROR_SIGNAL = re.compile(r'member=progress_error\n\s+string "([^"]*)"\n\s+string "([^"]*)"\n\s+string "([^"]*)"')


def progress_errors(monitored: str, profile: str) -> list[str]:
    """The messages of the progress_error signals for ``profile`` in dbus-monitor's output."""
    return [message for _, message, who in PROGRESS_ERROR_SIGNAL.findall(monitored) if who == profile]


def judge_declined(reason: str | None, steps: list[str], refused: dict | None) -> str:
    """J3, slixmpp -> libervia: the lab's initiator must get session-terminate with <decline/>
    after the runner refused libervia's file dialog (``refused``: what it answered)."""
    if refused is None:
        raise NotObserved("libervia's backend showed no file dialog for the offer to refuse")
    if reason != "decline":
        raise CaseFailed(f"the runner refused libervia's file dialog {refused['action']}, and A's user got "
                         f"session-terminate with {reason!r}, not <decline/>: {'; '.join(steps)}")
    return f"{'; '.join(steps)}; the runner refused libervia's file dialog {refused['action']}; A's user got " \
           f"session-terminate with <decline/>"


def judge_sender_saw_decline(monitored: str, steps: list[str]) -> str:
    """J3 with libervia sending: A's backend must take B's <decline/> as a refusal: the bridge
    signal progress_error "declined" for alice's profile (dbus-monitor's output)."""
    errors = progress_errors(monitored, "alice")
    if "declined" not in errors:
        raise CaseFailed(f"B's user declined ({'; '.join(steps)}), but alice's libervia backend did not signal "
                         f"the transfer declined (progress_error for alice: {', '.join(errors) or 'none'})")
    return f"{'; '.join(steps)}; alice's libervia backend signalled progress_error \"declined\" to its frontends"


def no_dialog(log: str) -> Exception:
    """J3 at both ends, no file dialog came to refuse: a fail where alice's backend logged why
    its offer went nowhere (e.g. the servers refusing to route it), an error otherwise."""
    said = [line.split("+0000 ", 1)[-1].strip() for line in COMPLAINTS.findall(log)[-2:]]
    if said:
        return CaseFailed(f"no offer reached bob's backend (no file dialog to refuse); libervia logged: "
                          f"{' | '.join(said)}")
    return NotObserved("libervia's backend showed bob no file dialog for alice's offer to refuse, and logged no reason")


def monitor(case: LiberviaCase) -> subprocess.Popen:
    """dbus-monitor on the case's private bus, for the backend's progress_error signals."""
    watcher = case.spawn(["dbus-monitor", "--address", case.env["DBUS_SESSION_BUS_ADDRESS"],
                          "type='signal',member='progress_error'"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    time.sleep(0.5)  # its match rule is in place first
    return watcher


def monitored(case: LiberviaCase, watcher: subprocess.Popen) -> str:
    case.stop(watcher)
    text = watcher.stdout.read() if watcher.stdout else ""
    case.trace.append(f"$ dbus-monitor (progress_error) ->\n{text.strip()[-2000:]}")
    return text


async def j3_decline(case: LiberviaCase) -> str:
    """J3, in the pairs with slixmpp alone (NOT_RUN), over IBB."""
    ends = case.entry.get("ends")
    if ends == "libervia->slixmpp":
        return await libervia_declined(case)
    if ends == "slixmpp->libervia":
        return await libervia_declines(case)
    return await asyncio.to_thread(j3_libervia, case)


def j3_libervia(case: LiberviaCase) -> str:
    """J3, libervia at both ends: A's profile sends, the runner refuses B's file dialog, and
    A's `file send` must say the file was refused (it got the <decline/> across the servers)."""
    case.backend(skip=(S5B_PLUGIN,))
    alice = case.profile("alice", case.server, "alice")
    bob = case.profile("bob", case.target, "bob")
    data, name, path = case.outgoing()
    watcher = monitor(case)
    refuser = case.spawn(["python3", "-c", DECLINE_DIALOG, "bob", bare(alice), str(case.timeout)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sender = case.spawn(["libervia-cli", "file", "send", "-p", "alice", path, bob],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out, _ = refuser.communicate(timeout=case.timeout + 5)
    except subprocess.TimeoutExpired:
        out = ""
    wait_for(lambda: "Jingle Session" in case.log() and "terminated" in case.log(), 6.0)  # alice's end of it
    time.sleep(1.0)  # the signal follows the log line
    for process in (sender, refuser):
        case.stop(process)
    signals = monitored(case, watcher)
    case.trace.append(f"$ python3 -c DECLINE_DIALOG bob {bare(alice)} -> exit {refuser.returncode}\n{out}")
    refused = json.loads(out.strip().splitlines()[-1]) if refuser.returncode == 0 and out.strip() else None
    case.evidence.update(sender=alice, receiver=bob, dialog=refused, progress_errors=progress_errors(signals, "alice"))
    if refused is None:
        raise no_dialog(case.log())
    steps = [f"the runner refused bob's file dialog {refused['action']} for {refused['from_jid']}'s offer"]
    return f"{alice} -> {bob}: {judge_sender_saw_decline(signals, steps)}"


async def libervia_declined(case: LiberviaCase) -> str:
    """libervia's `file send` from A; the lab's responder on B declines (Behaviour.decline)."""
    await asyncio.to_thread(case.backend, (S5B_PLUGIN,))
    alice = await asyncio.to_thread(case.profile, "alice", case.server, "alice")
    case.deadline = time.monotonic() + case.timeout
    bob = await case.login(case.target, "bob", plugins=("xep_0030",))
    for feature in (jingle.NS_JINGLE, jingle.NS_FT, *RESPONDER_FEATURES["ibb"]):
        bob.plugin["xep_0030"].add_feature(feature)
    behaviour = jingle.Behaviour(**{**jingle.Behaviour.from_spec(case.spec).__dict__, "decline": True})
    data, name, path = case.outgoing()
    case.deadline = time.monotonic() + case.timeout
    watcher = await asyncio.to_thread(monitor, case)
    responding = asyncio.ensure_future(jingle.respond(case, bob, jingle.sessions_at(bob, behaviour), behaviour))
    sender = case.spawn(["libervia-cli", "file", "send", "-p", "alice", path, bob.boundjid.full],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        session, _ = await responding
        await asyncio.to_thread(wait_for, lambda: "terminated" in case.log(), min(6.0, max(0.5, case.remaining())))
        await asyncio.sleep(1.0)  # the signal follows the log line
    finally:
        responding.cancel()
        case.stop(sender)
    signals = monitored(case, watcher)
    case.evidence.update(sid=session.sid, sender=alice, receiver=bob.boundjid.full,
                         progress_errors=progress_errors(signals, "alice"))
    steps = [f"B's user: session-terminate <decline/> for libervia's session-initiate {session.sid} -> result"]
    return f"{alice} (libervia) -> {bob.boundjid.full} (slixmpp): {judge_sender_saw_decline(signals, steps)}"


async def libervia_declines(case: LiberviaCase) -> str:
    """The lab's initiator on A offers the file (the offer libervia can read); the runner
    refuses the file dialog libervia's backend shows for it (DECLINE_DIALOG)."""
    await asyncio.to_thread(case.backend, (S5B_PLUGIN,))
    bob = await asyncio.to_thread(case.profile, "bob", case.target, "bob")
    case.deadline = time.monotonic() + case.timeout
    alice = await case.login(case.server, "alice")
    behaviour = jingle.Behaviour(**{**jingle.Behaviour.from_spec(case.spec).__dict__, "hash_used": True, "desc": True})
    session = jingle.new_session(case, alice, bob, behaviour=behaviour)
    session.step(READABLE_OFFER)
    case.deadline = time.monotonic() + case.timeout
    refuser = case.spawn(["python3", "-c", DECLINE_DIALOG, "bob", alice.boundjid.bare, str(case.timeout)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        reason = await jingle.initiate(case, alice, session, "ibb")
    finally:  # it refused before the decline came, or never will (the offer went nowhere)
        try:
            await asyncio.to_thread(refuser.wait, 2.0)
        except subprocess.TimeoutExpired:
            pass
        case.stop(refuser)
        out = refuser.stdout.read() if refuser.stdout else ""
    case.trace.append(f"$ python3 -c DECLINE_DIALOG bob {alice.boundjid.bare} -> exit {refuser.returncode}\n{out}")
    refused = json.loads(out.strip().splitlines()[-1]) if refuser.returncode == 0 and out.strip() else None
    case.evidence.update(sid=session.sid, reason=reason, sender=alice.boundjid.full, receiver=bob, dialog=refused)
    return f"{alice.boundjid.full} (slixmpp) -> {bob} (libervia): {judge_declined(reason, session.steps, refused)}"


async def j1_ibb(case: LiberviaCase) -> str:
    """J1 with the ends the entry names (its "ends": libervia at both, or a pair with slixmpp)."""
    ends = case.entry.get("ends") or "libervia"
    if ends == "libervia->slixmpp":
        return await libervia_sends(case, "ibb")
    if ends == "slixmpp->libervia":
        return await slixmpp_sends(case, "ibb")
    return await asyncio.to_thread(j1_libervia, case)


async def j2_socks5(case: LiberviaCase) -> str:
    """J2, in the pairs with slixmpp alone (NOT_RUN: at both ends its two
    profiles would take each other's direct candidate)."""
    ends = case.entry.get("ends")
    if ends == "libervia->slixmpp":
        return await libervia_sends(case, "s5b")
    if ends == "slixmpp->libervia":
        return await slixmpp_sends(case, "s5b", readable=True)
    raise NotObserved(f"J2 with ends {ends or 'libervia'}: the runner plays it only paired with slixmpp")


async def j6_fallback(case: LiberviaCase) -> str:
    """J6, slixmpp -> libervia alone (NOT_RUN): the lab's initiator offers A's proxy at an
    unreachable port; libervia (its S5B plugin in) should say candidate-error and accept the
    transport-replace to IBB; its reaction is recorded."""
    ends = case.entry.get("ends")
    if ends == "slixmpp->libervia":
        return await slixmpp_sends(case, "s5b", readable=True, fallback=True)
    raise NotObserved(f"J6 with ends {ends or 'libervia'}: the runner plays it only slixmpp->libervia")


async def j5_propose(case: LiberviaCase) -> str:
    """J5, in the pairs with slixmpp alone (NOT_RUN), over IBB. libervia -> slixmpp:
    `file send` to B's bare JID makes libervia propose first (plugin_xep_0353's trigger on
    a peer JID without a resource); slixmpp -> libervia: the lab's propose, which libervia
    confirms through `file receive` (a confirm dialog it accepts for the sender it names)."""
    ends = case.entry.get("ends")
    if ends == "libervia->slixmpp":
        return await libervia_sends(case, "ibb", propose=True)
    if ends == "slixmpp->libervia":
        return await slixmpp_sends(case, "ibb", propose=True, readable=True)
    raise NotObserved(f"J5 with ends {ends or 'libervia'}: the runner plays it only paired with slixmpp")


CASES = {"J1": j1_ibb, "J2": j2_socks5, "J3": j3_decline, "J5": j5_propose, "J6": j6_fallback}
# The ends it does not play, and why (read by the lab: such a result is "not supported (stack)"
# with this reason); "libervia": libervia at both ends.
NOT_RUN = {
    "J2": {"libervia": "its two profiles share one backend in one container, and its SOCKS5 offers direct "
                       "candidates the other profile takes, past A's proxy and the servers (docs/jingle.md)"},
    "J5": {"libervia": "its backend logs no stanzas, so between its two profiles the runner would not see the "
                       "propose and proceed that J5 is about (docs/jingle.md)"},
    "J6": {"libervia": "libervia cannot be told to offer an unreachable candidate, and its two profiles would take "
                       "each other's direct one (docs/jingle.md)",
           "libervia->slixmpp": "libervia cannot be told to offer an unreachable candidate: it offers its own "
                                "address and its server's proxy (docs/jingle.md)"},
}

if __name__ == "__main__":
    main(Runner(tool="libervia", cases=CASES, case_class=LiberviaCase,
                budget=lambda case, timeout: BACKEND_START + 2 * timeout + 30))
