"""A multi-node Docker swarm on one machine: each node a Docker engine (Debian's docker.io)
in a container of the host's engine, on a network of its own, with its own storage. The
manager is one of them: the host's engine never joins a swarm.

Used by tests/test_swarm_nodes_e2e.py and benchmarks/lab_up.py --nodes. Everything it makes
carries the label org.xmpp-lab.nested-swarm=<name>, and ``remove`` takes all of it away.
"""

from __future__ import annotations

import time

import docker
import docker.errors
import requests.exceptions

from lab import IMAGES_DIR, images
from lab.swarm import send_image

LABEL = "org.xmpp-lab.nested-swarm"
ENGINE_PORT = 2375


def node_image(host: docker.DockerClient, say=lambda *a, **k: None) -> str:
    """The node image (images/swarm-node), built on the host's engine if missing."""
    images.ensure_images(host, [("swarm-node", IMAGES_DIR / "swarm-node", "bookworm")], say)
    return images.tag_for("swarm-node")


def privileged_refused(host: docker.DockerClient) -> str | None:
    """Why a node container cannot run here (None when it can): it needs every capability
    but CAP_SYS_RESOURCE, which this host's engine lacks (so no --privileged), and
    unconfined seccomp and AppArmor (images/swarm-node/entrypoint.sh does the rest)."""
    try:
        host.containers.run(images.base_tag(), ["true"], remove=True, cap_add=["ALL"], cap_drop=["SYS_RESOURCE"],
                            security_opt=["seccomp=unconfined", "apparmor=unconfined"])
    except docker.errors.APIError as error:
        return f"the engine refuses a container with all capabilities: {error.explanation or error}"
    return None


class NestedSwarm:
    def __init__(self, host: docker.DockerClient, name: str, workers: int = 2):
        self.host, self.name = host, name
        self.names = [f"{name}-manager"] + [f"{name}-worker{i}" for i in range(1, workers + 1)]
        self.addresses: dict[str, str] = {}
        self.engines: dict[str, docker.DockerClient] = {}

    @property
    def manager(self) -> str:
        return self.names[0]

    @property
    def workers(self) -> list[str]:
        return self.names[1:]

    def engine_url(self, node: str) -> str:
        return f"tcp://{self.addresses[node]}:{ENGINE_PORT}"

    def create(self, say=lambda *a, **k: None) -> None:
        """The nodes, their engines up, the manager's swarm, the workers joined."""
        image = node_image(self.host, say)
        labels = {LABEL: self.name}
        self.host.networks.create(self.name, driver="bridge", labels=labels, check_duplicate=True)
        for node in self.names:
            self.host.volumes.create(node, labels=labels)
            container = self.host.containers.run(
                image, name=node, hostname=node, detach=True, network=self.name, labels=labels,
                volumes={node: {"bind": "/var/lib/docker", "mode": "rw"}},
                cap_add=["ALL"], cap_drop=["SYS_RESOURCE"],
                security_opt=["seccomp=unconfined", "apparmor=unconfined"])
            container.reload()
            self.addresses[node] = container.attrs["NetworkSettings"]["Networks"][self.name]["IPAddress"]
        for node in self.names:
            self.engines[node] = self._engine(node)
        manager = self.engines[self.manager]
        manager.swarm.init(advertise_addr=self.addresses[self.manager], listen_addr="0.0.0.0:2377")
        token = manager.swarm.attrs["JoinTokens"]["Worker"]
        for node in self.workers:
            self.engines[node].swarm.join(remote_addrs=[f"{self.addresses[self.manager]}:2377"], join_token=token,
                                          advertise_addr=self.addresses[node])
        deadline = time.monotonic() + 60
        while len([n for n in manager.nodes.list() if n.attrs["Status"]["State"] == "ready"]) < len(self.names):
            if time.monotonic() > deadline:
                raise RuntimeError(f"nested swarm {self.name}: not every node became ready")
            time.sleep(0.5)

    def _engine(self, node: str) -> docker.DockerClient:
        deadline = time.monotonic() + 60
        while True:
            try:
                engine = docker.DockerClient(base_url=self.engine_url(node), timeout=600)
                engine.ping()
                return engine
            except (docker.errors.DockerException, requests.exceptions.RequestException):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nested swarm {self.name}: the engine of {node} did not answer") from None
                time.sleep(0.5)

    def seed(self, tags: list[str]) -> None:
        """The manager gets the lab's images from the host's engine, as if built on it."""
        for tag in tags:
            send_image(self.host, self.engines[self.manager], tag, self.manager, lambda *a, **k: None)

    def nodes_yaml(self) -> str:
        """lab.yml's nodes: each worker's engine address."""
        return "nodes:\n" + "".join(f"  {n}: {{engine: {self.engine_url(n)}}}\n" for n in self.workers)

    def kill(self, node: str) -> None:
        self.host.containers.get(node).kill()

    def remove(self) -> None:
        """Every node container, volume and the network (the nodes' own state goes with them)."""
        selector = {"label": f"{LABEL}={self.name}"}
        for container in self.host.containers.list(all=True, filters=selector):
            container.remove(force=True, v=True)
        for volume in self.host.volumes.list(filters=selector):
            volume.remove(force=True)
        for network in self.host.networks.list(filters=selector):
            network.remove()

    def leftovers(self) -> list:
        selector = {"label": f"{LABEL}={self.name}"}
        return (self.host.containers.list(all=True, filters=selector) + self.host.volumes.list(filters=selector)
                + self.host.networks.list(filters=selector))
