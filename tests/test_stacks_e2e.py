"""End to end: the nbxmpp, xmppc, go-sendxmpp and sendxmpp client stacks run the interop
cases C1, C2 and S1 with `lab test` against real Prosody, ejabberd and jabberd2.

One lab of its own (all three server kinds), brought up with `lab up`, removed by label
afterwards whatever happened.
"""

import json
import re
import uuid
from pathlib import Path

import docker
import pytest

from exemptions import Exemptions
from test_e2e import lab_command, labelled

pytestmark = pytest.mark.docker

STACKS = ["nbxmpp", "xmppc", "gosendxmpp", "sendxmpp"]
SERVERS = {"prosody": "prosody.test", "ejabberd": "ejabberd.test", "jabberd2": "jabberd2.test"}
LAB_YML = "name: {name}\nservers:\n" + "".join(
    f"  {name}:\n    kind: {name}\n    domain: {domain}\n" for name, domain in SERVERS.items())


@pytest.fixture(scope="module")
def client():
    return docker.from_env()


@pytest.fixture(scope="module")
def run(client, tmp_path_factory, request):
    """`lab test --only C1,C2,S1` of the four stacks: (its output, the results by id)."""
    name = f"e2e-stk-{uuid.uuid4().hex[:6]}"
    path = tmp_path_factory.mktemp("lab") / "lab.yml"
    path.write_text(LAB_YML.format(name=name))

    def down():
        lab_command("down", "-f", str(path))
        assert not labelled(client, name)
    request.addfinalizer(down)

    up = lab_command("up", "-f", str(path))
    assert up.returncode == 0, up.stdout + up.stderr
    stacks = [arg for stack in STACKS for arg in ("--stack", stack)]
    test = lab_command("test", "-f", str(path), *stacks, "--only", "C1,C2,S1")
    found = re.search(r"reports: (\S+)/\{results\.json", test.stdout)
    assert found, test.stdout + test.stderr
    report = json.loads((Path(found.group(1)) / "results.json").read_text())
    return test, {result["id"]: result for result in report["results"]}


def expected_ids():
    pairs = [(a, b) for a in SERVERS for b in SERVERS if a != b]
    return {f"{case}/{stack}/{server}" for stack in STACKS for case in ("C1", "C2") for server in SERVERS} | {
        f"S1/{stack}/{a}->{b}" for stack in STACKS for a, b in pairs}


def test_every_case_of_every_stack_passes_except_sendxmpp_c1(run):
    test, results = run
    assert set(results) == expected_ids()
    exemptions = Exemptions()  # jabberd2's sporadic internal-server-error only, counted

    def as_expected(rid, result):
        expected = "not supported" if rid.startswith("C1/sendxmpp/") else "pass"
        return result["status"] == expected or exemptions.allows(result)
    wrong = {rid: (r["status"], r["detail"], r["trace"][-2000:]) for rid, r in results.items()
             if not as_expected(rid, r)}
    assert not wrong, json.dumps(wrong, indent=1)
    exemptions.check()
    failed = any(r["status"] == "fail" for r in results.values())  # refused twice by jabberd2, exempt
    assert test.returncode == (1 if failed else 0), test.stdout + test.stderr


def test_sendxmpp_c1_is_not_supported_from_the_stack_data(run):
    _, results = run
    for server in SERVERS:
        result = results[f"C1/sendxmpp/{server}"]
        assert result["status"] == "not supported"
        assert result["detail"] == "the sendxmpp runner cannot express C1"


def passed(results: dict, exemptions: Exemptions) -> dict:
    """The results whose own check ran: jabberd2's login refused twice is no case's detail
    (allowed, counted and capped like in the test above)."""
    kept = {rid: r for rid, r in results.items() if not (r["status"] == "fail" and exemptions.allows(r))}
    exemptions.check()
    return kept


def test_c1_follows_srv_and_refuses_the_system_ca_store(run):
    _, results = run
    results = passed(results, Exemptions())
    for stack in ("nbxmpp", "xmppc", "gosendxmpp"):
        for server, domain in SERVERS.items():
            if f"C1/{stack}/{server}" not in results:
                continue
            detail = results[f"C1/{stack}/{server}"]["detail"]
            assert f"SRV _xmpp-client._tcp.{domain} -> " in detail and "STARTTLS" in detail, detail
            assert "with the system CA store instead:" in detail, detail


def test_c2_wrong_password_is_not_authorized(run):
    _, results = run
    results = passed(results, Exemptions())
    for stack in STACKS:
        for server in SERVERS:
            if f"C2/{stack}/{server}" in results:
                assert "wrong password -> not-authorized" in results[f"C2/{stack}/{server}"]["detail"]


def test_s1_delivered_both_ways_with_the_stack_as_sender(run):
    _, results = run
    results = passed(results, Exemptions())
    for stack in STACKS:
        for a in SERVERS:
            for b in SERVERS:
                if a != b and f"S1/{stack}/{a}->{b}" in results:
                    detail = results[f"S1/{stack}/{a}->{b}"]["detail"]
                    # The sender's full JID where its tool lets it choose the resource.
                    there = rf"alice@{re.escape(SERVERS[a])}(/\S+)? -> bob@{re.escape(SERVERS[b])}/"
                    back = rf"bob@{re.escape(SERVERS[b])}(/\S+)? -> alice@{re.escape(SERVERS[a])}/"
                    assert re.search(there, detail) and re.search(back, detail), detail


def test_matrices_are_printed(run):
    test, _ = run
    assert "server to server (row: from, column: to)" in test.stdout
    (sendxmpp_row,) = [line for line in test.stdout.splitlines() if line.strip().startswith("sendxmpp ")]
    assert sendxmpp_row.count("1 not supported") == 3, sendxmpp_row
