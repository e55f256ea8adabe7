"""How the lab scales: 3, 6, 9 and 15 servers, measured in one run.

    ./run python benchmarks/scale.py [--sizes 3,6,9,15] [--clients slixmpp,nbxmpp,xmppc]

For each size, a lab of that many servers (prosody, ejabberd and jabberd2 in turn: p1, e1,
j1, p2, ...) comes up, checks federation (S1 + S8 for every ordered pair) and runs the
whole catalogue. Printed per size: up time (to ready, and the federation check), catalogue
time, results, results per second, seconds per result against the 3-server lab (target:
no more than 1.2, time grows no faster than the work), peak memory per container kind, and
whether anything failed. Targets: the 15-server catalogue <= 10 minutes on 2 cores.
Each lab is removed afterwards.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from lab import model
from lab.interop import Interop
from lab.project import Project
from lab.results import FAILED, FLAKY
from lab.runtime import LABEL_ROLE, LABEL_SERVICE, Runtime, connect

KINDS = [("p", "prosody"), ("e", "ejabberd"), ("j", "jabberd2")]
PER_RESULT_TARGET, BIG_CATALOGUE_TARGET = 1.2, 600.0


def lab_file(directory: Path, size: int, clients: list[str]) -> Path:
    lines = [f"name: scale{size}", f"clients: [{', '.join(clients)}]", "servers:"]
    for index in range(size):
        letter, kind = KINDS[index % 3]
        name = f"{letter}{index // 3 + 1}"
        lines.append(f"  {name}: {{kind: {kind}, domain: {name}.test}}")
    path = directory / f"scale{size}.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


class PeakMemory:
    """Samples every container of a lab (one-shot stats) until stopped: peak bytes per kind."""

    def __init__(self, runtime: Runtime, lab: model.Lab):
        self.runtime, self.stopped = runtime, threading.Event()
        self.kind_of = {s.name: s.kind.name for s in lab.servers}
        self.peak: dict[str, int] = defaultdict(int)
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def kind(self, container) -> str:
        service = container.labels.get(LABEL_SERVICE, "?")
        return self.kind_of.get(service) or (service if container.labels.get(LABEL_ROLE) != "dns" else "dns")

    def sample(self) -> None:
        while not self.stopped.is_set():
            for container in self.runtime.containers():
                try:
                    stats = container.stats(stream=False, one_shot=True)
                except Exception:  # a container going away mid-sample
                    continue
                usage = stats.get("memory_stats", {}).get("usage", 0)
                kind = self.kind(container)
                self.peak[kind] = max(self.peak[kind], usage)
            self.stopped.wait(2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()


def measure(path: Path) -> dict:
    lab = model.load(path)
    runtime = Runtime(connect(), lab.name)
    runtime.down()
    project = Project(lab, runtime)
    try:
        with PeakMemory(runtime, lab) as memory:
            started = time.monotonic()
            project.up()
            up = time.monotonic() - started
            interop = Interop(lab, runtime)
            started = time.monotonic()
            federation = interop.federation()
            federation_seconds = time.monotonic() - started
            started = time.monotonic()
            results = interop.run([case for case in lab.cases if not case.fault])
            seconds = time.monotonic() - started
    finally:
        runtime.down()
    ran = [r for r in results if r.status != "not supported"]
    return {"servers": len(lab.servers), "up": up, "federation": federation_seconds,
            "federation_failed": sum(r.status in FAILED for r in federation), "pairs": len(lab.servers) * (len(lab.servers) - 1),
            "catalogue": seconds, "results": len(results), "ran": len(ran),
            "failed": [r for r in results if r.status in FAILED], "flaky": sum(r.status == FLAKY for r in results),
            "memory": dict(memory.peak), "concurrency": interop.concurrency}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="3,6,9,15")
    parser.add_argument("--clients", default="slixmpp,nbxmpp,xmppc")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="xmpp-lab-scale-"))
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        row = measure(lab_file(directory, size, args.clients.split(",")))
        rows.append(row)
        per_result = row["catalogue"] / max(row["ran"], 1)
        base = rows[0]["catalogue"] / max(rows[0]["ran"], 1)
        memory = ", ".join(f"{kind} {peak / 2**20:.0f} MiB" for kind, peak in sorted(row["memory"].items()))
        print(f"{size} servers ({row['pairs']} pairs, {row['concurrency']} cases at once per stack): "
              f"up {row['up']:.1f}s, federation {row['federation']:.1f}s "
              f"({row['pairs'] * 2 - row['federation_failed']}/{row['pairs'] * 2} S1+S8 ok); "
              f"catalogue {row['catalogue']:.1f}s for {row['results']} results ({row['ran']} run), "
              f"{row['ran'] / row['catalogue']:.1f} results/s, {per_result * 1000:.0f} ms per result = "
              f"{per_result / base:.2f} x the {rows[0]['servers']}-server lab "
              f"(target <= {PER_RESULT_TARGET}); failed or error: {len(row['failed'])}; flaky: {row['flaky']}",
              flush=True)
        print(f"  peak memory per container: {memory}", flush=True)
        by_case: dict[str, int] = defaultdict(int)
        for result in row["failed"]:
            by_case[f"{result.case} {result.status}"] += 1
        if by_case:
            print("  failed or error by case: " + ", ".join(f"{case} x{n}" for case, n in sorted(by_case.items())),
                  flush=True)
        shown: dict[str, int] = defaultdict(int)
        for result in row["failed"]:  # three of each case, so that every kind of failure is seen
            shown[result.case] += 1
            if shown[result.case] <= 3:
                print(f"  {result.status}: {result.id}: {result.detail[:300]}", flush=True)
        if size >= 15:
            print(f"  {size}-server catalogue {row['catalogue']:.0f}s; target <= {BIG_CATALOGUE_TARGET:.0f}s "
                  f"{'ok' if row['catalogue'] <= BIG_CATALOGUE_TARGET else 'MISSED'}", flush=True)


if __name__ == "__main__":
    main()
