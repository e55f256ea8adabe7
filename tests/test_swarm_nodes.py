"""The swarm across nodes without an engine: lab.yml's nodes, which node gets which image,
an image a node has already, a node the lab has no address for, and the fault scenarios
refused on a swarm (the real swarm: test_swarm_nodes_e2e.py)."""

from types import SimpleNamespace

import docker.errors
import pytest

from lab import model
from lab.errors import ConfigError, LabError
from lab.runtime import Service
from lab.swarm import SwarmRuntime, send_image


class Images:
    def __init__(self, ids: dict[str, str]):
        self.ids = ids

    def get(self, tag):
        if tag not in self.ids:
            raise docker.errors.ImageNotFound(tag)
        return SimpleNamespace(id=self.ids[tag])


class Engine:
    """An engine with images (tag -> ID), in a swarm of ``nodes`` whose manager it is."""

    def __init__(self, ids=None, name="manager", nodes=("manager",)):
        self.images = Images(dict(ids or {}))
        self.loaded: list[str] = []
        self.name, self.node_names = name, nodes
        self.api = SimpleNamespace(get_image=lambda tag: [f"tar of {tag}".encode()], load_image=self._load)
        self.nodes = SimpleNamespace(list=lambda: [SimpleNamespace(attrs={
            "Description": {"Hostname": n}, "Status": {"State": "ready"}, "Spec": {"Availability": "active"}})
            for n in self.node_names])

    def _load(self, chunks):
        tag = b"".join(chunks).decode().removeprefix("tar of ")
        self.loaded.append(tag)
        self.images.ids[tag] = self.source.images.get(tag).id
        return iter([{"stream": f"Loaded image: {tag}"}])

    def info(self):
        return {"Name": self.name, "Swarm": {"LocalNodeState": "active", "ControlAvailable": True}}


def test_an_image_is_sent_once_and_not_again_when_the_node_has_the_same_id():
    manager, worker = Engine({"xmpp-lab/prosody:1": "sha256:a"}), Engine()
    worker.source = manager
    said = []
    assert send_image(manager, worker, "xmpp-lab/prosody:1", "w1", lambda text, **kw: said.append(text))
    assert worker.loaded == ["xmpp-lab/prosody:1"] and "sent image xmpp-lab/prosody:1 to node w1" in said[-1]
    assert not send_image(manager, worker, "xmpp-lab/prosody:1", "w1", lambda *a, **k: None)
    manager.images.ids["xmpp-lab/prosody:1"] = "sha256:b"  # built again: another image under the tag
    assert send_image(manager, worker, "xmpp-lab/prosody:1", "w1", lambda *a, **k: None)
    assert worker.loaded == ["xmpp-lab/prosody:1"] * 2


def runtime_with(workers: dict[str, Engine], addresses: dict[str, str], manager: Engine) -> SwarmRuntime:
    runtime = SwarmRuntime(manager, "x", own_containers=("dns",), nodes=addresses)
    runtime._engines.update(workers)  # (as if reached at their addresses)
    for engine in workers.values():
        engine.source = manager
    return runtime


def test_each_node_gets_the_images_of_its_tasks_and_unplaced_ones_go_to_every_reachable_node():
    manager = Engine({"p": "1", "e": "2", "c": "3", "d": "4"}, nodes=("manager", "w1", "w2", "w3"))
    w1, w2 = Engine(name="w1"), Engine(name="w2")
    runtime = runtime_with({"w1": w1, "w2": w2}, {"w1": "tcp://w1:2375", "w2": "tcp://w2:2375"}, manager)
    runtime.distribute([Service("dns", "dns", "d", "10.0.0.2"), Service("prosody", "server", "p", "", host="manager"),
                        Service("ejabberd", "server", "e", "", host="w1"), Service("client", "client", "c", "")])
    assert sorted(w1.loaded) == ["c", "e"] and w2.loaded == ["c"]
    # w3's engine is not known: an unplaced service is kept off it, a placed one is where it says.
    assert runtime._constraints(Service("client", "client", "c", "")) == ["node.hostname!=w3"]
    assert runtime._constraints(Service("p", "server", "p", "", host="w1")) == ["node.hostname==w1"]


def test_a_node_without_an_engine_address_is_one_error_naming_it():
    manager = Engine({"e": "2"}, nodes=("manager", "w1"))
    runtime = runtime_with({}, {}, manager)
    with pytest.raises(LabError) as raised:
        runtime.distribute([Service("ejabberd", "server", "e", "", host="w1")])
    assert str(raised.value) == ("running ejabberd there needs the Docker engine of swarm node w1, which lab.yml "
                                 "does not give (nodes: {w1: {engine: tcp://ADDRESS:2375}})")


def test_a_node_whose_engine_does_not_answer_is_one_error_naming_it():
    manager = Engine({"e": "2"}, nodes=("manager", "w1"))
    runtime = runtime_with({}, {"w1": "tcp://127.0.0.1:1"}, manager)
    with pytest.raises(LabError) as raised:
        runtime.distribute([Service("ejabberd", "server", "e", "", host="w1")])
    assert str(raised.value).startswith("swarm node w1: its engine at tcp://127.0.0.1:1 cannot be reached ("), raised.value


def test_nodes_in_lab_yml(tmp_path):
    path = tmp_path / "lab.yml"
    path.write_text("name: x\nengine: swarm\nnodes:\n  w1: {engine: tcp://10.0.0.2:2375}\n"
                    "servers:\n  p: {kind: prosody, domain: p.test, host: w1}\n")
    assert model.load(path).nodes == (("w1", "tcp://10.0.0.2:2375"),)
    path.write_text("name: x\nengine: swarm\nnodes:\n  w1: {engine: http://10.0.0.2:2375}\n"
                    "servers:\n  p: {kind: prosody, domain: p.test}\n")
    with pytest.raises(ConfigError) as raised:
        model.load(path)
    assert str(raised.value).startswith(f"{path}:4: nodes.w1.engine: "), raised.value


def test_the_fault_scenarios_that_restart_a_server_are_refused_on_a_swarm(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from lab import cli
    path = tmp_path / "lab.yml"
    path.write_text("name: x\nengine: swarm\nservers:\n  p: {kind: prosody, domain: p.test}\n")
    monkeypatch.setattr(cli, "open_lab", lambda file: (model.load(path), SimpleNamespace(engine="swarm")))
    result = CliRunner().invoke(cli.app, ["test", "--faults", "-f", str(path)])
    assert result.exit_code == 2, result.output
    assert "F4" in result.output and "ends its task" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli.app, ["test", "--only", "F5", "-f", str(path)])
    assert result.exit_code == 2 and "--only: F5 restart" in result.output, result.output


def test_a_server_placed_on_a_node_the_swarm_does_not_have_is_left_to_the_scheduler():
    manager = Engine({"e": "2"}, nodes=("manager", "w1"))
    runtime = runtime_with({}, {}, manager)
    runtime.distribute([Service("ejabberd", "server", "e", "", host="no-such-node")])  # nothing to send, no error


def test_lab_down_with_a_node_gone_removes_the_rest_and_says_which_node_it_could_not_ask(monkeypatch):
    from lab.runtime import Runtime
    manager = Engine(nodes=("manager", "w1"))
    runtime = runtime_with({}, {"w1": "tcp://w1:2375"}, manager)
    removed = []
    service = SimpleNamespace(attrs={"Spec": {"Labels": {"org.xmpp-lab.service": "ejabberd"}}},
                              remove=lambda: removed.append("ejabberd"))
    monkeypatch.setattr(runtime, "services", lambda: [service])
    monkeypatch.setattr(runtime, "node", lambda name: "w1")
    monkeypatch.setattr(runtime, "configs", lambda: [])
    monkeypatch.setattr(runtime, "networks", lambda: [])
    monkeypatch.setattr(Runtime, "down", lambda self: 2)  # the DNS container and the network, on the manager

    def gone(name, node):
        raise LabError(f"swarm node {node} (running {name}): its engine at tcp://w1:2375 cannot be reached (x)")
    monkeypatch.setattr(runtime, "_gone", gone)
    with pytest.raises(LabError) as raised:
        runtime.down()
    assert removed == ["ejabberd"]
    assert str(raised.value) == ("everything of lab x the swarm's manager holds was removed (3), but not checked on "
                                 "a node: swarm node w1 (running ejabberd): its engine at tcp://w1:2375 cannot be "
                                 "reached (x)")
