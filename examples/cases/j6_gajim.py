"""A known Jingle breakage reproduced: Gajim answered an IBB fallback (transport-replace)
with session-accept instead of transport-accept. Here the lab's slixmpp responder plays
that answer in J6's exchange; the initiator refuses it as out of order and the file goes
over IBB anyway, so the result is a fail that shows the reaction and whether the file
still arrived (evidence "reaction").

Put this file in a `cases/` folder beside your lab.yml; `lab test --only J6G` runs it for
every ordered server pair. The other reactions: on_fallback="ignore" (Dino: acknowledged,
never answered), "transport-accept" (the XEPs' answer).
"""

ID = "J6G"
TITLE = "IBB fallback answered with session-accept (Gajim's bug)"
SCOPE = "s2s"
CRITERION = ("as J6, the lab's responder answering transport-replace with session-accept: a fail that records "
             "the reaction and whether the file still arrived over IBB")
SPEC = "XEP-0166 7.2.15; XEP-0260 2.5"
NEEDS = "proxy65"  # (a case of your own checks it on the target server; J6 itself on the sender)


async def run(run):
    import slixmpp_jingle as jingle  # the lab's Jingle ends, beside the runner in the client container
    return await jingle.j6_fallback(run, jingle.Behaviour(on_fallback="session-accept"))
