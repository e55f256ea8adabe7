"""Server kinds: each one folder of data in a lab directory, ``images/<name>/``.

A kind's folder holds ``kind.yml`` (checked against lab/kind.schema.json) and, for a kind
the lab builds, its image's build files; its config templates (Jinja2) are in
``templates/<name>/`` of the same lab directory. The lab looks in ``images/`` beside
lab.yml first, then at the kinds that ship with it (the tool's own lab directory): a
user's kind of the same name wins. Adding a kind changes no code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lab import IMAGES_DIR, config_file
from lab.errors import ConfigError

BUILTIN_KINDS = IMAGES_DIR
SCHEMA = json.loads((Path(__file__).parent / "kind.schema.json").read_text())

# What "how did the sending server authenticate" can be, as observed in a receiver's log.
CERTIFICATE = "certificate"
DIALBACK = "dialback"

# Where the lab puts TLS material in a server container, unless kind.yml says otherwise.
TLS_PATHS = {
    "ca": "/etc/xmpp-lab/ca.pem",
    "cert": "/etc/xmpp-lab/cert.pem",      # leaf + CA
    "key": "/etc/xmpp-lab/key.pem",
    "bundle": "/etc/xmpp-lab/bundle.pem",  # leaf + CA + key, for servers that want one file
}
PORTS = {"c2s": 5222, "s2s": 5269, "c2s_direct_tls": 5223, "s2s_direct_tls": 5270}


def filled(command: tuple[str, ...], **values: str) -> list[str]:
    """``command`` with {user}, {domain}, {password} filled in (nothing else is touched:
    a shell script in it keeps its braces)."""
    result = []
    for arg in command:
        for name, value in values.items():
            arg = arg.replace("{" + name + "}", value)
        result.append(arg)
    return result


@dataclass(frozen=True)
class ServerKind:
    name: str
    folder: Path
    description: str
    # A prebuilt image reference, or None: the lab builds ``build_dir``.
    prebuilt: str | None
    build_dir: Path | None
    # Rendered config files: template name (in templates/) -> path in the container.
    config_files: dict[str, str]
    register_command: tuple[str, ...]
    admin_ready_command: tuple[str, ...] | None
    # Log lines of the *receiving* server that show how a peer authenticated: regexes with
    # named groups "peer" (the remote domain) and "local" (this server's domain), per method.
    inbound_auth_patterns: dict[str, list[str]]
    s2s_auth: tuple[str, ...]
    features: frozenset[str]
    close_s2s_command: tuple[str, ...] | None
    # Debian suite -> what the kind runs there (kind.yml releases; bookworm only without it).
    releases: dict[str, str] = field(default_factory=dict)
    # Features a release has beyond ``features`` (kind.yml releases: SUITE: features).
    release_features: dict[str, frozenset[str]] = field(default_factory=dict)
    version_command: tuple[str, ...] | None = None
    tls_paths: dict[str, str] = field(default_factory=lambda: dict(TLS_PATHS))
    ports: dict[str, int] = field(default_factory=lambda: dict(PORTS))
    ready_port: int = PORTS["c2s"]

    @property
    def builtin(self) -> bool:
        return self.folder.resolve().parent == BUILTIN_KINDS.resolve()

    @property
    def templates(self) -> Path:
        """templates/<name>/ of the lab directory the kind's folder is in."""
        return kind_templates(self.folder)

    def register(self, user: str, domain: str, password: str) -> list[str]:
        return filled(self.register_command, user=user, domain=domain, password=password)

    def admin_ready(self, domain: str) -> list[str] | None:
        return filled(self.admin_ready_command, domain=domain) if self.admin_ready_command else None

    def inbound_auth(self, log: str, peer: str, local: str) -> tuple[str, str] | None:
        """How ``peer`` last authenticated to this server's ``local`` domain according to
        ``log``: (method, the matching log text), or None.

        The match ending last wins; of two ending at the same place, the longer (more
        specific) one.
        """
        found: tuple[int, int, str, str] | None = None
        for method, patterns in self.inbound_auth_patterns.items():
            for pattern in patterns:
                for match in re.finditer(pattern, log, re.MULTILINE):
                    if match.group("peer") != peer or match.groupdict().get("local", local) != local:
                        continue
                    rank = (match.end(), match.end() - match.start(), method, match.group(0).strip())
                    if found is None or rank[:2] > found[:2]:
                        found = rank
        return (found[2], found[3]) if found else None


def common_auth(sender: ServerKind, receiver: ServerKind) -> str | None:
    """The strongest s2s authentication both kinds declare, in the receiver's order of
    preference: what S8 expects, and what the fault scenarios take as a server's policy."""
    return next((m for m in receiver.s2s_auth if m in sender.s2s_auth), None)


def kind_templates(folder: Path) -> Path:
    return folder.parent.parent / "templates" / folder.name


def load_kind(folder: Path) -> ServerKind:
    """The kind in ``folder`` (its kind.yml checked as lab.yml is: file, line, key)."""
    path = folder / "kind.yml"
    if folder.name in ("dns", "turn") or folder.name.startswith("client-"):  # their images are the lab's own
        raise ConfigError(f"{folder}: a kind may not be named {folder.name!r} (dns, turn and client-* name the "
                          f"lab's own images): rename the folder")
    data, root = config_file.read(path, SCHEMA, "expected a mapping with image, config_files, accounts, s2s, "
                                                "features")
    for method, patterns in data["s2s"]["inbound_auth_patterns"].items():
        for index, pattern in enumerate(patterns):
            try:
                compiled = re.compile(pattern)
            except re.error as error:
                raise config_file.located(path, root, ["s2s", "inbound_auth_patterns", method, index],
                                          f"not a regular expression: {error}") from None
            if "peer" not in compiled.groupindex:
                raise config_file.located(path, root, ["s2s", "inbound_auth_patterns", method, index],
                                          "needs a named group (?P<peer>...) for the remote domain")
    image = data["image"]
    build_dir = folder / image["build"] if isinstance(image, dict) else None
    if build_dir is not None and not (build_dir / "Dockerfile").is_file():
        raise config_file.located(path, root, ["image", "build"], f"no Dockerfile in {build_dir}")
    for template in data["config_files"]:
        if not (kind_templates(folder) / template).is_file():
            raise config_file.located(path, root, ["config_files", template],
                                      f"no template {kind_templates(folder) / template}")
    accounts, s2s = data["accounts"], data["s2s"]
    return ServerKind(
        name=folder.name, folder=folder, description=data.get("description", ""),
        prebuilt=image if isinstance(image, str) else None, build_dir=build_dir,
        config_files=dict(data["config_files"]),
        register_command=tuple(accounts["register"]),
        admin_ready_command=tuple(accounts["ready"]) if "ready" in accounts else None,
        inbound_auth_patterns={m: list(p) for m, p in s2s["inbound_auth_patterns"].items()},
        s2s_auth=tuple(s2s["auth"]), features=frozenset(data["features"]),
        close_s2s_command=tuple(s2s["drop"]) if "drop" in s2s else None,
        releases={release: spec.get("description", data.get("description", ""))
                  for release, spec in data.get("releases", {"bookworm": {}}).items()},
        release_features={release: frozenset(spec.get("features", ()))
                          for release, spec in data.get("releases", {}).items()},
        version_command=tuple(data["version"]) if "version" in data else None,
        tls_paths={**TLS_PATHS, **data.get("tls", {})}, ports={**PORTS, **data.get("ports", {})},
        ready_port=data.get("ready", {}).get("port", PORTS["c2s"]),
    )


def kind_folders(lab_dir: Path | None = None) -> dict[str, Path]:
    """Every kind's folder by name: ``images/`` beside lab.yml first, then the built-ins.
    An image folder without kind.yml (the DNS's, a client stack's) is no kind."""
    if lab_dir is not None and (lab_dir / "kinds").is_dir():
        old = sorted(p.name for p in (lab_dir / "kinds").iterdir() if (p / "kind.yml").is_file())
        if old:
            raise ConfigError(f"{lab_dir / 'kinds'}: kinds now live in images/<name>/ (kind.yml and build files) "
                              f"and templates/<name>/ (their templates): move {', '.join(old)} there")
    found: dict[str, Path] = {}
    for root in ([lab_dir / "images"] if lab_dir else []) + [BUILTIN_KINDS]:
        if root.is_dir():
            for folder in sorted(root.iterdir()):
                if (folder / "kind.yml").is_file():
                    found.setdefault(folder.name, folder)
    return found


def kinds(lab_dir: Path | None = None) -> dict[str, ServerKind]:
    """Every kind a lab beside ``lab_dir`` can use, by name."""
    return {name: load_kind(folder) for name, folder in kind_folders(lab_dir).items()}
