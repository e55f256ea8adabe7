"""The lab DNS server, queried over real UDP/TCP on loopback with dnspython."""

import json
import socket
import sys
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from lab import labdns
from lab.cases.dns import s10_records, s9_records
from lab.zone import build_zone


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(default_lab, tmp_path):
    zone_file = tmp_path / "zone.json"
    zone_file.write_text(json.dumps(build_zone(default_lab)))
    port = free_port()
    servers = labdns.serve(labdns.ReloadingResolver(str(zone_file)), address="127.0.0.1", port=port)
    yield port, zone_file
    for s in servers:
        s.stop()


def ask(port, name, rdtype, tcp=False):
    query = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, "127.0.0.1", port=port, timeout=3)


def test_srv_records_point_at_the_server(server, default_lab):
    port, _ = server
    prosody = default_lab.server("prosody")
    answer = ask(port, "_xmpp-server._tcp.prosody.test", "SRV")
    (record,) = [r for rrset in answer.answer for r in rrset]
    assert (record.port, str(record.target)) == (5269, "prosody.test.")
    answer = ask(port, "_xmpp-client._tcp.prosody.test", "SRV", tcp=True)
    assert [r.port for rrset in answer.answer for r in rrset] == [5222]
    answer = ask(port, "prosody.test", "A")
    assert [r.address for rrset in answer.answer for r in rrset] == [prosody.address]


def test_unknown_names_are_nxdomain_with_soa(server):
    port, _ = server
    answer = ask(port, "nobody.test", "A")
    assert answer.rcode() == dns.rcode.NXDOMAIN
    assert answer.authority and answer.authority[0].rdtype == dns.rdatatype.SOA


def test_existing_name_without_that_type_is_nodata(server):
    port, _ = server
    answer = ask(port, "prosody.test", "TXT")
    assert answer.rcode() == dns.rcode.NOERROR and not answer.answer


def test_names_outside_the_lab_are_refused(server):
    port, _ = server
    assert ask(port, "example.com", "A").rcode() == dns.rcode.REFUSED


def test_zone_changes_are_served_without_restart(server):
    port, zone_file = server
    zone = json.loads(zone_file.read_text())
    zone["records"].append({"name": "extra.test", "type": "A", "address": "10.0.0.9"})
    zone_file.write_text(json.dumps(zone))
    answer = ask(port, "extra.test", "A")
    assert [r.address for rrset in answer.answer for r in rrset] == ["10.0.0.9"]


def records(zone, name, rtype):
    return [r for r in zone["records"] if r["name"] == name and r["type"] == rtype]


def test_s9_variant_sends_every_srv_to_a_distinct_target_host(default_lab):
    zone = build_zone(default_lab, s9_records)
    assert not records(zone, "prosody.test", "A")
    assert records(zone, "xmpp.prosody.test", "A")[0]["address"] == default_lab.server("prosody").address
    assert {r["target"] for r in zone["records"] if r["type"] == "SRV" and r["name"].endswith(".prosody.test")} == {
        "xmpp.prosody.test", "xmpp.conference.prosody.test", "xmpp.upload.prosody.test", "xmpp.component.prosody.test"}


def test_s10_variant_has_no_server_srv_records(default_lab):
    zone = build_zone(default_lab, s10_records)
    assert not [r for r in zone["records"] if r["name"].startswith("_xmpp-server.")]
    assert records(zone, "ejabberd.test", "A") and records(zone, "_xmpp-client._tcp.ejabberd.test", "SRV")


# --- the command-line runners' SRV lookup (cli_support.srv_lookup, on dnslib) ----------------------

def test_the_runners_srv_lookup_reads_the_lab_dns_answers(server):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lab" / "runners"))
    import cli_support
    port, _ = server
    assert cli_support.srv_lookup("_xmpp-client._tcp.prosody.test", server="127.0.0.1", port=port) == [
        (0, 5, 5222, "prosody.test")]
    assert cli_support.srv_lookup("_xmpps-client._tcp.ejabberd.test", server="127.0.0.1", port=port) == [
        (10, 5, 5223, "ejabberd.test")]
    # NXDOMAIN and REFUSED answers are no records, not a crash
    assert cli_support.srv_lookup("_xmpp-client._tcp.nobody.test", server="127.0.0.1", port=port) == []
    assert cli_support.srv_lookup("_xmpp-client._tcp.example.com", server="127.0.0.1", port=port) == []
