"""A write of several batches stores them from a thread of its own while the caller reads the next.

Reading and checking lines holds the GIL (``orjson``, ``struct``, the checks: ``validate.py``);
storing a batch mostly does not: its rows are one SQLite statement (``Store._add_rows``: SQLite
runs it with the GIL released) and its values are appended with ``os.pwrite`` and checksummed with
``zlib.crc32``, which release it too. So while the writer thread stores batch *n*, the caller's
thread reads batch *n + 1* on another core, as LanceDB's writer threads work beside its parse.

``put`` hands a batch over once the one before is stored, so a write holds two batches in memory
(one being stored, one being read) where it held one. A write of one batch never starts the
thread (``finish`` stores it in the caller's thread): a small write costs what it did. The connection is used by one thread at a time: by the
writer thread from the second batch until ``finish`` or ``close`` has joined it, and by the
caller's thread before and after. An error the writer thread meets is raised again in the
caller's thread at its next ``put`` or at ``finish`` (the batches after it are dropped); an error
of the caller (a bad line, Ctrl-C) goes through ``close``, which lets the batch being stored finish
and joins the thread before the caller's transaction rolls back.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# Lines a batch holds at most, whatever the write's batch size: a local write lands whole in one
# transaction however it is cut, and smaller batches keep the two held at once small (upsert's
# default batch of 5,000 lines of 384 dimensions is ~13 MB as read).
HANDOVER_ROWS = 1000


class BatchWriter(Generic[T]):
    """Calls ``store(batch)`` for each batch ``put``, in order; ``finish`` returns the sum of what
    the calls returned."""

    def __init__(self, store: Callable[[list[T]], int]):
        self.store = store
        self.written = 0
        self.held: list[T] | None = None  # the first batch, until a second one comes
        self.queue: queue.Queue[list[T] | None] = queue.Queue(maxsize=1)
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def put(self, batch: list[T]) -> None:
        self._raise()
        if self.thread is None:
            if self.held is None:
                self.held = batch
                return
            self.thread = threading.Thread(target=self._run, name="vcli-writer", daemon=True)
            self.thread.start()
            self.queue.put(self.held)
            self.held = None
        self.queue.join()  # (the batch before is stored: the thread holds one batch, the caller reads one)
        self._raise()
        self.queue.put(batch)

    def finish(self) -> int:
        """Store what is left and wait for it; what the batches' ``store`` calls returned, summed."""
        if self.thread is None:
            if self.held is not None:
                batch, self.held = self.held, None
                self.written += self.store(batch)
        else:
            self._join()
        self._raise()
        return self.written

    def close(self) -> None:
        """Stop (the batch being stored finishes; those waiting are dropped) and join the thread."""
        self.held = None
        if self.thread is not None:
            self.error = self.error or _Stopped()
            self._join()

    def _join(self) -> None:
        """Wait for the thread to end, even through Ctrl-C (raised again after): the caller's
        transaction must not end while the thread still uses the connection. Where it can,
        SIGINT is held back meanwhile (its handler would raise in this thread, maybe inside the
        handler of the one before), and it arrives once the thread is joined."""
        assert self.thread is not None
        held = _hold_interrupts()
        sent, interrupted = False, None
        try:
            while self.thread.is_alive():
                try:
                    if not sent:
                        self.queue.put(None)  # (the thread keeps taking batches until it sees this one)
                        sent = True
                    self.thread.join()
                except KeyboardInterrupt as exc:  # (where SIGINT cannot be held back)
                    interrupted = exc
        finally:
            _release_interrupts(held)
        self.thread = None
        if interrupted is not None:
            self.error = self.error or _Stopped()
            raise interrupted

    def _raise(self) -> None:
        if self.error is not None and not isinstance(self.error, _Stopped):
            error, self.error = self.error, _Stopped()
            raise error

    def _run(self) -> None:
        while True:
            batch = self.queue.get()
            try:
                if batch is None:
                    return
                if self.error is None:
                    try:
                        self.written += self.store(batch)
                    except BaseException as exc:  # raised again in the caller's thread
                        self.error = exc
            finally:
                self.queue.task_done()


def _hold_interrupts() -> bool:
    """Block SIGINT in this thread (the main one), if the platform can; whether it did."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        return False
    return signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def _release_interrupts(held: bool) -> None:
    """Unblock SIGINT if ``_hold_interrupts`` blocked it (a pending one is then delivered)."""
    if held:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class _Stopped(Exception):
    """The writer thread stores nothing more (its error was raised, or the caller stopped)."""
