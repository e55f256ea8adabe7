"""parallel() and engine calls under Ctrl-C, without Docker: the caller's cleanup must never race
a worker or a request the engine is still carrying out."""

import _thread
import signal
import threading
import time

import pytest

from lab.concurrency import interrupts_deferred, parallel


def held(finished, started, release):
    """Work that says it started, then waits for ``release``: the interrupt comes while every
    worker runs, however loaded the machine is (no timing in these tests)."""
    def work(item):
        started.release()
        release.wait(30)
        finished.append(item)
    return work


@pytest.fixture(autouse=True)
def interrupt_seen():
    """SIGINT's handler, for these tests, notes that the main thread took the interrupt before
    raising KeyboardInterrupt as Python's own does: the workers are let go only then."""
    seen = threading.Event()

    def handler(signum, frame):
        seen.set()
        raise KeyboardInterrupt
    before = signal.signal(signal.SIGINT, handler)
    seen.handler = handler
    yield seen
    signal.signal(signal.SIGINT, before)


def interrupt_when_started(count, started, seen, release=None):
    """Ctrl-C (what SIGINT does to the main thread) once ``count`` workers have started and the
    main thread has left parallel()'s deferred submitting (its handler is this test's again);
    the workers are let go once the main thread has taken it, while they still run."""
    def go():
        for _ in range(count):
            started.acquire()
        while signal.getsignal(signal.SIGINT) is not seen.handler:
            time.sleep(0.01)
        _thread.interrupt_main()
        if release is not None:
            seen.wait(30)
            release.set()
    threading.Thread(target=go, daemon=True).start()


def test_ctrl_c_waits_for_the_running_workers_before_it_goes_on(interrupt_seen):
    finished, started, release = [], threading.Semaphore(0), threading.Event()
    interrupt_when_started(3, started, interrupt_seen, release)
    with pytest.raises(KeyboardInterrupt):
        parallel(held(finished, started, release), [1, 2, 3])
    assert sorted(finished) == [1, 2, 3]  # nothing is still running when the caller cleans up


def test_without_finishing_ctrl_c_goes_on_at_once(interrupt_seen):
    finished, started, release = [], threading.Semaphore(0), threading.Event()
    interrupt_when_started(2, started, interrupt_seen)
    try:
        with pytest.raises(KeyboardInterrupt):
            parallel(held(finished, started, release), [1, 2], finish_on_interrupt=False)
        assert finished == []  # the workers still wait: parallel() did not wait for them
    finally:
        release.set()


def test_the_first_error_is_raised_after_all_finished():
    finished = []

    def work(item):
        if item == 1:
            raise ValueError("one")
        time.sleep(0.4)
        finished.append(item)
    with pytest.raises(ValueError, match="one"):
        parallel(work, [1, 2])
    assert finished == [2]


def test_ctrl_c_inside_a_deferred_block_is_raised_when_the_block_ends():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            _thread.interrupt_main()  # arrives inside the block
            done.append("created")  # stands for a create request the engine carries out anyway
    assert done == ["created"]


# --- a network the engine will not remove --------------------------------------------------

class Removable:
    """Stands in for one engine object: it records its removal, or fails it as told."""

    def __init__(self, name: str, error: Exception | None = None, attrs: dict | None = None):
        self.name, self.error, self.attrs, self.removed = name, error, attrs or {}, False

    def remove(self, **_):
        if self.error:
            raise self.error
        self.removed = True

    def reload(self):
        pass


class Listing:
    def __init__(self, items):
        self.items = items

    def list(self, **_):
        return [item for item in self.items if not item.removed]


class Engine:
    """The three listings Runtime.down reads; the real engine is in the E2E tests. The leak
    itself (Docker 20.10 counting an endpoint no container holds) cannot be made on purpose."""

    def __init__(self, containers, networks, volumes):
        self.containers, self.networks, self.volumes = Listing(containers), Listing(networks), Listing(volumes)


def test_a_network_the_engine_holds_is_left_last_and_said_in_one_line():
    import docker.errors

    from lab.errors import LabError
    from lab.runtime import Runtime
    leaked = docker.errors.APIError("403 Client Error: error while removing network: network xmpp-lab-x id 1 has "
                                    "active endpoints")
    containers, volumes = [Removable("c1"), Removable("c2")], [Removable("v1")]
    network = Removable("xmpp-lab-x", leaked, attrs={"Containers": {}})
    with pytest.raises(LabError) as raised:
        Runtime(Engine(containers, [network], volumes), "x").down()
    assert all(c.removed for c in containers) and all(v.removed for v in volumes)  # everything else went
    message = str(raised.value)
    assert "\n" not in message and "xmpp-lab-x is held by the Docker engine" in message
    assert "the next 'lab up' reuses the network" in message and "restarting the Docker daemon" in message


def test_a_network_still_used_by_a_container_is_an_engine_error_as_it_was():
    import docker.errors

    from lab.runtime import Runtime
    busy = docker.errors.APIError("network xmpp-lab-x has active endpoints")
    network = Removable("xmpp-lab-x", busy, attrs={"Containers": {"abc": {"Name": "someone-else"}}})
    with pytest.raises(docker.errors.APIError):
        Runtime(Engine([], [network], []), "x").down()


# A task status as the swarm gave it in CI (Docker 20.10, moby#48783), and one of a
# container that ran and exited: only the first is the engine's failure, retried.
ENGINE_COULD_NOT_START = {
    "State": "failed", "Message": "starting",
    "Err": "starting container failed: unable to remount dir as readonly: mount tmpfs:/var/lib/docker/"
           "containers/e7b15c1542f0/mounts/secrets, flags: 0x21, data: uid=0,gid=0: device or resource busy"}
CONTAINER_EXITED = {"State": "failed", "Message": "started", "Err": "task: non-zero exit (1)"}


def test_a_task_the_engine_could_not_start_is_told_from_one_that_ran_and_exited():
    from lab.swarm import engine_could_not_start
    assert engine_could_not_start(ENGINE_COULD_NOT_START)
    assert not engine_could_not_start(CONTAINER_EXITED)
    assert not engine_could_not_start({"State": "running"})
    assert not engine_could_not_start({})
