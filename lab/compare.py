"""Run-to-run differences: two results folders (results.json) compared by stable result ID.

A regression is a result that passed (or was flaky) and is now worse: flaky, fail or error
(pass -> flaky counts: a flaky pass is never a pass). A fix is the other way round. Results
only in one run are new or gone; a server's or client's version that changed is listed too.
"""

from __future__ import annotations

import json
from pathlib import Path

from lab.errors import LabError
from lab.results import ERROR, FAIL, FLAKY, PASS

# How good a status is, for regressions and fixes; "not supported" is not on the scale.
RANK = {PASS: 0, FLAKY: 1, FAIL: 2, ERROR: 2}


def runs(results_dir: Path) -> list[Path]:
    """The results folders of a lab, oldest first (their names are their start times)."""
    if not results_dir.is_dir():
        return []
    return sorted(p for p in results_dir.iterdir() if (p / "results.json").is_file())


def load(folder: Path) -> dict:
    """A run's results.json, with its folder's name; one located error for anything else."""
    path = Path(folder) / "results.json" if Path(folder).is_dir() else Path(folder)
    try:
        document = json.loads(path.read_text())
    except OSError as error:
        raise LabError(f"{path}: cannot read: {error.strerror} (a results folder of 'lab test' is needed)") from None
    except json.JSONDecodeError as error:
        raise LabError(f"{path}:{error.lineno}: not JSON: {error.msg}") from None
    if not isinstance(document, dict) or not isinstance(document.get("results"), list):
        raise LabError(f"{path}: no results list: not a results.json of 'lab test'")
    document["name"] = path.parent.name
    return document


def versions(document: dict) -> dict[str, str]:
    """Each server's and client's version as the run reported it."""
    found = {}
    for row in document.get("servers", []):
        found[f"server {row.get('server')}"] = f"{row.get('kind')} {row.get('version') or '?'} ({row.get('release')})"
    for row in document.get("clients", []):
        found[f"client {row.get('client')}"] = f"{row.get('stack')} {row.get('version') or '?'} ({row.get('release')})"
    return found


def diff(old: dict, new: dict) -> dict:
    """What changed from run ``old`` to run ``new`` (documents of ``load``)."""
    before = {r["id"]: r for r in old["results"] if isinstance(r, dict) and "id" in r}
    after = {r["id"]: r for r in new["results"] if isinstance(r, dict) and "id" in r}
    changes = {"old_run": {"name": old.get("name"), "started": (old.get("run") or {}).get("started")},
               "new_run": {"name": new.get("name"), "started": (new.get("run") or {}).get("started")},
               "regressions": [], "fixes": [], "changed": [], "new": [], "gone": [], "versions": []}
    for result_id, now in after.items():
        was = before.get(result_id)
        if was is None:
            changes["new"].append({"id": result_id, "new": now.get("status"), "detail": now.get("detail", "")})
            continue
        a, b = was.get("status"), now.get("status")
        if a == b:
            continue
        entry = {"id": result_id, "old": a, "new": b, "detail": now.get("detail", ""),
                 "servers": [s for s in (now.get("server"), now.get("target")) if s]}
        if a in RANK and b in RANK and RANK[b] > RANK[a] and RANK[a] <= RANK[FLAKY]:
            changes["regressions"].append(entry)
        elif a in RANK and b in RANK and RANK[b] < RANK[a]:
            changes["fixes"].append(entry)
        else:
            changes["changed"].append(entry)
    changes["gone"] = [{"id": i, "old": r.get("status")} for i, r in before.items() if i not in after]
    old_versions, new_versions = versions(old), versions(new)
    changes["versions"] = [{"name": name, "old": old_versions[name], "new": version}
                           for name, version in new_versions.items()
                           if name in old_versions and old_versions[name] != version]
    return changes


def regressed(changes: dict) -> bool:
    return bool(changes["regressions"])


NOT_PASSING = (FLAKY, FAIL, ERROR)


def failing_since(earlier: list[dict], now: dict) -> dict[str, dict]:
    """For each result of ``now`` that did not pass: since which run it has not passed, going
    back through ``earlier`` (documents, oldest first) while it was flaky, fail or error
    there: {id: {"run": the first run of that streak, "runs": how many runs, this one
    included}}. A result that passed (or was not there) in the run before is new: run None."""
    found = {}
    statuses = [{r.get("id"): r.get("status") for r in document["results"] if isinstance(r, dict)}
                for document in earlier]
    for result in now["results"]:
        if not isinstance(result, dict) or result.get("status") not in NOT_PASSING:
            continue
        first, runs = None, 1
        for document, status in zip(reversed(earlier), reversed(statuses)):
            if status.get(result["id"]) not in NOT_PASSING:
                break
            first, runs = document.get("name"), runs + 1
        found[result["id"]] = {"run": first, "runs": runs}
    return found
