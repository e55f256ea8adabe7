"""parallel() and engine calls under Ctrl-C, without Docker: the caller's cleanup must never race
a worker or a request the engine is still carrying out."""

import _thread
import threading
import time

import pytest

from lab.runtime import interrupts_deferred, parallel


def slow(finished):
    def work(item):
        time.sleep(0.4)
        finished.append(item)
    return work


def test_ctrl_c_waits_for_the_running_workers_before_it_goes_on():
    finished = []
    threading.Timer(0.1, _thread.interrupt_main).start()  # what SIGINT does to the main thread
    with pytest.raises(KeyboardInterrupt):
        parallel(slow(finished), [1, 2, 3])
    assert sorted(finished) == [1, 2, 3]  # nothing is still running when the caller cleans up


def test_without_finishing_ctrl_c_goes_on_at_once():
    finished = []
    threading.Timer(0.1, _thread.interrupt_main).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        parallel(slow(finished), [1, 2], finish_on_interrupt=False)
    assert time.monotonic() - started < 0.3 and finished == []


def test_the_first_error_is_raised_after_all_finished():
    finished = []

    def work(item):
        if item == 1:
            raise ValueError("one")
        slow(finished)(item)
    with pytest.raises(ValueError, match="one"):
        parallel(work, [1, 2])
    assert finished == [2]


def test_ctrl_c_inside_a_deferred_block_is_raised_when_the_block_ends():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            threading.Timer(0.05, _thread.interrupt_main).start()
            time.sleep(0.3)  # stands for a create request the engine carries out anyway
            done.append("created")
    assert done == ["created"]
