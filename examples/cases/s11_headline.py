"""A case of your own: a headline message reaches a user on another server.

Put this file in a `cases/` folder beside your lab.yml: `lab cases` lists it and `lab test`
runs it for every ordered server pair, with the slixmpp client, beside the catalogue.
"""

from harness import CaseFailed, token  # the shared harness: there in the client container, and here

ID = "S11"
TITLE = "headline message to a remote user"
SCOPE = "s2s"  # c2s: per server; s2s: per ordered pair (run.server -> run.target); c2s+s2s: both
CRITERION = "a message of type headline from A's user reaches B's user with its type and body as sent"
SPEC = "RFC 6121 5.2.2"
NEEDS = None  # or a feature the target server must declare (see `lab kinds`)


async def run(run):
    """The exchange, on the slixmpp runner's CaseRun (lab/runners/slixmpp_expect.py): return
    the evidence of a pass, raise CaseFailed for a fail."""
    alice = await run.login(run.server, "alice")
    bob = await run.login(run.target, "bob")
    body = f"headline {token()}"
    run.send(alice, f"<message to='{bob.boundjid.bare}' type='headline'><body>{body}</body></message>")
    got = await run.expect(bob, lambda e: e.tag == "{jabber:client}message" and body in (
        e.findtext("{jabber:client}body") or ""), f"the headline at {bob.boundjid.bare}")
    if got.get("type") != "headline":
        raise CaseFailed(f"arrived as type {got.get('type')!r}, not headline")
    return f"{alice.boundjid.full} -> {bob.boundjid.bare}: headline arrived from {got.get('from')}, body intact"
