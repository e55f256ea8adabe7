"""TURN through XEP-0215 (issue 19's J4): the server hands out credentials for the lab's TURN
service (lab/turn.py), and for its own where it has one (turn-server: ejabberd_stun), and they
really allocate a relay there. Per server (c2s): what it checks is between a user and its own
server, and the TURN services. The exchange is in
lab/runners/slixmpp_turn.py; the XEP-0479 table counts it as XEP-0215 (A/V Calling)."""

from __future__ import annotations

from lab.cases import Case

J4 = Case(
    "J4", "TURN credentials from external service discovery allocate a relay", "c2s",
    "A's user's XEP-0215 query to its server lists a TURN service (udp or tcp) with credentials (in the list or "
    "from a credentials request), and the server's own TURN service too where its kind declares turn-server; "
    "with each, the lab's TURN client gets two relay allocations on that service and relays one message each "
    "way between them; with the password changed by one character it gets an answer and no allocation. A TURN "
    "service that never answers is an error, not a verdict on the server",
    "XEP-0215 3.2, 3.3; RFC 8656 7; draft-uberti-behave-turn-rest 2.2; XEP-0479 A/V Calling",
    needs="external-services", timeout=25.0)

CASES = [J4]
