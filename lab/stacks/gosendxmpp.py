"""go-sendxmpp (Debian go-sendxmpp 0.5.6+git20221206 of bookworm, on the go-xmpp library)."""

from lab.stacks import ClientStack

STACK = ClientStack(
    name="gosendxmpp",
    package="go-sendxmpp",
    runner="gosendxmpp_runner.py",
    support=("cli_support.py",),
    # The runner speaks bookworm's options: its listener gets a resource of its own (-r)
    # and is messaged at that full JID. trixie's 0.14.1 has no resource option (sid's
    # 0.17.1 gave -r to a recipients file), so the runner is not ported there yet.
    releases=("bookworm",),
    description=(
        "go-xmpp through the go-sendxmpp CLI: sender, and listener (-l) as the receiving end. Trusts only "
        "the lab CA (SSL_CERT_FILE/SSL_CERT_DIR for Go's crypto/x509). It looks up both _xmpp-client and "
        "_xmpps-client and picks by priority/weight, with no option to choose (the lab serves _xmpps-client "
        "at a lower preference, so STARTTLS comes first; with equal records it is chosen at random); C1 "
        "retries (strace shows the record used) until a STARTTLS connection. Logs in with SASL PLAIN even where SCRAM is offered. A wrong password is "
        "tried on every SRV record (2-3 refusals) before exit 1 'auth failure'. Sent message ids are not "
        "printed, so S1 checks from/body/type, not the id."
    ),
)
