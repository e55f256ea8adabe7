"""slixmpp (Debian python3-slixmpp 1.8.3, 1.10.0, 1.17.0): the deep runner, every case."""

from lab.stacks import ClientStack

STACK = ClientStack(
    name="slixmpp",
    package="python3-slixmpp",  # its version names the stack's in the reports
    runner="slixmpp_runner.py",
    support=("probe.py", "slixmpp_client.py", "slixmpp_expect.py", "slixmpp_compliance.py",
             "slixmpp_turn.py", "slixmpp_jingle.py"),
    description="asyncio XMPP library; also checks readiness and federation for `lab up`",
    own_accounts=True,
    user_cases=True,
)
