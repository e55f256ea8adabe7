"""Dual-stack labs (network: {ipv6: true}) and the IPv6-only fault F6, without Docker: the
model's addresses, the zone's AAAA records, the plan, and F6's verdict on the lab DNS query
log of a real run (tests/fixtures/ipv6/capture.sh)."""

import dataclasses
import ipaddress
import json
from pathlib import Path

import dns.message
import dns.query
import pytest

from lab import labdns, model
from lab.cases import builtin, by_id, selected
from lab.cases.ipv6 import ipv6_records, judge_f6
from lab.evidence import dns_queries
from lab.interop import plan
from lab.render import render_server
from lab.results import ERROR, PASS, CaseResult
from lab.stacks import stacks
from lab.zone import build_zone

FIXTURES = Path(__file__).parent / "fixtures" / "ipv6"
LAB = ("name: dualstack\nclients: [slixmpp]\nnetwork: {ipv6: true}\nservers:\n"
       "  prosody: {kind: prosody, domain: prosody.test}\n  ejabberd: {kind: ejabberd, domain: ejabberd.test}\n"
       "  jabberd2: {kind: jabberd2, domain: jabberd2.test}\n")


@pytest.fixture
def ipv4_lab(tmp_path):
    (tmp_path / "v4").mkdir()
    (tmp_path / "v4" / "lab.yml").write_text(LAB.replace("network: {ipv6: true}", "network: {ipv6: false}"))
    return model.load(tmp_path / "v4" / "lab.yml")


@pytest.fixture
def lab(tmp_path):
    (tmp_path / "lab.yml").write_text(LAB)  # the capture's lab: same name, same addresses
    return model.load(tmp_path / "lab.yml")


def test_a_dual_stack_lab_has_a_unique_local_64_from_its_name(lab, default_lab, ipv4_lab):
    assert lab.subnet6 == model.default_subnet6("dualstack") and lab.subnet6.prefixlen == 64
    assert lab.subnet6.subnet_of(ipaddress.ip_network("fc00::/7"))
    assert model.default_subnet6("other") != lab.subnet6
    assert all(ipaddress.ip_address(s.address6) in lab.subnet6 for s in lab.servers)
    assert lab.dns_address6 == str(lab.subnet6[2]) and set(lab.client_addresses6) == {"slixmpp"}
    assert not default_lab.ipv6  # not the default yet (README: IPv6)
    assert not ipv4_lab.ipv6 and ipv4_lab.servers[0].address6 is None and ipv4_lab.dns_address6 is None


def test_the_zone_has_aaaa_records_and_f6_serves_nothing_else(lab, ipv4_lab):
    records = build_zone(lab)["records"]
    prosody = lab.server("prosody")
    assert {"name": "prosody.test", "type": "AAAA", "address": prosody.address6} in records
    assert {"name": "prosody.test", "type": "A", "address": prosody.address} in records
    only6 = build_zone(lab, ipv6_records)["records"]
    assert not [r for r in only6 if r["type"] == "A"] and [r for r in only6 if r["type"] == "AAAA"]
    assert not [r for r in build_zone(ipv4_lab)["records"] if r["type"] == "AAAA"]


def test_the_lab_dns_answers_aaaa_over_ipv6(lab):
    try:
        servers = labdns.serve(labdns.ZoneResolver(build_zone(lab)), "::1", 0)
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    try:
        port = servers[0].server.server_address[1]
        reply = dns.query.udp(dns.message.make_query("jabberd2.test", "AAAA"), "::1", port=port, timeout=2)
        assert [str(rr) for rrset in reply.answer for rr in rrset] == [lab.server("jabberd2").address6]
    finally:
        for server in servers:
            server.stop()


def test_servers_listen_on_both_families_on_a_dual_stack_lab(lab, ipv4_lab):
    configs = {s.name: "\n".join(render_server(lab, s).values()) for s in lab.servers}
    assert 'ip: "::"' in configs["ejabberd"] and 'ip: "0.0.0.0"' not in configs["ejabberd"]
    assert "<ip>::</ip>" in configs["jabberd2"] and "<resolve-ipv6/>" in configs["jabberd2"]
    plain = "\n".join(render_server(ipv4_lab, ipv4_lab.server("jabberd2")).values())
    assert "<resolve-ipv6/>" not in plain and "<ip>0.0.0.0</ip>" in plain  # IPv4 labs (golden files too)


def test_f6_is_asked_for_and_runs_per_server_and_per_pair(lab):
    assert "F6" not in [c.id for c in selected(builtin(), None)]
    assert "F6" in [c.id for c in selected(builtin(), None, faults=True)] and [c.id for c in selected(builtin(), ["f6"])] == ["F6"]
    servers = list(lab.servers)
    pairs = [(a, b) for a in servers for b in servers if a is not b]
    planned, skipped = plan(stacks()["slixmpp"], [by_id(builtin())["F6"]], servers, pairs)
    assert len(planned) == 3 + 6 and not skipped
    assert plan(stacks()["xmppc"], [by_id(builtin())["F6"]], servers, pairs) == ([], [])  # other stacks stay out


CAPTURED = {r["id"]: r for r in json.loads((FIXTURES / "results.json").read_text())["results"]}
QUERIES = dns_queries((FIXTURES / "dns.log").read_text())


def exchange(result_id: str) -> CaseResult:
    r = CAPTURED[result_id]
    return CaseResult("F6", r["title"], "slixmpp", r["server"], r["target"], PASS, "exchanged",
                      started=r["started"], ended=r["ended"])


def test_f6_passes_on_the_aaaa_lookup_the_dns_answered(lab):
    sender, receiver = lab.server("jabberd2"), lab.server("prosody")
    verdict = judge_f6(exchange("F6/slixmpp/jabberd2->prosody"), "jabberd2", sender.addresses, receiver,
                         QUERIES, CAPTURED["F6/slixmpp/jabberd2->prosody"]["started"] - 3)
    assert verdict.status == PASS
    assert verdict.detail.endswith(f"jabberd2 asked prosody.test AAAA -> {receiver.address6} (no A records served)")


def test_f6_without_the_lookup_in_the_case_is_an_error(lab):
    result = exchange("F6/slixmpp/jabberd2->prosody")
    late = dataclasses.replace(result, started=result.ended + 600, ended=result.ended + 601)
    verdict = judge_f6(late, "jabberd2", lab.server("jabberd2").addresses, lab.server("prosody"), QUERIES,
                         late.started)
    assert verdict.status == ERROR and "saw no AAAA query from jabberd2 for prosody.test" in verdict.detail


def test_f6_c2s_checks_the_client_containers_lookup(lab):
    client = [lab.client_addresses["slixmpp"], lab.client_addresses6["slixmpp"]]
    result = exchange("F6/slixmpp/ejabberd")
    verdict = judge_f6(result, "client-slixmpp", client, lab.server("ejabberd"), QUERIES, result.started - 3)
    assert verdict.status == PASS
    other = judge_f6(result, "client-slixmpp", ["10.0.0.1"], lab.server("ejabberd"), QUERIES, result.started - 3)
    assert other.status == ERROR


def test_f6_says_what_was_observed_and_expected_whatever_the_status(lab):
    """Every fault result has observed and expected (the reports' fault matrices show them)."""
    result = exchange("F6/slixmpp/jabberd2->prosody")
    failed = dataclasses.replace(result, status="fail", detail="S1 A->B: not delivered within 20s")
    verdict = judge_f6(failed, "jabberd2", lab.server("jabberd2").addresses, lab.server("prosody"), QUERIES, 0)
    assert verdict.status == "fail"
    assert verdict.evidence["observed"] == "did not work: S1 A->B: not delivered within 20s"
    assert verdict.evidence["expected"].startswith("C1 and S1 work over IPv6")
    passed = judge_f6(result, "jabberd2", lab.server("jabberd2").addresses, lab.server("prosody"), QUERIES,
                      CAPTURED["F6/slixmpp/jabberd2->prosody"]["started"] - 3)
    assert passed.evidence["observed"] == "worked over IPv6 after jabberd2 asked prosody.test AAAA"
