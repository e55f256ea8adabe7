"""lab.yml -> Lab: read, check against the schema, fill in defaults.

Every problem becomes a ConfigError naming file, line and key; nothing is started before
the model is whole.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from lab.errors import ConfigError
from lab.servers import ServerKind, kinds
from lab.stacks import stacks

PACKAGE_DIR = Path(__file__).parent
DEFAULTS = yaml.safe_load((PACKAGE_DIR / "defaults.yml").read_text())

# Host numbers inside the lab subnet: the DNS at a fixed one; servers and client stacks
# at numbers picked from their names, so adding or removing one moves no other.
DNS_HOST = 2
SERVER_HOSTS = range(10, 200)
CLIENT_HOSTS = range(200, 250)


@dataclass(frozen=True)
class Server:
    name: str
    kind: ServerKind
    domain: str
    address: str
    accounts: dict[str, str]
    log_level: str
    ready_timeout: float

    @property
    def muc_domain(self) -> str | None:
        """The MUC service's domain, for kinds that have one."""
        return f"conference.{self.domain}" if "muc" in self.kind.features else None

    @property
    def names(self) -> list[str]:
        """Every domain this server answers for: in its certificate and in the lab DNS."""
        return [self.domain] + ([self.muc_domain] if self.muc_domain else [])


@dataclass(frozen=True)
class Lab:
    name: str
    file: Path
    subnet: ipaddress.IPv4Network
    name_constraints: bool
    servers: tuple[Server, ...]
    clients: tuple[str, ...]  # client stacks wired in, by name
    test_concurrency: int | None = None  # cases a runner has in flight (None: from the engine's cores)

    @property
    def state_dir(self) -> Path:
        """Where the CA, certificates, rendered configs and results live."""
        return self.file.parent / ".lab" / self.name

    @property
    def dns_address(self) -> str:
        return str(self.subnet[DNS_HOST])

    @property
    def client_addresses(self) -> dict[str, str]:
        """Address of each client stack's container, by stack name."""
        return addresses(self.clients, self.subnet, CLIENT_HOSTS)

    @property
    def domains(self) -> list[str]:
        return [server.domain for server in self.servers]

    def server(self, name: str) -> Server:
        for server in self.servers:
            if server.name == name:
                return server
        raise ConfigError(f"{self.file}: no server named {name!r} (servers: {', '.join(s.name for s in self.servers)})")


def schema() -> dict:
    """The lab.yml JSON Schema, with the server kinds this installation knows."""
    result = json.loads((PACKAGE_DIR / "schema.json").read_text())
    result["$defs"]["server"]["properties"]["kind"]["enum"] = sorted(kinds())
    result["properties"]["clients"]["items"]["enum"] = sorted(stacks())
    return result


def load(path: Path) -> Lab:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    return parse(text, path)


def parse(text: str, path: Path) -> Lab:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: YAML syntax error: {getattr(error, 'problem', None) or error}") from None
    if root is None:
        raise ConfigError(f"{path}:1: the file is empty; expected a mapping with at least 'servers'")
    _reject_duplicate_keys(root, path)
    data = yaml.safe_load(text)
    _validate(data, root, path)
    return _build(data, root, path)


def _reject_duplicate_keys(node: yaml.Node, path: Path) -> None:
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            if key.value in seen:
                raise ConfigError(f"{path}:{key.start_mark.line + 1}: duplicate key {key.value!r}")
            seen.add(key.value)
            _reject_duplicate_keys(value, path)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _reject_duplicate_keys(item, path)


def _node_at(root: yaml.Node, keys) -> tuple[yaml.Node, yaml.Node | None]:
    """The value node at ``keys`` (as deep as it exists) and the key node naming it."""
    node, key_node = root, None
    for key in keys:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(key)), None)
            if match is None:
                break
            key_node, node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
    return node, key_node


def _located(path: Path, root: yaml.Node, keys, message: str, line_keys=None) -> ConfigError:
    """An error at ``keys``, on the line of ``line_keys`` (default: the same keys)."""
    node, key_node = _node_at(root, keys if line_keys is None else line_keys)
    line = (key_node or node).start_mark.line + 1
    dotted = ".".join(str(k) for k in keys)
    return ConfigError(f"{path}:{line}: {dotted + ': ' if dotted else ''}{message}")


def _validate(data, root: yaml.Node, path: Path) -> None:
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if not errors:
        return
    error = errors[0]
    keys = list(error.absolute_path)
    line_keys = keys
    if error.validator == "additionalProperties":  # point at the unknown key itself
        line_keys = keys + sorted(set(error.instance) - set(error.schema.get("properties", {})))[:1]
    raise _located(path, root, keys, _describe(error), line_keys)


def _describe(error: jsonschema.ValidationError) -> str:
    """A short sentence saying what was expected, with a suggestion for typos."""
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        hint = difflib.get_close_matches(unknown[0], allowed, n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else f"; expected one of: {', '.join(allowed)}"
        return f"unknown key {unknown[0]!r}{suggestion}"
    if error.validator == "enum":
        options = [str(o) for o in error.validator_value]
        hint = difflib.get_close_matches(str(error.instance), options, n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
        return f"{error.instance!r} is not one of: {', '.join(options)}{suggestion}"
    if error.validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"expected {_a(expected)}, got {_type_name(error.instance)}"
    if error.validator == "required":
        return error.message.replace("property", "key")
    if error.validator == "pattern":
        description = error.schema.get("description")
        return f"{error.instance!r} is not valid" + (f": {description}" if description else "")
    if error.validator == "propertyNames":
        return f"invalid name {error.instance!r}" if not isinstance(error.instance, dict) else error.message
    if error.validator == "minProperties":
        return "must not be empty"
    return error.message


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _type_name(value) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


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


def addresses(names, subnet: ipaddress.IPv4Network, hosts: range) -> dict[str, str]:
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
            raise _located(path, root, ["network", "subnet"], str(error)) from None
        if subnet.num_addresses < 256:
            raise _located(path, root, ["network", "subnet"], "expected at least a /24")

    known = kinds()
    servers, seen_domains = [], {}
    server_address = addresses(list(merged["servers"]), subnet, SERVER_HOSTS)
    for server_name, spec in merged["servers"].items():
        settings = _merge(merged["server"], spec)
        domain = settings["domain"]
        if domain in seen_domains:
            raise _located(path, root, ["servers", server_name, "domain"],
                           f"domain {domain!r} is already served by {seen_domains[domain]!r}")
        seen_domains[domain] = server_name
        servers.append(Server(
            name=server_name,
            kind=known[settings["kind"]],
            domain=domain,
            address=server_address[server_name],
            accounts={**merged["accounts"], **settings["accounts"]},
            log_level=settings["log_level"],
            ready_timeout=settings["ready_timeout"],
        ))
    clients = merged["clients"] if merged["clients"] is not None else list(stacks())
    return Lab(name=name, file=path.resolve(), subnet=subnet, name_constraints=merged["ca"]["name_constraints"],
               servers=tuple(servers), clients=tuple(dict.fromkeys(["slixmpp", *clients])),
               test_concurrency=merged["test"]["concurrency"])
