"""lab.yml -> Lab: read, check against the schema, fill in defaults.

Every problem becomes a ConfigError naming file, line and key; nothing is started before
the model is whole.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
from dataclasses import dataclass, replace
from pathlib import Path

import jinja2
import yaml

from lab import DATA_DIR, TEMPLATES_DIR, config_file, turn
from lab.cases import Case, catalogue
from lab.errors import ConfigError
from lab.servers import ServerKind, kind_folders, load_kind
from lab.stacks import ClientStack, stacks

PACKAGE_DIR = Path(__file__).parent
DEFAULTS = yaml.safe_load((PACKAGE_DIR / "defaults.yml").read_text())
DEFAULT_LAB = DATA_DIR / "lab.yml"  # one server of each built-in kind

# Host numbers inside the lab subnet: the DNS at a fixed one; servers and client stacks
# at numbers picked from their names, so adding or removing one moves no other.
DNS_HOST = 2
SERVER_HOSTS = range(10, 200)
CLIENT_HOSTS = range(200, 250)
UNUSED_HOST = 251  # no container holds it: the dead SRV target of fault F2
PUBLISH_HOST = 3  # the forwarder of published client ports (lab/publish.py)
ROOM_NAME = "interop"  # the event's room, as interop@muc.xmpp.org was
TURN_HOST = 4  # the TURN/STUN service (lab/turn.py)

# Published client ports: a block of PUBLISH_STEP host ports per server, in lab.yml order,
# from a base port (network.publish.port, else one picked from the lab's name).
PUBLISH_STEP = 10
PUBLISH_BASES = range(10000, 30000, 100)  # below Linux's ephemeral ports (32768 on)


@dataclass(frozen=True)
class Publish:
    """Where a lab's client ports are published on the host (network.publish, lab up --publish)."""
    address: str  # the host address the ports are bound on: 127.0.0.1 unless lab.yml says otherwise
    port: int     # the first server's STARTTLS port
    where: str    # what asked for it (FILE:LINE: network.publish, or --publish), for errors


@dataclass(frozen=True)
class Server:
    name: str
    kind: ServerKind
    domain: str
    address: str
    accounts: dict[str, str]
    log_level: str
    ready_timeout: float
    address6: str | None = None  # on a dual-stack lab
    release: str = "bookworm"    # the Debian suite its packages come from
    host: str | None = None      # engine: swarm: the node it must run on
    # Features of its kind the lab switched off (external-services, turn-server on a lab with turn: false).
    switched_off: frozenset[str] = frozenset()

    @property
    def addresses(self) -> list[str]:
        return [self.address] + ([self.address6] if self.address6 else [])

    @property
    def features(self) -> frozenset[str]:
        """What it does: its kind's features and those its release adds."""
        return (self.kind.features | self.kind.release_features.get(self.release, frozenset())) - self.switched_off

    @property
    def muc_domain(self) -> str | None:
        """The MUC service's domain, for kinds that have one."""
        return f"conference.{self.domain}" if "muc" in self.features else None

    @property
    def upload_domain(self) -> str | None:
        """The HTTP upload service's domain (XEP-0363), for kinds that have one."""
        return f"upload.{self.domain}" if "upload" in self.features else None

    @property
    def component_domain(self) -> str | None:
        """Where the lab's external component (XEP-0114) connects, for kinds that take one."""
        return f"component.{self.domain}" if "component" in self.features else None

    @property
    def proxy65_domain(self) -> str | None:
        """The SOCKS5 bytestreams proxy's JID (XEP-0065), for kinds that have one; its name in
        the lab DNS is where the proxy's clients connect to."""
        return f"proxy.{self.domain}" if "proxy65" in self.features else None

    @property
    def names(self) -> list[str]:
        """Every domain this server answers for: in its certificate and in the lab DNS."""
        return [self.domain] + [name for name in (self.muc_domain, self.upload_domain, self.component_domain,
                                                     self.proxy65_domain) if name]


@dataclass(frozen=True)
class Lab:
    name: str
    file: Path
    subnet: ipaddress.IPv4Network
    name_constraints: bool
    servers: tuple[Server, ...]
    clients: tuple[ClientStack, ...]  # each a stack's client at a release; the first: slixmpp
    test_concurrency: int | None = None  # cases a runner has in flight (None: from the engine's cores)
    subnet6: ipaddress.IPv6Network | None = None  # dual-stack labs only
    engine: str = "local"  # local: containers of this engine; swarm: services of its swarm
    cases: tuple[Case, ...] = ()  # the catalogue: built-in cases, then the lab's own (cases/)
    publish: Publish | None = None  # client ports published on the host (lab/publish.py)
    nodes: tuple[tuple[str, str], ...] = ()  # engine: swarm: (node hostname, its engine's address)
    turn: bool = True  # a TURN/STUN service for the servers that declare external-services
    room_server: str | None = None  # the server holding the event's room (lab.yml room)

    @property
    def room(self) -> str | None:
        """The event's room, made by `lab up` and kept open: its JID, or None."""
        return f"{ROOM_NAME}@{self.server(self.room_server).muc_domain}" if self.room_server else None

    @property
    def turn_enabled(self) -> bool:
        """The lab runs its TURN service: asked for, and some server advertises it."""
        return self.turn and any("external-services" in s.features for s in self.servers)

    @property
    def turn_address(self) -> str:
        return str(self.subnet[TURN_HOST])

    @property
    def primary(self) -> ClientStack:
        """The lab's first client (slixmpp): it checks readiness and federation, and runs the
        cases only the lab's own client runs (S8's exchange, the faults)."""
        return self.clients[0]

    @property
    def case_files(self) -> list[Path]:
        """The files of the lab's own cases."""
        return [self.file.parent / case.origin for case in self.cases if case.origin != "built-in"]

    @property
    def ipv6(self) -> bool:
        return self.subnet6 is not None

    @property
    def state_dir(self) -> Path:
        """Where the CA, certificates, rendered configs and results live."""
        return self.file.parent / ".lab" / self.name

    @property
    def dns_address(self) -> str:
        return str(self.subnet[DNS_HOST])

    @property
    def unused_address(self) -> str:
        return str(self.subnet[UNUSED_HOST])

    @property
    def unused_address6(self) -> str | None:
        return str(self.subnet6[UNUSED_HOST]) if self.subnet6 else None

    @property
    def publish_address(self) -> str:
        """The forwarder's address on the lab network."""
        return str(self.subnet[PUBLISH_HOST])

    @property
    def dns_address6(self) -> str | None:
        return str(self.subnet6[DNS_HOST]) if self.subnet6 else None

    @property
    def client_addresses(self) -> dict[str, str]:
        """Address of each client's container, by client name."""
        return addresses([c.name for c in self.clients], self.subnet, CLIENT_HOSTS)

    @property
    def client_addresses6(self) -> dict[str, str]:
        return addresses([c.name for c in self.clients], self.subnet6, CLIENT_HOSTS) if self.subnet6 else {}

    def client(self, name: str) -> ClientStack:
        return next(c for c in self.clients if c.name == name)

    @property
    def domains(self) -> list[str]:
        return [server.domain for server in self.servers]

    def server(self, name: str) -> Server:
        for server in self.servers:
            if server.name == name:
                return server
        raise ConfigError(f"{self.file}: no server named {name!r} (servers: {', '.join(s.name for s in self.servers)})")


def schema(lab_dir: Path | None = None) -> dict:
    """The lab.yml JSON Schema, with the server kinds a lab in ``lab_dir`` can use."""
    result = json.loads((PACKAGE_DIR / "schema.json").read_text())
    result["$defs"]["server"]["properties"]["kind"]["enum"] = sorted(kind_folders(lab_dir))
    result["$defs"]["stack"]["enum"] = sorted(stacks())
    return result


def load_lab(path: Path | None) -> Lab:
    """The lab of ``path``; without one, ./lab.yml; without that, the default lab, as if it
    were ./lab.yml (its state in ./.lab/, its kinds searched in ./images/)."""
    if path is not None:
        return load(path)
    if Path("lab.yml").exists():
        return load(Path("lab.yml"))
    return parse(DEFAULT_LAB.read_text(), Path.cwd() / "lab.yml")


def starter_lab() -> str:
    """What `lab init` writes: the default lab, its schema comment pointing at the installed schema."""
    body = "".join(DEFAULT_LAB.read_text().splitlines(keepends=True)[1:])  # less its own schema line
    template = jinja2.Template((TEMPLATES_DIR / "starter" / "lab.yml.j2").read_text(), keep_trailing_newline=True)
    return template.render(schema=PACKAGE_DIR / "schema.json", default_lab=body.rstrip("\n"))


def load(path: Path) -> Lab:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    return parse(text, path)


def parse(text: str, path: Path) -> Lab:
    data, root = config_file.parse(text, path, schema(path.parent), "expected a mapping with at least 'servers'")
    return _build(data, root, path)


def _merge(base: dict, override: dict) -> dict:
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def default_subnet(name: str) -> ipaddress.IPv4Network:
    """A /24 in 10.200.0.0/13 picked from the lab's name."""
    index = int.from_bytes(hashlib.sha256(name.encode()).digest()[:2], "big") % 2048
    return ipaddress.ip_network(f"10.{200 + index // 256}.{index % 256}.0/24")


def default_publish_port(name: str) -> int:
    """A base port for published client ports, picked from the lab's name (stable across
    down and up; labs with different names rarely share one)."""
    index = int.from_bytes(hashlib.sha256(f"publish {name}".encode()).digest()[:4], "big")
    return PUBLISH_BASES[index % len(PUBLISH_BASES)]


def published(lab: Lab, where: str = "--publish") -> Lab:
    """``lab`` with its client ports published (lab up --publish); as it is if lab.yml says so."""
    if lab.publish is not None:
        return lab
    return replace(lab, publish=Publish(address="127.0.0.1", port=default_publish_port(lab.name), where=where))


def default_subnet6(name: str) -> ipaddress.IPv6Network:
    """An IPv6 unique local /64 (RFC 4193) whose global ID comes from the lab's name."""
    digest = hashlib.sha256(f"ipv6 {name}".encode()).digest()
    return ipaddress.ip_network(f"fd{digest[0]:02x}:{digest[1]:02x}{digest[2]:02x}:{digest[3]:02x}{digest[4]:02x}:"
                                f"{digest[5]:02x}{digest[6]:02x}::/64")


def addresses(names, subnet: ipaddress.IPv4Network | ipaddress.IPv6Network, hosts: range) -> dict[str, str]:
    taken: dict[int, str] = {}
    for name in sorted(names):
        slot = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % len(hosts)
        while slot in taken:
            slot = (slot + 1) % len(hosts)
        taken[slot] = name
    return {name: str(subnet[hosts[slot]]) for slot, name in taken.items()}


def _build(data: dict, root: yaml.Node, path: Path) -> Lab:
    merged = _merge(DEFAULTS, data)
    name = merged["name"]
    subnet_text = merged["network"]["subnet"]
    if subnet_text is None:
        subnet = default_subnet(name)
    else:
        try:
            subnet = ipaddress.ip_network(subnet_text)
        except ValueError as error:
            raise config_file.located(path, root, ["network", "subnet"], str(error)) from None
        if subnet.num_addresses < 256:
            raise config_file.located(path, root, ["network", "subnet"], "expected at least a /24")

    folders, loaded = kind_folders(path.parent), {}

    def kind(name: str) -> ServerKind:  # read once, and only the kinds the lab uses
        if name not in loaded:
            loaded[name] = load_kind(folders[name])
        return loaded[name]

    cases = tuple(catalogue(path.parent))
    clients = _clients(merged, data, root, path, frozenset(c.id for c in cases if c.origin != "built-in"))
    for client in clients:
        if client.own_accounts:
            merged["accounts"].update({f"{client.name}-{role}": merged["accounts"][role] for role in ("alice", "bob")
                                       if role in merged["accounts"]})
    servers, seen_domains = [], {}
    subnet6 = default_subnet6(name) if merged["network"]["ipv6"] else None
    if subnet6 and merged["engine"] == "swarm":
        raise config_file.located(path, root, ["network", "ipv6"], "not supported with engine: swarm yet (the lab's "
                                  "overlay network is IPv4 only)")
    server_address = addresses(list(merged["servers"]), subnet, SERVER_HOSTS)
    server_address6 = addresses(list(merged["servers"]), subnet6, SERVER_HOSTS) if subnet6 else {}
    for server_name, spec in merged["servers"].items():
        settings = _merge(merged["server"], spec)
        domain = settings["domain"]
        if domain in seen_domains:
            raise config_file.located(path, root, ["servers", server_name, "domain"],
                           f"domain {domain!r} is already served by {seen_domains[domain]!r}")
        seen_domains[domain] = server_name
        if domain == turn.NAME or turn.NAME.endswith("." + domain):
            raise config_file.located(path, root, ["servers", server_name, "domain"],
                                      f"domain {domain!r} holds the lab's TURN service name {turn.NAME}: pick another")
        server_kind = kind(settings["kind"])
        if settings["release"] not in server_kind.releases:
            raise config_file.located(path, root, ["servers", server_name, "release"] if "release" in spec else
                                      ["servers", server_name, "kind"],
                                      f"kind {server_kind.name} does not run at {settings['release']} (its releases: "
                                      f"{', '.join(server_kind.releases)})")
        servers.append(Server(
            name=server_name,
            kind=server_kind,
            domain=domain,
            address=server_address[server_name],
            accounts={**merged["accounts"], **settings["accounts"]},
            log_level=settings["log_level"],
            ready_timeout=settings["ready_timeout"],
            address6=server_address6.get(server_name),
            release=settings["release"],
            host=settings.get("host"),
            # Without the lab's TURN service a server has nothing to advertise by XEP-0215.
            switched_off=frozenset() if merged["turn"] else frozenset({"external-services", "turn-server"}),
        ))
    return Lab(name=name, file=path.resolve(), subnet=subnet, name_constraints=merged["ca"]["name_constraints"],
               servers=tuple(servers), clients=clients,
               test_concurrency=merged["test"]["concurrency"], subnet6=subnet6, engine=merged["engine"],
               cases=cases, publish=_publish(merged, root, path, len(servers)), turn=merged["turn"],
               room_server=_room_server(merged, root, path, servers),
               nodes=tuple((node, spec["engine"]) for node, spec in (data.get("nodes") or {}).items()))


def _room_server(merged: dict, root: yaml.Node, path: Path, servers: list[Server]) -> str | None:
    """lab.yml room: a server whose kind declares muc; null or true: the first such server; false: none."""
    setting = None if merged["room"] is True else merged["room"]
    with_muc = [s.name for s in servers if s.muc_domain]
    if setting is False or (setting is None and not with_muc):
        return None
    if setting is None:
        return with_muc[0]
    named = next((s for s in servers if s.name == setting), None)
    if named is None:
        raise config_file.located(path, root, ["room"], f"no server {setting!r} in this lab (servers: "
                                  f"{', '.join(s.name for s in servers)})")
    if not named.muc_domain:
        raise config_file.located(path, root, ["room"], f"server {setting} ({named.kind.name} at {named.release}) has "
                                  f"no MUC service (its kind does not declare muc); servers with one: "
                                  f"{', '.join(with_muc) or 'none'}")
    return setting


def _publish(merged: dict, root: yaml.Node, path: Path, server_count: int) -> Publish | None:
    """network.publish: false, true (127.0.0.1, the lab's own base port) or {address, port}."""
    setting = merged["network"]["publish"]
    if setting is False:
        return None
    keys = ["network", "publish"]
    if merged["engine"] == "swarm":
        raise config_file.located(path, root, keys, "not supported with engine: swarm (a swarm publishes a "
                                  "port on every node's 0.0.0.0, or in host mode on the node its task runs on, "
                                  "never on this machine's 127.0.0.1 alone)")
    setting = setting if isinstance(setting, dict) else {}
    address = setting.get("address", "127.0.0.1")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise config_file.located(path, root, keys + ["address"], f"{address!r} is not an IP address "
                                  f"(e.g. 127.0.0.1, the default)") from None
    port = setting.get("port", default_publish_port(merged["name"]))
    last = port + server_count * PUBLISH_STEP - 1
    if last > 65535:
        raise config_file.located(path, root, keys + ["port"], f"{server_count} servers need ports {port}-{last}: "
                                  f"past 65535")
    return Publish(address=address, port=port, where=config_file.where(path, root, keys))


def _clients(merged: dict, data: dict, root: yaml.Node, path: Path, own_cases: frozenset[str]) -> tuple[ClientStack, ...]:
    """The lab's clients: slixmpp at client.release first (it checks readiness and
    federation), then each entry of ``clients`` (default: every stack that is ``by_default``); a stack at a release
    other than client.release is called <stack>-<release>."""
    known, default = stacks(), merged["client"]["release"]
    # Every stack: at client.release where it runs there, else at the newest suite it runs at.
    entries = merged["clients"] if merged["clients"] is not None else [
        name if default in stack.releases else {"stack": name, "release": stack.releases[-1]}
        for name, stack in known.items() if stack.by_default]
    clients, listed = {"slixmpp": known["slixmpp"].at(default, own_cases=own_cases)}, set()
    for index, entry in enumerate(entries):
        stack, release = (entry, default) if isinstance(entry, str) else (entry["stack"], entry.get("release", default))
        name = stack if release == default else f"{stack}-{release}"
        where = ["clients", index] if "clients" in data else ["client", "release"] if "client" in data else []
        if release not in known[stack].releases:
            raise config_file.located(path, root, where, f"stack {stack} does not run at {release} "
                                      f"(its releases: {', '.join(known[stack].releases)})")
        if name in listed:
            raise config_file.located(path, root, where, f"client {name} is listed twice")
        listed.add(name)
        clients[name] = known[stack].at(release, name, own_cases)
    return tuple(clients.values())
