"""A lab on the engine: lab.yml model -> files in the state directory -> services -> containers.

``up`` converges the engine to the model; any failure while bringing it up removes what
it started, so no half-started lab is left behind.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lab import PACKAGE_DIR, ca, images, protocol, publish, turn
from lab.errors import Interrupted, LabError
from lab.model import Lab, Server
from lab.render import render_server
from lab.concurrency import interrupts_ignored, parallel, poll_until
from lab.protocol import CLIENT_CA, run_runner
from lab.runtime import LABEL_ROLE, LABEL_SERVICE, File, Runtime, Service
from lab.stacks import RUNNER_DIR, ClientStack
from lab.zone import TTL, build_zone

DNS_SERVICE = "dns"
ZONE_PATH = "/etc/xmpp-lab/zone.json"
LOG_TAIL = 5

Say = Callable[..., None]  # see images.Say


@dataclass
class Phases:
    """How long each phase of a command took, in order."""
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, name: str):
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = time.monotonic() - started


class Project:
    def __init__(self, lab: Lab, runtime: Runtime, say: Say = lambda text, transient=False: None):
        self.lab, self.runtime, self.say = lab, runtime, say
        self.phases = Phases()

    # --- files in the state directory ------------------------------------------------------

    def builds(self) -> list[tuple[str, Path, str]]:
        """The images of images/ the lab runs, (name, folder, release): the DNS at the
        clients' release (no second base image for it), each client at its own. Its server
        kinds bring their own."""
        wanted = [("dns", self.lab.clients[0].release)] + [(c.image, c.release) for c in self.lab.clients]
        if self.lab.turn_enabled:  # (built at the clients' release too, like the DNS)
            wanted.append((turn.SERVICE, self.lab.clients[0].release))
        return [(name, images.IMAGES_DIR / name, release) for name, release in dict.fromkeys(wanted)]

    def kinds(self) -> list:
        return list({s.kind.name: s.kind for s in self.lab.servers}.values())

    def ensure_images(self, newer: tuple[str, ...] = ()) -> None:
        """Every image the lab runs: the missing ones built at the same time, and every one
        at a release of ``newer`` again from today's packages; a kind's prebuilt image taken
        as it is (or pulled)."""
        client = self.runtime.client
        built = self.builds()
        built += list(dict.fromkeys((s.kind.name, s.kind.build_dir, s.release) for s in self.lab.servers
                                    if s.kind.prebuilt is None))
        for kind in self.kinds():
            if kind.prebuilt is not None:
                images.ensure_kind_image(client, kind, self.say)
        images.ensure_images(client, built, self.say, newer)

    def authority(self) -> ca.Issued:
        lab = self.lab
        return ca.load_or_create_ca(lab.state_dir / "ca", lab.name, lab.domains if lab.name_constraints else None)

    def server_files(self, server: Server, authority: ca.Issued, key_pem: bytes, chain: bytes,
                     **overrides) -> dict[str, File]:
        """A server's files: its TLS files (``chain``: its certificate, then the CA that
        issued it) and its rendered config (``overrides``: see render_server)."""
        paths = server.kind.tls_paths
        files = {
            paths["ca"]: File(authority.cert_pem),
            paths["cert"]: File(chain),
            paths["key"]: File(key_pem, 0o600),
            paths["bundle"]: File(chain + key_pem, 0o600),
        }
        if server.component_domain:  # XEP-0114 (X0114): the component's password, the lab's own
            overrides = {"component_secret": ca.secret(authority, server.component_domain), **overrides}
        context = {"turn": turn.settings(self.lab, turn.load_or_create_secret(self.lab)), **overrides}
        files.update({target: File(text.encode()) for target, text in render_server(self.lab, server, **context).items()})
        return files

    def current_files(self, server: Server, **overrides) -> dict[str, File]:
        """The files ``server`` runs with: the certificate the lab issued it (read here, never
        made: the lab must have been brought up) and its config as rendered now."""
        state = self.lab.state_dir
        authority = ca.read(state / "ca" / "ca.key", state / "ca" / "ca.pem")
        issued = ca.read(state / "servers" / server.name / "key.pem", state / "servers" / server.name / "cert.pem")
        if authority is None or issued is None:
            raise LabError(f"lab {self.lab.name} has no certificate for {server.name} in {state}: run 'lab up' first")
        return self.server_files(server, authority, issued.key_pem, issued.cert_pem + authority.cert_pem, **overrides)

    def prepare(self) -> list[Service]:
        """Everything the lab runs, with its files: the CA and certificates issued where
        missing, each server's rendered config written to the state directory too."""
        lab, state = self.lab, self.lab.state_dir
        authority = self.authority()
        (state / "dns").mkdir(parents=True, exist_ok=True)

        services = [Service(
            name=DNS_SERVICE, role="dns", image=images.tag_for("dns", release=lab.clients[0].release),
            address=lab.dns_address,
            address6=lab.dns_address6,
            # On a dual-stack lab it answers on "::" (both families) instead of 0.0.0.0.
            command=["python3", "-u", "/opt/xmpp-lab/labdns.py", ZONE_PATH, "::"] if lab.ipv6 else None,
            files={"/opt/xmpp-lab/labdns.py": File((PACKAGE_DIR / "labdns.py").read_bytes()),
                   # The real zone is put in once the server runs (see up).
                   ZONE_PATH: File(json.dumps({"origin": "test", "ttl": TTL, "records": []}).encode())},
        )]
        if lab.turn_enabled:
            services.append(Service(
                name=turn.SERVICE, role="turn", image=images.tag_for(turn.SERVICE, release=lab.clients[0].release),
                address=lab.turn_address,
                files={turn.CONFIG_PATH: File(turn.config(lab, turn.load_or_create_secret(lab)).encode(), 0o600)}))
        for server in lab.servers:
            issued = ca.load_or_issue(state / "servers" / server.name, authority, server.names)
            files = self.server_files(server, authority, issued.key_pem, issued.cert_pem + authority.cert_pem)
            config_dir = state / "servers" / server.name / "config"
            config_dir.mkdir(parents=True, exist_ok=True)
            for target in server.kind.config_files.values():
                (config_dir / Path(target).name).write_bytes(files[target].data)
            services.append(Service(name=server.name, role="server", image=images.kind_tag(server.kind, server.release),
                                    address=server.address, address6=server.address6, files=files, host=server.host))
        for name, address in lab.client_addresses.items():
            stack = lab.client(name)
            files = {f"{RUNNER_DIR}/{file}": File((PACKAGE_DIR / "runners" / file).read_bytes()) for file in stack.files}
            if stack.user_cases:  # the lab's own cases (cases/ beside lab.yml), beside its runner
                files.update({f"{RUNNER_DIR}/cases/{path.name}": File(path.read_bytes()) for path in lab.case_files})
            services.append(Service(
                name=stack.service, role="client", image=images.tag_for(stack.image, release=stack.release),
                address=address, address6=lab.client_addresses6.get(name), files={**files, CLIENT_CA: File(authority.cert_pem)},
            ))
        return services

    # --- bringing it up ------------------------------------------------------------------------

    def up(self, fresh: bool = False, newer: tuple[str, ...] = ()) -> list[str]:
        """Converge the engine to the lab; the names of the containers (re)created.

        ``fresh`` recreates every server container (their data lives only in the
        container); ``newer``: releases whose images are built again from today's packages
        (their containers follow). On any failure, Ctrl-C included, everything of the lab
        is removed.
        """
        with self.phases("images"):
            self.ensure_images(newer)
        if self.lab.publish:  # a taken host port: said before anything starts
            publish.check(self.lab, self.runtime)
        try:
            with self.phases("certificates, zone, configs"):
                dns, *others = self.prepare()
                zone = json.dumps(build_zone(self.lab), indent=2).encode()
                (self.lab.state_dir / "dns" / "zone.json").write_bytes(zone)
            with self.phases("images to nodes"):  # a swarm's other nodes: each gets the images it runs
                self.runtime.distribute(others, self.say)
            with self.phases("network, dns"):
                self.say("starting the lab DNS", transient=True)
                self.runtime.ensure_network(str(self.lab.subnet), self.lab.subnet6 and str(self.lab.subnet6))
                changed = [dns.name] if self.runtime.converge(dns, dns=None) else []
                # The zone is read live by the DNS server: updating it restarts nothing.
                self.runtime.update_file(dns.name, ZONE_PATH, File(zone))
                # The TURN service's fixed address is taken before any swarm task is given
                # one: a task may otherwise get it, and the container's attachment then
                # waits until the swarm gives up ("context deadline exceeded", seen in CI).
                dns_servers = [a for a in (self.lab.dns_address, self.lab.dns_address6) if a]
                lab_services = [s for s in others if s.role == "turn"]
                for service in lab_services:
                    if self.runtime.converge(service, dns=dns_servers):
                        changed.append(service.name)
                forwarder = publish.service(self.lab) if self.lab.publish else None
                if forwarder and publish.start(self.lab, self.runtime, forwarder):
                    changed.append(forwarder.name)
            with self.phases("start containers"):
                self.say("starting servers and clients", transient=True)
                wanted = {dns.name, *(s.name for s in others), *([forwarder.name] if forwarder else [])}
                for container in self.runtime.containers():
                    if container.labels.get(LABEL_SERVICE) not in wanted or (
                            fresh and container.labels.get(LABEL_ROLE) == "server"):
                        container.remove(force=True, v=True)
                if not forwarder:
                    publish.remove_network(self.runtime)
                rest = [s for s in others if s not in lab_services]
                created = parallel(lambda s: self.runtime.converge(s, dns=dns_servers), rest)
                changed += [s.name for s, c in zip(rest, created) if c]
                placed = self.runtime.placed(self.lab)
                if placed != self.lab:  # the swarm chose the addresses: the zone names them
                    self.lab = placed
                    zone = json.dumps(build_zone(self.lab), indent=2).encode()
                    (self.lab.state_dir / "dns" / "zone.json").write_bytes(zone)
                    self.runtime.update_file(dns.name, ZONE_PATH, File(zone))
            with self.phases("servers ready"):
                self.say("waiting for servers to speak XMPP", transient=True)
                self.wait_ready()
            with self.phases("accounts"):
                self.ensure_accounts()
            if self.lab.room:
                with self.phases("event room"):
                    self.open_room()
        except KeyboardInterrupt:
            with interrupts_ignored():
                self.runtime.down()
            raise Interrupted(f"lab {self.lab.name} was being brought up: everything of it was removed; "
                              f"run the command again when ready") from None
        except BaseException:  # leave nothing half-started
            with interrupts_ignored():
                try:
                    self.runtime.down()
                except LabError:  # (a swarm node gone: the error that stopped lab up says which)
                    pass
            raise
        return changed

    def run_runner(self, command: str, spec: dict, stack: ClientStack | None = None):
        return run_runner(self.runtime, stack or self.lab.primary, command, spec)

    def restart_server(self, server: Server, files: dict[str, File]) -> None:
        """Put ``files`` into ``server``'s container and restart it alone, until it is ready
        again (its accounts live in the container: they stay)."""
        for path, file in files.items():
            self.runtime.update_file(server.name, path, file)
        self.runtime.container(server.name).restart(timeout=10)
        self.wait_ready([server])

    def wait_ready(self, servers: list[Server] | None = None) -> None:
        """Until every server opens an XMPP stream offering STARTTLS, or one dies or times out."""
        started = time.monotonic()
        waiting = list(servers or self.lab.servers)

        def all_ready() -> bool:
            result = self.run_runner("ready", {"domains": [s.domain for s in waiting], "timeout": 2,
                                               "ports": {s.domain: s.kind.ready_port for s in waiting}})
            for server in list(waiting):
                container = self.runtime.container(server.name)
                if result[server.domain]["ready"]:
                    waiting.remove(server)
                elif container is None or container.status != "running":
                    self._not_ready(server, f"its container stopped ({container.status if container else 'gone'})")
                elif time.monotonic() - started > server.ready_timeout:
                    self._not_ready(server, f"not ready after {server.ready_timeout:g}s: "
                                            f"{result[server.domain]['error']}")
            return not waiting
        # Each round waits up to 2 s for a stream; a server past its ready_timeout ends it.
        if not poll_until(all_ready, max(s.ready_timeout for s in waiting) + 60, 0):
            raise LabError(f"servers {', '.join(s.name for s in waiting)} never became ready")

    def _not_ready(self, server: Server, why: str):
        tail = " | ".join(line.strip() for line in self.runtime.logs(server.name, tail=LOG_TAIL).strip().splitlines())
        raise LabError(f"server {server.name} ({server.domain}) never became ready: {why}; "
                       f"last log lines: {tail or '(none)'}")

    def ensure_accounts(self) -> None:
        """Create the accounts of every server whose container does not have them yet.

        What was created in which container is noted in the state directory, so an
        unchanged lab creates nothing and a changed account list reaches running servers.
        """
        def note(server: Server) -> Path:
            return self.lab.state_dir / "servers" / server.name / "accounts-created"

        def wanted(server: Server) -> str:
            accounts = json.dumps(server.accounts, sort_keys=True).encode()
            return f"{self.runtime.container(server.name).id} {hashlib.sha256(accounts).hexdigest()}"

        todo = [s for s in self.lab.servers if not note(s).exists() or note(s).read_text() != wanted(s)]
        parallel(self.wait_admin, [s for s in todo if s.kind.admin_ready_command])
        parallel(self.create_account, [(s, user, password) for s in todo for user, password in s.accounts.items()])
        for server in todo:
            note(server).write_text(wanted(server))

    def wait_admin(self, server: Server) -> None:
        """Until the server's admin command works: its client port can answer before that
        (ejabberd: register then fails with unknown_user, about once in 40 warm ups)."""
        command = server.kind.admin_ready(server.domain)
        last: list = []

        def works() -> bool:
            last[:] = self.runtime.exec(server.name, command)
            return last[0] == 0
        if not poll_until(works, server.ready_timeout, 0.5):
            code, output = last
            said = (output.strip().splitlines() or ["(no output)"])[-1]
            raise LabError(f"server {server.name}: its admin command ({' '.join(command)}) did not work within "
                           f"{server.ready_timeout:g}s (exit {code}: {said}); accounts cannot be created")

    def open_room(self) -> None:
        """The event's room (lab.yml room), kept open: the lab's client makes it persistent and
        public over XMPP, as an owner would. At every `lab up` (under a second): a room its
        server lost while its container stayed (data gone) is made again."""
        server = self.lab.server(self.lab.room_server)
        self.say(f"opening the event's room {self.lab.room}", transient=True)
        spec = {**protocol.spec(self.lab, self.lab.primary, 20.0, 1),
                "room": {"server": server.name, "jid": self.lab.room}}
        answer = self.run_runner("event-room", spec)
        if "error" in answer:
            raise LabError(f"server {server.name}: the event's room {self.lab.room} could not be opened: "
                           f"{answer['error']} (lab.yml room: false leaves it out)")

    def create_account(self, account: tuple[Server, str, str]) -> None:
        server, user, password = account
        code, output = self.runtime.exec(server.name, server.kind.register(user, server.domain, password))
        if code != 0:
            last = (output.strip().splitlines() or ["(no output)"])[-1]
            raise LabError(f"creating account {user}@{server.domain} on {server.name} failed (exit {code}): {last}")

    # --- looking at it ---------------------------------------------------------------------

    def versions(self) -> dict[str, str | None]:
        """The installed version of each server (its kind's version command) and of each
        client's package (by its container's name, client-<name>), as the reports show them;
        None where there is none or asking failed."""
        commands = {s.name: s.kind.version_command for s in self.lab.servers}
        commands.update({c.service: ("dpkg-query", "-W", "-f=${Version}", c.package) if c.package else None
                         for c in self.lab.clients})

        def version(name: str) -> str | None:
            if not commands[name] or self.runtime.container(name) is None:
                return None
            code, output = self.runtime.exec(name, list(commands[name]))
            return output.strip().splitlines()[-1] if code == 0 and output.strip() else None
        return dict(zip(commands, parallel(version, list(commands))))

    def status(self) -> list[dict]:
        """One row per container the lab should have; ready only for servers, probed now."""
        rows = [{"server": DNS_SERVICE, "kind": "dns", "domain": None, "address": self.lab.dns_address}]
        if self.lab.turn_enabled:
            rows.append({"server": turn.SERVICE, "kind": "turn", "domain": None, "address": self.lab.turn_address})
        rows += [{"server": s.name, "kind": s.kind.name, "domain": s.domain, "address": s.address}
                 for s in self.lab.servers]
        rows += [{"server": self.lab.client(name).service, "kind": "client", "domain": None, "address": address}
                 for name, address in self.lab.client_addresses.items()]
        if self.lab.publish or self.runtime.container(publish.SERVICE):  # (published by lab.yml or --publish)
            rows.append({"server": publish.SERVICE, "kind": "forwarder", "domain": None,
                         "address": self.lab.publish_address})
        for row in rows:
            container = self.runtime.container(row["server"])
            row["state"] = container.status if container else "absent"
            row["node"] = self.runtime.node(row["server"]) if container else None
            if container is not None:  # where it is, which on a swarm is not where the model put it
                row["address"] = self.runtime.address_of(container) or row["address"]
            row["ready"] = None
        client = self.runtime.container(self.lab.primary.service)
        if client is not None and client.status == "running":
            probed = self.run_runner("ready", {"domains": self.lab.domains, "timeout": 0,
                                               "ports": {s.domain: s.kind.ready_port for s in self.lab.servers}})
            for row in rows:
                if row["domain"]:
                    row["ready"] = probed[row["domain"]]["ready"]
        return rows
