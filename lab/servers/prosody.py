"""Prosody 0.12 (Debian bookworm)."""

from lab.servers import CERTIFICATE, DIALBACK, ServerKind

KIND = ServerKind(
    name="prosody",
    config_files={"prosody.cfg.lua.j2": "/etc/prosody/prosody.cfg.lua"},
    register_command=lambda user, domain, password: ["prosodyctl", "register", user, domain, password],
    # At info level an incoming connection ends with "Incoming s2s connection P->D complete";
    # one authenticated by certificate logs "Accepting SASL EXTERNAL identity from P" just
    # before it, one by dialback logs nothing more.
    inbound_auth_patterns={
        CERTIFICATE: [r"Accepting SASL EXTERNAL identity from (?P<peer>\S+)\n"
                      r"(?:.*\n){0,3}?.*Incoming s2s connection (?P=peer)->\S+ complete"],
        DIALBACK: [r"Incoming s2s connection (?P<peer>\S+)->\S+ complete"],
    },
    s2s_auth=(CERTIFICATE, DIALBACK),
    close_s2s_command=("prosodyctl", "shell", "s2s:closeall()"),
    features=frozenset({"muc", "mam", "carbons", "stream-management", "register", "ping", "disco",
                        "direct-tls"}),
)
