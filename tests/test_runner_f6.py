"""slixmpp's F6 case function made red without a server: its C1 part must see the session
over IPv6 when only AAAA records are served; a session over IPv4 (which the lab's zone cannot
bring about) is a fail. The runner's library modules are stood in for, so the function's own
check runs here as it runs in the client container."""

import asyncio
import sys
import types
from pathlib import Path

import pytest

RUNNERS = Path(__file__).resolve().parent.parent / "lab" / "runners"


@pytest.fixture
def runner(monkeypatch):
    """slixmpp_runner imported with slixmpp's modules stood in for (only its own code runs)."""
    client = types.ModuleType("slixmpp_client")
    client.__getattr__ = lambda name: f"stand-in {name}"
    expect = types.ModuleType("slixmpp_expect")
    expect.CaseRun = object
    for name, module in (("slixmpp_client", client), ("slixmpp_expect", expect)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.syspath_prepend(str(RUNNERS))
    monkeypatch.delitem(sys.modules, "slixmpp_runner", raising=False)
    import slixmpp_runner
    return slixmpp_runner


class Session:
    """What case_f6 reads of a logged-in client: where its transport goes, and its TLS."""

    def __init__(self, peer):
        self.features = {"starttls"}
        self.transport = types.SimpleNamespace(get_extra_info=lambda key: {
            "peername": peer, "ssl_object": types.SimpleNamespace(version=lambda: "TLSv1.3")}[key])


class Run:
    def __init__(self, peer):
        self.target, self.server, self.peer = None, "prosody", peer

    async def login(self, server, user, presence=True):
        return Session(self.peer)


def test_f6_passes_over_ipv6(runner):
    detail = asyncio.run(runner.case_f6(Run(("fd12:3456::17", 5222, 0, 0))))
    assert detail.startswith("logged in over IPv6 to [fd12:3456::17]:5222 via SRV, STARTTLS TLSv1.3")


@pytest.mark.parametrize("peer", [("10.200.1.17", 5222), ("::ffff:10.200.1.17", 5222, 0, 0)])
def test_f6_fails_on_a_session_over_ipv4(runner, peer):
    from harness import CaseFailed
    with pytest.raises(CaseFailed, match="the session runs over IPv4"):
        asyncio.run(runner.case_f6(Run(peer)))
