"""libervia (Debian libervia-backend + libervia-cli, trixie: 0.9.0~hg4352): a Jingle stack."""

from lab.stacks import ClientStack

STACK = ClientStack(
    name="libervia",
    package="libervia-backend",
    runner="libervia_runner.py",
    releases=("trixie",),
    release="trixie",
    ipv4_only=True,
    support=("slixmpp_client.py", "slixmpp_expect.py", "slixmpp_jingle.py"),  # the slixmpp end of its pairs
    pairs_with=("slixmpp",),
    by_default=False,  # one backend per case: about a minute a case (docs/jingle.md)
    description=(
        "Jingle file transfer by a second implementation: one libervia backend per case (a fresh HOME, a "
        "private D-Bus bus; the pb bridge of this build is broken), driven by libervia-cli; A's profile sends "
        "with `file send`, B's profile takes it with `file receive` (J3: the runner refuses its file dialog over the "
        "bridge), and the runner checks what arrived; J2, J5 and J6 not at every end (its runner's NOT_RUN). "
        "IPv4 only: its Twisted resolver looks up A records alone."
    ),
)
