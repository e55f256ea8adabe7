"""jabberd2 2.7.0 (Debian bookworm): router, sm, c2s and s2s in one container.

Server-to-server authentication is dialback only (jabberd2 has no SASL EXTERNAL), so
Prosody and ejabberd must allow dialback for a jabberd2 domain (``dialback_peers`` in
their templates). No account CLI: ``jabberd2-register`` (in the image) writes the
sqlite tables that c2s and sm read.
"""

from lab.servers import DIALBACK, ServerKind

KIND = ServerKind(
    name="jabberd2",
    config_files={
        "router.xml.j2": "/etc/jabberd2/router.xml",
        "router-users.xml.j2": "/etc/jabberd2/router-users.xml",
        "sm.xml.j2": "/etc/jabberd2/sm.xml",
        "c2s.xml.j2": "/etc/jabberd2/c2s.xml",
        "s2s.xml.j2": "/etc/jabberd2/s2s.xml",
    },
    register_command=lambda user, domain, password: ["jabberd2-register", user, domain, password],
    # s2s/out.c _out_verify(), on the receiving server once the sender's dialback key
    # checks out: "[fd] [ip, port=n] incoming route '<local>/<remote>' is now valid <flags>"
    inbound_auth_patterns={
        DIALBACK: [r"incoming route '(?P<local>[^/']+)/(?P<peer>[^']+)' is now valid"],
    },
    # Restarts jabberd2-s2s alone (see images/jabberd2/entrypoint.sh).
    close_s2s_command=("jabberd2-drop-s2s",),
    s2s_auth=(DIALBACK,),
    # No MUC, MAM or carbons; stream management only as the 2008 draft namespace
    # (http://www.xmpp.org/extensions/xep-0198.html#ns), which clients do not use.
    features=frozenset({"register", "ping", "disco", "direct-tls"}),
)
