"""The writer lock: one writer per index at a time; a second one waits, then gives up clearly."""

from __future__ import annotations

import errno
import os
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


@contextmanager
def writer_lock(path: Path, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (released by the kernel if the process dies)."""
    try:
        # O_NOFOLLOW: a link planted in the index folder must not make us create files elsewhere.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), fsutil.FILE_MODE)
    except OSError as exc:
        raise StorageError(
            f"cannot open the lock file {path}: {exc.strerror} (can you write to the index folder?)"
        ) from exc
    try:
        if fcntl is not None:
            deadline = time.monotonic() + timeout
            delay = 0.005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise LockTimeout(
                            f"another vcli command has been writing to this index for over "
                            f"{timeout:g} s; try again when it has finished "
                            f"(set VCLI_LOCK_TIMEOUT to wait longer)"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.1)
        yield
    finally:
        os.close(fd)
