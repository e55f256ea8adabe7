"""The ``lab`` command."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from lab import REPO_DIR, model
from lab.errors import LabError
from lab.project import Project
from lab.runtime import Runtime, connect
from lab.servers import CERTIFICATE

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Reproduce an XMPP interop event: real servers, certificates and DNS in Docker.")
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

FileOption = typer.Option(None, "--file", "-f", help="The lab file (default: ./lab.yml, else the repo's default lab).")

AUTH_NAMES = {CERTIFICATE: "certificate (SASL EXTERNAL)", "dialback": "dialback", None: "auth not seen in logs"}


def lab_file(path: Optional[Path]) -> Path:
    if path is not None:
        return path
    here = Path("lab.yml")
    return here if here.exists() else REPO_DIR / "lab.yml"


def reports_errors(command):
    """One located line and a non-zero exit for every error the user can act on."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except LabError as error:
            errors.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(error.exit_code)
        except KeyboardInterrupt:
            errors.print("[bold red]interrupted:[/] everything this command started was removed; "
                         "run the command again when ready", highlight=False)
            raise typer.Exit(130)
    return wrapper


def open_lab(path: Optional[Path]) -> tuple[model.Lab, Runtime]:
    lab = model.load(lab_file(path))
    return lab, Runtime(connect(), lab.name)


@app.command()
@reports_errors
def up(file: Optional[Path] = FileOption):
    """Bring the lab up (building missing images), then check federation between every server pair."""
    lab, runtime = open_lab(file)
    with console.status("starting") as status:
        def say(text: str, transient: bool = False):
            if not transient:
                console.print(f"[dim]{text}[/]", highlight=False)
            status.update(text[:100])

        project = Project(lab, runtime, say=say)
        project.up()
        status.update("checking federation")
        outcomes = project.check_federation()
    servers = ", ".join(f"{s.name} ({s.domain})" for s in lab.servers)
    console.print(f"lab [bold]{lab.name}[/] is up: {servers}; files in {lab.state_dir}", highlight=False)
    console.print("federation (one message each way, sender's server -> recipient's server):")
    for outcome in outcomes:
        verdict = "[green]pass[/]" if outcome.delivered else "[red]FAIL[/]"
        detail = f"  ({outcome.error})" if outcome.error else ""
        console.print(f"  {verdict}  {outcome.sender.domain} -> {outcome.recipient.domain}  "
                      f"{AUTH_NAMES.get(outcome.auth, outcome.auth)}{detail}", highlight=False)
    console.print("phases: " + " · ".join(f"{name} {seconds:.1f}s" for name, seconds in project.phases.seconds.items()),
                  highlight=False)
    if not all(o.delivered for o in outcomes):
        raise typer.Exit(1)


@app.command()
@reports_errors
def down(file: Optional[Path] = FileOption):
    """Remove every container, network and volume of the lab (images stay)."""
    lab, runtime = open_lab(file)
    removed = runtime.down()
    console.print(f"lab [bold]{lab.name}[/] is down ({removed} removed)" if removed
                  else f"lab [bold]{lab.name}[/] was not up", highlight=False)


@app.command()
def schema():
    """Print the lab.yml JSON Schema (for editors)."""
    print(json.dumps(model.schema(), indent=2))


if __name__ == "__main__":
    sys.exit(app())
