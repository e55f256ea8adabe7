"""Interop results -> matrices on the terminal, JSON, JUnit XML, results.md and one self-contained HTML page."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import jinja2

from lab import DATA_DIR, TEMPLATES_DIR
from lab.cases import builtin, by_id
from lab.cases.auth import observed
from lab.results import ERROR, FAIL, FLAKY, NOT_SUPPORTED, PASS, CaseResult, counts


def upstream(version: str | None) -> str:
    """The upstream part of a Debian package version: 13.0.1 of 13.0.1-1+deb131u."""
    found = re.match(r"(?:\d+:)?([^-]+)", version or "")
    return found.group(1) if found else "?"


def labels(servers: list[dict], clients: list[dict]) -> dict[str, str]:
    """What the matrices call each server and client: its name, kind or stack, version and
    release (rows of server_rows and client_rows)."""
    names = {row["server"]: f"{row['server']} ({row['kind']} {upstream(row['version'])}, {row['release']})"
             for row in servers}
    names.update({row["client"]: f"{row['client']} ({row['stack']} {upstream(row['version'])}, {row['release']})"
                  for row in clients})
    return names


def relabelled(rows: list[list[str]], names: dict[str, str]) -> list[list[str]]:
    """A matrix with its header row and first column named by ``names``."""
    return [[names.get(value, value) if i == 0 or j == 0 else value for j, value in enumerate(row)]
            for i, row in enumerate(rows)]


# A matrix cell's worst status decides its colour: a failure outweighs a flaky pass, which
# outweighs a pass, which outweighs "not supported".
SEVERITY = (NOT_SUPPORTED, PASS, FLAKY, ERROR, FAIL)


@dataclass(frozen=True)
class Cell:
    """One matrix cell: what it says, the status it is coloured by (None: nothing ran there)
    and the results behind it."""
    text: str
    status: str | None = None
    results: tuple = ()

    def __str__(self) -> str:
        return self.text


def worst(results) -> str | None:
    statuses = [r.status for r in results if r.status in SEVERITY]
    return max(statuses, key=SEVERITY.index) if statuses else None


def cell(results) -> Cell:
    tally = counts(results)
    parts = [f"{tally[s]} {s}" for s in (PASS, FLAKY, FAIL, ERROR, NOT_SUPPORTED) if tally[s]]
    return Cell(", ".join(parts) or "-", worst(results), tuple(results))


def is_fault(result: CaseResult) -> bool:
    case = CASES.get(result.case)
    return bool(case and case.fault)


def observed_auth(results) -> str:
    """The auth method S8 saw for a pair, from its passing (or flaky: seen on the retry) result."""
    return next((r.evidence.get("auth") for r in observed(results).values() if r.status in (PASS, FLAKY)), "") or ""


def s2s_matrix(results: list[CaseResult], servers: list[str]) -> list[list]:
    """Rows: source server; columns: target; cell: counts and the observed auth method (S8).
    Fault scenarios have matrices of their own."""
    rows: list[list] = [["from \\ to", *servers]]
    for source in servers:
        row: list = [source]
        for target in servers:
            here = [r for r in results if r.target and r.server == source and r.target == target and not is_fault(r)]
            auth = observed_auth(here)
            counted = cell(here)
            row.append(Cell("") if source == target else
                       Cell(counted.text + (f" [{auth}]" if auth else ""), counted.status, counted.results))
        rows.append(row)
    return rows


def c2s_matrix(results: list[CaseResult], servers: list[str]) -> list[list]:
    """Rows: client stack; columns: server."""
    results = [r for r in results if not r.target and not is_fault(r)]
    stacks = sorted({r.stack for r in results})
    rows: list[list] = [["stack \\ server", *servers]]
    for stack in stacks:
        rows.append([stack, *(cell([r for r in results if r.stack == stack and r.server == s]) for s in servers)])
    return rows


def fault_matrices(results: list[CaseResult], servers: list[str]) -> dict[str, list[list]]:
    """Per fault scenario: rows sender, columns receiver (and a row of the servers' own c2s
    part, where the fault has one); cell: the status and what was observed."""
    def outcome(result: CaseResult | None) -> Cell:
        if result is None:
            return Cell("")
        seen = result.evidence.get("observed")
        text = result.status + (f": {seen}" if seen and result.status != PASS else f" ({seen})" if seen else "")
        return Cell(text, result.status, (result,))
    matrices = {}
    for case in sorted({r.case for r in results if is_fault(r)}, key=lambda c: (len(c), c)):
        here = {(r.server, r.target): r for r in results if r.case == case}
        rows: list[list] = [["from \\ to", *servers]]
        rows += [[a, *(Cell("") if a == b else outcome(here.get((a, b))) for b in servers)] for a in servers]
        if any(target is None for _, target in here):
            rows.append(["(c2s)", *(outcome(here.get((s, None))) for s in servers)])
        matrices[case] = rows
    return matrices


def texts(rows: list[list]) -> list[list[str]]:
    """A matrix as plain text (tables in Markdown, tests)."""
    return [[str(value) for value in row] for row in rows]


def server_rows(lab, versions: dict[str, str | None], software: dict[str, str | None] | None = None) -> list[dict]:
    """What ran: per server its kind, Debian release, installed version and what it said
    it is (XEP-0092)."""
    return [{"server": s.name, "domain": s.domain, "kind": s.kind.name, "release": s.release,
             "version": versions.get(s.name), "software": (software or {}).get(s.name)} for s in lab.servers]


def client_rows(lab, versions: dict[str, str | None]) -> list[dict]:
    """What ran: per client its stack, Debian release and installed package version."""
    return [{"client": c.name, "stack": c.stack or c.name, "release": c.release, "version": versions.get(c.service)}
            for c in lab.clients]


def to_json(results: list[CaseResult], lab: str, servers: list[dict] | None = None,
            clients: list[dict] | None = None, run: dict | None = None, compliance: dict | None = None) -> str:
    return json.dumps({"lab": lab, **({"run": run} if run else {}), "servers": servers or [], "clients": clients or [],
                       "summary": dict(sorted(counts(results).items())),
                       **({"compliance": compliance} if compliance else {}),
                       "results": [{"id": r.id, **asdict(r), **fault_outcome(r)} for r in results]}, indent=2) + "\n"


def compliance(results: list[CaseResult], servers: list[str]) -> dict | None:
    """The compliance table (lab/cases/compliance.py), when a compliance case ran."""
    from lab.cases import compliance as cases
    ran = {case for requirements in cases.LEVELS.values() for wanted in requirements.values() for case in wanted}
    if not any(r.case in ran for r in results):
        return None
    return cases.compliance_table(results, servers)


def compliance_rows(table: dict) -> list[list]:
    """The compliance table as matrix rows: cells coloured by their verdict (a level met is
    a pass, one not met a fail)."""
    from lab.cases import compliance as cases

    def status(text: str) -> str | None:
        if text.startswith("not met"):
            return FAIL
        if text.startswith("met"):
            return PASS
        return next((s for s in (NOT_SUPPORTED, PASS, FLAKY, FAIL, ERROR) if text.startswith(s)), None)
    header, *rows = cases.table_rows(table)
    return [header] + [[row[0], *(Cell(text, status(text)) for text in row[1:])] for row in rows]


def fault_outcome(result: CaseResult) -> dict:
    """A fault scenario's observed and expected outcomes, as fields of their own."""
    return {key: result.evidence[key] for key in ("observed", "expected") if key in result.evidence}


def to_junit(results: list[CaseResult], lab: str) -> str:
    """One testsuite per server pair (s2s) and per stack x server (c2s)."""
    root = ET.Element("testsuites", name=f"xmpp interop lab {lab}")
    suites = defaultdict(list)
    for result in results:
        suites[result.suite].append(result)
    for name, members in suites.items():
        tally = counts(members)
        suite = ET.SubElement(root, "testsuite", name=name, tests=str(len(members)), failures=str(tally[FAIL]),
                              errors=str(tally[ERROR]), skipped=str(tally[NOT_SUPPORTED]),
                              time=f"{sum(r.seconds for r in members):.3f}")
        for result in members:
            case = ET.SubElement(suite, "testcase", classname=name, name=f"{result.case} {result.title}",
                                 time=f"{result.seconds:.3f}")
            properties = ET.SubElement(case, "properties")
            info = case_info(result.case)  # what the case checks, and against which spec
            for key in ("criterion", "spec"):
                if info[key]:
                    ET.SubElement(properties, "property", name=key, value=info[key])
            for key, value in fault_outcome(result).items():  # a fault's observed/expected outcome
                ET.SubElement(properties, "property", name=key, value=str(value))
            if result.status in (FAIL, ERROR):
                tag = "failure" if result.status == FAIL else "error"
                ET.SubElement(case, tag, message=result.detail).text = result.trace or result.detail
            elif result.status == NOT_SUPPORTED:
                ET.SubElement(case, "skipped", message=f"{result.reason}: {result.detail}")
            elif result.status == FLAKY:
                # JUnit has no flaky: a passing test case whose output says so, and a property
                # tools can count.
                ET.SubElement(properties, "property", name="status", value=FLAKY)
                ET.SubElement(case, "system-out").text = f"flaky: {result.detail}\n\n{result.trace}".strip()
            elif result.detail:
                ET.SubElement(case, "system-out").text = result.detail
            if not len(properties):
                case.remove(properties)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


# --- the page (templates/report/) -------------------------------------------------------------

# What the reports know of each case: the built-in ones, and the lab's own cases once write()
# has seen its lab.
CASES = by_id(builtin())


def case_info(case_id: str) -> dict:
    """What a case checks: its title, pass criterion and spec reference (the one place the
    report reads case definitions)."""
    case = CASES.get(case_id)
    return {"title": getattr(case, "title", case_id), "criterion": getattr(case, "criterion", ""),
            "spec": getattr(case, "spec", "")}


REDACTED = "[redacted]"


def redacted(result: CaseResult, secrets: list[str]) -> CaseResult:
    """The result with every account password replaced, wherever the runner put it."""
    if not secrets:
        return result

    def clean(value):
        if isinstance(value, str):
            for secret in secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(clean(item) for item in value)
        return value
    return replace(result, detail=clean(result.detail), trace=clean(result.trace),
                   evidence=clean(result.evidence), attempts=clean(result.attempts))


def lab_secrets(lab) -> list[str]:
    """Every account password of the lab, longest first (one may contain another)."""
    found = {password for server in lab.servers for password in server.accounts.values() if password}
    return sorted(found, key=len, reverse=True)


@dataclass(frozen=True)
class Arrow:
    source: str
    target: str
    status: str | None  # the worst S verdict of the pair (None: no S case ran)
    auth: str           # the method S8 observed, or ""
    path: str           # SVG path data
    label_x: float
    label_y: float


def federation_picture(results: list[CaseResult], servers: list[str], size: int | None = None) -> dict:
    """Servers on a circle, one curved arrow per ordered pair (the two directions of a pair
    bend to opposite sides), coloured by the pair's S verdicts, labelled with S8's method."""
    size = size or max(480, 340 + 32 * len(servers))  # 15 servers: 820 px
    centre, node = size / 2, 16 if len(servers) <= 8 else 11
    radius = centre - 70
    places = {name: (centre + radius * math.cos(2 * math.pi * i / max(len(servers), 1) - math.pi / 2),
                     centre + radius * math.sin(2 * math.pi * i / max(len(servers), 1) - math.pi / 2))
              for i, name in enumerate(servers)}
    arrows = []
    for a in servers:
        for b in servers:
            if a == b:
                continue
            here = [r for r in results if r.server == a and r.target == b and r.case.startswith("S")]
            (x1, y1), (x2, y2) = places[a], places[b]
            length = math.hypot(x2 - x1, y2 - y1) or 1
            ux, uy = (x2 - x1) / length, (y2 - y1) / length
            bend = min(40.0, length / 5)
            cx, cy = (x1 + x2) / 2 - uy * bend, (y1 + y2) / 2 + ux * bend  # to the left of a -> b
            start = (x1 + ux * node - uy * node / 3, y1 + uy * node + ux * node / 3)
            end = (x2 - ux * (node + 4) - uy * node / 3, y2 - uy * (node + 4) + ux * node / 3)
            # The label three quarters along, near the receiver that logged the method: the
            # labels of a server's peers spread around it instead of piling up in the middle.
            t = 0.75
            label = [(1 - t) ** 2 * p0 + 2 * (1 - t) * t * pc + t ** 2 * p2
                     for p0, pc, p2 in zip(start, (cx, cy), end)]
            arrows.append(Arrow(a, b, worst(here), observed_auth(here),
                                f"M{start[0]:.1f},{start[1]:.1f} Q{cx:.1f},{cy:.1f} {end[0]:.1f},{end[1]:.1f}",
                                label[0], label[1]))
    nodes = [{"name": name, "x": x, "y": y,
              "label_x": centre + (radius + node + 8) * (x - centre) / radius,
              "label_y": centre + (radius + node + 8) * (y - centre) / radius}
             for name, (x, y) in places.items()]
    return {"size": size, "node": node, "nodes": nodes, "arrows": arrows, "centre": centre}


def git_revision() -> str:
    """The lab's git revision (a checkout), or the installed package's version."""
    try:
        head = subprocess.run(["git", "-C", str(DATA_DIR), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5)
        if head.returncode == 0 and head.stdout.strip():
            dirty = subprocess.run(["git", "-C", str(DATA_DIR), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return head.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return f"installed package {importlib.metadata.version('xmpp-interop-lab')}"
    except importlib.metadata.PackageNotFoundError:
        return "?"


def run_info(started: float, seconds: float, command: list[str] | None = None) -> dict:
    """What the report says of the run itself: start, duration, command line, revision."""
    return {"started": started, "seconds": round(seconds, 1),
            "command": shlex.join(command if command is not None else ["lab", *sys.argv[1:]]),
            "revision": git_revision()}


def when(unix: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix)) if unix else "?"


def server_sections(results: list[CaseResult], rows: list[dict], servers: list[str]) -> list[dict]:
    """Per server, as a compliance page reads: the cases it passed (c2s on it, s2s from or to
    it), what failed, and what it lacks with the reason."""
    by_name = {row["server"]: row for row in rows}
    sections = []
    for name in servers:
        mine = [r for r in results if name in (r.server, r.target)]
        bad = [r for r in mine if r.status in (FAIL, ERROR, FLAKY)]
        # Passed: a case that passed with every stack and peer that ran it here.
        passed = sorted({r.case for r in mine if r.status == PASS} - {r.case for r in bad}, key=case_order)
        lacks = {}
        for r in mine:  # the feature a case needs, missing on this server (c2s: it; s2s: the target)
            if r.status == NOT_SUPPORTED and r.reason == "server" and (r.target or r.server) == name:
                lacks.setdefault((r.case, r.reason, r.detail), []).append(r)
        sections.append({"name": name, "row": by_name.get(name, {}), "passed": passed, "bad": bad,
                         "lacks": [{"case": case, "reason": reason, "detail": detail, "results": found}
                                   for (case, reason, detail), found in sorted(lacks.items(),
                                                                               key=lambda i: case_order(i[0][0]))],
                         "tally": counts(mine)})
    return sections


def case_order(case_id: str) -> tuple:
    order = list(CASES)
    return (order.index(case_id) if case_id in order else len(order), case_id)


def case_rows(results: list[CaseResult]) -> list[dict]:
    """A row per case across every pair and stack: what it checks, and how it went."""
    by_case: dict[str, list[CaseResult]] = defaultdict(list)
    for result in results:
        by_case[result.case].append(result)
    return [{"id": case, **case_info(case), "results": found, "tally": counts(found), "status": worst(found)}
            for case, found in sorted(by_case.items(), key=lambda item: case_order(item[0]))]


def pretty(value) -> str:
    """An evidence value as people read it: text as it is, a list of plain values on one
    line, anything deeper as indented JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return ", ".join(str(v) for v in value)
    return json.dumps(value, indent=1)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR / "report")),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["when"] = when
    env.filters["pretty"] = pretty
    env.globals["STATUSES"] = (PASS, FLAKY, FAIL, ERROR, NOT_SUPPORTED)
    env.globals["case_criterion"] = lambda case_id: case_info(case_id)["criterion"]
    env.globals["case_spec"] = lambda case_id: case_info(case_id)["spec"]
    return env


def to_html(results: list[CaseResult], lab: str, servers: list[str], rows: list[dict] | None = None,
            clients: list[dict] | None = None, run: dict | None = None, secrets: list[str] | None = None,
            changes: dict | None = None, since: dict | None = None, compliance: dict | None = None) -> str:
    """The page: one self-contained file (inline style and a few lines of script, nothing
    fetched), rendered from templates/report/page.html.j2 with autoescape."""
    results = [redacted(r, secrets or []) for r in results]
    names = labels(rows or [], clients or [])
    placed = {id(r) for matrix in [s2s_matrix(results, servers), c2s_matrix(results, servers),
                                   *fault_matrices(results, servers).values()]
              for row in matrix[1:] for c in row[1:] for r in getattr(c, "results", ())}
    return environment().get_template("page.html.j2").render(
        lab=lab, run=run or {}, servers=rows or [], clients=clients or [], names=names,
        summary=dict(sorted(counts(results).items())), total=len(results),
        s2s=relabelled(s2s_matrix(results, servers), names), c2s=relabelled(c2s_matrix(results, servers), names),
        faults={case: relabelled(m, names) for case, m in fault_matrices(results, servers).items()},
        info={case: case_info(case) for case in {r.case for r in results}},
        picture=federation_picture(results, servers), sections=server_sections(results, rows or [], servers),
        cases=case_rows(results), failures=[r for r in results if r.status in (FAIL, ERROR, FLAKY)],
        unplaced=[r for r in results if id(r) not in placed], changes=changes, since=since,
        compliance=relabelled(compliance_rows(compliance), names) if compliance else None)


# --- results.md ---------------------------------------------------------------------------------

def _md(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(_md(c) for c in rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return lines + ["| " + " | ".join(_md(c) or " " for c in row) + " |" for row in rows[1:]]


def to_markdown(results: list[CaseResult], lab: str, servers: list[str], rows: list[dict] | None = None,
                clients: list[dict] | None = None, run: dict | None = None, secrets: list[str] | None = None,
                changes: dict | None = None, since: dict | None = None) -> str:
    """The summary people paste into an issue: counts, the matrices as tables, each failure
    on one line (and what changed since the previous run)."""
    results = [redacted(r, secrets or []) for r in results]
    names = labels(rows or [], clients or [])
    tally = counts(results)
    lines = [f"# xmpp interop lab: {lab}", ""]
    if run:
        lines += [f"Run {when(run.get('started'))}, {run.get('seconds', 0):.1f} s, `{run.get('command', '')}`, "
                  f"revision {run.get('revision', '?')}.", ""]
    lines += [f"**{len(results)} results:** " + ", ".join(f"{tally[s]} {s}" for s in
                                                       (PASS, FLAKY, FAIL, ERROR, NOT_SUPPORTED) if tally[s]), ""]
    if rows:
        lines += _md_table([["server", "kind", "release", "version", "XEP-0092 answer"]] +
                           [[r["server"], r["kind"], r["release"], r["version"] or "?", r.get("software") or "?"]
                            for r in rows]) + [""]
    lines += ["## Server to server (row: from, column: to)", ""]
    lines += _md_table(texts(relabelled(s2s_matrix(results, servers), names))) + [""]
    lines += ["## Client to server", ""]
    lines += _md_table(texts(relabelled(c2s_matrix(results, servers), names))) + [""]
    for case, matrix in fault_matrices(results, servers).items():
        lines += [f"## Fault {case}: {case_info(case)['title']}", ""]
        lines += _md_table(texts(relabelled(matrix, names))) + [""]
    failures = [r for r in results if r.status in (FAIL, ERROR, FLAKY)]
    lines += [f"## Failures, errors and flaky cases ({len(failures)})", ""]
    lines += [f"- **{r.status}** `{r.id}` {_md(r.title)}: {_md(r.detail)[:300]}{since_text(r.id, since)}"
              for r in failures] or ["none"]
    if changes is not None:
        lines += ["", f"## Since run {changes['old_run']['name']}", ""]
        lines += [f"- {line}" for line in change_lines(changes)] or ["- no change"]
    return "\n".join(lines) + "\n"


def since_text(result_id: str, since: dict | None) -> str:
    """" (not passed since run X, N runs)" for a result that did not pass in earlier runs either."""
    found = (since or {}).get(result_id)
    return f" (not passed since run {found['run']}, {found['runs']} runs)" if found and found["run"] else ""


def change_lines(changes: dict) -> list[str]:
    """A diff (lab.compare.diff) as one line per change."""
    lines = [f"regression {c['id']}: {c['old']} -> {c['new']}: {c['detail']}" for c in changes["regressions"]]
    lines += [f"fixed {c['id']}: {c['old']} -> {c['new']}" for c in changes["fixes"]]
    lines += [f"changed {c['id']}: {c['old']} -> {c['new']}" for c in changes["changed"]]
    lines += [f"new {c['id']}: {c['new']}" for c in changes["new"]]
    lines += [f"gone {c['id']} (was {c['old']})" for c in changes["gone"]]
    lines += [f"version {v['name']}: {v['old']} -> {v['new']}" for v in changes["versions"]]
    return lines


# How many earlier runs the reports look back through for "failing since".
HISTORY = 20


def write(results: list[CaseResult], lab, versions: dict[str, str | None] | None = None,
          software: dict[str, str | None] | None = None, run: dict | None = None) -> Path:
    """Every report of one run, in its own folder of the lab's state directory; the page and
    the summary say what changed since the run before (the folder before it)."""
    from lab import compare  # compare reads results.json files, which this module writes
    CASES.update(by_id(list(lab.cases)))  # the lab's own cases too
    results_dir = lab.state_dir / "results"
    previous = compare.runs(results_dir)
    directory = results_dir / time.strftime("%Y%m%d-%H%M%S")
    while directory.exists():  # two runs in one second (tests): never mix their files
        directory = directory.with_name(directory.name + "-1")
    directory.mkdir(parents=True)
    servers, clients = [s.name for s in lab.servers], client_rows(lab, versions or {})
    rows = server_rows(lab, versions or {}, software)
    table = compliance(results, servers)
    document = to_json(results, lab.name, rows, clients, run, table)
    (directory / "results.json").write_text(document)
    earlier = [compare.load(folder) for folder in previous[-HISTORY:]]
    changes = compare.diff(earlier[-1], compare.load(directory)) if earlier else None
    since = compare.failing_since(earlier, compare.load(directory))
    secrets = lab_secrets(lab)
    (directory / "junit.xml").write_text(to_junit(results, lab.name))
    (directory / "report.html").write_text(to_html(results, lab.name, servers, rows, clients, run, secrets, changes,
                                                   since, table))
    summary = to_markdown(results, lab.name, servers, rows, clients, run, secrets, changes, since)
    (directory / "results.md").write_text(summary)
    if os.environ.get("GITHUB_STEP_SUMMARY"):  # GitHub Actions shows it on the run's page
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as step_summary:
            step_summary.write(summary)
    return directory
