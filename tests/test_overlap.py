"""Work beside the caller's thread: `read_ahead` and `WriteBehind` keep order, carry errors back
to the caller where they belong, and never leave a thread running."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator

import pytest

from etl.overlap import WriteBehind, read_ahead
from tests.interrupts import Interrupted, interrupted_after


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_read_ahead_keeps_order_and_reads_at_most_ahead_items_ahead() -> None:
    made: list[int] = []

    def numbers() -> Generator[int, None, None]:
        for i in range(50):
            made.append(i)
            yield i

    seen = []
    with read_ahead(numbers(), ahead=3, name="test-ahead") as items:
        for i in items:
            time.sleep(0.001)
            # Made so far: those seen, `ahead` waiting, one being handed over.
            assert len(made) <= i + 1 + 3 + 1
            seen.append(i)
    assert seen == list(range(50))
    assert not _threads("test-ahead")


def test_read_ahead_raises_the_error_where_the_item_would_have_come() -> None:
    def numbers() -> Generator[int, None, None]:
        yield 1
        yield 2
        raise ValueError("the third could not be made")

    seen = []
    with (
        pytest.raises(ValueError, match="third"),
        read_ahead(numbers(), name="test-ahead") as items,
    ):
        for i in items:
            seen.append(i)
    assert seen == [1, 2]
    assert not _threads("test-ahead")


def test_read_ahead_stops_and_closes_the_generator_when_the_caller_leaves() -> None:
    closed = threading.Event()

    def endless() -> Generator[int, None, None]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    failing = pytest.raises(RuntimeError, match="caller failed")
    with failing, read_ahead(endless(), ahead=2, name="test-ahead") as items:
        for i in items:
            if i == 5:
                raise RuntimeError("caller failed")
    # The block's end returned only once the thread had stopped and closed the generator.
    assert closed.is_set()
    assert not _threads("test-ahead")


def test_write_behind_runs_calls_in_order_in_its_own_thread() -> None:
    done: list[tuple[int, str]] = []
    behind = WriteBehind("test-behind", backlog=2)
    for i in range(20):
        behind.submit(lambda i=i: done.append((i, threading.current_thread().name)))
    behind.close()
    assert [i for i, _ in done] == list(range(20))
    assert {name for _, name in done} == {"test-behind"}
    assert not _threads("test-behind")


def test_write_behind_raises_an_error_once_and_runs_nothing_after_it() -> None:
    done: list[int] = []
    failed = threading.Event()

    def call(i: int) -> None:
        if i == 2:
            failed.set()
            raise OSError("disk full")
        done.append(i)

    behind = WriteBehind("test-behind", backlog=1)
    for i in range(3):
        behind.submit(call, i)
    assert failed.wait(5)
    # A later call is where the caller hears of it (those submitted meanwhile never run).
    deadline = time.monotonic() + 5
    with pytest.raises(OSError, match="disk full"):
        while time.monotonic() < deadline:
            behind.submit(call, 3)
            time.sleep(0.01)
    behind.close()  # raised once: closing after it is quiet
    assert done == [0, 1]
    assert not _threads("test-behind")


def test_write_behind_close_raises_an_error_of_the_last_call() -> None:
    behind = WriteBehind("test-behind")
    behind.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        behind.close()
    with pytest.raises(RuntimeError, match="after close"):
        behind.submit(print)


def _one_running_one_waiting(done: list[int], seconds: float) -> WriteBehind:
    """A WriteBehind running call 1 (for `seconds`) with call 2 waiting behind it."""
    started = threading.Event()

    def slow(i: int) -> None:
        started.set()
        time.sleep(seconds)
        done.append(i)

    behind = WriteBehind("test-behind", backlog=1)
    behind.submit(slow, 1)
    assert started.wait(5)
    behind.submit(slow, 2)
    return behind


def test_write_behind_discard_waits_for_the_running_call_and_drops_the_rest() -> None:
    done: list[int] = []
    behind = _one_running_one_waiting(done, 0.3)
    behind.discard()
    # The running call ended before discard returned; the waiting one never ran.
    assert done == [1]
    assert not _threads("test-behind")


def test_write_behind_with_no_backlog_runs_one_call_at_a_time_beside_the_caller() -> None:
    running = threading.Event()
    release = threading.Event()
    behind = WriteBehind("test-behind", backlog=0)
    behind.submit(lambda: (running.set(), release.wait(5)))
    assert running.wait(5)  # the first call runs while the caller goes on
    threading.Timer(0.2, release.set).start()
    waited = time.monotonic()
    behind.submit(lambda: None)  # waits for the first call to finish
    assert release.is_set() and time.monotonic() - waited >= 0.1
    behind.close()


def test_write_behind_discard_after_an_interrupted_close_still_waits_and_drops() -> None:
    """On Python 3.11 an interrupted Thread.join marks the thread stopped while it runs on; a
    WriteBehind waits on its own signal instead, so a discard after an interrupted close still
    waits for the running call, drops the waiting one, and submit refuses."""
    done: list[int] = []
    behind = _one_running_one_waiting(done, 0.5)
    with pytest.raises(Interrupted), interrupted_after(0.1):
        behind.close()
    behind.discard()
    assert done == [1]  # the running call ended before discard returned; the waiting one never ran
    with pytest.raises(RuntimeError, match="after close"):
        behind.submit(done.append, 3)
    time.sleep(0.6)
    assert done == [1]
    assert not _threads("test-behind")
