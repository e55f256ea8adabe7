"""Prosody 0.12 (Debian bookworm)."""

from lab.servers import CERTIFICATE, DIALBACK, ServerKind

KIND = ServerKind(
    name="prosody",
    config_files={"prosody.cfg.lua.j2": "/etc/prosody/prosody.cfg.lua"},
    register_command=lambda user, domain, password: ["prosodyctl", "register", user, domain, password],
    # At info level an incoming connection ends with "Incoming s2s connection P->D complete".
    # One authenticated by certificate logs "<D>:saslauth info Accepting SASL EXTERNAL identity
    # from P" on the line right before it (one synchronous call chain of a single-threaded
    # server: nothing can come between); mod_dialback logs only at debug level, so a
    # completion without that line is dialback. Matched only on this run's lines of a pair.
    inbound_auth_patterns={
        CERTIFICATE: [r"(?P<local>\S+):saslauth\s+info\s+Accepting SASL EXTERNAL identity from (?P<peer>\S+)\n"
                      r".*Incoming s2s connection (?P=peer)->(?P=local) complete"],
        DIALBACK: [r".*Incoming s2s connection (?P<peer>\S+)->(?P<local>\S+) complete"],
    },
    s2s_auth=(CERTIFICATE, DIALBACK),
    # closeall exits 1 with "No sessions to close" when there are none: that is success here.
    close_s2s_command=("sh", "-c", 'out=$(prosodyctl shell "s2s:closeall()" 2>&1) || case "$out" in '
                                   '*"No sessions to close"*) ;; *) echo "$out"; exit 1;; esac; echo "$out"'),
    features=frozenset({"muc", "mam", "carbons", "stream-management", "register", "ping", "disco",
                        "direct-tls"}),
)
