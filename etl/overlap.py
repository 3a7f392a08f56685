"""Work in a thread beside the caller's, so that on two cores the two overlap.

For work that runs mostly without the GIL (a database formatting rows, Arrow parsing or
encoding Parquet and CSV, COPY text built with Arrow kernels, hashing):

- `read_ahead`: the next items of a generator made while the caller works on this one (the
  store's as-of reads, `etl.store.query`);
- `WriteBehind`: calls made in order in a thread of their own while the caller prepares the
  next (a publication's files, `etl.publish.writer`; a PostgreSQL load's COPYs,
  `etl.store.load`).

It pays only where a core is free: the intake's CSV parse in a read-ahead thread took 0.5 s
off the checking thread and nothing off a 1,000,000-row check's wall time (README ›
Benchmarks), so it is not done.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()


@contextmanager
def read_ahead(
    items: Generator[T, None, None], *, ahead: int = 1, name: str = "creditpipe-read-ahead"
) -> Iterator[Iterator[T]]:
    """`items`, made in a thread of its own at most `ahead` items ahead of the caller (memory:
    that many items more). Their order is kept, and an exception raised while making them is
    raised again in the caller's thread, where the next item would have come. When the caller
    leaves the block (stopped early, failed, or done), the thread stops and closes `items`,
    before the block's end returns."""
    handoff: queue.Queue[Any] = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def offer(item: Any) -> bool:
        """Hand `item` over unless the caller has stopped; False when it has."""
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    break
            end: Any = _DONE
        except BaseException as exc:  # noqa: BLE001 -- raised again in the caller's thread
            end = exc
        finally:
            items.close()
        offer(end)

    def consume() -> Iterator[T]:
        while (item := handoff.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        with suppress(queue.Empty):  # a producer blocked on a full queue sees `stop` next
            while True:
                handoff.get_nowait()
        thread.join()


class WriteBehind:
    """Calls run in order in a thread of their own while the caller goes on: `submit` returns
    at once while fewer than `backlog` + 1 calls are submitted and not yet finished, else it
    waits for one to finish (memory: what they hold; `backlog=0`, one call at a time beside the
    caller's work). An error stops the calls after it and is raised again in the caller's
    thread by the next `submit` or by `close`. `close` (done) or `discard` (given up) must end
    every WriteBehind; both return once the thread has stopped."""

    def __init__(self, name: str, backlog: int = 1) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[..., object], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._slots = threading.Semaphore(backlog + 1)  # calls submitted, not yet finished
        self._error: BaseException | None = None
        self._skip = False  # discarding: the calls still waiting are dropped
        self._stopping = False  # the end is queued: no more calls
        # Set by the thread itself as it ends. Not Thread.join/is_alive: on Python 3.11 a join
        # interrupted by a signal handler's exception (Ctrl-C, Airflow's execution_timeout)
        # marks the thread stopped while it still runs, and every later join returns at once.
        self._finished = threading.Event()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, call: Callable[..., object], *args: Any) -> None:
        """Run `call(*args)` after the calls before it (see the class for when this waits)."""
        self._raise()
        if self._stopping:
            raise RuntimeError("WriteBehind: submit after close")
        self._slots.acquire()  # the thread releases a slot after every call, run or dropped
        self._calls.put((call, args))

    def close(self) -> None:
        """Wait for every call submitted; raise the first error, if any."""
        self._stop()
        self._raise()

    def discard(self) -> None:
        """Drop the calls still waiting and wait for the running one; errors are dropped too.
        Also after a `close` that an exception interrupted while it waited."""
        self._skip = True
        self._stop()

    def _stop(self) -> None:
        if not self._stopping:
            self._stopping = True
            self._calls.put(None)
        self._finished.wait()

    def _raise(self) -> None:
        if self._error is not None:
            self._skip = True  # nothing after the error runs, and it is raised once
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            self._finished.set()

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            try:
                if self._error is None and not self._skip:
                    item[0](*item[1])
            except BaseException as exc:  # noqa: BLE001 -- raised again in the caller's thread
                self._error = exc
            finally:
                item = None  # what the call held goes before the caller may submit the next
                self._slots.release()
