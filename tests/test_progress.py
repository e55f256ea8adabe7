"""lab test's progress line: what it counts, as plain lines off a terminal."""

import threading
import time

from lab.cli import Progress
from lab.results import ERROR, FAIL, FLAKY, PASS, CaseResult


def batch(*statuses):
    return [CaseResult("C1", "t", "slixmpp", f"s{i}", None, status) for i, status in enumerate(statuses)]


def test_plain_lines_count_cases_run_failures_and_time(capsys):
    progress = Progress(5, live=None)
    progress(batch(PASS, FAIL))
    progress(batch(FLAKY, ERROR, PASS, PASS))  # more than planned: the total is never below what ran
    assert capsys.readouterr().out.splitlines() == [
        "progress: 2/5 cases run, 1 failed or in error, 0s",
        "progress: 6/6 cases run, 2 failed or in error, 0s"]


class Live:
    def __init__(self):
        self.lines = []

    def update(self, text):
        self.lines.append(text)


def test_the_terminal_line_is_updated_per_batch_and_ticks_between():
    live = Live()
    progress = Progress(3, live)
    progress(batch(PASS))
    assert live.lines == ["running interop cases: 1/3 cases run, 0 failed or in error, 0s"]
    progress.started -= 5  # as if 5 s had gone by
    ticker = threading.Thread(target=progress.keep_ticking, daemon=True)
    ticker.start()
    time.sleep(1.3)
    progress.stopped.set()
    ticker.join(2)
    assert live.lines[-1].endswith("1/3 cases run, 0 failed or in error, 6s") and not ticker.is_alive()
