"""The interop catalogue: one unit per case (or per fault group), in the modules of this package.

A case's unit holds everything about it: its ID, title and scope, what it needs, its pass
criterion in words with its spec reference, how the lab sets it up and takes it down (its
``phase``: a DNS variant, a faulty certificate, fresh s2s connections...), its lab-side
judge, its runner time and, for faults, its group. The runners (lab/runners/) hold only the
exchanges, keyed by case ID. IDs are stable: reports and tests refer to them.

Cases of your own go in ``cases/`` beside lab.yml, one Python file each (see ``user_case``
and the README, "Cases of your own").

A case that needs a feature the server (c2s) or the target server (s2s) does not declare
is "not supported", decided from the kinds' data when the run is planned.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lab.errors import ConfigError

SCOPES = ("c2s", "s2s", "c2s+s2s")  # c2s: per stack x server; s2s: per ordered server pair; both
RUNNERS_DIR = Path(__file__).resolve().parent.parent / "runners"
CASE_TIMEOUT = 20.0  # seconds each wait of a case may take in its runner, unless the case says


@dataclass(frozen=True)
class Seen:
    """What the lab saw around one result, for its case's judge (built by the case's phase)."""
    sender: object = None         # the result's server (model.Server)
    receiver: object = None       # the target server of an s2s result
    since: float = 0.0            # when the lab set the case up (unix time)
    queries: tuple = ()           # the lab DNS's queries since then (evidence.dns_queries)
    logs: dict = field(default_factory=dict)   # server name -> [(unix time, line)] since then
    asker: str = ""               # who looked the target up (c2s: the stack's container)
    askers: tuple = ()            # its addresses
    facts: dict = field(default_factory=dict)  # what the phase knew (outage times, B's offer...)


@dataclass(frozen=True)
class Case:
    id: str
    title: str
    scope: str                    # one of SCOPES
    criterion: str                # when it passes, in words
    spec: str                     # the spec sections it checks
    needs: str | None = None      # a feature the server (c2s) / target server (s2s) must declare
    needs_both: bool = False      # s2s: the sending server must declare it too
    needs_sender: bool = False    # s2s: only the sending server must declare it (J2: A's proxy)
    phase: object = None          # how the lab runs it (see Runners); None: the runners alone
    judge: Callable | None = None  # judge(result, seen) -> CaseResult: what only the lab can see
    timeout: float | None = None  # seconds each wait of its runner may take (None: CASE_TIMEOUT)
    fault: bool = False           # run only when asked for (--faults, or by ID)
    group: str | None = None      # faults: after the group, S1 for every pair (stack after-<group>)
    origin: str = "built-in"      # or the file of a case of your own
    every_server: bool = False    # c2s: it involves every server of the lab (a failure's evidence: their logs)

    @property
    def runs(self):
        return self.phase or RUNNERS


class Runners:
    """The plain phase: every stack's runner over the batch's cases, side by side, each result
    then judged by its case where the case has a lab-side judge."""
    key = "runners"

    def run(self, session, cases: list[Case], servers, pairs) -> list:
        results = session.run_stacks(cases, servers, pairs)
        return [session.judged(result) for result in results]


RUNNERS = Runners()


def builtin() -> list[Case]:
    """Every built-in case, in catalogue order: the cases, then the faults by number."""
    from lab.cases import auth, c2s, compliance, dns, ipv6, jingle, outage, s2s, server_faults, turn
    faults = [*dns.FAULTS, *server_faults.CASES, *ipv6.CASES, *outage.CASES]
    return [*c2s.CASES, *s2s.CASES, *auth.CASES, *dns.CASES, *compliance.CASES, *jingle.CASES, *turn.CASES,
            *sorted(faults, key=lambda case: (int(case.id[1:].rstrip("abcdefghijklmnopqrstuvwxyz")), case.id))]


def catalogue(lab_dir: Path | None = None) -> list[Case]:
    """The built-in cases and, beside a lab.yml in ``lab_dir``, those of its ``cases/``."""
    cases = builtin()
    folder = lab_dir / "cases" if lab_dir else None
    if folder and folder.is_dir():
        known = {case.id: case for case in cases}
        for path in sorted(folder.glob("*.py")):
            case = user_case(path)
            if case.id in known:
                raise ConfigError(f"{path}: case ID {case.id} is already defined by {known[case.id].origin}")
            known[case.id] = case
            cases.append(case)
    return cases


def by_id(cases: list[Case]) -> dict[str, Case]:
    return {case.id: case for case in cases}


def selected(cases: list[Case], only: list[str] | None, faults: bool = False) -> list[Case]:
    """The cases named in ``only`` (when None: every case but the faults, and the faults if
    asked), in catalogue order. A name of a family names its members: F3 is F3a-e."""
    if not only:
        return [case for case in cases if faults or not case.fault]

    def named(case: Case, name: str) -> bool:
        return case.id.upper() == name.upper() or (case.id[:-1] == name.upper() and case.id[-1].isalpha())
    unknown = [i for i in only if not any(named(case, i) for case in cases)]
    if unknown:
        raise ValueError(f"unknown case {', '.join(unknown)} (cases: {', '.join(c.id for c in cases)})")
    return [case for case in cases if any(named(case, i) for i in only) or (faults and case.fault)]


# --- the runners' side ------------------------------------------------------------------------

def runner_cases(runner: Path) -> frozenset[str]:
    """The case IDs a runner's ``CASES`` table names (a dict literal keyed by ID, read without
    running the runner: its stack's library is only in its container)."""
    tree = ast.parse(runner.read_text(), str(runner))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "CASES" for t in node.targets):
            if isinstance(node.value, ast.Dict) and all(isinstance(k, ast.Constant) for k in node.value.keys):
                return frozenset(k.value for k in node.value.keys)
    raise ValueError(f"{runner}: no CASES = {{'ID': function, ...}} table (a dict literal keyed by case ID)")


def runner_not_run(runner: Path) -> tuple[tuple[str, str, str], ...]:
    """A paired stack's runner's ``NOT_RUN`` table, if it has one: for a case ID, the ends it
    does not play (its own name: itself at both ends; or a pair, "<it>-><other>") and why
    (a dict literal of dict literals of strings, read without running the runner)."""
    tree = ast.parse(runner.read_text(), str(runner))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "NOT_RUN" for t in node.targets):
            try:
                table = ast.literal_eval(node.value)
                return tuple((case_id, ends, why) for case_id, reasons in table.items() for ends, why in reasons.items()
                             if all(isinstance(v, str) for v in (case_id, ends, why)))
            except (ValueError, AttributeError):
                pass
            raise ValueError(f"{runner}: NOT_RUN must be a dict literal: case ID -> {{ends: reason}}")
    return ()


# --- cases of your own ------------------------------------------------------------------------

ID_PATTERN = re.compile(r"^[A-Z][A-Za-z0-9-]*$")


def user_case(path: Path) -> Case:
    """The case in ``path``, a file of a lab's ``cases/`` folder. Module-level names:

    ID, TITLE, SCOPE, CRITERION, SPEC (strings), NEEDS (optional: a feature), and
    ``async def run(run)``, its slixmpp case function (run in the slixmpp client container by
    the shared harness, like the built-in ones: it returns the detail of a pass, raises
    harness.CaseFailed for a fail). Optional: ``def judge(result, seen)``, a lab-side judge.
    The file is imported here too: import what only the container has inside ``run``.
    """
    module = _import(path)
    values = {name: getattr(module, name, None) for name in ("ID", "TITLE", "SCOPE", "CRITERION", "SPEC", "NEEDS")}
    line = _line_of(path)
    for name in ("ID", "TITLE", "SCOPE", "CRITERION", "SPEC"):
        if not isinstance(values[name], str) or not values[name].strip():
            raise ConfigError(f"{path}:{line(name)}: {name} must be a non-empty string")
    if not ID_PATTERN.match(values["ID"]):
        raise ConfigError(f"{path}:{line('ID')}: ID {values['ID']!r} must start with a capital letter and hold "
                          f"only letters, digits and '-' (it names the case in reports)")
    if values["SCOPE"] not in SCOPES:
        raise ConfigError(f"{path}:{line('SCOPE')}: unknown scope {values['SCOPE']!r} (scopes: {', '.join(SCOPES)})")
    if values["NEEDS"] is not None and not isinstance(values["NEEDS"], str):
        raise ConfigError(f"{path}:{line('NEEDS')}: NEEDS must be a feature name (a string) or absent")
    if not callable(getattr(module, "run", None)):
        raise ConfigError(f"{path}:{line('run')}: no case function: define 'async def run(run)' (the slixmpp "
                          f"case function)")
    judge = getattr(module, "judge", None)
    return Case(values["ID"], values["TITLE"], values["SCOPE"], values["CRITERION"], values["SPEC"],
                needs=values["NEEDS"], judge=judge if callable(judge) else None, origin=f"cases/{path.name}")


def _import(path: Path):
    """``path`` as a module, the runners' folder on the path (harness.py imports there as in
    the container); every error a located ConfigError."""
    try:
        source = path.read_text()
        compile(source, str(path), "exec")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    except SyntaxError as error:
        raise ConfigError(f"{path}:{error.lineno}: syntax error: {error.msg}") from None
    spec = importlib.util.spec_from_file_location(f"lab_user_case_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(RUNNERS_DIR))
    sys.modules[spec.name] = module  # (what dataclasses and pickling look a module up by)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # a user's file: any error it raises is theirs to see, located
        sys.modules.pop(spec.name, None)
        frame = next((f for f in reversed(traceback.extract_tb(error.__traceback__)) if f.filename == str(path)),
                     None)
        where = f":{frame.lineno}" if frame else ""
        raise ConfigError(f"{path}{where}: cannot load the case: {type(error).__name__}: {error}") from None
    finally:
        sys.path.remove(str(RUNNERS_DIR))
    return module


def _line_of(path: Path) -> Callable[[str], int]:
    """The line where a module-level name is set (1 when it is not)."""
    lines = {}
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node] if isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef)) else []
        for target in targets:
            name = getattr(target, "id", getattr(target, "name", None))
            lines.setdefault(name, node.lineno)
    return lambda name: lines.get(name, 1)


# --- the catalogue as a document ----------------------------------------------------------------

def needs_where(case: Case) -> str:
    """Where an s2s case's needed feature must be, beside its name (the target server alone: nothing)."""
    return " (both)" if case.needs_both else " (sender)" if case.needs_sender else ""


def markdown(cases: list[Case]) -> str:
    """docs/catalogue.md: every case, its scope, needs, pass criterion and reference."""
    def cell(text: str | None) -> str:
        return (text or "").replace("|", "\\|").replace("\n", " ")
    lines = ["# The interop catalogue", "",
             "Generated from the case units in `lab/cases/` (`lab cases --markdown`); a test checks it is",
             "up to date. Scope: `c2s` runs per client stack x server, `s2s` per ordered server pair",
             "(A's user -> B's user), `c2s+s2s` both. A case whose needed feature the server (the target",
             "server for s2s) does not declare is `not supported`. Faults run only when asked for",
             "(`lab test --faults`, or by ID).", ""]
    for title, members in (("Cases", [c for c in cases if not c.fault]), ("Faults", [c for c in cases if c.fault])):
        lines += [f"## {title}", "", "| ID | title | scope | needs | passes when | reference |", "|---|---|---|---|---|---|"]
        lines += [f"| {c.id} | {cell(c.title)} | {c.scope} | {c.needs or '-'}{needs_where(c)} | "
                  f"{cell(c.criterion)} | {cell(c.spec)} |" for c in members]
        lines.append("")
    return "\n".join(lines)
