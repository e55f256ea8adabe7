"""Server configs rendered from Jinja2 templates.

Templates are looked up in ``templates/`` beside lab.yml first (a lab can override any
file), then in the repo's ``templates/``; each kind's files are under ``<kind>/``.
"""

from __future__ import annotations

import jinja2

from lab import REPO_DIR
from lab.errors import LabError
from lab.model import Lab, Server
from lab.zone import C2S_DIRECT_TLS_PORT

# Where the lab puts TLS material in every server container.
TLS_PATHS = {
    "ca": "/etc/xmpp-lab/ca.pem",
    "cert": "/etc/xmpp-lab/cert.pem",      # leaf + CA
    "key": "/etc/xmpp-lab/key.pem",
    "bundle": "/etc/xmpp-lab/bundle.pem",  # leaf + CA + key, for servers that want one file
}


def environment(lab: Lab) -> jinja2.Environment:
    search_path = [lab.file.parent / "templates", REPO_DIR / "templates"]
    return jinja2.Environment(loader=jinja2.FileSystemLoader([str(p) for p in search_path]),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def template_context(lab: Lab, server: Server) -> dict:
    peers = [s for s in lab.servers if s is not server]
    return {
        "lab": lab,
        "server": server,
        "domain": server.domain,
        "paths": TLS_PATHS,
        "log_level": server.log_level,
        "muc_domain": server.muc_domain,
        "direct_tls_port": C2S_DIRECT_TLS_PORT if "direct-tls" in server.kind.features else None,
        # Peers that can only do dialback; everyone else must present a verified certificate.
        "dialback_peers": [p.domain for p in peers if "certificate" not in p.kind.s2s_auth],
    }


def render_server(lab: Lab, server: Server) -> dict[str, str]:
    """Rendered config files of ``server``: path in the container -> text."""
    env = environment(lab)
    context = template_context(lab, server)
    try:
        return {target: env.get_template(f"{server.kind.name}/{template}").render(context)
                for template, target in server.kind.config_files.items()}
    except jinja2.TemplateError as error:
        raise LabError(f"{_template_location(error, server)}: template error: {error.message}") from None


def _template_location(error: jinja2.TemplateError, server: Server) -> str:
    """file:line of a template error; render-time errors carry it only in the traceback."""
    filename, line = getattr(error, "filename", None), getattr(error, "lineno", None)
    traceback = error.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename.endswith(".j2"):
            filename, line = traceback.tb_frame.f_code.co_filename, traceback.tb_lineno
        traceback = traceback.tb_next
    return f"{filename or server.kind.name}{f':{line}' if line else ''}"
