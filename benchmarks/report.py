"""How big report.html gets, and how long it takes to make and to show, at 15 servers.

    ./run python benchmarks/report.py [--servers 15] [--results 3060] [--out /tmp/report-15.html]

Makes a run of that many results from the captured ones of tests/fixtures/ (their real
details, evidence and traces, put on synthetic servers and pairs: c2s cases on every
server and stack, s2s cases on every ordered pair, failures where the capture failed),
renders results.md and report.html, and, where Debian's chromium and chromium-driver are
installed, loads the page headless and reads the browser's own load time.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import shutil
import time
from pathlib import Path

from lab import report
from lab.results import CaseResult

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def captured() -> list[CaseResult]:
    found = []
    for path in sorted(FIXTURES.glob("*/results.json")):
        for entry in json.loads(path.read_text())["results"]:
            entry = {k: v for k, v in entry.items() if k not in ("id", "observed", "expected")}
            found.append(CaseResult(**{**entry, "attempts": tuple(entry.get("attempts") or ())}))
    return found


def synthetic(servers: list[str], wanted: int) -> list[CaseResult]:
    """``wanted`` results on ``servers``: captured results of each case, moved to each
    server (c2s) or ordered pair (s2s), in catalogue order, cut at ``wanted``."""
    by_case: dict[str, list[CaseResult]] = {}
    for result in captured():
        by_case.setdefault(result.case, []).append(result)
    stacks = ["slixmpp", "nbxmpp", "xmppc", "sendxmpp", "gosendxmpp"]
    results = []
    pairs = [(a, b) for a in servers for b in servers if a != b]
    for case, found in sorted(by_case.items(), key=lambda item: report.case_order(item[0])):
        source = itertools.cycle(found)
        if any(r.target is None for r in found):
            places = [(stack, s, None) for stack in stacks for s in servers]
        elif case == "S1":  # the s2s case every stack runs
            places = [(stack, a, b) for stack in stacks for a, b in pairs]
        else:
            places = [(next(source).stack, a, b) for a, b in pairs]
        for stack, server, target in places:
            results.append(dataclasses.replace(next(source), stack=stack, server=server, target=target))
    return results[:wanted]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=15)
    parser.add_argument("--results", type=int, default=3060)
    parser.add_argument("--out", type=Path, default=Path("/tmp/report-bench.html"))
    args = parser.parse_args()
    servers = [f"server{i:02d}" for i in range(args.servers)]
    results = synthetic(servers, args.results)
    rows = [{"server": s, "domain": f"{s}.test", "kind": "prosody", "release": "trixie",
             "version": "13.0.1-1+deb131u", "software": "Prosody 13.0.1"} for s in servers]
    run = report.run_info(time.time(), 0.0, ["benchmarks/report.py"])
    started = time.perf_counter()
    page = report.to_html(results, "bench", servers, rows, [], run, ["alice-password", "bob-password"])
    html_seconds = time.perf_counter() - started
    started = time.perf_counter()
    summary = report.to_markdown(results, "bench", servers, rows, [], run)
    md_seconds = time.perf_counter() - started
    args.out.write_text(page)
    failing = sum(r.status in ("fail", "error", "flaky") for r in results)
    print(f"{len(results)} results on {len(servers)} servers ({failing} failed, in error or flaky, with their traces)")
    print(f"report.html: {len(page.encode()) / 1e6:.2f} MB, rendered in {html_seconds:.2f} s ({args.out})")
    print(f"results.md: {len(summary.encode()) / 1e3:.0f} kB, rendered in {md_seconds:.2f} s")
    browser(args.out)


def browser(path: Path) -> None:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        print("browser: not measured (no chromium and chromium-driver)")
        return
    from selenium import webdriver
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=options)
    try:
        chrome.get(path.resolve().as_uri())
        timing = chrome.execute_script("var t = performance.getEntriesByType('navigation')[0];"
                                       "return [t.domContentLoadedEventEnd, t.loadEventEnd];")
        started = time.perf_counter()
        chrome.find_element("css selector", "td.fail details.cell summary").click()  # a cell opens at once?
        opened = time.perf_counter() - started
        print(f"browser: DOM ready {timing[0] / 1000:.2f} s, loaded {timing[1] / 1000:.2f} s; a cell opened in "
              f"{opened * 1000:.0f} ms (chromium, headless)")
    finally:
        chrome.quit()


if __name__ == "__main__":
    main()
