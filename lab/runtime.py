"""The local engine: the lab as containers and networks of one Docker engine, through the
Docker SDK (lab/swarm.py has the same interface on a swarm).

Everything the lab creates carries the label ``org.xmpp-lab.lab=<lab name>``; that label,
not any local file, is how ``down`` finds what to remove. Files go into containers through
the API (put_archive), never as bind mounts, so a remote engine (DOCKER_HOST) works too.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from dataclasses import dataclass, field

import docker
import docker.errors
import requests.exceptions

from lab.concurrency import interrupts_deferred, parallel
from lab.errors import LabError

LABEL_LAB = "org.xmpp-lab.lab"
LABEL_ROLE = "org.xmpp-lab.role"
LABEL_SERVICE = "org.xmpp-lab.service"
LABEL_CONFIG_HASH = "org.xmpp-lab.config-hash"

def connect() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=300)
        client.ping()
        return client
    except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
        reason = str(error).split(": ", 1)[-1] if str(error) else type(error).__name__
        raise LabError(f"cannot reach the Docker engine (is it running? DOCKER_HOST?): {reason}") from None


@dataclass(frozen=True)
class File:
    data: bytes
    mode: int = 0o644


@dataclass
class Service:
    """One container of the lab: what it runs, where, with which files."""
    name: str
    role: str  # dns, server, client
    image: str
    address: str
    files: dict[str, File] = field(default_factory=dict)
    command: list[str] | None = None
    address6: str | None = None  # on a dual-stack lab
    host: str | None = None      # the swarm node it must run on (engine: swarm)
    # Published ports: container port -> (host address, host port) (lab/publish.py)
    ports: dict[int, tuple[str, int]] = field(default_factory=dict)

    def config_hash(self) -> str:
        """Changes when anything that defines the container changes."""
        digest = hashlib.sha256(f"{self.image}\0{self.address}\0{self.command}".encode())
        if self.address6:  # (absent from the hash of an IPv4 lab: its containers stay as they are)
            digest.update(f"\0{self.address6}".encode())
        if self.host:
            digest.update(f"\0host {self.host}".encode())
        if self.ports:
            digest.update(f"\0ports {sorted(self.ports.items())}".encode())
        for path in sorted(self.files):
            digest.update(f"\0{path}\0{self.files[path].mode}\0".encode() + self.files[path].data)
        return digest.hexdigest()


def tar_of(files: dict[str, File]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, file in sorted(files.items()):
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(file.data), file.mode, int(time.time())
            tar.addfile(info, io.BytesIO(file.data))
    return buffer.getvalue()


class Runtime:
    engine = "local"  # the lab.yml engine it is

    def __init__(self, client: docker.DockerClient, lab_name: str):
        self.client = client
        self.lab_name = lab_name

    @property
    def network_name(self) -> str:
        return f"xmpp-lab-{self.lab_name}"

    def container_name(self, service: str) -> str:
        return f"xmpp-lab-{self.lab_name}-{service}"

    def labels(self, **extra: str) -> dict[str, str]:
        return {LABEL_LAB: self.lab_name, **extra}

    # --- what exists -------------------------------------------------------------------

    def containers(self) -> list:
        return self.client.containers.list(all=True, filters={"label": f"{LABEL_LAB}={self.lab_name}"})

    def container(self, service: str):
        """The service's container; a LabError if its name is taken by one not of this lab."""
        name = self.container_name(service)
        try:
            container = self.client.containers.get(name)
        except docker.errors.NotFound:
            return None
        if container.labels.get(LABEL_LAB) != self.lab_name:
            raise LabError(f"a container named {name} exists but is not part of lab {self.lab_name}: "
                           f"remove or rename it, or give the lab another name")
        return container

    def networks(self) -> list:
        return self.client.networks.list(filters={"label": f"{LABEL_LAB}={self.lab_name}"})

    def volumes(self) -> list:
        return self.client.volumes.list(filters={"label": f"{LABEL_LAB}={self.lab_name}"})

    def address_of(self, container) -> str | None:
        """The container's address on the lab network (on a swarm, the one its task got)."""
        return (container.attrs["NetworkSettings"]["Networks"].get(self.network_name) or {}).get("IPAddress") or None

    def node(self, service: str) -> str | None:
        """Where the service runs: this engine's host."""
        return self.client.info().get("Name")

    def placed(self, lab):
        """``lab`` with each server where it runs: here, at the address the model gave it."""
        return lab

    def distribute(self, services: list[Service], say=None) -> None:
        """Every image of ``services`` on the engine that will run it: here, they are built on it."""

    # --- creating ------------------------------------------------------------------------

    def ensure_network(self, subnet: str, subnet6: str | None = None) -> None:
        existing = [n for n in self.networks() if n.name == self.network_name]  # (not the publish network)
        if existing:
            had6 = existing[0].attrs.get("EnableIPv6", False)
            if had6 != bool(subnet6):
                raise LabError(f"network {self.network_name} is {'dual-stack' if had6 else 'IPv4 only'} but the lab "
                               f"now says network.ipv6: {str(bool(subnet6)).lower()}: run 'lab down' first")
            return
        # Docker has no default IPv6 pools: the lab's ULA /64 is always given.
        pools = [docker.types.IPAMPool(subnet=subnet)] + ([docker.types.IPAMPool(subnet=subnet6)] if subnet6 else [])
        try:
            with interrupts_deferred():
                # internal: nothing in the lab can reach outside it.
                self.client.networks.create(self.network_name, driver="bridge", internal=True,
                                            ipam=docker.types.IPAMConfig(pool_configs=pools),
                                            enable_ipv6=bool(subnet6), labels=self.labels(), check_duplicate=True)
        except docker.errors.APIError as error:
            raise LabError(f"cannot create network {self.network_name} ({subnet}): {error.explanation}") from None

    def converge(self, service: Service, dns: list[str] | None, extra_network: str | None = None) -> bool:
        """Make the service's container match ``service``; True when it was (re)created.
        ``extra_network``: a second network it joins (where its published ports are)."""
        wanted = service.config_hash()
        existing = self.container(service.name)
        if existing is not None:
            # The image too: a tag built again (lab up --pull-newer) names another image.
            if (existing.labels.get(LABEL_CONFIG_HASH) == wanted and existing.status == "running"
                    and existing.attrs.get("Image") == self.image_id(service.image)):
                return False
            existing.remove(force=True, v=True)
        self._create(service, wanted, dns, extra_network)
        return True

    def image_id(self, image: str) -> str | None:
        try:
            return self.client.images.get(image).id
        except docker.errors.ImageNotFound:
            return None

    def _create(self, service: Service, config_hash: str, dns: list[str] | None,
                extra_network: str | None = None) -> None:
        api = self.client.api
        name = self.container_name(service.name)
        try:
            with interrupts_deferred():  # Ctrl-C at its end: no container made behind the cleanup's back
                created = api.create_container(
                    service.image, name=name, command=service.command, detach=True,
                    labels=self.labels(**{LABEL_ROLE: service.role, LABEL_SERVICE: service.name,
                                          LABEL_CONFIG_HASH: config_hash}),
                    host_config=api.create_host_config(dns=dns or None, init=True,
                                                       port_bindings=service.ports or None),
                    ports=list(service.ports) or None,
                    networking_config=api.create_networking_config(
                        {self.network_name: api.create_endpoint_config(ipv4_address=service.address,
                                                                        ipv6_address=service.address6)}),
                )
                if extra_network:  # the engine publishes ports on it: the lab network is internal
                    api.connect_container_to_network(created["Id"], extra_network)
                if service.files:
                    api.put_archive(created["Id"], "/", tar_of(service.files))
                api.start(created["Id"])
        except docker.errors.APIError as error:
            raise LabError(f"cannot start {service.name} ({name}): {error.explanation or error}") from None

    # --- using ---------------------------------------------------------------------------

    def exec(self, service: str, command: list[str], user: str = "") -> tuple[int, str]:
        container = self.container(service)
        if container is None or container.status != "running":
            raise LabError(f"{service} is not running")
        result = container.exec_run(command, user=user, demux=False)
        return result.exit_code, result.output.decode(errors="replace")

    def logs(self, service: str, tail: int | str = "all", since: int | None = None, timestamps: bool = False) -> str:
        """The container's log (``since``: unix seconds; ``timestamps``: each line starts with one)."""
        container = self.container(service)
        if container is None:
            return ""
        return container.logs(tail=tail, since=since, timestamps=timestamps).decode(errors="replace")

    def update_file(self, service: str, path: str, file: File) -> None:
        container = self.container(service)
        container.put_archive("/", tar_of({path: file}))

    # --- removing ------------------------------------------------------------------------

    @staticmethod
    def _attached(network) -> dict:
        """The containers the engine says are on ``network`` (a listing leaves them out)."""
        network.reload()
        return network.attrs.get("Containers") or {}

    def down(self) -> int:
        """Remove every container, network and volume of this lab; how many things went."""
        removed = 0

        def remove_container(container):
            try:
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass

        containers = self.containers()
        parallel(remove_container, containers)
        removed += len(containers)
        held = []
        for network in self.networks():
            try:
                network.remove()
            except docker.errors.APIError as error:
                if "not found" in str(error):  # a swarm may remove an unused overlay itself
                    pass
                elif "active endpoints" in str(error) and not self._attached(network):
                    held.append(network.name)  # said last: the rest goes first
                    continue
                else:
                    raise
            removed += 1
        for volume in self.volumes():
            volume.remove(force=True)
            removed += 1
        if held:
            raise LabError(f"network {held[0]} is held by the Docker engine: it counts an endpoint that no container "
                           f"has (a libnetwork leak of Docker 20.10, seen after a container was cut off the network "
                           f"by hand); everything else of lab {self.lab_name} was removed ({removed}), the next "
                           f"'lab up' reuses the network, and restarting the Docker daemon frees it")
        return removed


def runtime_for(client: docker.DockerClient, lab_name: str, engine: str, own_containers: tuple[str, ...] = (),
                nodes: tuple[tuple[str, str], ...] = ()) -> Runtime:
    """The runtime of ``engine``: local (containers of this engine) or swarm (services of its
    swarm; ``own_containers``: services that stay containers of this engine there; ``nodes``:
    the engine address of each other node, by hostname)."""
    if engine == "swarm":
        from lab.swarm import SwarmRuntime
        return SwarmRuntime(client, lab_name, own_containers, dict(nodes))
    return Runtime(client, lab_name)
