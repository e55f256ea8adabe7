"""Containers and networks on the Docker engine, through the Docker SDK.

Everything the lab creates carries the label ``org.xmpp-lab.lab=<lab name>``; that label,
not any local file, is how ``down`` finds what to remove. Files go into containers through
the API (put_archive), never as bind mounts, so a remote engine (DOCKER_HOST) works too.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import shlex
import signal
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, TypeVar

import docker
import docker.errors
import requests.exceptions

from lab.errors import LabError

LABEL_LAB = "org.xmpp-lab.lab"
LABEL_ROLE = "org.xmpp-lab.role"
LABEL_SERVICE = "org.xmpp-lab.service"
LABEL_CONFIG_HASH = "org.xmpp-lab.config-hash"

T = TypeVar("T")
R = TypeVar("R")


def connect() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=300)
        client.ping()
        return client
    except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
        reason = str(error).split(": ", 1)[-1] if str(error) else type(error).__name__
        raise LabError(f"cannot reach the Docker engine (is it running? DOCKER_HOST?): {reason}") from None


def parallel(function: Callable[[T], R], items: Iterable[T], finish_on_interrupt: bool = True) -> list[R]:
    """``function`` over ``items`` at once; the first error is raised after all have finished.

    On Ctrl-C, items not started are dropped and, with ``finish_on_interrupt``, those running
    are waited for (further Ctrl-C ignored) before KeyboardInterrupt goes on: the caller's
    cleanup must never run while a worker may still create something.
    """
    items = list(items)
    if not items:
        return []
    pool = ThreadPoolExecutor(max_workers=len(items))
    with interrupts_deferred():  # a Ctrl-C between two submits would leave a worker unwaited for
        futures = [pool.submit(function, item) for item in items]
    try:
        # In slices: Ctrl-C is seen between them even where a signal does not wake a wait.
        while concurrent.futures.wait(futures, timeout=0.2).not_done:
            pass
    except KeyboardInterrupt:
        for future in futures:
            future.cancel()
        if finish_on_interrupt:
            with interrupts_ignored():
                concurrent.futures.wait(futures)
        raise
    finally:
        pool.shutdown(wait=False)
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]
    return [f.result() for f in futures]


@contextmanager
def interrupts_ignored():
    """Ctrl-C does nothing inside (cleanup that must finish); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def interrupts_deferred():
    """Ctrl-C inside is raised when the block ends, not in it.

    For a call that makes something on the engine: interrupted mid-request, the engine
    still makes it, after the cleanup has looked for what to remove.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen = []
    previous = signal.signal(signal.SIGINT, lambda *_: seen.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if seen:
        raise KeyboardInterrupt


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
        for network in self.networks():
            try:
                network.remove()
            except docker.errors.APIError as error:  # a swarm may remove an unused overlay itself
                if "not found" not in str(error):
                    raise
            removed += 1
        for volume in self.volumes():
            volume.remove(force=True)
            removed += 1
        return removed


class SwarmRuntime(Runtime):
    """The same lab as services of the swarm this engine manages (``engine: swarm``).

    Servers and clients are services (one task each, never restarted by the swarm, DNS
    round robin: no IPVS needed); the lab DNS stays a container of this engine, attached at
    its fixed address to the lab network, an internal attachable overlay, so that every task
    can use it. Tasks get their addresses from the swarm: ``placed`` reads them, and the
    zone is served with those. Files go in as swarm configs, named by a hash of their
    content (immutable, at most 500 KB); a task copies them into place before its image's
    own entrypoint runs, which sets owners and modes as it does on the local engine.

    Exec, logs and file updates reach a task's container through this engine: on another
    node they would need that node's engine (README, "More than one machine").
    """

    CONFIG_LIMIT = 500 * 1024
    FILES_DIR = "/run/xmpp-lab-files"
    PLACED = "/.xmpp-lab-files-placed"
    SCHEDULE_WAIT = 20  # seconds a task may stay unscheduled before lab up gives up

    def __init__(self, client: docker.DockerClient, lab_name: str):
        super().__init__(client, lab_name)
        swarm = client.info().get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            raise LabError("engine: swarm needs an engine that manages a swarm; this one is "
                           f"{'a worker of one' if swarm.get('LocalNodeState') == 'active' else 'in no swarm'} "
                           "('docker swarm init', or point DOCKER_HOST at a manager)")

    # --- what exists -------------------------------------------------------------------

    def services(self) -> list:
        return self.client.services.list(filters={"label": f"{LABEL_LAB}={self.lab_name}"})

    def configs(self) -> list:
        return self.client.configs.list(filters={"label": f"{LABEL_LAB}={self.lab_name}"})

    def service(self, service: str):
        """The swarm service of the lab's ``service`` (the name filter matches prefixes)."""
        name = self.container_name(service)
        return next((s for s in self.client.services.list(filters={"name": name}) if s.name == name), None)

    def container(self, service: str):
        """The running container of the service's task (or the lab DNS's container)."""
        if service == "dns":
            return super().container(service)
        found = self._task_containers(service)
        return next((c for c in found if c.status == "running"), found[0] if found else None)

    def _task_containers(self, service: str) -> list:
        return self.client.containers.list(all=True, filters={"label": [f"{LABEL_LAB}={self.lab_name}",
                                                                        f"{LABEL_SERVICE}={service}"]})

    def node(self, service: str) -> str | None:
        """The hostname of the node the service's task runs on."""
        if service == "dns":
            return self.client.info().get("Name")
        found = self.service(service)
        tasks = [t for t in (found.tasks() if found else []) if t.get("NodeID")]
        if not tasks:
            return None
        return self.client.nodes.get(tasks[0]["NodeID"]).attrs["Description"]["Hostname"]

    def placed(self, lab):
        """``lab`` with each server at the address the swarm gave its task."""
        import dataclasses

        def address(server):
            container = self.container(server.name)
            return (self.address_of(container) if container else None) or server.address
        return dataclasses.replace(lab, servers=tuple(dataclasses.replace(s, address=address(s)) for s in lab.servers))

    # --- creating ------------------------------------------------------------------------

    def ensure_network(self, subnet: str, subnet6: str | None = None) -> None:
        if subnet6:
            raise LabError("network.ipv6 is not supported with engine: swarm yet (an overlay needs more than "
                           "the lab's ULA /64)")
        if self.networks():
            return
        try:
            with interrupts_deferred():
                self.client.networks.create(
                    self.network_name, driver="overlay", attachable=True, internal=True, scope="swarm",
                    ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)]),
                    labels=self.labels(), check_duplicate=True)
        except docker.errors.APIError as error:
            raise LabError(f"cannot create overlay network {self.network_name} ({subnet}): {error.explanation}") from None

    def converge(self, service: Service, dns: list[str] | None) -> bool:
        if service.role == "dns":  # a container: a fixed address everyone can use
            try:
                return super().converge(service, dns)
            except LabError as error:
                if "already in use" not in str(error):
                    raise
                raise LabError(f"{error}: the swarm still holds that address from an earlier lab DNS (moby "
                               f"issue 27754): 'lab down', then 'lab up' again, or give the lab another "
                               f"network.subnet") from None
        wanted = service.config_hash()
        existing = self.service(service.name)
        if existing is not None:
            if existing.attrs["Spec"]["Labels"].get(LABEL_LAB) != self.lab_name:
                raise LabError(f"a service named {existing.name} exists but is not part of lab {self.lab_name}: "
                               f"remove it, or give the lab another name")
            running = self.container(service.name)
            if existing.attrs["Spec"]["Labels"].get(LABEL_CONFIG_HASH) == wanted and running is not None \
                    and running.status == "running":
                return False
            existing.remove()
            self._gone(service.name)
        self._create_service(service, wanted, dns)
        return True

    def _config(self, file: File) -> docker.types.ConfigReference:
        """The swarm config holding ``file``, made once (named by its content's hash)."""
        if len(file.data) > self.CONFIG_LIMIT:
            raise LabError(f"a file of {len(file.data)} bytes is over the swarm's config limit (500 KB)")
        name = f"xmpp-lab-{self.lab_name}-{hashlib.sha256(file.data).hexdigest()[:20]}"
        try:
            with interrupts_deferred():
                config = self.client.configs.create(name=name, data=file.data, labels=self.labels())
        except docker.errors.APIError as error:
            if error.status_code != 409:
                raise LabError(f"cannot make swarm config {name}: {error.explanation}") from None
            config = self.client.configs.get(name)
        return docker.types.ConfigReference(config.id, name, filename=f"{self.FILES_DIR}/{name}", mode=0o400)

    def _create_service(self, service: Service, config_hash: str, dns: list[str] | None) -> None:
        name = self.container_name(service.name)
        references, copies = [], []
        for path, file in sorted(service.files.items()):
            reference = self._config(file)
            references.append(reference)
            copies.append(f"mkdir -p {shlex.quote(path.rsplit('/', 1)[0] or '/')} && "
                          f"cp {reference['File']['Name']} {shlex.quote(path)} && "
                          f"chmod {file.mode:o} {shlex.quote(path)}")
        # On the container's first start only: a file the lab changed since (a fault's
        # certificate, put in through the engine) outlives a restart.
        copies = [f"if [ ! -e {self.PLACED} ]; then {' && '.join(copies + [f'touch {self.PLACED}'])}; fi"]
        image = self.client.images.get(service.image).attrs["Config"]
        original = service.command or [*(image.get("Entrypoint") or []), *(image.get("Cmd") or [])]
        labels = self.labels(**{LABEL_ROLE: service.role, LABEL_SERVICE: service.name})
        try:
            with interrupts_deferred():
                self.client.services.create(
                    service.image, name=name,
                    command=["/bin/sh", "-c", " && ".join(copies + ['exec "$@"']), "lab-files", *original],
                    labels={**labels, LABEL_CONFIG_HASH: config_hash}, container_labels=labels,
                    networks=[self.network_name], endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"),
                    restart_policy=docker.types.RestartPolicy(condition="none"),
                    dns_config=docker.types.DNSConfig(nameservers=dns) if dns else None,
                    configs=references, init=True,
                    constraints=[f"node.hostname=={service.host}"] if service.host else None)
        except docker.errors.APIError as error:
            raise LabError(f"cannot start {service.name} (service {name}): {error.explanation or error}") from None
        self._scheduled(service.name)

    def _scheduled(self, service: str) -> None:
        """Until the service's task runs; a LabError with the swarm's own words (the task's
        state and error) when it ends or stays unscheduled."""
        name = self.container_name(service)
        deadline = time.monotonic() + self.SCHEDULE_WAIT
        while True:
            found = self.service(service)
            tasks = found.tasks() if found else []
            status = tasks[0]["Status"] if tasks else {}
            if status.get("State") == "running" and self.container(service) is not None:
                return
            if status.get("State") in ("failed", "rejected", "shutdown", "complete", "orphaned") \
                    or time.monotonic() > deadline:
                why = status.get("Err") or status.get("Message") or "no task"
                raise LabError(f"{service} (service {name}) did not start: task {status.get('State', 'missing')}: {why}")
            time.sleep(0.3)

    def _gone(self, service: str) -> None:
        """Until the service's task container has gone (a removed service's lingers)."""
        for _ in range(100):
            if not self._task_containers(service):
                return
            time.sleep(0.2)

    # --- removing ------------------------------------------------------------------------

    def down(self) -> int:
        """Every service, config, container, network and volume of the lab; the swarm itself
        stays as it was."""
        services = self.services()
        for service in services:
            try:
                service.remove()
            except docker.errors.NotFound:
                pass
        for service in services:
            self._gone(service.attrs["Spec"]["Labels"].get(LABEL_SERVICE, ""))
        removed = len(services) + super().down()
        for config in self.configs():
            config.remove()
            removed += 1
        # An overlay made a moment ago can be missing from the list, or not be found when
        # removed, and then be there: ask again until it is gone for good.
        for _ in range(25):
            networks = self.networks()
            if not networks:
                break
            for network in networks:
                try:
                    network.remove()
                except docker.errors.APIError:
                    pass
            time.sleep(0.2)
        return removed


def runtime_for(client: docker.DockerClient, lab_name: str, engine: str) -> Runtime:
    """The runtime of ``engine``: local (containers of this engine) or swarm (services)."""
    return SwarmRuntime(client, lab_name) if engine == "swarm" else Runtime(client, lab_name)
