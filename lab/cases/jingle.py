"""Jingle file transfer between users on different servers: J1-J3, J5, J6, per ordered server
pair A -> B, A's user the initiator, B's user the responder. The stanza-level initiator and
responder are in lab/runners/slixmpp_jingle.py (slixmpp has no Jingle sessions: the lab
builds them from XEP-0166, 0234, 0260, 0261 and 0353 stanzas). The stack in a result's ID is
the pair of stacks: ``J1/slixmpp/prosody->ejabberd`` is slixmpp at both ends; docs/jingle.md
says how pairs of two stacks are named. Every check is of what arrived: the file's bytes and
their XEP-0300 hash on receipt, the stanzas each side got."""

from __future__ import annotations

from lab.cases import Case

CASES = [
    Case("J1", "Jingle file transfer over IBB", "s2s",
         "A's user offers a file (XEP-0234, with its sha-256 hash, XEP-0300) over in-band bytestreams "
         "(XEP-0261); B's user accepts, receives every block, and the bytes match the offered size and hash; "
         "B's user ends the session with <success/>",
         "XEP-0166 6, 7.2; XEP-0234 6, 8; XEP-0261 2; XEP-0047 2, 3; XEP-0300 3"),
    Case("J2", "Jingle file transfer over SOCKS5 through A's proxy65", "s2s",
         "A's user finds its server's SOCKS5 proxy (disco#items, disco#info, bytestreams query) and offers it as "
         "its candidate (XEP-0260); B's user connects to it and says candidate-used, A's user activates the "
         "stream at the proxy and the file arrives through it, size and sha-256 as offered; the detail names "
         "the streamhost used and why",
         "XEP-0260 2; XEP-0065 4, 5.3, 6.3; XEP-0234 6; XEP-0300 3", needs="proxy65", needs_sender=True),
    Case("J3", "Jingle session declined", "s2s",
         "A's user offers a file; B's user acknowledges the session-initiate and declines: A's user gets "
         "session-terminate for the session with <reason><decline/></reason>",
         "XEP-0166 6.3, 7.4 (decline); XEP-0234 6"),
    Case("J5", "Jingle Message Initiation, then the session", "s2s",
         "A's user sends a XEP-0353 propose to B's user's bare JID; B's user's available resource gets it and "
         "answers proceed; A's user then opens the Jingle session with the propose's id to the resource that "
         "proceeded, and the file arrives over IBB, size and sha-256 as offered",
         "XEP-0353 3.1, 3.2; XEP-0166 6; XEP-0234 6; XEP-0261 2"),
    Case("J6", "Jingle transport fallback from SOCKS5 to IBB", "s2s",
         "A's user offers only SOCKS5 candidates nobody can reach (A's proxy at a port where nothing listens); "
         "B's user says candidate-error, A's user sends transport-replace to IBB; B's user answers with "
         "transport-accept (its reaction is recorded: transport-accept, a wrong session-accept, or none) and "
         "the file arrives over IBB, size and sha-256 as offered",
         "XEP-0260 2.4, 2.5; XEP-0166 7.2.15, 7.2.16; XEP-0261 2", needs="proxy65", needs_sender=True),
]
