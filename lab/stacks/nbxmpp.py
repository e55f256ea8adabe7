"""nbxmpp (Debian python3-nbxmpp 4.2.2, Gajim's XMPP library on GLib/Gio)."""

from lab.stacks import ClientStack

STACK = ClientStack(
    name="nbxmpp",
    package="python3-nbxmpp",
    runner="nbxmpp_runner.py",
    description=(
        "Gajim's library, driven through its API: STARTTLS only, on the addresses of SRV _xmpp-client "
        "(Gio's resolver), trusting only the lab CA (the connection's TLS database is replaced by one "
        "holding the CA file). Each (server, target) group runs in a child process of its own (one GLib "
        "main loop each). Messages of C5/S1 go to the recipient's full JID (presence priority -1). "
        "Found: glib-networking resumes a TLS session it cached in the same process without checking the "
        "server against a changed trust database (seen with jabberd2, which offers resumption), so C1's "
        "wrong-CA control runs in a fresh process."
    ),
)
