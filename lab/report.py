"""Interop results -> matrices on the terminal, JSON, JUnit XML and one self-contained HTML page."""

from __future__ import annotations

import html
import json
import re
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

from lab.cases import builtin
from lab.cases.auth import observed
from lab.results import ERROR, FAIL, FAILED, FLAKY, NOT_SUPPORTED, PASS, CaseResult, counts

FAULTS = {case.id for case in builtin() if case.fault}  # (a lab's own cases are never faults)


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


def cell(results) -> str:
    tally = counts(results)
    parts = [f"{tally[s]} {s}" for s in (PASS, FLAKY, FAIL, ERROR, NOT_SUPPORTED) if tally[s]]
    return ", ".join(parts) or "-"


def is_fault(result: CaseResult) -> bool:
    return result.case in FAULTS


def s2s_matrix(results: list[CaseResult], servers: list[str]) -> list[list[str]]:
    """Rows: source server; columns: target; cell: counts and the observed auth method (S8).
    Fault scenarios have matrices of their own."""
    rows = [["from \\ to", *servers]]
    auth_of = observed(results)
    for source in servers:
        row = [source]
        for target in servers:
            here = [r for r in results if r.target and r.server == source and r.target == target and not is_fault(r)]
            seen = auth_of.get((source, target))
            auth = seen.evidence.get("auth") if seen is not None and seen.status == PASS else ""
            row.append("" if source == target else (cell(here) + (f" [{auth}]" if auth else "")))
        rows.append(row)
    return rows


def c2s_matrix(results: list[CaseResult], servers: list[str]) -> list[list[str]]:
    """Rows: client stack; columns: server."""
    results = [r for r in results if not r.target and not is_fault(r)]
    stacks = sorted({r.stack for r in results})
    rows = [["stack \\ server", *servers]]
    for stack in stacks:
        rows.append([stack, *(cell([r for r in results if r.stack == stack and r.server == s]) for s in servers)])
    return rows


def fault_matrices(results: list[CaseResult], servers: list[str]) -> dict[str, list[list[str]]]:
    """Per fault scenario: rows sender, columns receiver (and a row of the servers' own c2s
    part, where the fault has one); cell: the status and what was observed."""
    def outcome(result: CaseResult | None) -> str:
        if result is None:
            return ""
        seen = result.evidence.get("observed")
        return result.status + (f": {seen}" if seen and result.status != PASS else f" ({seen})" if seen else "")
    matrices = {}
    for case in sorted({r.case for r in results if is_fault(r)}, key=lambda c: (len(c), c)):
        here = {(r.server, r.target): r for r in results if r.case == case}
        rows = [["from \\ to", *servers]]
        rows += [[a, *("" if a == b else outcome(here.get((a, b))) for b in servers)] for a in servers]
        if any(target is None for _, target in here):
            rows.append(["(c2s)", *(outcome(here.get((s, None))) for s in servers)])
        matrices[case] = rows
    return matrices


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
            clients: list[dict] | None = None, compliance: dict | None = None) -> str:
    return json.dumps({"lab": lab, "servers": servers or [], "clients": clients or [],
                       "summary": dict(sorted(counts(results).items())),
                       **({"compliance": compliance} if compliance else {}),
                       "results": [{"id": r.id, **asdict(r), **fault_outcome(r)} for r in results]}, indent=2) + "\n"


def compliance(results: list[CaseResult], servers: list[str]) -> dict | None:
    """The compliance table (lab/cases/compliance.py), when a compliance case ran."""
    from lab.cases import compliance as cases
    ran = {case for requirements in cases.LEVELS.values() for wanted in requirements.values() for case in wanted
           if case.startswith("X")}
    if not any(r.case in ran for r in results):
        return None
    return cases.compliance_table(results, servers)


def compliance_rows(table: dict) -> list[list[str]]:
    from lab.cases import compliance as cases
    return cases.table_rows(table)


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


STYLE = """
body { font-family: sans-serif; margin: 2em; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { border: 1px solid #999; padding: .3em .6em; text-align: left; vertical-align: top; }
td.ok { background: #d4f4d4; } td.bad { background: #f8d0d0; } td.na { background: #eee; }
td.flaky { background: #fbeec0; }
pre { background: #f6f6f6; padding: .5em; overflow-x: auto; max-height: 30em; }
"""


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = ""
    for row in rows[1:]:
        cells = f"<th>{html.escape(row[0])}</th>"
        for value in row[1:]:
            css = ("bad" if (" fail" in value or " error" in value) else "flaky" if " flaky" in value
                   else "ok" if " pass" in value else "na")
            cells += f'<td class="{css}">{html.escape(value)}</td>'
        body += f"<tr>{cells}</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def to_html(results: list[CaseResult], lab: str, servers: list[str], rows: list[dict] | None = None,
            clients: list[dict] | None = None, compliance: dict | None = None) -> str:
    failures = [r for r in results if r.status in FAILED or r.status == FLAKY]
    versions = [["server", "kind", "release", "version", "XEP-0092 answer"]] + [
        [row["server"], row["kind"], row["release"], row["version"] or "?", row.get("software") or "?"]
        for row in rows or []]
    names = labels(rows or [], clients or [])
    client_versions = [["client", "stack", "release", "version"]] + [
        [row["client"], row["stack"], row["release"], row["version"] or "?"] for row in clients or []]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>xmpp interop lab {html.escape(lab)}</title>",
             f"<style>{STYLE}</style></head><body><h1>xmpp interop lab: {html.escape(lab)}</h1>",
             *(["<h2>Servers</h2>", _html_table(versions)] if rows else []),
             *(["<h2>Clients</h2>", _html_table(client_versions)] if clients else []),
             "<h2>Server to server</h2>", _html_table(relabelled(s2s_matrix(results, servers), names)),
             "<h2>Client to server</h2>", _html_table(relabelled(c2s_matrix(results, servers), names)),
             *(part for case, matrix in fault_matrices(results, servers).items()
               for part in (f"<h2>Fault {html.escape(case)}</h2>", _html_table(relabelled(matrix, names)))),
             *(["<h2>Compliance (XEP-0479, by behaviour)</h2>",
                _html_table(relabelled(compliance_rows(compliance), names))] if compliance else []),
             f"<h2>Failures and flaky cases ({len(failures)})</h2>"]
    for result in failures:
        parts.append(f"<h3 id='{html.escape(result.id)}'>{html.escape(result.id)} ({result.status}): "
                     f"{html.escape(result.title)}</h3>"
                     f"<p>{html.escape(result.detail)}</p><pre>{html.escape(result.trace or '(no trace)')}</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write(results: list[CaseResult], lab, versions: dict[str, str | None] | None = None,
          software: dict[str, str | None] | None = None) -> Path:
    """Every report of one run, in its own folder of the lab's state directory."""
    directory = lab.state_dir / "results" / time.strftime("%Y%m%d-%H%M%S")
    directory.mkdir(parents=True, exist_ok=True)
    servers, clients = [s.name for s in lab.servers], client_rows(lab, versions or {})
    rows = server_rows(lab, versions or {}, software)
    table = compliance(results, servers)
    (directory / "results.json").write_text(to_json(results, lab.name, rows, clients, table))
    (directory / "junit.xml").write_text(to_junit(results, lab.name))
    (directory / "report.html").write_text(to_html(results, lab.name, servers, rows, clients, table))
    return directory
