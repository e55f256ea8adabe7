"""Published client ports without an engine: the port plan, lab.yml's settings, the
swarm refusal and the forwarder's byte copying (its end-to-end tests: test_publish_e2e.py)."""

import asyncio
import socket

import pytest

from lab import forwarder, model, publish
from lab.errors import LabError
from lab.swarm import SwarmRuntime
from conftest import write_lab


def test_each_server_gets_a_block_of_ten_ports_in_lab_yml_order(default_lab):
    lab = model.published(default_lab)
    base = model.default_publish_port("default")
    assert lab.publish.address == "127.0.0.1" and lab.publish.where == "--publish"
    assert [(e.server, e.tls, e.port, e.target) for e in publish.endpoints(lab)] == [
        ("prosody", "starttls", base, f"{lab.server('prosody').address}:5222"),
        ("prosody", "direct-tls", base + 1, f"{lab.server('prosody').address}:5223"),
        ("ejabberd", "starttls", base + 10, f"{lab.server('ejabberd').address}:5222"),
        ("ejabberd", "direct-tls", base + 11, f"{lab.server('ejabberd').address}:5223"),
        ("jabberd2", "starttls", base + 20, f"{lab.server('jabberd2').address}:5222"),
        ("jabberd2", "direct-tls", base + 21, f"{lab.server('jabberd2').address}:5223")]
    forwarder_service = publish.service(lab)
    assert forwarder_service.ports == {e.port: ("127.0.0.1", e.port) for e in publish.endpoints(lab)}
    assert forwarder_service.address == lab.publish_address
    assert lab.publish_address not in {s.address for s in lab.servers} | set(lab.client_addresses.values())


def test_base_port_comes_from_the_name_and_stays_below_ephemeral_ports():
    assert model.default_publish_port("default") == model.default_publish_port("default")
    ports = {model.default_publish_port(f"lab{i}") for i in range(50)}
    assert len(ports) > 30 and all(10000 <= p and p + 99 < 32768 for p in ports)


def test_lab_yml_publish_settings(tmp_path):
    servers = "servers:\n  p: {kind: prosody, domain: p.test}\n"
    assert model.load(write_lab(tmp_path, "name: x\n" + servers)).publish is None
    lab = model.load(write_lab(tmp_path, "name: x\nnetwork: {publish: true}\n" + servers))
    assert (lab.publish.address, lab.publish.port) == ("127.0.0.1", model.default_publish_port("x"))
    assert lab.publish.where == f"{tmp_path / 'lab.yml'}:2: network.publish"
    lab = model.load(write_lab(tmp_path, "name: x\nnetwork:\n  publish: {address: '::1', port: 20000}\n" + servers))
    assert (lab.publish.address, lab.publish.port) == ("::1", 20000)
    assert model.published(lab) is lab  # --publish keeps what lab.yml says


def test_swarm_is_refused_with_the_reason(default_lab):
    runtime = SwarmRuntime.__new__(SwarmRuntime)  # (no swarm needed to be refused)
    with pytest.raises(LabError, match=r"^--publish: publishing client ports is not supported with engine: swarm \("):
        publish.check(model.published(default_lab), runtime)


def test_forwarder_copies_both_ways_and_passes_the_end_of_the_stream():
    async def scenario():
        async def server(reader, writer):  # answers what it got, after the client's end of stream
            data = await reader.read()
            writer.write(b"got " + data)
            await writer.drain()
            writer.close()

        target = await asyncio.start_server(server, "127.0.0.1", 0)
        target_port = target.sockets[0].getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            listen = probe.getsockname()[1]
        task = asyncio.create_task(forwarder.main([f"p:starttls:{listen}:127.0.0.1:{target_port}"],
                                                    host="127.0.0.1"))
        for _ in range(50):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", listen)
                break
            except OSError:
                await asyncio.sleep(0.05)
        writer.write(b"<stream>")
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 5)
        task.cancel()
        target.close()
        return answer

    assert asyncio.run(scenario()) == b"got <stream>"
