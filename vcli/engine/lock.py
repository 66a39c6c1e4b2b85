"""The writer lock: one writer per index at a time; a second one waits, then gives up clearly.

Between processes the lock is an ``flock``, polled (a blocked ``flock`` cannot time out). Within
one process (``vcli serve``, whose requests run in threads) writers first queue on a thread lock,
so they take turns as soon as the one before is done instead of polling each other.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import LockTimeout, StorageError
from . import fsutil
from .limits import DEFAULT_LOCK_TIMEOUT

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


_THREAD_LOCKS: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()


def _timed_out(timeout: float) -> LockTimeout:
    return LockTimeout(
        f"another vcli command has been writing to this index for over {timeout:g} s; try again "
        f"when it has finished (set VCLI_LOCK_TIMEOUT to wait longer)"
    )


@contextmanager
def writer_lock(path: Path, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold this process's lock for ``path``, then an exclusive ``flock`` on it (released by the
    kernel if the process dies)."""
    deadline = time.monotonic() + timeout
    with _GUARD:
        turn = _THREAD_LOCKS.setdefault(os.path.abspath(path), threading.Lock())
    if not turn.acquire(timeout=max(timeout, 0)):
        raise _timed_out(timeout)
    try:
        with _file_lock(path, deadline, timeout):
            yield
    finally:
        turn.release()


@contextmanager
def _file_lock(path: Path, deadline: float, timeout: float) -> Iterator[None]:
    try:
        # O_NOFOLLOW: a link planted in the index folder must not make us create files elsewhere.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), fsutil.FILE_MODE)
    except OSError as exc:
        raise StorageError(
            f"cannot open the lock file {path}: {exc.strerror} (can you write to the index folder?)"
        ) from exc
    try:
        if fcntl is not None:
            delay = 0.005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise _timed_out(timeout) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.1)
        yield
    finally:
        os.close(fd)
