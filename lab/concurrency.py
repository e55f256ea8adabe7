"""Threads, waits and Ctrl-C: the helpers every engine and the interop run share.

Ctrl-C must never leave something half made: work that creates things on the engine is
waited for (or its interrupt deferred) before any cleanup looks for what to remove.
"""

from __future__ import annotations

import concurrent.futures
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Threads one parallel() call runs at once: each mostly waits on the engine or a container,
# but a 15-server lab has ~100 accounts to create, and the engine takes only so many at once.
WORKERS = 16


def parallel(function: Callable[[T], R], items: Iterable[T], finish_on_interrupt: bool = True,
             workers: int = WORKERS) -> list[R]:
    """``function`` over ``items``, ``workers`` at a time; the first error is raised after all
    have finished.

    On Ctrl-C, items not started are dropped and, with ``finish_on_interrupt``, those running
    are waited for (further Ctrl-C ignored) before KeyboardInterrupt goes on: the caller's
    cleanup must never run while a worker may still create something.
    """
    items = list(items)
    if not items:
        return []
    pool = ThreadPoolExecutor(max_workers=min(len(items), workers))
    futures: list = []
    try:
        # A Ctrl-C between two submits is raised once all are in: in this try, so the workers
        # already running are waited for below like any others.
        with interrupts_deferred():
            futures = [pool.submit(function, item) for item in items]
        # In slices: Ctrl-C is seen between them even where a signal does not wake a wait.
        while concurrent.futures.wait(futures, timeout=0.2).not_done:
            pass
    except KeyboardInterrupt:
        for future in futures:
            future.cancel()
        if finish_on_interrupt:
            with interrupts_ignored():
                concurrent.futures.wait(futures)
        raise
    finally:
        pool.shutdown(wait=False)
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]
    return [f.result() for f in futures]


def poll_until(check: Callable[[], R], seconds: float, interval: float) -> R | None:
    """``check()`` every ``interval`` seconds until it returns something true, at most
    ``seconds`` long (it is always asked at least once): that value, or None at the end."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


@contextmanager
def interrupts_ignored():
    """Ctrl-C does nothing inside (cleanup that must finish); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def interrupts_deferred():
    """Ctrl-C inside is raised when the block ends, not in it.

    For a call that makes something on the engine: interrupted mid-request, the engine
    still makes it, after the cleanup has looked for what to remove.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen = []
    previous = signal.signal(signal.SIGINT, lambda *_: seen.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if seen:
        raise KeyboardInterrupt
