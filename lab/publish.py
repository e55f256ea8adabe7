"""Published client ports: every server's STARTTLS and direct-TLS port on the host, for a
desktop client (network.publish in lab.yml, or lab up --publish).

The servers stay on the lab's internal network. One small forwarder (lab/forwarder.py, in
the lab DNS's image) joins it and a network of its own that is not internal, and the
engine publishes the forwarder's ports there, on 127.0.0.1 unless lab.yml names another
address. That network has IP masquerading off, so the forwarder cannot reach out of the
machine either; the engine's port publishing still reaches it. The forwarder copies bytes
only: TLS runs between the client and the server, so a client that connects to
127.0.0.1:PORT and is told the JID's domain checks the server's real certificate.

Ports: server i (in lab.yml order) gets ``port + 10 i`` (STARTTLS) and ``port + 10 i + 1``
(direct TLS), from the lab's base port; the rest of the block is kept for services such
as HTTP upload.
"""

from __future__ import annotations

import errno
import re
import socket
from dataclasses import dataclass

import docker.errors

from lab import PACKAGE_DIR, images
from lab.errors import LabError
from lab.model import PUBLISH_STEP, Lab
from lab.concurrency import interrupts_deferred
from lab.runtime import LABEL_LAB, File, Runtime, Service

SERVICE = "publish"
FORWARDER = "/opt/xmpp-lab/forwarder.py"
STARTTLS, DIRECT_TLS = "starttls", "direct-tls"
TLS_NAMES = {STARTTLS: "STARTTLS", DIRECT_TLS: "direct TLS"}


@dataclass(frozen=True)
class Endpoint:
    """Where a client reaches one server's client port."""
    server: str
    domain: str
    tls: str        # STARTTLS or DIRECT_TLS: what the port speaks first
    host: str
    port: int
    target: str = ""  # the server's address:port on the lab network (what the forwarder connects to)


def endpoints(lab: Lab) -> list[Endpoint]:
    """What lab.publish asks for: per server, its STARTTLS port and (if it has one) its
    direct-TLS port on the host."""
    found = []
    for index, server in enumerate(lab.servers):
        base = lab.publish.port + index * PUBLISH_STEP
        found.append(Endpoint(server.name, server.domain, STARTTLS, lab.publish.address, base,
                              f"{server.address}:{server.kind.ports['c2s']}"))
        if "direct-tls" in server.features:
            found.append(Endpoint(server.name, server.domain, DIRECT_TLS, lab.publish.address, base + 1,
                                  f"{server.address}:{server.kind.ports['c2s_direct_tls']}"))
    return found


def lab_endpoints(lab: Lab) -> list[Endpoint]:
    """The servers' own client ports on the lab network: reachable from a Linux host that
    runs the engine, not from Docker Desktop (macOS, Windows)."""
    found = []
    for server in lab.servers:
        found.append(Endpoint(server.name, server.domain, STARTTLS, server.address, server.kind.ports["c2s"]))
        if "direct-tls" in server.features:
            found.append(Endpoint(server.name, server.domain, DIRECT_TLS, server.address,
                                  server.kind.ports["c2s_direct_tls"]))
    return found


def network_name(runtime: Runtime) -> str:
    return f"{runtime.network_name}-publish"


def service(lab: Lab) -> Service:
    """The forwarder: its listening ports are the host ports, published on lab.publish.address."""
    wanted = endpoints(lab)
    specs = [f"{e.server}:{e.tls}:{e.port}:{e.target}" for e in wanted]
    return Service(name=SERVICE, role="publish", image=images.tag_for("dns", release=lab.clients[0].release),
                   address=lab.publish_address, command=["python3", "-u", FORWARDER, *specs],
                   files={FORWARDER: File((PACKAGE_DIR / "forwarder.py").read_bytes())},
                   ports={e.port: (e.host, e.port) for e in wanted})


def check(lab: Lab, runtime: Runtime) -> None:
    """Before anything starts: a LabError if the ports cannot be published (a swarm; a host
    port taken by another container or another program)."""
    if runtime.engine == "swarm":
        raise LabError(f"{lab.publish.where}: publishing client ports is not supported with engine: swarm (a "
                       f"swarm publishes a port on every node's 0.0.0.0, or in host mode on the node its task "
                       f"runs on, never on this machine's 127.0.0.1 alone)")
    ours = runtime.container_name(SERVICE)
    held = {}  # host port -> the container (not our forwarder) the engine binds it for
    for container in runtime.client.containers.list():
        if container.name == ours:
            continue
        for bindings in (container.attrs["HostConfig"].get("PortBindings") or {}).values():
            for binding in bindings or []:
                if binding.get("HostPort", "").isdigit():
                    held[int(binding["HostPort"])] = container.name
    mine = set(running_ports(runtime))
    for endpoint in endpoints(lab):
        if endpoint.port in held:
            raise taken(lab, endpoint, f"the engine publishes it for container {held[endpoint.port]}")
        if endpoint.port not in mine and local_engine(runtime):
            try:
                probe(endpoint.host, endpoint.port)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise taken(lab, endpoint, "another program on this machine listens on it") from None
                if error.errno == errno.EADDRNOTAVAIL:
                    raise LabError(f"{lab.publish.where}: address {endpoint.host} is not one of this machine's "
                                   f"addresses") from None
                raise LabError(f"{lab.publish.where}: cannot bind {endpoint.host}:{endpoint.port}: "
                               f"{error.strerror}") from None


def local_engine(runtime: Runtime) -> bool:
    """The engine runs on this machine (its unix socket): its host ports are this machine's."""
    return runtime.client.api.base_url.startswith("http+docker://")


def probe(host: str, port: int) -> None:
    """Bind and let go of host:port (OSError if taken), as the engine's proxy will bind it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # connections in TIME_WAIT do not count
        sock.bind((host, port))


def taken(lab: Lab, endpoint: Endpoint, by: str) -> LabError:
    first, last = lab.publish.port, lab.publish.port + len(lab.servers) * PUBLISH_STEP - 1
    return LabError(f"{lab.publish.where}: host port {endpoint.host}:{endpoint.port} ({endpoint.server}'s "
                    f"{TLS_NAMES[endpoint.tls]} client port) is taken: {by}; free it, or give network.publish "
                    f"another port (this lab uses {first}-{last})")


def start(lab: Lab, runtime: Runtime, forwarder: Service) -> bool:
    """Make the publish network and converge the forwarder; True when it was (re)created.
    A port taken since ``check`` gives the same error as there."""
    name = network_name(runtime)
    if not any(n.name == name for n in runtime.client.networks.list(names=[name],
                                                                      filters={"label": f"{LABEL_LAB}={lab.name}"})):
        try:
            with interrupts_deferred():
                runtime.client.networks.create(
                    name, driver="bridge", labels=runtime.labels(), check_duplicate=True,
                    # Published ports work without masquerading; the forwarder gets no way out.
                    options={"com.docker.network.bridge.enable_ip_masquerade": "false"})
        except docker.errors.APIError as error:
            raise LabError(f"cannot create network {name}: {error.explanation}") from None
    try:
        return runtime.converge(forwarder, dns=None, extra_network=name)
    except LabError as error:
        match = re.search(r"(?:[\d.]+|\[[0-9a-f:]+\]):(\d+)", str(error))
        wanted = {e.port: e for e in endpoints(lab)}
        if match and int(match.group(1)) in wanted and re.search(r"already (allocated|in use)", str(error)):
            raise taken(lab, wanted[int(match.group(1))], "the engine could not bind it") from None
        raise


def remove_network(runtime: Runtime) -> None:
    """The publish network of a lab no longer published (its forwarder is gone)."""
    for network in runtime.client.networks.list(names=[network_name(runtime)],
                                                 filters={"label": f"{LABEL_LAB}={runtime.lab_name}"}):
        if network.name == network_name(runtime):
            network.remove()


def running_ports(runtime: Runtime) -> dict[int, str]:
    """Host port -> host address, as the engine publishes them for the lab's forwarder now."""
    container = runtime.container(SERVICE)
    if container is None:
        return {}
    bound = {}
    for bindings in (container.attrs["HostConfig"].get("PortBindings") or {}).values():
        for binding in bindings or []:
            bound[int(binding["HostPort"])] = binding.get("HostIp") or "0.0.0.0"
    return bound


def running(lab: Lab, runtime: Runtime) -> list[Endpoint]:
    """The published endpoints of the running lab, read from the engine: the forwarder's
    arguments (server, TLS, port) and the engine's port bindings (address); [] if none."""
    container = runtime.container(SERVICE)
    if container is None or container.status != "running":
        return []
    bound = running_ports(runtime)
    domains = {s.name: s.domain for s in lab.servers}
    found = []
    for spec in container.attrs["Config"]["Cmd"][3:]:
        server, tls, port, address, target_port = spec.split(":")
        if int(port) in bound:
            found.append(Endpoint(server, domains.get(server, "?"), tls, bound[int(port)], int(port),
                                  f"{address}:{target_port}"))
    return found


def summary(lab: Lab, runtime: Runtime) -> str:
    """One line: where a desktop client finds each server."""
    found = running(lab, runtime)
    if not found:
        return ("client ports: not published (lab up --publish, or network: {publish: true}); on a Linux "
                "host the servers' lab addresses answer: " +
                ", ".join(f"{e.domain} {e.host}:{e.port}" for e in lab_endpoints(lab) if e.tls == STARTTLS))
    by_domain: dict[str, list[str]] = {}
    for e in found:
        by_domain.setdefault(e.domain, []).append(f"{e.port} ({TLS_NAMES[e.tls]})")
    return (f"client ports on {found[0].host}: " + ", ".join(f"{d} {' '.join(p)}" for d, p in by_domain.items())
            + "; accounts: lab accounts, CA: lab ca export")
