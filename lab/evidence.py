"""What the lab itself sees during a run, parsed: server logs and the lab DNS's query log.

Pure functions of captured text, so every judge built on them is tested on real captured
logs without Docker.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from datetime import datetime

from lab.results import CaseResult

ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # ejabberd 26 colours its console log


def log_lines(text: str) -> list[tuple[float, str]]:
    """A container log fetched with timestamps -> [(unix time, line)], colour codes removed."""
    lines = []
    for raw in ANSI_COLOUR.sub("", text).splitlines():
        stamp, _, line = raw.partition(" ")
        try:
            # Docker gives nanoseconds: fromisoformat takes at most microseconds.
            head, _, fraction = stamp.rstrip("Z").partition(".")
            when = datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}+00:00").timestamp()
        except ValueError:
            continue
        lines.append((when, line))
    return lines


def window(lines: list[tuple[float, str]], since: float, until: float) -> str:
    """The log lines written from ``since`` to ``until``, as one text."""
    return "\n".join(line for when, line in lines if since <= when <= until)


def dns_queries(text: str) -> list[dict]:
    """The lab DNS's query log (one JSON object a line, see labdns.py); other lines skipped."""
    queries = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                queries.append(json.loads(line))
            except ValueError:
                pass
    return queries


def asked_during(result: CaseResult, askers: list[str], queries: list[dict], since: float) -> list[dict]:
    """The lab DNS queries from ``askers`` (addresses) between ``since`` and the end of the case."""
    until = (result.ended or time.time()) + 0.5
    return [q for q in queries if q.get("client") in askers and since <= q.get("time", 0) <= until]


def named(queries: list[dict], name: str, types: tuple[str, ...], answered: bool = False) -> dict | None:
    """The first query for ``name`` of one of ``types`` (with an answer, if ``answered``)."""
    return next((q for q in queries if q["name"].rstrip(".") == name and q["type"] in types
                 and (q.get("answers") or not answered)), None)


def asked_names(queries: list[dict]) -> str:
    """What was asked, in a few words: for a detail that says what the DNS saw instead."""
    return ", ".join(f"{q['name'].rstrip('.')} {q['type']}" for q in queries) or "nothing"


TROUBLE = re.compile(r"error|fail|refus|denied|invalid|unable|timed? ?out", re.IGNORECASE)


def server_side(result: CaseResult, sender, receiver, logs: dict[str, list[tuple[float, str]]]) -> CaseResult:
    """A failed s2s case with what its servers logged about each other during it (lines that
    name the other server's domain or address and speak of trouble): the client saw the
    symptom, this is the servers' side."""
    since, until = (result.started or 0) - 0.5, (result.ended or time.time()) + 0.5
    found = [f"{server.name}: {line.strip()}"
             for server, peer in ((sender, receiver), (receiver, sender))
             for when, line in logs.get(server.name, [])
             if since <= when <= until and TROUBLE.search(line)
             and any(name in line for name in (peer.domain, *peer.addresses))]
    if not found:
        return result
    more = f" (+{len(found) - 1} more in the evidence)" if len(found) > 1 else ""
    return dataclasses.replace(result, detail=f"{result.detail}; the servers logged: {found[0]}{more}",
                               evidence={**result.evidence, "server_log": found[:20]})
