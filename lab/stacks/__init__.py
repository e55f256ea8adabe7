"""Client stacks that run the interop cases.

A stack is one module in this package defining ``STACK = ClientStack(...)``, an image
folder ``images/client-<name>/`` and a runner script in ``lab/runners/`` that the lab
puts into the stack's container, with the shared harness (lab/runners/harness.py) beside
it. Every runner takes ``cases SPEC_JSON`` and prints one JSON list of results. The cases a
stack can express are its runner's: the keys of the runner's ``CASES`` table.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from dataclasses import dataclass, replace

from lab.cases import RUNNERS_DIR, runner_cases, runner_not_run

RUNNER_DIR = "/opt/xmpp-lab"


@dataclass(frozen=True)
class ClientStack:
    """A client stack; in a lab, one client of it at one Debian release (see ``at``)."""
    name: str                   # the stack's name; in a lab, the client's (see at)
    runner: str                 # file name in lab/runners/
    description: str = ""
    cases: frozenset[str] = frozenset()  # the IDs its runner's CASES table names (filled in by stacks())
    # It also runs the lab's own cases (cases/ beside lab.yml): their case functions are
    # written for it, and put beside its runner.
    user_cases: bool = False
    # Further files of lab/runners/ the runner imports (put beside it in the container).
    support: tuple[str, ...] = ()
    # How many times the lab's concurrency this stack runs at once: more where its cases
    # mostly wait (xmppc sleeps 10 s before every message), costing no CPU meanwhile.
    concurrency_scale: int = 1
    # The lab gives each client of it accounts of its own (<client>-alice, <client>-bob),
    # so that its presence and roster cases never share one with other clients.
    own_accounts: bool = False
    # Debian suites its image builds at (the package and what it was checked against).
    releases: tuple[str, ...] = ("bookworm", "trixie", "sid")
    release: str = "bookworm"   # in a lab: the suite this client's packages come from
    stack: str = ""             # in a lab: the stack's own name, when the client's differs
    package: str = ""           # the Debian package whose installed version the reports show
    # It resolves and connects over IPv4 alone: the IPv6-only variants (group "ipv6") are
    # "not supported (stack)" for it, said so in their detail.
    ipv4_only: bool = False
    # In the default client list (``clients: null``, every stack); False: only where lab.yml
    # names it (libervia: a backend of its own per case makes each case last about a minute).
    by_default: bool = True
    # Other stacks whose end its runner also plays in its s2s cases (the image carries their
    # library and their end's module): each such case runs once per pair of ends, itself at
    # both, "<it>-><other>" and "<other>-><it>", the pair naming the result (docs/jingle.md).
    pairs_with: tuple[str, ...] = ()
    # The ends of its s2s cases its runner does not play, with why: (case ID, ends, reason) each,
    # ends being its own name (itself at both) or a pair ("<it>-><other>"); its runner's NOT_RUN
    # table (filled in by stacks()). Such a result is "not supported (stack)", the reason in its detail.
    not_run: tuple[tuple[str, str, str], ...] = ()

    def at(self, release: str, name: str | None = None, own_cases: frozenset[str] = frozenset()) -> "ClientStack":
        """This stack's client at ``release``, called ``name`` in the lab (``own_cases``: the
        IDs of the lab's own cases, for a stack that runs them)."""
        return replace(self, name=name or self.name, stack=self.stack or self.name, release=release,
                       cases=self.cases | (own_cases if self.user_cases else frozenset()))

    @property
    def files(self) -> tuple[str, ...]:
        """The files of lab/runners/ put into the stack's container."""
        return (self.runner, "harness.py", *self.support)

    @property
    def service(self) -> str:
        """Container (service) name."""
        return f"client-{self.name}"

    @property
    def image(self) -> str:
        """The image folder under images/."""
        return f"client-{self.stack or self.name}"

    def command(self, action: str, spec: dict) -> list[str]:
        return ["python3", f"{RUNNER_DIR}/{self.runner}", action, json.dumps(spec)]


def stacks() -> dict[str, ClientStack]:
    """Every client stack in this package, by name, the deep slixmpp runner first."""
    found = {}
    for module in pkgutil.iter_modules(__path__):
        stack = importlib.import_module(f"{__name__}.{module.name}").STACK
        found[stack.name] = replace(stack, cases=runner_cases(RUNNERS_DIR / stack.runner),
                                    not_run=runner_not_run(RUNNERS_DIR / stack.runner))
    return dict(sorted(found.items(), key=lambda item: item[0] != "slixmpp"))
