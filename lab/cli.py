"""The ``lab`` command."""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import docker.errors
import requests.exceptions
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab import cases as catalogue, compare, model, report
from lab.cases import auth as s8
from lab.cases.s2s import S1
from lab.cases.server_faults import ServerFault
from lab.errors import ConfigError, Interrupted, LabError
from lab.interop import Interop, plan
from lab.project import DNS_SERVICE, Project
from lab.results import ERROR, FAIL, FAILED, FLAKY, PASS
from lab.runtime import Runtime, connect, runtime_for
from lab import publish, servers, turn
from lab.servers import CERTIFICATE

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Reproduce an XMPP interop event: real servers, certificates and DNS in Docker.")
# Not a terminal (CI logs, pipes): wide enough that the matrices do not wrap.
# emoji off: a detail quoting a namespace (vcard-temp:x:update) must not turn ":x:" into an emoji.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200, emoji=False)
errors = Console(stderr=True, soft_wrap=True, emoji=False)

FileOption = typer.Option(None, "--file", "-f", help="The lab file (default: ./lab.yml, else the repo's default lab).")
PublishOption = typer.Option(False, "--publish",
                             help="Publish every server's client ports on 127.0.0.1 for a desktop client "
                                  "(as network: {publish: true} in lab.yml).")
ConcurrencyOption = typer.Option(None, "--concurrency", min=1,
                                 help="Cases each client stack runs at once (default: test.concurrency in "
                                      "lab.yml, else 2 per engine core).")

# `lab --engine swarm ...`: the engine for this command, over lab.yml's.
ENGINE: dict[str, str | None] = {"name": None}


@app.callback()
def choose_engine(engine: Optional[str] = typer.Option(
        None, "--engine", help="local or swarm: where the lab runs (default: lab.yml's engine, else local).")):
    if engine not in (None, "local", "swarm"):
        raise typer.BadParameter(f"{engine!r} is not one of: local, swarm", param_hint="--engine")
    ENGINE["name"] = engine


AUTH_NAMES = {CERTIFICATE: "certificate (SASL EXTERNAL)", "dialback": "dialback", None: "auth not observed"}


def reports_errors(command):
    """One located line and a non-zero exit for every error the user can act on."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except Interrupted as error:
            errors.print(f"[bold red]interrupted:[/] {escape(str(error))}", highlight=False)
            raise typer.Exit(error.exit_code)
        except LabError as error:
            errors.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
            raise typer.Exit(error.exit_code)
        except KeyboardInterrupt:
            errors.print("[bold red]interrupted[/]", highlight=False)
            raise typer.Exit(130)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            errors.print(f"[bold red]error:[/] the Docker engine failed: {escape(str(error))}", highlight=False)
            raise typer.Exit(1)
        except (typer.Exit, typer.Abort):
            raise  # typer's own exits and usage errors
        except Exception as error:  # a bug of ours: still one line, unless asked for the traceback
            if os.environ.get("LAB_DEBUG"):
                raise
            errors.print(f"[bold red]error:[/] internal error {type(error).__name__}: {escape(str(error))} "
                         f"(LAB_DEBUG=1 shows the traceback)", highlight=False)
            raise typer.Exit(1)
    return wrapper


def open_lab(path: Optional[Path]) -> tuple[model.Lab, Runtime]:
    """The lab and its runtime (``lab --engine`` before lab.yml's engine)."""
    lab = model.load_lab(path)
    return lab, runtime_for(connect(), lab.name, ENGINE["name"] or lab.engine,
                            own_containers=(DNS_SERVICE, turn.SERVICE), nodes=lab.nodes)


def print_federation(interop: Interop) -> bool:
    """S1 and S8 for every ordered pair, one line each; True when every pair federated as expected."""
    results = interop.federation()
    console.print("federation (one message each way, sender's server -> recipient's server; "
                  "auth as the recipient logged it):")
    auth = s8.observed(results)
    domain = {server.name: server.domain for server in interop.lab.servers}
    for delivery in [r for r in results if r.case == S1.id]:
        observed = auth.get((delivery.server, delivery.target))
        pair = [r for r in (delivery, observed) if r is not None]
        bad = next((r for r in pair if r.status not in (PASS, FLAKY)), None)
        verdict = ("[red]FAIL[/]" if bad or observed is None else
                   "[yellow]flaky[/]" if any(r.status == FLAKY for r in pair) else "[green]pass[/]")
        method = observed.evidence.get("auth") if observed else None
        detail = f"  ({escape(bad.detail)})" if bad else ""
        console.print(f"  {verdict}  {domain[delivery.server]} -> {domain[delivery.target]}  "
                      f"{AUTH_NAMES.get(method, method)}{detail}", highlight=False)
    return not any(r.status in FAILED for r in results)


def bring_up(file: Optional[Path], fresh: bool = False, test: bool = False, concurrency: int | None = None,
             newer: tuple[str, ...] = (), published: bool = False) -> None:
    """up and reset: converge, report what changed, prove federation, show phase times."""
    lab, runtime = open_lab(file)
    if published:
        lab = model.published(lab)
    with console.status("starting") as status:
        def say(text: str, transient: bool = False):
            if not transient:
                console.print(f"[dim]{text}[/]", highlight=False)
            status.update("\n".join(line[:100] for line in text.splitlines()))

        project = Project(lab, runtime, say=say)
        changed = project.up(fresh=fresh, newer=newer)
        status.update("checking federation")
        versions = project.versions()
        servers = ", ".join(f"{s.name} ({s.domain}; {s.kind.name} {versions[s.name] or '?'} from {s.release})"
                            for s in lab.servers)
        servers += "; clients: " + ", ".join(f"{c.name} ({c.package} {versions[c.service] or '?'})" for c in lab.clients)
        if changed:
            console.print(f"lab [bold]{lab.name}[/] is up: {servers}; (re)started: {', '.join(changed)}; "
                          f"files in {lab.state_dir}", highlight=False)
        else:
            console.print(f"lab [bold]{lab.name}[/] is up to date (nothing restarted): {servers}", highlight=False)
        console.print(publish.summary(lab, runtime), highlight=False, markup=False)
        if lab.room:
            console.print(f"the event's room: {lab.room} (lab accounts lists who can join)", highlight=False)
        try:
            with project.phases("federation (S1, S8)"):
                federated = print_federation(Interop(lab, runtime, concurrency))
        except KeyboardInterrupt:
            raise Interrupted(f"lab {lab.name} is up and ready; its federation check was interrupted "
                              f"(lab test --only S1,S8 runs it again)") from None
    console.print("phases: " + " · ".join(f"{name} {seconds:.1f}s" for name, seconds in project.phases.seconds.items()),
                  highlight=False)
    if test:
        console.print()
        federated = run_catalogue(Interop(lab, runtime, concurrency), catalogue.selected(list(lab.cases), None)) \
            and federated
    if not federated:
        raise typer.Exit(1)


@app.command()
@reports_errors
def up(file: Optional[Path] = FileOption,
       test: bool = typer.Option(False, "--test", help="Then run the whole interop catalogue (as lab test)."),
       concurrency: Optional[int] = ConcurrencyOption,
       pull_newer: bool = typer.Option(False, "--pull-newer",
                                       help="Build the lab's sid images again from today's sid (they are kept "
                                            "otherwise); their containers are recreated."),
       publish_ports: bool = PublishOption):
    """Bring the lab up or up to date (building missing images), then check federation."""
    bring_up(file, test=test, concurrency=concurrency, newer=("sid",) if pull_newer else (), published=publish_ports)


@app.command()
@reports_errors
def reset(file: Optional[Path] = FileOption,
          hard: bool = typer.Option(False, "--hard", help="Also make a new CA and new certificates."),
          publish_ports: bool = PublishOption):
    """Put every server back to a fresh state: data wiped, accounts created again (images and CA kept)."""
    if hard:
        lab = model.load_lab(file)
        shutil.rmtree(lab.state_dir / "ca", ignore_errors=True)
        shutil.rmtree(lab.state_dir / "servers", ignore_errors=True)
    bring_up(file, fresh=True, published=publish_ports)


@app.command()
@reports_errors
def down(file: Optional[Path] = FileOption):
    """Remove every container, network and volume of the lab (images and the CA stay)."""
    lab, runtime = open_lab(file)
    removed = runtime.down()
    console.print(f"lab [bold]{lab.name}[/] is down ({removed} removed)" if removed
                  else f"lab [bold]{lab.name}[/] was not up", highlight=False)


@app.command()
@reports_errors
def status(file: Optional[Path] = FileOption,
           as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """Every container of the lab: server, kind, domain, address, state, ready."""
    lab, runtime = open_lab(file)
    rows = Project(lab, runtime).status()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("server", "kind", "domain", "address", "state", "ready", "node", box=None)
    for row in rows:
        ready = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[row["ready"]]
        table.add_row(row["server"], row["kind"], row["domain"] or "-", row["address"], row["state"], ready,
                      row["node"] or "-")
    console.print(table)


def container_of(file: Optional[Path], name: str):
    lab, runtime = open_lab(file)
    container = runtime.container(name)
    if container is None:
        known = ", ".join(["dns", *([turn.SERVICE] if lab.turn_enabled else []), *(s.name for s in lab.servers),
                           *(c.service for c in lab.clients)])
        raise LabError(f"lab {lab.name} has no container {name!r} (is it up? names: {known})")
    return container


@app.command()
@reports_errors
def logs(name: str = typer.Argument(..., help="A server name, dns, turn or client-<stack>."),
         follow: bool = typer.Option(False, "--follow", "-F", help="Keep printing new lines."),
         file: Optional[Path] = FileOption):
    """Print a container's log."""
    container = container_of(file, name)
    if not follow:
        sys.stdout.write(container.logs().decode(errors="replace"))
        return
    for chunk in container.logs(stream=True, follow=True):
        sys.stdout.write(chunk.decode(errors="replace"))
        sys.stdout.flush()


@app.command(name="exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@reports_errors
def exec_(ctx: typer.Context, name: str = typer.Argument(..., help="A server name, dns, turn or client-<stack>."),
          file: Optional[Path] = FileOption):
    """Run a command in a container: lab exec NAME -- CMD [ARGS...]."""
    if not ctx.args:
        raise LabError("no command given: lab exec NAME -- CMD [ARGS...]")
    container = container_of(file, name)
    result = container.exec_run(ctx.args)
    sys.stdout.write(result.output.decode(errors="replace"))
    raise typer.Exit(result.exit_code)


@app.command()
@reports_errors
def accounts(file: Optional[Path] = FileOption,
             as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """The test accounts of every server: JID, password, and where a client connects (host,
    port, STARTTLS or direct TLS): the published ports if the running lab has them, else
    the servers' lab addresses (which answer on a Linux host only)."""
    lab = model.load_lab(file)
    try:  # where the running lab publishes its ports; without an engine, the lab addresses still
        found = publish.running(lab, runtime_for(connect(), lab.name, ENGINE["name"] or lab.engine))
    except LabError:
        found = []
    endpoints = found or publish.lab_endpoints(lab)
    rows = [{"jid": f"{user}@{server.domain}", "password": password, "server": server.name,
             "published": bool(found),
             "ports": [{"host": e.host, "port": e.port, "tls": e.tls} for e in endpoints if e.server == server.name]}
            for server in lab.servers for user, password in server.accounts.items()]
    room = lab.room and {"jid": lab.room, "server": lab.room_server}
    if as_json:
        print(json.dumps({"accounts": rows, "room": room}, indent=2))
        return
    table = Table("jid", "password", "STARTTLS", "direct TLS", box=None)
    for row in rows:
        where = {p["tls"]: f"{p['host']}:{p['port']}" for p in row["ports"]}
        table.add_row(row["jid"], row["password"], where.get(publish.STARTTLS, "-"), where.get(publish.DIRECT_TLS, "-"))
    console.print(table)
    console.print(("published on this machine" if found else
                   "not published (lab up --publish): lab addresses, reachable from a Linux host running the "
                   "engine only") + "; trust the lab CA (lab ca export PATH); a client connects to host:port and "
                                    "checks the certificate against the JID's domain", highlight=False)
    if room:
        console.print(f"the event's room: {room['jid']} (on {room['server']}; persistent and public, kept open by "
                      f"lab up): join it from any account above", highlight=False)


ca_app = typer.Typer(help="The lab's certificate authority.", no_args_is_help=True)
app.add_typer(ca_app, name="ca")


@ca_app.command("export")
@reports_errors
def ca_export(path: Path = typer.Argument(..., help="Where to write the CA certificate (PEM)."),
              file: Optional[Path] = FileOption):
    """Write the lab CA certificate, e.g. to trust the lab in a desktop client."""
    lab = model.load_lab(file)
    source = lab.state_dir / "ca" / "ca.pem"
    if not source.exists():
        raise LabError(f"lab {lab.name} has no CA yet: run 'lab up' first")
    try:
        shutil.copyfile(source, path)
    except OSError as error:
        raise LabError(f"{path}: cannot write: {error.strerror}") from None
    console.print(f"lab CA certificate written to {path}", highlight=False)


dns_app = typer.Typer(help="The lab's DNS.", no_args_is_help=True)
app.add_typer(dns_app, name="dns")


@dns_app.command("query")
@reports_errors
def dns_query(name: str, rtype: str = typer.Argument("A", metavar="TYPE"), file: Optional[Path] = FileOption):
    """Ask the lab DNS, as the lab's containers do."""
    container = container_of(file, "dns")
    result = container.exec_run(["python3", "-c", DNS_QUERY, name, rtype.upper()])
    sys.stdout.write(result.output.decode(errors="replace"))
    raise typer.Exit(result.exit_code)


# Run inside the DNS container, which has dnslib.
DNS_QUERY = """\
import sys
from dnslib import DNSRecord
reply = DNSRecord.parse(DNSRecord.question(sys.argv[1], sys.argv[2]).send("127.0.0.1", 53, timeout=3))
print(reply)
"""


def split(values: Optional[list[str]]) -> Optional[list[str]]:
    """--only C1,C2 --only S1 -> [C1, C2, S1]."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()] if values else None


# A cell's colour on the terminal, by its status (report.Cell).
COLOURS = {FAIL: "red", ERROR: "red", FLAKY: "yellow", PASS: "green"}


def matrix_table(rows: list[list], title: str) -> Table:
    table = Table(*rows[0], title=title, title_justify="left", box=None)
    for row in rows[1:]:
        styled = [escape(row[0])] + [f"[{COLOURS[c.status]}]{escape(c.text)}[/]" if c.status in COLOURS
                                     else escape(c.text) for c in row[1:]]
        table.add_row(*styled)
    return table


class Progress:
    """The live line of `lab test`: results in, of how many, failures so far, elapsed time.
    On a terminal a rich status line; otherwise one plain line per finished batch."""

    def __init__(self, total: int, live):
        self.total, self.live, self.done, self.failed = total, live, 0, 0
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def keep_ticking(self) -> None:
        """The terminal line's elapsed time moves on between batches, once a second."""
        while not self.stopped.wait(1.0):
            with self.lock:
                self.live.update(f"running interop cases: {self.line()}")

    def line(self) -> str:
        return (f"{self.done}/{max(self.total, self.done)} cases run, {self.failed} failed or in error, "
                f"{time.monotonic() - self.started:.0f}s")

    def __call__(self, results) -> None:  # Interop.on_results: a runner's batch is in
        with self.lock:
            self.done += len(results)
            self.failed += sum(r.status in FAILED for r in results)
            if self.live is not None:
                self.live.update(f"running interop cases: {self.line()}")
            else:
                print(f"progress: {self.line()}", flush=True)


def expected_results(interop: Interop, cases, server_names=None, stack_names=None) -> int:
    """How many results the runners will return, for the progress line: every stack's plan
    (as Interop.run makes it), S8's exchanges and the S1 of every pair after each group of
    faults. ("Not supported" results are decided without a runner and not counted.)"""
    lab = interop.lab
    servers = [s for s in lab.servers if not server_names or s.name in server_names]
    stack_list = [c for c in lab.clients if not stack_names or c.name in stack_names]
    pairs = [(a, b) for a in servers for b in lab.servers if a is not b]
    total = 0
    observed = [c for c in cases if isinstance(c.phase, s8.Observed)]  # once per pair, by the lab
    for stack in stack_list:
        planned, _ = plan(stack, [c for c in cases if c not in observed], servers, pairs)
        total += len(planned)
    total += len(pairs) * (len(observed) + len({c.group for c in cases if c.group}))
    return total


@app.command(name="test")
@reports_errors
def test_(only: Optional[list[str]] = typer.Option(None, "--only", help="Case IDs, e.g. C1,S1,F6 (default: every C and S case)."),
          faults: bool = typer.Option(False, "--faults", help="Add the fault scenarios (F cases)."),
          server: Optional[list[str]] = typer.Option(None, "--server", help="Only these servers (c2s, and as source)."),
          stack: Optional[list[str]] = typer.Option(None, "--stack", help="Only these client stacks."),
          concurrency: Optional[int] = ConcurrencyOption,
          junit: Optional[Path] = typer.Option(None, "--junit", help="Also write the JUnit XML file here."),
          compare_with: Optional[str] = typer.Option(
              None, "--compare", metavar="PREV",
              help="Then compare with an earlier run: its results folder (or results.json), or 'last' for this "
                   "lab's previous run; exit 1 on a regression."),
          file: Optional[Path] = FileOption):
    """Run the interop catalogue on the running lab and report both matrices."""
    lab, runtime = open_lab(file)
    try:
        cases = catalogue.selected(list(lab.cases), split(only), faults)
    except ValueError as error:
        raise ConfigError(f"--only: {error}") from None
    if runtime.engine == "swarm":
        restarted = [c.id for c in cases if isinstance(c.phase, ServerFault)]
        if restarted:
            raise ConfigError(f"{'--faults' if faults else '--only'}: {', '.join(restarted)} restart a server's "
                              f"container, which on engine: swarm ends its task (the swarm records it failed, exit "
                              f"137, while the engine runs the container on): not supported there; leave them out "
                              f"with --only")
    unknown = [s for s in split(stack) or [] if s not in [c.name for c in lab.clients]]
    if unknown:
        raise ConfigError(f"--stack: unknown stack {', '.join(unknown)} (stacks: {', '.join(c.name for c in lab.clients)})")
    previous = None
    if compare_with is not None:  # checked before the run: a wrong PREV is a usage error, not a late one
        previous = last_runs(lab, 1)[0] if compare_with == "last" else compare.load(Path(compare_with))
    if junit is not None and not junit.parent.is_dir():
        raise ConfigError(f"--junit: {junit.parent} is not a directory")
    passed, directory = run_catalogue_to(Interop(lab, runtime, concurrency), cases, split(server), split(stack))
    if junit is not None:
        shutil.copyfile(directory / "junit.xml", junit)
        console.print(f"JUnit XML: {junit}", highlight=False)
    regressed = False
    if previous is not None:
        changes = compare.diff(previous, compare.load(directory))
        console.print()
        print_changes(changes)
        regressed = compare.regressed(changes)
    if not passed or regressed:
        raise typer.Exit(1)


def run_catalogue(interop: Interop, cases, servers=None, stack_names=None) -> bool:
    return run_catalogue_to(interop, cases, servers, stack_names)[0]


def run_catalogue_to(interop: Interop, cases, servers=None, stack_names=None) -> tuple[bool, Path]:
    """Run the cases, print both matrices, the failures and flaky cases, write the reports;
    (True if nothing failed or was in error, the reports' folder)."""
    lab = interop.lab
    started, wall = time.monotonic(), time.time()
    total = expected_results(interop, cases, servers, stack_names)
    try:
        if console.is_terminal:
            with console.status(f"running about {total} interop cases ({interop.concurrency} at once per stack)") as live:
                interop.on_results = progress = Progress(total, live)
                threading.Thread(target=progress.keep_ticking, daemon=True).start()
                try:
                    results = interop.run(cases, servers, stack_names)
                finally:
                    progress.stopped.set()
        else:
            print(f"running about {total} interop cases ({interop.concurrency} at once per stack)", flush=True)
            interop.on_results = Progress(total, None)
            results = interop.run(cases, servers, stack_names)
    except KeyboardInterrupt:
        raise Interrupted(f"lab test was interrupted: lab {lab.name} is as it was (its normal DNS zone served, every server with its own certificate and config); "
                          f"no report written") from None
    seconds = time.monotonic() - started
    names, versions = [s.name for s in lab.servers], Project(lab, interop.runtime).versions()
    label = report.labels(report.server_rows(lab, versions), report.client_rows(lab, versions))
    console.print(matrix_table(report.relabelled(report.s2s_matrix(results, names), label),
                               "server to server (row: from, column: to)"))
    console.print()
    console.print(matrix_table(report.relabelled(report.c2s_matrix(results, names), label), "client to server"))
    titles = {r.case: r.title for r in results}
    for case, rows in report.fault_matrices(results, names).items():
        console.print()
        console.print(matrix_table(report.relabelled(rows, label),
                                   f"fault {case}: {titles[case]} (row: from, column: to; cell: observed)"))
    table = report.compliance(results, names)
    if table:
        console.print()
        console.print(matrix_table(report.relabelled(report.compliance_rows(table), label),
                                   "compliance, XEP-0479 (a level is met only if every requirement passes)"))
    for label, status_set in (("failed or in error", FAILED), ("flaky (passed only on the retry)", (FLAKY,))):
        listed = [r for r in results if r.status in status_set]
        if listed:
            console.print(f"\n[bold]{len(listed)} {label}:[/]")
            for result in listed:
                console.print(f"  {result.status:5}  {result.id}  {result.title}: {result.detail}",
                              highlight=False, markup=False)
    directory = report.write(results, lab, versions, interop.software_versions(), report.run_info(wall, seconds))
    console.print(f"\n{len(results)} results in {seconds:.1f}s; reports: {directory}/"
                  f"{{results.json,results.md,junit.xml,report.html}}", highlight=False)
    return not any(r.status in FAILED for r in results), directory


report_app = typer.Typer(help="The reports of earlier runs.", no_args_is_help=True)
app.add_typer(report_app, name="report")


def last_runs(lab: model.Lab, count: int) -> list[dict]:
    """The ``count`` most recent runs of the lab (results.json documents), oldest first."""
    folders = compare.runs(lab.state_dir / "results")
    if len(folders) < count:
        raise LabError(f"lab {lab.name} has {len(folders)} runs in {lab.state_dir / 'results'}, "
                       f"{count} needed: run 'lab test' first")
    return [compare.load(folder) for folder in folders[-count:]]


def print_changes(changes: dict) -> None:
    old, new = changes["old_run"]["name"], changes["new_run"]["name"]
    lines = report.change_lines(changes)
    console.print(f"from run {old} to run {new}: {len(changes['regressions'])} regressions, "
                  f"{len(changes['fixes'])} fixes, {len(changes['changed'])} other changes, {len(changes['new'])} new, "
                  f"{len(changes['gone'])} gone, {len(changes['versions'])} version changes", highlight=False)
    for line in lines:
        colour = "red" if line.startswith("regression") else "green" if line.startswith("fixed") else None
        console.print(f"  [{colour}]{escape(line)}[/]" if colour else f"  {escape(line)}", highlight=False)


@report_app.command("diff")
@reports_errors
def report_diff(old: Optional[Path] = typer.Argument(None, help="The earlier run's results folder (or results.json)."),
                new: Optional[Path] = typer.Argument(None, help="The later run's results folder (or results.json)."),
                last: bool = typer.Option(False, "--last", help="The lab's two most recent runs."),
                as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
                file: Optional[Path] = FileOption):
    """What changed between two runs, by stable result ID: regressions (pass -> flaky, fail
    or error), fixes, new and gone results, versions. Exit 1 when something regressed."""
    if last == (old is not None or new is not None) or (not last and new is None):
        raise ConfigError("lab report diff takes OLD and NEW (two results folders), or --last")
    before, after = last_runs(model.load_lab(file), 2) if last else (compare.load(old), compare.load(new))
    changes = compare.diff(before, after)
    if as_json:
        print(json.dumps(changes, indent=2))
    else:
        print_changes(changes)
    if compare.regressed(changes):
        raise typer.Exit(1)


@app.command("cases")
@reports_errors
def list_cases(file: Optional[Path] = FileOption,
               markdown: bool = typer.Option(False, "--markdown", help="The catalogue as docs/catalogue.md has it.")):
    """Every case a lab here runs: where it comes from (built-in or cases/), its scope, what it
    needs, when it passes and against which spec."""
    lab_dir = file.resolve().parent if file else Path.cwd()
    cases = catalogue.catalogue(lab_dir)
    if markdown:
        print(catalogue.markdown(cases))
        return
    table = Table("case", "from", "scope", "needs", "fault", "title", "passes when", "reference", box=None)
    for column in table.columns:
        column.overflow = "fold"
    for case in cases:
        table.add_row(case.id, case.origin, case.scope, (case.needs or "-") + catalogue.needs_where(case),
                      case.group or ("yes" if case.fault else "-"), case.title, case.criterion, case.spec)
    console.print(table)


@app.command()
@reports_errors
def init():
    """Write a starter lab.yml (the default lab) here; an existing one is left alone."""
    path = Path("lab.yml")
    if path.exists():
        raise LabError(f"{path.resolve()} exists: lab init never overwrites it")
    path.write_text(model.starter_lab())
    console.print(f"wrote {path.resolve()}: edit it, then 'lab up' (kinds of your own go in ./images/<name>/, templates in ./templates/<kind>/)",
                  highlight=False)


@app.command()
def schema(kind: bool = typer.Option(False, "--kind", help="The schema of kind.yml instead.")):
    """Print the lab.yml JSON Schema (for editors); --kind: that of a server kind's kind.yml."""
    print(json.dumps(servers.SCHEMA if kind else model.schema(Path.cwd()), indent=2))


@app.command("kinds")
@reports_errors
def list_kinds(file: Optional[Path] = FileOption):
    """Every server kind a lab here can use: where it comes from, its image, the Debian
    releases it runs at, its features."""
    lab_dir = file.resolve().parent if file else Path.cwd()
    table = Table("kind", "from", "image", "releases", "s2s auth", "features", box=None)
    for column in table.columns:
        column.overflow = "fold"  # a path is never cut short
    for name, kind in servers.kinds(lab_dir).items():
        source = "built-in" if kind.builtin else str(kind.folder)
        image = kind.prebuilt or f"built from {kind.build_dir.relative_to(kind.folder)}/"
        table.add_row(name, source, image, ", ".join(kind.releases), ", ".join(kind.s2s_auth),
                      " ".join(sorted(kind.features)))
    console.print(table)


if __name__ == "__main__":
    sys.exit(app())
