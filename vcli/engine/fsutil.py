"""File-system helpers: owner-only permissions, fsync, and the one way vcli replaces a file.

Every file vcli writes whole (index.toml, search files, ``export --output``) goes through
``replacing``: it is written under a temporary name beside its place, fsynced, then renamed over
it, so a reader or a crash sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for the caller to write a file at. When the block ends
    normally the file is fsynced and renamed onto ``path`` (and the folder fsynced); when it
    raises (Ctrl-C included) the temporary file is removed and ``path`` is untouched."""
    tmp = temp_name(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_atomic(path: Path, write: Callable[[BinaryIO], object], mode: int = FILE_MODE) -> None:
    """Write ``path`` through ``write(fileobj)``, atomically (``replacing``). ``mode`` is the new
    file's permissions before the umask."""
    with replacing(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda f: f.write(data))
