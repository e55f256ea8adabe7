"""Prosody 0.12 (Debian bookworm)."""

from lab.servers import CERTIFICATE, DIALBACK, ServerKind

KIND = ServerKind(
    name="prosody",
    config_files={"prosody.cfg.lua.j2": "/etc/prosody/prosody.cfg.lua"},
    register_command=lambda user, domain, password: ["prosodyctl", "register", user, domain, password],
    inbound_auth_patterns={
        CERTIFICATE: [r"Accepting SASL EXTERNAL identity from (?P<peer>[^\s]+)"],
        DIALBACK: [r"verified dialback key for (?P<peer>[^\s]+)"],
    },
    s2s_auth=(CERTIFICATE, DIALBACK),
    features=frozenset({"muc", "mam", "carbons", "stream-management", "register", "ping", "disco"}),
)
