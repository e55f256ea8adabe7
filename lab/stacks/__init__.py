"""Client stacks that run the interop cases.

A stack is one module in this package defining ``STACK = ClientStack(...)``, an image
folder ``lab/dockerfiles/client-<name>/`` and a runner script in ``lab/runners/`` that the lab
puts into the stack's container, with the shared harness (lab/runners/harness.py) beside
it. Every runner takes ``cases SPEC_JSON`` and prints one JSON list of results.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from dataclasses import dataclass

RUNNER_DIR = "/opt/xmpp-lab"


@dataclass(frozen=True)
class ClientStack:
    name: str
    runner: str                 # file name in lab/runners/
    cases: frozenset[str]       # catalogue IDs this stack can express
    description: str = ""
    # Further files of lab/runners/ the runner imports (put beside it in the container).
    support: tuple[str, ...] = ()
    # How many times the lab's concurrency this stack runs at once: more where its cases
    # mostly wait (xmppc sleeps 10 s before every message), costing no CPU meanwhile.
    concurrency_scale: int = 1

    @property
    def files(self) -> tuple[str, ...]:
        """The files of lab/runners/ put into the stack's container."""
        return (self.runner, "harness.py", *self.support)

    @property
    def service(self) -> str:
        """Container (service) name, and the image folder under lab/dockerfiles/."""
        return f"client-{self.name}"

    def command(self, action: str, spec: dict) -> list[str]:
        return ["python3", f"{RUNNER_DIR}/{self.runner}", action, json.dumps(spec)]


def stacks() -> dict[str, ClientStack]:
    """Every client stack in this package, by name, the deep slixmpp runner first."""
    found = {}
    for module in pkgutil.iter_modules(__path__):
        stack = importlib.import_module(f"{__name__}.{module.name}").STACK
        found[stack.name] = stack
    return dict(sorted(found.items(), key=lambda item: item[0] != "slixmpp"))
