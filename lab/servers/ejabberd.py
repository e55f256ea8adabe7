"""ejabberd 23.01 (Debian bookworm)."""

from lab.servers import CERTIFICATE, DIALBACK, ServerKind

KIND = ServerKind(
    name="ejabberd",
    config_files={"ejabberd.yml.j2": "/etc/ejabberd/ejabberd.yml"},
    # register refuses an existing account: then set its password. When both fail, both say why.
    register_command=lambda user, domain, password: [
        "sh", "-c", 'out=$(ejabberdctl register "$1" "$2" "$3" 2>&1) || '
                    '{ again=$(ejabberdctl change_password "$1" "$2" "$3" 2>&1) || '
                    '{ echo "register: $out; change_password: $again"; exit 1; }; }',
        "register", user, domain, password],
    # The node answers c2s before its vhost's accounts work: this lists them once they do.
    admin_ready_command=lambda domain: ["ejabberdctl", "registered_users", domain],
    # ejabberd_s2s_in: "Accepted inbound s2s <Mech> authentication <remote> -> <local>"
    inbound_auth_patterns={
        CERTIFICATE: [r"Accepted inbound s2s EXTERNAL authentication (?P<peer>\S+) -> (?P<local>\S+)"],
        DIALBACK: [r"Accepted inbound s2s dialback authentication (?P<peer>\S+) -> (?P<local>\S+)"],
    },
    s2s_auth=(CERTIFICATE, DIALBACK),
    close_s2s_command=("ejabberdctl", "stop_s2s_connections"),
    features=frozenset({"muc", "mam", "carbons", "stream-management", "register", "ping", "disco",
                        "direct-tls"}),
)
