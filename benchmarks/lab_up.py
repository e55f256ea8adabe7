"""Speed of bringing a lab up and down, as ratios measured in one run.

    ./run python benchmarks/lab_up.py [--lab lab.yml] [--cold] [--engine swarm [--nodes N]]

Prints: warm `lab up` to all-ready; each server's own start-to-ready (a lab holding only
that server, in the same run); the ratio of the two (target <= 1.3); `lab down` time
(target <= 3 s); with --cold, the time to build every image from nothing (base included;
target <= 180 s on 2 cores: the images build at the same time). With --engine swarm
(the engine must manage a swarm): the lab up on the swarm against the same lab up on the
local engine, in the same run. With --nodes N as well: on a swarm of nested engines made for
the run (a manager and N workers, tests/nested_swarm.py; the host's engine joins none), the
servers placed on the nodes in turn, and the images' distribution to the workers timed apart:
first (nothing on the workers) and warm (everything there already).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
import yaml

from lab import images, model
from lab.project import DNS_SERVICE, Project
from lab.runtime import LABEL_LAB, Runtime, connect, runtime_for

UP_TARGET, DOWN_TARGET = 1.3, 3.0


def timed(function) -> float:
    started = time.monotonic()
    function()
    return time.monotonic() - started


def cold_build(client, lab: model.Lab) -> float:
    """Remove the lab's images (base too) and build them all again."""
    running = client.containers.list(all=True, filters={"label": LABEL_LAB})
    if running:
        raise SystemExit(f"--cold removes every lab image: take the labs down first "
                         f"({', '.join(sorted({c.labels[LABEL_LAB] for c in running}))} up)")
    for image in client.images.list():
        if any(tag.startswith("xmpp-lab/") for tag in image.tags):
            client.images.remove(image.id, force=True)
    return timed(Project(lab, Runtime(client, lab.name)).ensure_images)


DISTRIBUTION = "images to nodes"


def up_to_ready(client, lab: model.Lab, engine: str = "local", phases: dict | None = None) -> float:
    """Seconds from nothing running to every server ready (images present, on every node:
    their distribution is left out, and found in ``phases``)."""
    runtime = runtime_for(client, lab.name, engine, own_containers=(DNS_SERVICE,), nodes=lab.nodes)
    runtime.down()
    project = Project(lab, runtime)
    project.up()
    if phases is not None:
        phases.update(project.phases.seconds)
    return sum(seconds for name, seconds in project.phases.seconds.items() if name not in ("images", DISTRIBUTION))


def on_nodes(client, source: Path | None, directory: Path, workers: int) -> None:
    """The lab on a nested swarm of a manager and ``workers`` workers against the local engine."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from nested_swarm import NestedSwarm

    local_lab = variant(source, directory, "bench")
    Project(local_lab, Runtime(client, local_lab.name)).ensure_images()
    local = up_to_ready(client, local_lab)
    Runtime(client, local_lab.name).down()
    swarm = NestedSwarm(client, f"xmpp-lab-bench-{uuid.uuid4().hex[:6]}", workers)
    try:
        started = time.monotonic()
        swarm.create()
        made = time.monotonic() - started
        started = time.monotonic()
        swarm.seed([images.tag_for(n, f, r) for n, f, r in Project(local_lab, Runtime(client, local_lab.name)).builds()]
                   + [images.kind_tag(s.kind, s.release) for s in local_lab.servers])
        seeded = time.monotonic() - started
        data = yaml.safe_load(local_lab.file.read_text())
        for index, spec in enumerate(data["servers"].values()):
            spec["host"] = swarm.names[index % len(swarm.names)]
        data["engine"] = "swarm"
        data["nodes"] = {n: {"engine": swarm.engine_url(n)} for n in swarm.workers}
        path = directory / "bench-nodes.yml"
        path.write_text(yaml.safe_dump(data))
        lab = model.load(path)
        manager = docker.DockerClient(base_url=swarm.engine_url(swarm.manager), timeout=600)
        first, warm = {}, {}
        cold_up = up_to_ready(manager, lab, "swarm", first)
        runtime_for(manager, lab.name, "swarm", own_containers=(DNS_SERVICE,), nodes=lab.nodes).down()
        warm_up = up_to_ready(manager, lab, "swarm", warm)
        down = timed(runtime_for(manager, lab.name, "swarm", own_containers=(DNS_SERVICE,), nodes=lab.nodes).down)
    finally:
        swarm.remove()
    placed = ", ".join(f"{s.name} on {s.host}" for s in lab.servers)
    print(f"nested swarm of {len(swarm.names)} nodes made in {made:.1f}s; the lab's images put on its manager in "
          f"{seeded:.1f}s; {placed}")
    print(f"images to the workers (docker save | docker load): first {first[DISTRIBUTION]:.1f}s, "
          f"warm {warm[DISTRIBUTION]:.2f}s (image IDs compared, nothing sent)")
    print(f"lab up to all ready, distribution left out: local engine {local:.2f}s; {len(swarm.names)}-node swarm "
          f"{cold_up:.2f}s (first) and {warm_up:.2f}s (warm) = {warm_up / local:.2f} x local; lab down {down:.2f}s")
    print("phases on the swarm, warm: " + " · ".join(f"{name} {seconds:.1f}s" for name, seconds in warm.items()))


def variant(source: Path | None, directory: Path, name: str, only: str | None = None) -> model.Lab:
    """The lab in ``source`` under another name (so its own subnet), optionally with one server."""
    data = yaml.safe_load((source or model.DEFAULT_LAB).read_text())
    data["name"] = name
    if only:
        data["servers"] = {only: data["servers"][only]}
    path = directory / f"{name}.yml"
    path.write_text(yaml.safe_dump(data))
    return model.load(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", type=Path, default=None, help="lab.yml (default: ./lab.yml, else the default lab)")
    parser.add_argument("--cold", action="store_true", help="also time building every image from nothing")
    parser.add_argument("--engine", choices=("local", "swarm"), default="local",
                        help="swarm: time the lab up on the swarm against the local engine")
    parser.add_argument("--nodes", type=int, default=0, metavar="N",
                        help="with --engine swarm: on a nested swarm of a manager and N workers made for the run")
    args = parser.parse_args()
    client = connect()
    directory = Path(tempfile.mkdtemp(prefix="xmpp-lab-bench-"))
    if args.nodes:
        if args.engine != "swarm":
            raise SystemExit("--nodes: only with --engine swarm")
        on_nodes(client, args.lab, directory, args.nodes)
        shutil.rmtree(directory)
        return
    lab = variant(args.lab, directory, "bench")
    if args.engine == "swarm":
        Project(lab, Runtime(client, lab.name)).ensure_images()
        local = up_to_ready(client, lab)
        Runtime(client, lab.name).down()
        on_swarm = up_to_ready(client, lab, "swarm")
        runtime_for(client, lab.name, "swarm", own_containers=(DNS_SERVICE,)).down()
        shutil.rmtree(directory)
        print(f"lab up to all ready: local engine {local:.2f}s; swarm {on_swarm:.2f}s = {on_swarm / local:.2f} x local")
        return

    if args.cold:
        cold = cold_build(client, lab)
        print(f"cold build of all images (base included, built at the same time): {cold:.1f}s "
              f"(target <= 180 s: {'ok' if cold <= 180 else 'MISSED'})")
    Project(lab, Runtime(client, lab.name)).ensure_images()

    alone = {}
    for server in lab.servers:
        single = variant(args.lab, directory, f"bench-{server.name}", only=server.name)
        alone[server.name] = up_to_ready(client, single)
        Runtime(client, single.name).down()
    warm = up_to_ready(client, lab)
    down = timed(Runtime(client, lab.name).down)

    shutil.rmtree(directory)

    slowest = max(alone, key=alone.get)
    for name, seconds in alone.items():
        print(f"{name} alone, start to ready: {seconds:.2f}s")
    ratio = warm / alone[slowest]
    print(f"warm lab up to all ready: {warm:.2f}s = {ratio:.2f} x the slowest server alone ({slowest}); "
          f"target <= {UP_TARGET} {'ok' if ratio <= UP_TARGET else 'MISSED'}")
    print(f"lab down: {down:.2f}s; target <= {DOWN_TARGET}s {'ok' if down <= DOWN_TARGET else 'MISSED'}")


if __name__ == "__main__":
    main()
