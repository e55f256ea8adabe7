"""Server to server: S1-S7, per ordered server pair A -> B (A's user, B's user). Only the
runners see them: no lab-side judge."""

from __future__ import annotations

from lab.cases import Case

S1 = Case("S1", "message both ways", "s2s",
          "A's user's chat message reaches B's user, and B's answer reaches A's user, each with from, id, "
          "type and body as sent",
          "RFC 6120 8.1, 10.4; RFC 6121 5.2")

CASES = [
    S1,
    Case("S2", "presence subscription both ways", "s2s",
         "each user subscribes to the other: subscribe and subscribed arrive, both rosters are pushed up to "
         "subscription='both', and available presence follows the approval",
         "RFC 6121 3.1, 4.2"),
    Case("S3", "stanza to an unknown remote user", "s2s",
         "a message to a user B does not have comes back as an error with <service-unavailable/> (not "
         "item-not-found, which would tell that the account does not exist)",
         "RFC 6121 8.5.2.2.1, 8.5.3.2.1"),
    Case("S4", "ping the remote domain", "s2s",
         "an XEP-0199 ping from A's user to B's domain gets an IQ result",
         "XEP-0199 4.3", needs="ping"),
    Case("S5", "disco#info of the remote domain", "s2s",
         "A's user's disco#info of B's domain gets B's identity and features",
         "XEP-0030 3.1", needs="disco"),
    Case("S6", "join a MUC on the remote server", "s2s",
         "A's user joins a new room on B's MUC service (self-presence with status 110 and 201), configures "
         "it as an instant room, and its groupchat message is reflected from its occupant JID, body intact",
         "XEP-0045 7.2, 10.1.2, 7.4", needs="muc"),
    Case("S7", "remote message lands in MAM", "s2s",
         "a message from A's user to B's user is archived by B: B's user's MAM query returns it with its "
         "stanza-id",
         "XEP-0313 4; XEP-0359", needs="mam"),
]
