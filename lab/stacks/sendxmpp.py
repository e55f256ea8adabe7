"""sendxmpp (Debian sendxmpp 1.24, Perl Net::XMPP / XML::Stream)."""

from lab.stacks import ClientStack

STACK = ClientStack(
    name="sendxmpp",
    package="sendxmpp",
    runner="sendxmpp_runner.py",
    support=("cli_support.py",),
    description=(
        "Perl Net::XMPP through sendxmpp: send only (the runner's stdlib client receives, at a full JID). "
        "STARTTLS (-t) trusting only the lab CA (-a). No C1: XML::Stream asks for SRV _xmpp-client only "
        "when -u is 'user@domain' without -j, and then Net::XMPP sends 'user@domain' as the SASL PLAIN "
        "authcid (and 'user@domain@domain' as authzid), which the servers refuse (malformed-request); "
        "with '-u user -j domain' (what the runner uses) it connects to the domain's A record on 5222 "
        "without SRV. Messages carry no id. Wrong password: exit 1, "
        "\"Error 'AuthSend': error: not-authorized\"."
    ),
)
