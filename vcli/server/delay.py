"""``vcli serve --apply-delay``: production's timing on request.

``DeferringCatalog`` wraps the server's catalog. A write that arrives through the server (the REST
API or a Worker's binding) is checked at once and acknowledged with its ``mutationId``, but only
kept (``VectorIndex.defer``, durable before the answer goes out); ``Applier``, one background
thread, applies the kept writes in order once they are due (``VectorIndex.apply_pending``). Reads
go to the index as it is, so until then a query, get-vectors, list-vectors and ``info`` do not see
the write, and ``processedUpToMutation`` names the last one applied, as on the service.

At start the applier also finds writes a stopped or killed server left kept, and applies them at
once (the server that acknowledged them is gone); a CLI write applies them first too, so nothing
acknowledged is lost and order is kept.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..engine import limits
from ..engine.interface import Progress
from ..engine.records import DeleteResult, MetadataIndexResult, VectorLine, WriteResult
from ..errors import IndexNotFound, VcliError

if TYPE_CHECKING:
    from ..engine.catalog import Catalog
    from ..engine.index import VectorIndex
    from ..engine.interface import Catalog as AnyCatalog
    from ..engine.interface import Index

IDLE_CHECK = 5.0  # seconds between looks at the kept writes when none is due sooner


class DeferringCatalog:
    """The catalog as the server sees it: writable indexes defer their writes."""

    def __init__(self, catalog: Catalog, delay: float, jitter: float, applier: Applier):
        self.catalog, self.delay, self.jitter, self.applier = catalog, delay, jitter, applier

    def __getattr__(self, name: str) -> Any:
        return getattr(self.catalog, name)

    def open(self, name: str, *, write: bool = False) -> Index:
        index = self.catalog.open(name, write=write)
        return DeferringIndex(index, self) if write else index

    def next_delay(self) -> float:
        return self.delay + (random.uniform(0, self.jitter) if self.jitter else 0.0)


class DeferringIndex:
    """A ``VectorIndex`` whose writes are acknowledged now and applied later."""

    def __init__(self, index: VectorIndex, owner: DeferringCatalog):
        self._index, self._owner = index, owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)

    def __enter__(self) -> DeferringIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self._index.close()

    def _defer(self, kind: str, payload: Any) -> tuple[str, int]:
        mid, count = self._index.defer(kind, payload, self._owner.next_delay())
        self._owner.applier.touch(self._index.name)
        return mid, count

    def insert(self, vectors: Iterable[VectorLine | dict], *, batch_size: int = limits.INSERT_BATCH_SIZE,
               progress: Progress | None = None) -> WriteResult:
        mid, count = self._defer("insert", vectors)
        return WriteResult(self._index.name, count, count, mid)

    def upsert(self, vectors: Iterable[VectorLine | dict], *, batch_size: int = limits.UPSERT_BATCH_SIZE,
               progress: Progress | None = None) -> WriteResult:
        mid, count = self._defer("upsert", vectors)
        return WriteResult(self._index.name, count, count, mid)

    def delete(self, ids: Sequence[str]) -> DeleteResult:
        mid, count = self._defer("delete", list(ids))
        return DeleteResult(mid, count, None)

    def create_metadata_index(self, property_name: str, index_type: str) -> MetadataIndexResult:
        mid, _ = self._defer("create-metadata-index", (property_name, index_type))
        return MetadataIndexResult(mid, property_name, index_type)

    def delete_metadata_index(self, property_name: str) -> MetadataIndexResult:
        mid, _ = self._defer("delete-metadata-index", property_name)
        return MetadataIndexResult(mid, property_name, "")


class Applier:
    """One thread that applies the kept writes of every index when they are due."""

    def __init__(self, catalog: Catalog, notify: Callable[[str], None]):
        self.catalog, self.notify = catalog, notify
        self.names: set[str] = set()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        self.left: set[str] = set()
        self.thread = threading.Thread(target=self._run, name="vcli-apply", daemon=True)

    def start(self, left: list[str]) -> None:
        """Start; first apply, whatever their due time, the writes a previous server left kept
        in the indexes ``left`` (acknowledged by a server that is gone: it catches up now)."""
        self.names.update(left)
        self.left = set(left)
        self.thread.start()

    def touch(self, name: str) -> None:
        with self.lock:
            self.names.add(name)
        self.wake.set()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        if self.thread.is_alive():
            self.thread.join(30)

    def _run(self) -> None:
        while not self.stopping:
            self.wake.clear()
            soonest = time.time() + IDLE_CHECK
            with self.lock:
                names = sorted(self.names)
            for name in names:
                due = self._apply(name, None if name in self.left else time.time())
                self.left.discard(name)
                if due is not None:
                    soonest = min(soonest, due)
            self.wake.wait(max(0.0, soonest - time.time()))

    def _apply(self, name: str, due_by: float | None) -> float | None:
        """Apply ``name``'s writes due by ``due_by`` (all: None); when its next one is due."""
        try:
            with self.catalog.open(name, write=True) as index:
                for note in index.apply_pending(due_by):
                    self.notify(f"vcli serve: {note}")
                return index.next_due()
        except IndexNotFound:
            with self.lock:
                self.names.discard(name)
        except Exception as exc:  # noqa: BLE001 - the thread must live on: the writes are retried
            why = exc.message if isinstance(exc, VcliError) else f"{type(exc).__name__}: {exc}"
            self.notify(f"vcli serve: could not apply the kept writes of '{name}': {why} (retrying in 1 s)")
            return time.time() + 1.0
        return None


def with_apply_delay(catalog: Catalog, delay: float, jitter: float, notify: Callable[[str], None]
                     ) -> tuple[AnyCatalog, Applier | None]:
    """The catalog the server answers from, and the applier to stop when it stops (None when there
    is no delay and nothing was left kept)."""
    kept = []
    for cfg in catalog.list():
        try:
            with catalog.open(cfg.name) as index:
                if index.next_due() is not None:
                    kept.append(cfg.name)
        except VcliError:
            continue
    if not delay and not jitter and not kept:
        return catalog, None
    applier = Applier(catalog, notify)
    applier.start(kept)
    if kept:
        notify(f"vcli serve: applying the writes a previous server acknowledged and left kept ({', '.join(kept)})")
    if not delay and not jitter:
        return catalog, applier
    return DeferringCatalog(catalog, delay, jitter, applier), applier
