"""Server kinds.

A kind is one module in this package that defines ``KIND = ServerKind(...)``, plus a
template folder ``templates/<name>/`` and an image folder ``images/<name>/``. Kinds are
found by listing this package, so adding one touches nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from typing import Callable

# What "how did the sending server authenticate" can be, as observed in a receiver's log.
CERTIFICATE = "certificate"
DIALBACK = "dialback"


@dataclass(frozen=True)
class ServerKind:
    name: str
    # Rendered config files: template name (in templates/<name>/) -> path in the container.
    config_files: dict[str, str]
    # Command run in the running container to create an account, or to set the password
    # of an existing one (it runs again when a lab's accounts change).
    register_command: Callable[[str, str, str], list[str]]
    # Log lines of the *receiving* server that show how a peer authenticated: regexes with
    # named groups "peer" (the remote domain) and "local" (this server's domain), one list
    # per method.
    inbound_auth_patterns: dict[str, list[str]]
    # How peers may authenticate to this kind over s2s, best first.
    s2s_auth: tuple[str, ...] = (CERTIFICATE, DIALBACK)
    # Feature names this kind supports, for reporting "not supported" from data.
    features: frozenset[str] = field(default_factory=frozenset)
    # Command that closes every s2s connection of the running server (None: it has none),
    # so that S8 observes a fresh authentication and S9/S10 a fresh DNS lookup, without a
    # restart. A non-zero exit means it failed.
    close_s2s_command: tuple[str, ...] | None = None
    # Command (given the domain) that succeeds once accounts can be created (None: at once).
    admin_ready_command: Callable[[str], list[str]] | None = None

    @property
    def image(self) -> str:
        """The image folder under images/."""
        return self.name

    def inbound_auth(self, log: str, peer: str, local: str) -> tuple[str, str] | None:
        """How ``peer`` last authenticated to this server's ``local`` domain according to
        ``log``: (method, the matching log text), or None.

        The match ending last wins; of two ending at the same place, the longer (more
        specific) one.
        """
        found: tuple[int, int, str, str] | None = None
        for method, patterns in self.inbound_auth_patterns.items():
            for pattern in patterns:
                for match in re.finditer(pattern, log, re.MULTILINE):
                    if match.group("peer") != peer or match.groupdict().get("local", local) != local:
                        continue
                    rank = (match.end(), match.end() - match.start(), method, match.group(0).strip())
                    if found is None or rank[:2] > found[:2]:
                        found = rank
        return (found[2], found[3]) if found else None


def kinds() -> dict[str, ServerKind]:
    """Every server kind in this package, by name."""
    found = {}
    for module in pkgutil.iter_modules(__path__):
        kind = importlib.import_module(f"{__name__}.{module.name}").KIND
        found[kind.name] = kind
    return found
