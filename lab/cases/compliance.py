"""XSF Compliance Suites (XEP-0479) by behaviour: X cases, ID X + the XEP's number (XEP-0054
is X0054). Each checks what arrived, never what a server advertises. Where another user is
involved it runs per ordered pair: A's user acts on A's server, B's user on B observes, so
the feature is needed at both ends (``needs_both``: B's user's server must route it, A's
serves it). Their exchanges are in lab/runners/slixmpp_compliance.py; docs/compliance.md
maps the suites' requirements to them and says what is not done yet."""

from __future__ import annotations

from lab.cases import Case

CASES = [
    Case("X0054", "vcard-temp across federation", "s2s",
         "A's user sets a vCard (FN with a fresh token); B's user's vcard-temp get of A's user's bare JID returns "
         "that FN",
         "XEP-0054 3.1, 3.2; XEP-0479 IM", needs="vcard", needs_both=True),
    Case("X0191", "blocking a remote user", "s2s",
         "A's user blocks B's user: B's message to A's user does not arrive and B gets <service-unavailable/> "
         "back; after A's user unblocks, B's next message arrives",
         "XEP-0191 3.3, 3.4, 3.5; XEP-0479 IM Advanced", needs="blocking", needs_both=True),
    Case("X0163", "PEP event to a remote contact asking through caps", "s2s",
         "A's user and B's user subscribe both ways; B's user sends presence with caps (a ver of this run) and "
         "answers A's server's disco#info with tune+notify; A's user publishes a user tune and B's user gets the "
         "event; B's alice, no contact of A's user, sends A's user directed presence with the same +notify and "
         "gets no event",
         "XEP-0163 4, 4.3; XEP-0115 5, 6.3; XEP-0118; XEP-0479 Core Advanced", needs="pep", needs_both=True),
    Case("X0045", "MUC: direct invitation, join, subject, messages, room MAM, self-ping", "s2s",
         "A's user makes a room on A's MUC service and invites B's user by a XEP-0249 message; B's user gets it "
         "and joins (status 110); the subject and a message from each reach both occupants from their occupant "
         "JIDs; B's user's MAM query to the room returns both messages; B's user's self-ping of its occupant JID "
         "answers as joined",
         "XEP-0045 7.2, 7.4, 8.1; XEP-0249 2; XEP-0313 6 (MUC); XEP-0410 4; XEP-0479 IM, IM Advanced",
         needs="muc", needs_both=True, timeout=25.0),
    Case("X0049", "private XML storage (XEP-0048 bookmarks in it)", "s2s",
         "A's user stores XEP-0048 bookmarks with jabber:iq:private; a second session of A's user gets them "
         "back; B's user asking for A's user's private XML gets an error without the data",
         "XEP-0049 2, 3; XEP-0048 3.2; XEP-0479 IM Advanced", needs="private", needs_both=True),
    Case("X0223", "private PEP: XEP-0402 bookmarks", "s2s",
         "A's user publishes a XEP-0402 bookmark with publish-options (persistent, whitelist); a second session "
         "of A's user gets it from the node; B's user asking for the node's items gets an error without it",
         "XEP-0223 4, 5; XEP-0402 3.3; XEP-0060 7.1.5; XEP-0479 IM Advanced", needs="pep", needs_both=True),
    Case("X0157", "contact addresses in disco#info", "c2s",
         "the server's disco#info holds a http://jabber.org/network/serverinfo form whose admin-addresses has "
         "xmpp:admin@<domain>, as the lab configures it",
         "XEP-0157 3; XEP-0128; XEP-0479 (should support)", needs="contact-addresses"),
]
