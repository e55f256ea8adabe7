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

from lab import REPO_DIR, ca, images
from lab.catalogue import BY_ID, CASES, Case
from lab.errors import Interrupted, LabError, NotUp
from lab.report import ERROR, FAIL, NOT_SUPPORTED, PASS, CaseResult
from lab.model import Lab, Server
from lab.render import TLS_PATHS, render_server
from lab.runtime import LABEL_ROLE, LABEL_SERVICE, File, Runtime, Service, parallel
from lab.stacks import RUNNER_DIR, ClientStack, stacks
from lab.zone import TTL, VARIANTS, build_zone

DNS_SERVICE = "dns"
# The slixmpp stack also checks readiness and federation for up.
PRIMARY = stacks()["slixmpp"]
CLIENT_CA = "/etc/xmpp-lab/ca.pem"
ZONE_PATH = "/etc/xmpp-lab/zone.json"
LOG_TAIL = 5
CASE_TIMEOUT = 20.0

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


@dataclass(frozen=True)
class Federation:
    sender: Server
    recipient: Server
    delivered: bool
    auth: str | None  # how the sender's server authenticated to the recipient's, as observed
    error: str | None = None


def stack_users(stack: ClientStack, server: Server) -> dict[str, str]:
    """Accounts of a stack's own (``<stack>-alice``) where the lab has them, so stacks
    running side by side never share one: presence and roster cases would see each other."""
    return {role: f"{stack.name}-{role}" for role in ("alice", "bob") if f"{stack.name}-{role}" in server.accounts}


class Project:
    def __init__(self, lab: Lab, runtime: Runtime, say: Say = lambda text, transient=False: None):
        self.lab, self.runtime, self.say = lab, runtime, say
        self.phases = Phases()

    # --- files in the state directory ------------------------------------------------------

    def image_names(self) -> list[str]:
        return ["dns", *(stacks()[name].service for name in self.lab.clients),
                *sorted({s.kind.image for s in self.lab.servers})]

    def services(self) -> list[Service]:
        """Everything the lab runs, with its files; written to the state directory too."""
        lab, state = self.lab, self.lab.state_dir
        authority = ca.load_or_create_ca(state / "ca", lab.name, lab.domains if lab.name_constraints else None)
        (state / "dns").mkdir(parents=True, exist_ok=True)

        services = [Service(
            name=DNS_SERVICE, role="dns", image=images.tag_for("dns"), address=lab.dns_address,
            files={"/opt/xmpp-lab/labdns.py": File((REPO_DIR / "lab" / "labdns.py").read_bytes()),
                   # The real zone is put in once the server runs (see up).
                   ZONE_PATH: File(json.dumps({"origin": "test", "ttl": TTL, "records": []}).encode())},
        )]
        for server in lab.servers:
            issued = ca.load_or_issue(state / "servers" / server.name, authority, server.names)
            chain = issued.cert_pem + authority.cert_pem
            files = {
                TLS_PATHS["ca"]: File(authority.cert_pem),
                TLS_PATHS["cert"]: File(chain),
                TLS_PATHS["key"]: File(issued.key_pem, 0o600),
                TLS_PATHS["bundle"]: File(chain + issued.key_pem, 0o600),
            }
            config_dir = state / "servers" / server.name / "config"
            config_dir.mkdir(parents=True, exist_ok=True)
            for target, text in render_server(lab, server).items():
                (config_dir / Path(target).name).write_text(text)
                files[target] = File(text.encode())
            services.append(Service(name=server.name, role="server", image=images.tag_for(server.kind.image),
                                    address=server.address, files=files))
        for name, address in lab.client_addresses.items():
            stack = stacks()[name]
            services.append(Service(
                name=stack.service, role="client", image=images.tag_for(stack.service), address=address,
                files={**{f"{RUNNER_DIR}/{name}": File((REPO_DIR / "lab" / "runners" / name).read_bytes())
                          for name in (stack.runner, *stack.support)},
                       CLIENT_CA: File(authority.cert_pem)},
            ))
        return services

    # --- bringing it up ------------------------------------------------------------------------

    def up(self, fresh: bool = False) -> list[str]:
        """Converge the engine to the lab; the names of the containers (re)created.

        ``fresh`` recreates every server container (their data lives only in the
        container). On any failure, Ctrl-C included, everything of the lab is removed.
        """
        client = self.runtime.client
        with self.phases("images"):
            for name in self.image_names():
                images.ensure_image(client, name, self.say)
        try:
            with self.phases("certificates, zone, configs"):
                dns, *others = self.services()
                zone = json.dumps(build_zone(self.lab), indent=2).encode()
                (self.lab.state_dir / "dns" / "zone.json").write_bytes(zone)
            with self.phases("network, dns"):
                self.say("starting the lab DNS", transient=True)
                self.runtime.ensure_network(str(self.lab.subnet))
                changed = [dns.name] if self.runtime.converge(dns, dns=None) else []
                # The zone is read live by the DNS server: updating it restarts nothing.
                self.runtime.update_file(dns.name, ZONE_PATH, File(zone))
            with self.phases("start containers"):
                self.say("starting servers and clients", transient=True)
                wanted = {dns.name, *(s.name for s in others)}
                for container in self.runtime.containers():
                    if container.labels.get(LABEL_SERVICE) not in wanted or (
                            fresh and container.labels.get(LABEL_ROLE) == "server"):
                        container.remove(force=True, v=True)
                created = parallel(lambda s: self.runtime.converge(s, dns=self.lab.dns_address), others)
                changed += [s.name for s, c in zip(others, created) if c]
            with self.phases("servers ready"):
                self.say("waiting for servers to speak XMPP", transient=True)
                self.wait_ready()
            with self.phases("accounts"):
                self.ensure_accounts()
        except KeyboardInterrupt:
            self.runtime.down()
            raise Interrupted(f"lab {self.lab.name} was being brought up: everything of it was removed; "
                              f"run the command again when ready") from None
        except BaseException:  # leave nothing half-started
            self.runtime.down()
            raise
        return changed

    def run_runner(self, command: str, spec: dict, stack: ClientStack = PRIMARY):
        code, output = self.runtime.exec(stack.service, stack.command(command, spec))
        try:
            return json.loads(output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise LabError(f"the {stack.name} runner failed ({command}, exit {code}): "
                           f"{' | '.join(output.strip().splitlines()[-3:])}") from None

    def wait_ready(self) -> None:
        """Until every server opens an XMPP stream offering STARTTLS, or one dies or times out."""
        started = time.monotonic()
        waiting = list(self.lab.servers)
        while waiting:
            result = self.run_runner("ready", {"domains": [s.domain for s in waiting], "timeout": 2})
            for server in list(waiting):
                container = self.runtime.container(server.name)
                if result[server.domain]["ready"]:
                    waiting.remove(server)
                elif container is None or container.status != "running":
                    self._not_ready(server, f"its container stopped ({container.status if container else 'gone'})")
                elif time.monotonic() - started > server.ready_timeout:
                    self._not_ready(server, f"not ready after {server.ready_timeout:g}s: "
                                            f"{result[server.domain]['error']}")

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
        parallel(self.create_account, [(s, user, password) for s in todo for user, password in s.accounts.items()])
        for server in todo:
            note(server).write_text(wanted(server))

    def create_account(self, account: tuple[Server, str, str]) -> None:
        server, user, password = account
        code, output = self.runtime.exec(server.name, server.kind.register_command(user, server.domain, password))
        if code != 0:
            last = (output.strip().splitlines() or ["(no output)"])[-1]
            raise LabError(f"creating account {user}@{server.domain} on {server.name} failed (exit {code}): {last}")

    # --- looking at it ---------------------------------------------------------------------

    def status(self) -> list[dict]:
        """One row per container the lab should have; ready only for servers, probed now."""
        rows = [{"server": DNS_SERVICE, "kind": "dns", "domain": None, "address": self.lab.dns_address}]
        rows += [{"server": s.name, "kind": s.kind.name, "domain": s.domain, "address": s.address}
                 for s in self.lab.servers]
        rows += [{"server": stacks()[name].service, "kind": "client", "domain": None, "address": address}
                 for name, address in self.lab.client_addresses.items()]
        for row in rows:
            container = self.runtime.container(row["server"])
            row["state"] = container.status if container else "absent"
            row["ready"] = None
        client = self.runtime.container(PRIMARY.service)
        if client is not None and client.status == "running":
            probed = self.run_runner("ready", {"domains": self.lab.domains, "timeout": 0})
            for row in rows:
                if row["domain"]:
                    row["ready"] = probed[row["domain"]]["ready"]
        return rows

    # --- checking federation ------------------------------------------------------------------

    def check_federation(self) -> list[Federation]:
        """The catalogue's S1 (message both ways) and S8 (observed auth) for every ordered
        pair, with the slixmpp stack: what `lab up` shows."""
        with self.phases("federation"):
            results = self.test([BY_ID["S1"], BY_ID["S8"]], stack_names=[PRIMARY.name])
        found = {(r.case, r.server, r.target): r for r in results}
        outcomes = []
        for a in self.lab.servers:
            for b in self.lab.servers:
                if a is b:
                    continue
                delivery, auth = found[("S1", a.name, b.name)], found[("S8", a.name, b.name)]
                outcomes.append(Federation(sender=a, recipient=b, delivered=delivery.status == PASS,
                                           auth=auth.detail if auth.status == PASS else None,
                                           error=None if delivery.status == PASS else delivery.detail))
        return outcomes

    # --- interop test runs ------------------------------------------------------------------------

    def test(self, cases: list[Case], server_names: list[str] | None = None,
             stack_names: list[str] | None = None) -> list[CaseResult]:
        """Run the catalogue's ``cases`` for every stack x server and every ordered server pair."""
        for name in server_names or []:
            self.lab.server(name)
        servers = [s for s in self.lab.servers if not server_names or s.name in server_names]
        stack_list = [stacks()[n] for n in self.lab.clients if not stack_names or n in stack_names]
        missing = [c.name for c in self.runtime.containers() if c.status != "running"]
        if not self.runtime.container(PRIMARY.service) or missing:
            raise NotUp(f"lab {self.lab.name} is not up{' (stopped: ' + ', '.join(missing) + ')' if missing else ''}: "
                        f"run 'lab up' first")
        pairs = [(a, b) for a in servers for b in self.lab.servers if a is not b]
        plain = [c for c in cases if c.id not in VARIANTS]
        per_stack = parallel(lambda stack: self._run_stack(stack, plain, servers, pairs), stack_list)
        results = [r for stack_results in per_stack for r in stack_results]
        for case in [c for c in cases if c.id in VARIANTS]:
            results += self._run_variant(case, stack_list, servers, pairs)
        if any(c.id == "S8" for c in cases):
            logs = {s.name: self.runtime.logs(s.name) for s in self.lab.servers}
            for a, b in pairs:
                auth = b.kind.inbound_auth(logs[b.name], a.domain)
                results.append(CaseResult("S8", BY_ID["S8"].title, "observed", a.name, b.name,
                                          PASS if auth else FAIL,
                                          auth or f"{b.name}'s log shows no authentication of {a.domain}"))
        order = {c.id: i for i, c in enumerate(CASES)}
        return sorted(results, key=lambda r: (order[r.case], r.stack, r.server, r.target or ""))

    def _run_variant(self, case: Case, stack_list, servers, pairs) -> list[CaseResult]:
        """A case run under a DNS variant, on fresh s2s connections; then back to the normal zone."""
        closable = [p for p in pairs if p[0].kind.close_s2s_command or p[1].kind.close_s2s_command]
        results = [CaseResult(case.id, case.title, stack.name, a.name, b.name, NOT_SUPPORTED,
                              f"neither {a.kind.name} nor {b.kind.name} can drop s2s connections without a restart")
                   for stack in stack_list if case.id in stack.cases for a, b in pairs if (a, b) not in closable]
        if not closable:
            return results
        try:
            self.serve_zone(case.id)
            per_stack = parallel(lambda stack: self._run_stack(stack, [case], servers, closable), stack_list)
        finally:
            self.serve_zone(None)
        return results + [r for stack_results in per_stack for r in stack_results]

    def serve_zone(self, variant: str | None) -> None:
        """Serve the zone (or a DNS variant of it), make servers drop their s2s connections,
        and wait until cached answers have expired."""
        zone = json.dumps(build_zone(self.lab, variant), indent=2).encode()
        self.runtime.update_file(DNS_SERVICE, ZONE_PATH, File(zone))
        parallel(lambda s: self.runtime.exec(s.name, list(s.kind.close_s2s_command)),
                 [s for s in self.lab.servers if s.kind.close_s2s_command])
        time.sleep(TTL + 1)

    def _run_stack(self, stack: ClientStack, cases: list[Case], servers: list[Server], pairs) -> list[CaseResult]:
        """One stack's runner over every case it can express; the rest reported from data."""
        planned, results = [], []
        for case in cases:
            if case.id == "S8":
                continue
            if case.scope == "s2s" and case.id not in stack.cases:
                continue  # s2s cells are about the servers: stacks that cannot do a case stay out
            targets = [(s, None) for s in servers] if case.scope == "c2s" else pairs
            for server, target in targets:
                needs_from = target or server
                if case.id not in stack.cases:
                    results.append(CaseResult(case.id, case.title, stack.name, server.name, target and target.name,
                                              NOT_SUPPORTED, f"the {stack.name} runner cannot express {case.id}"))
                elif case.needs and case.needs not in needs_from.kind.features:
                    results.append(CaseResult(case.id, case.title, stack.name, server.name, target and target.name,
                                              NOT_SUPPORTED, f"{needs_from.kind.name} does not support {case.needs}"))
                else:
                    planned.append({"case": case.id, "server": server.name, "target": target and target.name})
        if not planned:
            return results
        spec = {"ca": CLIENT_CA, "timeout": CASE_TIMEOUT,
                "servers": {s.name: {"domain": s.domain, "accounts": s.accounts, "muc": s.muc_domain,
                                     "users": stack_users(stack, s)}
                            for s in self.lab.servers},
                "cases": planned}
        try:
            ran = self.run_runner("cases", spec, stack)
        except LabError as error:
            ran = [{**p, "status": ERROR, "detail": str(error)} for p in planned]
        for entry in ran:
            results.append(CaseResult(entry["case"], BY_ID[entry["case"]].title, stack.name, entry["server"],
                                      entry.get("target"), entry["status"], entry.get("detail", ""),
                                      entry.get("trace", ""), entry.get("seconds", 0.0)))
        return results
