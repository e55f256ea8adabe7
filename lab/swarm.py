"""The swarm engine: the same lab as services of the swarm the engine manages (``engine: swarm``)."""

from __future__ import annotations

import dataclasses
import hashlib
import shlex
import time

import docker
import docker.errors
import requests.exceptions

from lab.concurrency import interrupts_deferred, parallel, poll_until
from lab.errors import LabError
from lab.runtime import LABEL_CONFIG_HASH, LABEL_LAB, LABEL_ROLE, LABEL_SERVICE, File, Runtime, Service


ENDED = ("failed", "rejected", "shutdown", "complete", "orphaned")


def engine_could_not_start(status: dict) -> bool:
    """Whether a task ended because its node's engine could not start its container (the
    container never ran), as opposed to a container that started and exited."""
    return status.get("State") in ("failed", "rejected") and "starting container failed" in (status.get("Err") or "")


class SwarmRuntime(Runtime):
    """The same lab as services of the swarm this engine manages (``engine: swarm``).

    Servers and clients are services (one task each, never restarted by the swarm, DNS
    round robin: no IPVS needed); the lab DNS stays a container of this engine, attached at
    its fixed address to the lab network, an internal attachable overlay, so that every task
    can use it. Tasks get their addresses from the swarm: ``placed`` reads them, and the
    zone is served with those. Files go in as swarm configs, named by a hash of their
    content (immutable, at most 500 KB); a task copies them into place before its image's
    own entrypoint runs, which sets owners and modes as it does on the local engine.

    On more than one node: exec, logs and file updates reach a task's container through the
    engine of the node that runs it (``nodes``: hostname -> engine address, from lab.yml; the
    manager is this engine), and ``distribute`` sends each node the images its tasks need
    (docker save here, docker load there). A service placed nowhere in particular stays off
    the nodes the lab cannot reach. README, "More than one machine".
    """

    engine = "swarm"
    CONFIG_LIMIT = 500 * 1024
    FILES_DIR = "/run/xmpp-lab-files"
    PLACED = "/.xmpp-lab-files-placed"
    SCHEDULE_WAIT = 20  # seconds a task may stay unscheduled before lab up gives up
    # Seconds a node's engine may take to create and start a task's container once it has
    # it: a nested node's vfs storage copies the whole image (300 MB) for each container.
    START_WAIT = 120
    ON_ITS_NODE = ("preparing", "starting")  # states of a task its node's engine is working on
    START_TRIES = 3  # tasks per service when the engine fails to start their container

    def __init__(self, client: docker.DockerClient, lab_name: str, own_containers: tuple[str, ...] = (),
                 nodes: dict[str, str] | None = None):
        super().__init__(client, lab_name)
        self.own_containers = own_containers  # the lab DNS: a container at a fixed address
        info = client.info()
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            raise LabError("engine: swarm needs an engine that manages a swarm; this one is "
                           f"{'a worker of one' if swarm.get('LocalNodeState') == 'active' else 'in no swarm'} "
                           "('docker swarm init', or point DOCKER_HOST at a manager)")
        self.manager = info.get("Name")  # this engine's node
        self.node_addresses = dict(nodes or {})  # the other nodes' engines (lab.yml nodes)
        self._engines: dict[str, docker.DockerClient] = {}

    # --- the nodes' engines --------------------------------------------------------------

    def engine_of(self, node: str, why: str) -> docker.DockerClient:
        """The engine of ``node`` (hostname); a LabError saying ``why`` it was needed when
        the lab has no address for it or cannot reach it."""
        if node == self.manager:
            return self.client
        if node in self._engines:
            return self._engines[node]
        address = self.node_addresses.get(node)
        if address is None:
            raise LabError(f"{why} needs the Docker engine of swarm node {node}, which lab.yml does not give "
                           f"(nodes: {{{node}: {{engine: tcp://ADDRESS:2375}}}})")
        try:
            engine = docker.DockerClient(base_url=address, timeout=300, use_ssh_client=address.startswith("ssh://"))
            engine.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            reason = str(error).split(": ", 1)[-1] if str(error) else type(error).__name__
            raise LabError(f"swarm node {node}: its engine at {address} cannot be reached ({reason})") from None
        self._engines[node] = engine
        return engine

    def swarm_nodes(self) -> list[str]:
        """The hostnames of the swarm's nodes that can take tasks (ready and active)."""
        return sorted(n.attrs["Description"]["Hostname"] for n in self.client.nodes.list()
                      if n.attrs["Status"].get("State") == "ready" and n.attrs["Spec"].get("Availability") == "active")

    def reachable_nodes(self) -> list[str]:
        """The nodes whose engine the lab knows: the manager and those lab.yml gives."""
        return [n for n in self.swarm_nodes() if n == self.manager or n in self.node_addresses]

    def distribute(self, services: list[Service], say=None) -> None:
        """Every image a task will need on the node it will run on, before any service is
        made: sent from this engine (docker save) to the node's (docker load), unless the node
        has that image already (same image ID). A service placed on no node in particular may
        run on any node the lab can reach (see ``_create_service``): it goes to all of them."""
        say = say or (lambda *args, **kwargs: None)
        ready, everywhere = self.swarm_nodes(), self.reachable_nodes()
        wanted: dict[str, list[str]] = {}
        for service in services:
            if service.role == "dns" or service.name in self.own_containers:
                continue
            for node in ([service.host] if service.host else everywhere):
                # (a node the swarm does not have, or not ready: the scheduler says so, in its words)
                if node != self.manager and node in ready:
                    wanted.setdefault(node, [])
                    if service.image not in wanted[node]:
                        wanted[node].append(service.image)
        if not wanted:
            return
        for node in wanted:  # every engine reached (or the one error) before anything is sent
            self.engine_of(node, f"running {', '.join(s.name for s in services if s.host == node) or 'a task'} there")

        def send(node: str) -> None:
            for image in wanted[node]:
                send_image(self.client, self.engine_of(node, "sending images"), image, node, say)
        parallel(send, list(wanted))

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
        if service in self.own_containers:
            return super().container(service)
        found = self._task_containers(service)
        return next((c for c in found if c.status == "running"), found[0] if found else None)

    def _task_containers(self, service: str, node: str | None = None) -> list:
        """The containers of the service's tasks, on the engine of the node that runs them
        (``node``: where it ran, for a service already removed)."""
        node = node or self.node(service)
        if node is None:
            return []
        engine = self.engine_of(node, f"reaching {service}'s container")
        try:
            return engine.containers.list(all=True, filters={"label": [f"{LABEL_LAB}={self.lab_name}",
                                                                       f"{LABEL_SERVICE}={service}"]})
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            if node == self.manager:
                raise
            reason = str(error).rsplit(": ", 1)[-1].rstrip("'\")") if str(error) else type(error).__name__
            raise LabError(f"swarm node {node} (running {service}): its engine at {self.node_addresses[node]} "
                           f"cannot be reached ({reason})") from None

    def node(self, service: str) -> str | None:
        """The hostname of the node the service's (newest) task runs on."""
        if service in self.own_containers:
            return self.manager
        found = self.service(service)
        tasks = [t for t in (found.tasks() if found else []) if t.get("NodeID")]
        if not tasks:
            return None
        newest = max(tasks, key=lambda task: task.get("Version", {}).get("Index", 0))
        try:
            return self.client.nodes.get(newest["NodeID"]).attrs["Description"]["Hostname"]
        except docker.errors.NotFound:  # a node removed from the swarm since
            return None

    def placed(self, lab):
        """``lab`` with each server at the address the swarm gave its task."""
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
        if service.role in ("dns", "turn"):  # a container: a fixed address everyone can use
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
            node = self.node(service.name)
            existing.remove()
            self._gone(service.name, node)
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
                    configs=references, init=True, constraints=self._constraints(service))
        except docker.errors.APIError as error:
            raise LabError(f"cannot start {service.name} (service {name}): {error.explanation or error}") from None
        self._scheduled(service.name)

    def _constraints(self, service: Service) -> list[str] | None:
        """Its node, or, placed nowhere in particular, off the nodes whose engine the lab
        cannot reach (it could not send them the image, nor reach the task there)."""
        if service.host:
            return [f"node.hostname=={service.host}"]
        return [f"node.hostname!={node}" for node in self.swarm_nodes()
                if node != self.manager and node not in self.node_addresses] or None

    def _scheduled(self, service: str) -> None:
        """Until the service's task runs; a LabError with the swarm's own words (the task's
        state and error) when it ends or stays unscheduled.

        A task whose container the engine could not start (it never ran) gets a new task,
        up to START_TRIES in all: Docker 20.10 to 27 sometimes fail to remount a task's
        secrets/configs tmpfs read-only ("device or resource busy", moby#48783), which has
        nothing to do with the lab. Anything that ran and ended is not retried."""
        for attempt in range(1, self.START_TRIES + 1):
            status = self._task_settled(service)
            if status.get("State") == "running" and self.container(service) is not None:
                return
            if not (engine_could_not_start(status) and attempt < self.START_TRIES):
                break
            found = self.service(service)
            if found is None:
                break
            with interrupts_deferred():
                found.force_update()
        why = status.get("Err") or status.get("Message") or "no task"
        why += self._node_down(service)
        tries = f" (tried {attempt} times)" if attempt > 1 else ""
        raise LabError(f"{service} (service {self.container_name(service)}) did not start{tries}: task "
                       f"{status.get('State', 'missing')}: {why}")

    def _node_down(self, service: str) -> str:
        """``; its node NODE is down`` (or does not answer) for the node the task was given to."""
        node = self.node(service)
        if node is None or node == self.manager:
            return ""
        found = [n for n in self.client.nodes.list() if n.attrs["Description"]["Hostname"] == node]
        state = found[0].attrs["Status"].get("State") if found else "gone"
        if state != "ready":
            return f"; its node {node} is {state}"
        try:  # (the swarm notices a node gone only after its heartbeats stop for a while)
            self.engine_of(node, f"asking node {node}").ping()
        except LabError as error:
            return f"; {error}"
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return f"; swarm node {node}: its engine at {self.node_addresses.get(node)} does not answer"
        return ""

    def _task_settled(self, service: str) -> dict:
        """The status of the service's newest task once it runs or has ended (or when
        SCHEDULE_WAIT is up with the task unscheduled, START_WAIT with its node making its
        container)."""
        seen: dict = {}

        def settled():  # running (True), ended (its status), or still on its way (None)
            found = self.service(service)
            tasks = found.tasks() if found else []
            newest = max(tasks, key=lambda task: task.get("Version", {}).get("Index", 0), default={})
            seen["status"] = status = newest.get("Status", {})
            if status.get("State") == "running" and self.container(service) is not None:
                return True
            return status.get("State") in ENDED
        poll_until(settled, self.SCHEDULE_WAIT, 0.3)
        if seen["status"].get("State") in self.ON_ITS_NODE:  # scheduled: its node is making it
            poll_until(settled, self.START_WAIT, 0.3)
        return seen["status"]

    def _gone(self, service: str, node: str | None) -> None:
        """Until the service's task container has gone from ``node`` (a removed service's lingers)."""
        if node is not None:
            poll_until(lambda: not self._task_containers(service, node), 20, 0.2)

    # --- removing ------------------------------------------------------------------------

    def down(self) -> int:
        """Every service, config, container, network and volume of the lab; the swarm itself
        stays as it was."""
        services = self.services()
        names = [service.attrs["Spec"]["Labels"].get(LABEL_SERVICE, "") for service in services]
        nodes = [self.node(name) for name in names]
        for service in services:
            try:
                service.remove()
            except docker.errors.NotFound:
                pass
        unreachable = []
        for name, node in zip(names, nodes):
            try:
                self._gone(name, node)
            except LabError as error:  # a node gone (or never known): its tasks go with it
                unreachable.append(str(error))
        removed = len(services) + super().down()
        for config in self.configs():
            config.remove()
            removed += 1
        # An overlay made a moment ago can be missing from the list, or not be found when
        # removed, and then be there: ask again until it is gone for good.
        def networks_gone() -> bool:
            for network in self.networks():
                try:
                    network.remove()
                except docker.errors.APIError:
                    pass
            return not self.networks()
        poll_until(networks_gone, 5, 0.2)
        if unreachable:
            raise LabError(f"everything of lab {self.lab_name} the swarm's manager holds was removed ({removed}), "
                           f"but not checked on a node: {unreachable[0]}")
        return removed


def send_image(source: docker.DockerClient, target: docker.DockerClient, image: str, node: str, say) -> bool:
    """``image`` (a tag) from the ``source`` engine to the ``target`` engine, unless it has
    the same image already; True when it was sent."""
    wanted = source.images.get(image).id
    try:
        if target.images.get(image).id == wanted:
            return False
    except docker.errors.ImageNotFound:
        pass
    started = time.monotonic()
    say(f"sending image {image} to node {node}", transient=True)
    try:
        # docker save streams straight into docker load: nothing is held here.
        for _ in target.api.load_image(source.api.get_image(image)):
            pass
    except (docker.errors.APIError, requests.exceptions.RequestException) as error:
        reason = getattr(error, "explanation", None) or str(error).split(": ", 1)[-1]
        raise LabError(f"swarm node {node}: sending image {image} failed ({reason})") from None
    if target.images.get(image).id != wanted:
        raise LabError(f"swarm node {node}: image {image} was sent but its engine has another image under that tag")
    say(f"sent image {image} to node {node} in {time.monotonic() - started:.0f}s")
    return True
