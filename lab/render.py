"""Server configs rendered from Jinja2 templates.

A kind's templates are looked up in ``templates/<kind>/`` beside lab.yml first (a lab can
override any file), then in the templates of the lab directory the kind comes from (the
tool's own ``templates/<kind>/`` for a built-in kind).
"""

from __future__ import annotations

import jinja2

from lab import turn
from lab.errors import LabError
from lab.model import Lab, Server


def environment(lab: Lab, server: Server) -> jinja2.Environment:
    search_path = [lab.file.parent / "templates" / server.kind.name, server.kind.templates]
    return jinja2.Environment(loader=jinja2.FileSystemLoader([str(p) for p in search_path]),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def template_context(lab: Lab, server: Server) -> dict:
    peers = [s for s in lab.servers if s is not server]
    return {
        "lab": lab,
        "server": server,
        "domain": server.domain,
        "paths": server.kind.tls_paths,
        "ports": server.kind.ports,
        "features": server.features,
        "release": server.release,  # the Debian suite: where a config differs between versions
        "ipv6": lab.ipv6,  # dual-stack: listen on "::" (both families), look up AAAA too
        "log_level": server.log_level,
        "muc_domain": server.muc_domain,
        "upload_domain": server.upload_domain,  # XEP-0363 (X0363)
        "component_domain": server.component_domain,  # XEP-0114 (X0114)
        # lab up sets it from the lab CA (ca.secret); what a config rendered without a CA shows:
        "component_secret": "made-by-lab-up",
        "proxy65_domain": server.proxy65_domain,  # Jingle SOCKS5 (J2, J6)
        "direct_tls_port": server.kind.ports["c2s_direct_tls"] if "direct-tls" in server.features else None,
        # Peers that can only do dialback; everyone else must present a verified certificate.
        "dialback_peers": [p.domain for p in peers if "certificate" not in p.kind.s2s_auth],
        # False only while a fault with s2s TLS off runs on this server: server connections in plaintext.
        "s2s_tls": True,
        # The lab's TURN service (lab/turn.py) for XEP-0215, or None; `lab up` renders its real secret.
        "turn": turn.settings(lab),
        "own_turn_port": turn.SERVER_PORT,  # the server's own STUN/TURN listener (turn-server)
    }


def render_server(lab: Lab, server: Server, **overrides) -> dict[str, str]:
    """Rendered config files of ``server``: path in the container -> text. ``overrides``:
    context variables set otherwise (a fault's, e.g. s2s_tls=False)."""
    env = environment(lab, server)
    context = {**template_context(lab, server), **overrides}
    try:
        return {target: env.get_template(template).render(context)
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
