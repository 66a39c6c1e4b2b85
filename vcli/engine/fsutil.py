"""Small file-system helpers: owner-only permissions and atomic replacement."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

DIR_MODE = 0o700
FILE_MODE = 0o600


def make_dir(path: Path) -> None:
    """Create ``path`` and any missing parents, each readable by the owner only (``mkdir -p``
    would give the parents the umask's default, e.g. world-readable)."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_name(path: Path) -> Path:
    # os.urandom, not the secrets module: that one loads OpenSSL's hashes (~10 ms a start)
    return path.with_name(f".{path.name}.tmp-{os.urandom(4).hex()}")


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file through ``write(fileobj)`` to a temporary name, fsync it, then rename it into
    place, so a reader or a crash sees the old file or the new one, never half of one."""
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda f: f.write(data))
