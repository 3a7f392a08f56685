"""An exception delivered by a signal to the main thread, as Ctrl-C or Airflow's
execution_timeout deliver one, for tests of code that waits on another thread."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Interrupted(Exception):
    """What the signal handler raises in the main thread."""


@contextmanager
def interrupted_after(seconds: float) -> Iterator[None]:
    """Within the block, `Interrupted` is raised in the main thread after `seconds`.

    The signal goes to the main thread itself (`pthread_kill`), where a blocking wait then
    ends with the handler's exception; a process-wide signal (`setitimer`) may be delivered to
    another thread and stay pending until the main thread wakes on its own."""
    main = threading.main_thread()
    assert threading.current_thread() is main and main.ident is not None

    def interrupt(*_: object) -> None:
        raise Interrupted("interrupted")

    previous = signal.signal(signal.SIGALRM, interrupt)
    timer = threading.Timer(seconds, signal.pthread_kill, (main.ident, signal.SIGALRM))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        signal.signal(signal.SIGALRM, previous)
