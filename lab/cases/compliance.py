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
         "XEP-0191 3.3, 3.4; XEP-0479 IM Advanced", needs="blocking", needs_both=True),
    Case("X0163", "PEP event to a remote contact asking through caps", "s2s",
         "A's user and B's user subscribe both ways; B's user sends presence with caps (a ver of this run) and "
         "answers A's server's disco#info with tune+notify; A's user publishes a user tune and B's user gets the "
         "event; B's alice, no contact of A's user, sends A's user directed presence with the same +notify and "
         "gets no event",
         "XEP-0163 4, 4.3; XEP-0115 5, 6.3; XEP-0118; XEP-0479 Core Advanced", needs="pep", needs_both=True),
    Case("X0045", "MUC: direct invitation, join, subject, messages, self-ping", "s2s",
         "A's user makes a room on A's MUC service and invites B's user by a XEP-0249 message; B's user gets it "
         "and joins (status 110); the subject and a message from each reach both occupants from their occupant "
         "JIDs; B's user's self-ping of its occupant JID answers as joined",
         "XEP-0045 7.2, 7.4, 8.1; XEP-0249 2; XEP-0410 4; XEP-0479 IM, IM Advanced",
         needs="muc", needs_both=True, timeout=25.0),
    Case("X0313M", "MUC: the room's archive asked from another server", "s2s",
         "as X0045 up to the messages; then B's user's MAM query to the room on A returns both messages",
         "XEP-0313 6 (MUC); XEP-0045 7.4; XEP-0479 IM Advanced", needs="muc-mam", needs_both=True, timeout=25.0),
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
    Case("X0363", "HTTP upload, fetched from another server", "s2s",
         "A's user gets a slot from A's upload service, PUTs a file over HTTPS (HTTP 200/201); the URL reaches B's "
         "user in a message (XEP-0066 oob); B's user GETs it over HTTPS, the name looked up through the lab DNS and "
         "the certificate checked against the lab CA, and gets the same bytes (SHA-256)",
         "XEP-0363 4, 5; XEP-0066; XEP-0479 IM", needs="upload", needs_both=True),
    Case("X0114", "an external component reached from another server", "s2s",
         "the lab's component (slixmpp's ComponentXMPP) connects to A's server as component.<A's domain> with the "
         "lab's secret and is accepted (handshake); B's user pings it across federation and gets a result, and "
         "gets its echo of a message",
         "XEP-0114 3; XEP-0199; XEP-0479 Core", needs="component", needs_both=True),
    Case("X0398", "PEP avatar seen as a vcard-temp photo hash by a remote contact", "s2s",
         "A's user and B's user subscribe both ways; A's user publishes an avatar (XEP-0084 data, then metadata, "
         "a PNG of this run) and sends presence without any photo; that presence reaches B's user with a "
         "vcard-temp:x:update photo equal to the image's SHA-1, and B's user's vcard-temp get of A's user has a "
         "PHOTO of the same image",
         "XEP-0398 3, 4; XEP-0153 3.1; XEP-0084 4; XEP-0479 IM Advanced", needs="avatar-conversion",
         needs_both=True),
    # The event's room (interop@muc.xmpp.org at the event): run on each server with a MUC
    # service, so the c2s matrix shows each as the room's host; every server's users take part
    # (every_server: a failed room carries what the servers logged about each other).
    Case("ROOM", "the event's room: a user of every server in one room", "c2s",
         "a room on this server's MUC service (on the server of lab.yml room: the event's room lab up keeps open, "
         "interop@conference.<domain>, which must still be there; elsewhere a new one) is joined by a user of every "
         "server in the lab (status 110 each); a "
         "message from each occupant reaches every occupant from its occupant JID; a user of another server "
         "joining later gets every message as history (delayed)",
         "XEP-0045 7.2, 7.2.15, 7.4; issue 18 item 3", needs="muc", timeout=40.0, every_server=True),
]


# --- the compliance table: XEP-0479's levels, per server ------------------------------------------

# Each level's requirements (server side), each checked by these cases (none: not checked yet;
# docs/compliance.md says why). A level includes the ones it builds on (LEVEL_BASE).
LEVELS = {
    "Core": {"RFC 6120": ["C1", "C2", "C3", "S1"], "RFC 7590": ["C1", "S8"], "XEP-0030": ["C6", "S5"],
             "XEP-0114": ["X0114"]},
    "Core Advanced": {"XEP-0368": ["C12"], "XEP-0115 + XEP-0163": ["X0163"]},
    "IM": {"RFC 6121": ["C4", "C5", "S2", "S3"], "XEP-0054": ["X0054"], "XEP-0280": ["C9"],
           "XEP-0045 + XEP-0249": ["X0045", "S6"], "XEP-0363": ["X0363"]},
    "IM Advanced": {"XEP-0398 + XEP-0153": ["X0398"], "XEP-0191": ["X0191"],
                    "XEP-0048 / XEP-0402 / XEP-0410": ["X0049", "X0223", "X0045"], "XEP-0313 (MUC)": ["X0313M"],
                    "XEP-0223": ["X0223"], "XEP-0049": ["X0049"], "XEP-0198": ["C8"], "XEP-0313": ["C10", "S7"]},
    # J4 (lab/cases/turn.py) is the XEP-0215 check: one case, one unit, counted here too.
    "A/V Calling": {"XEP-0215": ["J4"]},
}
LEVEL_BASE = {"Core": [], "Core Advanced": ["Core"], "IM": ["Core"], "IM Advanced": ["IM", "Core Advanced"],
              "A/V Calling": ["Core"]}
# Worst first: a requirement's verdict is the worst of its cases'.
VERDICTS = ("fail", "error", "not checked", "not supported", "flaky", "pass")
# A case's own, over its results: passing with one peer and not supported with another is a pass.
CASE_VERDICTS = ("fail", "error", "flaky", "pass", "not supported")


def compliance_table(results, servers: list[str]) -> dict:
    """Per server: each requirement's verdict (the worst of its cases', over every stack and,
    for s2s cases, every peer the server sent to: its own user acted), the peers it passed
    with, the results that failed; each level met only if every requirement in it and in
    the levels it builds on passes."""
    def case_verdict(server: str, case: str) -> tuple[str, set, list]:
        mine = [r for r in results if r.case == case and r.server == server]
        statuses = {r.status for r in mine}
        failed = [r.id for r in mine if r.status in ("fail", "error")]
        peers = {r.target for r in mine if r.target and r.status == "pass"}
        for verdict in CASE_VERDICTS:
            if verdict in statuses:
                return verdict, peers, failed
        return "not checked", peers, failed

    table = {}
    for server in servers:
        requirements = {}
        for level, wanted in LEVELS.items():
            for requirement, cases in wanted.items():
                verdicts = [case_verdict(server, case) for case in cases]
                worst = min((v for v, _, _ in verdicts), key=VERDICTS.index, default="not checked")
                requirements[requirement] = {
                    "level": level, "verdict": worst, "cases": cases,
                    "peers": sorted(set().union(*(p for _, p, _ in verdicts))) if verdicts else [],
                    "failed": [i for _, _, failed in verdicts for i in failed]}

        def missing(level: str) -> list[str]:
            own = [r for r, v in requirements.items() if v["level"] == level and v["verdict"] != "pass"]
            return list(dict.fromkeys(own + [r for base in LEVEL_BASE[level] for r in missing(base)]))
        table[server] = {"levels": {level: {"met": not missing(level), "missing": missing(level)} for level in LEVELS},
                         "requirements": requirements}
    return table


def table_rows(table: dict) -> list[list[str]]:
    """The table for the terminal: a row per requirement (and per level), a column per server."""
    servers = list(table)
    rows = [["requirement", *servers]]
    for level in LEVELS:
        rows.append([f"{level} level", *("met" if table[s]["levels"][level]["met"] else
                                         f"not met ({len(table[s]['levels'][level]['missing'])} missing)"
                                         for s in servers)])
        for requirement in LEVELS[level]:
            cells = []
            for server in servers:
                entry = table[server]["requirements"][requirement]
                peers = f" with {', '.join(entry['peers'])}" if entry["peers"] else ""
                failed = f": {', '.join(entry['failed'][:2])}{' ...' if len(entry['failed']) > 2 else ''}"
                cells.append(entry["verdict"] + (peers if entry["verdict"] == "pass" else
                                                 failed if entry["failed"] else ""))
            rows.append([f"  {requirement}", *cells])
    return rows
