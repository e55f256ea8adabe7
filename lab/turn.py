"""The lab's TURN/STUN service: Debian's coturn in a container of the lab, with a shared
secret made per lab (like the CA, kept in the lab's state directory). Servers that declare
``external-services`` hand out credentials for it through XEP-0215 (Prosody's
mod_turn_external, ejabberd's mod_stun_disco): the TURN REST API scheme, where the user name
is "<expiry>:<user>" and the password base64(HMAC-SHA1(secret, user name)).

It runs only when the lab asks for it (lab.yml ``turn: true``, the default) and a server of
the lab declares ``external-services``.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.model import Lab

SERVICE = "turn"
# Its name in the lab DNS: a lab service, not a server, so under no server's domain (the
# model refuses a server domain that would clash).
NAME = "turn.xmpp-lab.test"
PORT = 3478
# A server's own STUN/TURN listener (kinds that declare turn-server: ejabberd's ejabberd_stun),
# on the server's own address, advertised by the server beside the lab's service.
SERVER_PORT = 3478
CONFIG_PATH = "/etc/xmpp-lab/turnserver.conf"
# Relay ports: a small range is plenty for the lab's allocations.
RELAY_PORTS = (49152, 49407)
# What the golden files and tests render instead of a lab's real secret.
PLACEHOLDER_SECRET = "(the lab's TURN secret: .lab/<lab>/turn/secret)"


@dataclass(frozen=True)
class Turn:
    """What a server's config needs to advertise the lab's TURN service (templates: ``turn``)."""
    host: str
    address: str
    port: int
    secret: str


def secret_path(lab: "Lab") -> Path:
    return lab.state_dir / "turn" / "secret"


def load_or_create_secret(lab: "Lab") -> str:
    """The lab's shared secret, made once (mode 0600) and kept until the state directory goes."""
    path = secret_path(lab)
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(20)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(value + "\n")
    return value


def settings(lab: "Lab", secret: str | None = None) -> Turn | None:
    """The TURN service of ``lab`` as templates see it, or None when the lab runs none;
    ``secret``: the lab's (None: the placeholder, for rendering without a state directory)."""
    if not lab.turn_enabled:
        return None
    return Turn(host=NAME, address=lab.turn_address, port=PORT, secret=secret or PLACEHOLDER_SECRET)


def own_service(lab: "Lab", server) -> dict | None:
    """Where ``server``'s own TURN service is (turn-server), as its XEP-0215 list must show it,
    or None when it runs none (or the lab runs no TURN at all: nothing advertises one then)."""
    if not lab.turn_enabled or "turn-server" not in server.features:
        return None
    # Its lab addresses: the IPv4 one always, the IPv6 one too on a dual-stack lab.
    return {"hosts": server.addresses, "port": SERVER_PORT}


def config(lab: "Lab", secret: str) -> str:
    """coturn's config: plain TURN/STUN on the lab network (no TLS: the lab's clients are
    told udp/tcp by XEP-0215), credentials from the shared secret only."""
    low, high = RELAY_PORTS
    return "\n".join([
        f"listening-port={PORT}",
        f"listening-ip={lab.turn_address}",
        f"relay-ip={lab.turn_address}",
        f"min-port={low}",
        f"max-port={high}",
        f"realm={NAME}",
        "use-auth-secret",
        f"static-auth-secret={secret}",
        "fingerprint",
        "no-tls",
        "no-dtls",
        "no-cli",
        "no-multicast-peers",
        "log-file=stdout",
        "simple-log",
        "",
    ])
