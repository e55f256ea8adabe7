"""xmppc (Debian xmppc 0.1.0, a command-line client on libstrophe)."""

from lab.stacks import ClientStack

STACK = ClientStack(
    name="xmppc",
    package="xmppc",
    runner="xmppc_runner.py",
    support=("cli_support.py",),
    concurrency_scale=4,
    description=(
        "libstrophe through the xmppc CLI. Trusts only the lab CA (SSL_CERT_FILE=CA, SSL_CERT_DIR unset "
        "for OpenSSL). Exit code is always 0: verdicts come from its -vvv log (libstrophe's XML trace). "
        "SRV use is observed with strace (DNS query for _xmpp-client, connect to the SRV target). Sending "
        "('message chat') waits 10 s before it sends, so C5 takes ~10 s and S1 ~20 s. Receiving is not "
        "tested: the monitor mode never closes its stream (no signal handling) and, with stream "
        "management, leaves a resumable session with available presence on Prosody/ejabberd for 5-10 "
        "minutes; the runner receives with its own stdlib client at a full JID instead. Even 'roster "
        "list' closes the socket without </stream:stream>, leaving a presence-less resumable session."
    ),
)
