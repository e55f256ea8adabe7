"""How long the whole interop catalogue takes on the default lab, every stack.

    ./run python benchmarks/catalogue.py [--lab lab.yml] [--faults]

Brings the lab up if needed, runs every case once with `lab test`'s code path and prints
the time against the target (<= 60 s on 2 cores), the slowest stack measured alone in
the same run, and the ratio of the two (how much running stacks side by side costs).
The Jingle cases (J) are timed alone too, against their own target (<= 60 s).
With --faults, then the fault suite (F1-F8) against its own target (<= 300 s), and its
time as a multiple of the whole catalogue's in the same run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lab import model
from lab.interop import Interop
from lab.project import Project
from lab.results import FAILED
from lab.runtime import Runtime, connect

TARGET = 60.0
CS_TARGET = 30.0
JINGLE_TARGET = 60.0
FAULTS_TARGET = 300.0


def timed_run(interop: Interop, stacks: list[str] | None, faults: bool = False,
              interop_only: bool = False, ids: set[str] | None = None) -> tuple[float, int, int]:
    """Every case but the faults (or the faults alone) for ``stacks`` (None: every stack);
    ``interop_only``: the C and S cases alone; ``ids``: these cases alone."""
    cases = [case for case in interop.lab.cases if case.fault == faults
             and (not interop_only or case.id in interop_ids()) and (ids is None or case.id in ids)]
    started = time.monotonic()
    results = interop.run(cases, None, stacks)
    seconds = time.monotonic() - started
    failed = [r for r in results if r.status in FAILED]
    for result in failed:  # a benchmark of a run that failed is worth knowing about
        print(f"  failed: {result.id}: {result.detail}")
    return seconds, len(results), len(failed)


def interop_ids() -> set[str]:
    """The interop catalogue proper: the client-to-server and server-to-server cases, beside
    the compliance cases (lab/cases/compliance.py) the whole catalogue also holds."""
    from lab.cases import auth, c2s, dns, s2s
    return {case.id for unit in (c2s, s2s, auth, dns) for case in unit.CASES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", type=Path, default=None, help="lab.yml (default: ./lab.yml, else the default lab)")
    parser.add_argument("--faults", action="store_true", help="time the fault suite (F1-F8) too")
    args = parser.parse_args()
    lab = model.load_lab(args.lab)
    runtime = Runtime(connect(), lab.name)
    Project(lab, runtime).up()
    interop = Interop(lab, runtime)

    # The C and S cases first, on the lab as `lab up` left it (what `lab test` meets); later
    # runs on the same lab were seen to take longer (servers keep state of earlier runs).
    cs, cs_count, _ = timed_run(interop, None, interop_only=True)
    cs_batches = dict(interop.timings)
    from lab.cases import jingle
    jingle_time, jingle_count, jingle_failed = timed_run(interop, None, ids={case.id for case in jingle.CASES})
    whole, count, failed = timed_run(interop, None)
    whole_batches = dict(interop.timings)
    alone, batches = {}, {}
    for stack in (c.name for c in lab.clients):
        alone[stack], _, _ = timed_run(interop, [stack])
        batches[stack] = dict(interop.timings)
    cs_again, _, _ = timed_run(interop, None, interop_only=True)

    for stack, seconds in alone.items():
        print(f"{stack} alone: {seconds:.1f}s")
    slowest = max(alone, key=alone.get)
    print(f"C and S cases alone, {cs_count} results, every stack at once: {cs:.1f}s; target <= {CS_TARGET:.0f}s "
          f"{'ok' if cs <= CS_TARGET else 'MISSED'}; batch by batch: "
          + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in cs_batches.items())
          + f"; again after the other runs on the same lab: {cs_again:.1f}s")
    print(f"Jingle cases alone, {jingle_count} results ({jingle_failed} failed): {jingle_time:.1f}s; "
          f"target <= {JINGLE_TARGET:.0f}s {'ok' if jingle_time <= JINGLE_TARGET else 'MISSED'}")
    print(f"whole catalogue, {count} results ({failed} failed), every stack at once: {whole:.1f}s; "
          f"target <= {TARGET:.0f}s {'ok' if whole <= TARGET else 'MISSED'}; "
          f"{whole / alone[slowest]:.2f} x the slowest stack alone ({slowest})")
    print(f"what bounds it: {slowest} alone, batch by batch: "
          + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in batches[slowest].items())
          + "; whole catalogue batch by batch: "
          + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in whole_batches.items()))
    if args.faults:
        faults, count, failed = timed_run(interop, None, faults=True)
        print(f"fault suite, {count} results ({failed} failed): {faults:.1f}s; target <= {FAULTS_TARGET:.0f}s "
              f"{'ok' if faults <= FAULTS_TARGET else 'MISSED'}; {faults / whole:.2f} x the whole catalogue")


if __name__ == "__main__":
    main()
