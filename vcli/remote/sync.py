"""Whole indexes between this machine and the service: ``push``, ``pull``, and ``diff`` of any two.

Both moves are resumable. Each keeps a small state file in the local index's folder
(``push-<target>.json``, ``pull.json``) that says how far it got; the file is replaced atomically
after every step the far side has confirmed, and removed when the move is done.

- push reads the local index from one snapshot in the export order and uploads it in batches of
  up to 5,000 vectors / 100 MB. The state names the local index's last mutation and the batches
  the service accepted; a run after a stop (Ctrl-C, SIGKILL, a lost network) skips those batches
  when the local index has not changed since, and starts over otherwise. A batch that was sent
  but not confirmed is sent again: upserting the same vectors twice leaves the same index.
- pull lists the remote ids a page at a time, fetches them with get_by_ids and upserts them
  locally every ``PULL_COMMIT`` vectors, recording the list cursor after each local commit. A run
  after a stop continues from that cursor (or, if it has expired, lists from the start again and
  fetches only the ids the local index does not hold yet).

Both end with a check: the counts are equal and a sample of vectors is equal on both sides.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from ..engine import limits
from ..engine.fsutil import write_atomic
from ..engine.interface import Index
from ..engine.records import IndexConfig, MetadataIndex, Vector, VectorPage
from ..errors import ConfigError, Interrupted, VcliError
from .client import RemoteError, Target
from .index import NOT_FOUND, RemoteCatalog, RemoteIndex, id_pages

if TYPE_CHECKING:
    from ..engine.catalog import Catalog as LocalCatalog
    from ..engine.index import VectorIndex

PULL_COMMIT = 5000  # vectors fetched before each local commit (and state update) of a pull
SAMPLE = 100  # vectors compared on both sides at the end of a move


class MoveResult(NamedTuple):
    """What a push or pull did: ``count`` vectors at the destination, ``sent`` moved by this run
    (``skipped`` were moved by an earlier, stopped run), ``requests`` sent to the service."""

    source: str
    destination: str
    count: int  # type: ignore[assignment]  # shadows tuple.count(): the field keeps its public name
    sent: int
    skipped: int
    created: bool
    requests: int
    bytes_sent: int
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "destination": self.destination, "count": self.count,
                "sent": self.sent, "skipped": self.skipped, "created": self.created,
                "requests": self.requests, "bytesSent": self.bytes_sent}


class DiffResult(NamedTuple):
    a: str
    b: str
    count_a: int
    count_b: int
    only_a: list[str]
    only_b: list[str]
    different: list[tuple[str, tuple[str, ...]]]  # (id, the fields that differ)

    @property
    def equal(self) -> bool:
        return not (self.only_a or self.only_b or self.different)

    def to_json(self) -> dict[str, Any]:
        return {"equal": self.equal, "a": self.a, "b": self.b,
                "count": {"a": self.count_a, "b": self.count_b},
                "onlyInA": self.only_a, "onlyInB": self.only_b,
                "different": [{"id": i, "fields": list(f)} for i, f in self.different]}


# == push ==========================================================================================
def push(local: VectorIndex, remote_catalog: RemoteCatalog, remote_name: str, *,
         batch_size: int = limits.MAX_BATCH_SIZE, progress: Callable[[int], None] | None = None,
         wait_timeout: float = 300.0) -> MoveResult:
    """Make the remote index ``remote_name`` hold every vector of ``local`` (an open VectorIndex)."""
    client = remote_catalog.client
    requests0, bytes0 = client.requests, client.bytes_sent
    remote, created = _remote_like(local, remote_catalog, remote_name)
    state_path = local.folder.path / f"push-{_target_key(remote_catalog.target, remote_name)}.json"
    info = local.info()
    state = _read_state(state_path)
    fresh: dict[str, Any] = {
        "target": f"{remote_catalog.target.base_url} {client.account()} {remote_name}",
        "localMutation": info.processed_up_to_mutation, "batchSize": batch_size, "batches": 0, "lines": 0}
    if created or not (state and all(state.get(k) == fresh[k] for k in ("target", "localMutation", "batchSize"))):
        state = fresh  # (a remote index created now holds nothing an earlier run sent)
    skip_batches, skipped = int(state["batches"]), int(state["lines"])
    done = skipped
    if progress:
        progress(done)
    mutation = ""
    try:
        with closing(local.export()) as blocks:
            for number, (body, lines) in enumerate(_upload_batches(blocks, batch_size)):
                if number < skip_batches:
                    continue
                mutation = remote.upload("upsert", body)
                done += lines
                state.update(batches=number + 1, lines=done)
                _write_state(state_path, state)
                if progress:
                    progress(done)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted after {done} of {info.vector_count} vectors were pushed; run the "
                          "same command again to send the rest") from None
    try:
        if mutation:
            remote.wait(mutation, wait_timeout)
        notes = _check_equal(local, remote)
    except VcliError:
        state_path.unlink(missing_ok=True)  # the next run sends everything again, rather than nothing
        raise
    state_path.unlink(missing_ok=True)
    return MoveResult(local.name, f"remote:{remote.name}", info.vector_count, done - skipped, skipped, created,
                      client.requests - requests0, client.bytes_sent - bytes0, tuple(notes))


def _remote_like(local: VectorIndex, remote_catalog: RemoteCatalog, name: str) -> tuple[RemoteIndex, bool]:
    """The remote index ``name``, created like ``local`` (config, then metadata indexes) when
    missing; refused when it exists with another configuration."""
    cfg = local.config
    wanted = {m.property_name: m.index_type for m in local.list_metadata_indexes()}
    created = False
    try:
        have = remote_catalog.config(name)
    except RemoteError as exc:
        if exc.code != NOT_FOUND:
            raise
        have = remote_catalog.create(name, cfg.dimensions, cfg.metric, description=cfg.description)
        created = True
    if (have.dimensions, have.metric) != (cfg.dimensions, cfg.metric):
        raise ConfigError(
            f'the remote index "{name}" has {have.dimensions} dimensions and the {have.metric} metric; '
            f'"{local.name}" has {cfg.dimensions} and {cfg.metric}: push to another name, or delete it first'
        )
    remote = RemoteIndex(remote_catalog.client, name, have)
    existing = {m.property_name: m.index_type for m in remote.list_metadata_indexes()}
    for prop, kind in existing.items():
        if wanted.get(prop, kind) != kind:
            raise ConfigError(f'the remote index "{name}" indexes "{prop}" as {kind}, "{local.name}" as '
                              f"{wanted[prop]}: push to another name, or change one of them first")
    for prop, kind in wanted.items():  # before any vector, so that every vector is filterable
        if prop not in existing:
            remote.create_metadata_index(prop, kind)
    return remote, created


def _upload_batches(blocks: Iterable[tuple[bytes, int]], batch_size: int) -> Iterator[tuple[bytes, int]]:
    """An export's blocks as upload bodies: at most ``batch_size`` lines and 100 MB each. The same
    index always gives the same batches (that is what lets a push resume)."""
    parts: list[bytes] = []
    size = 0
    for block, _n in blocks:
        for line in block.splitlines(keepends=True):
            if parts and (len(parts) >= batch_size or size + len(line) > limits.MAX_UPLOAD_BYTES):
                yield b"".join(parts), len(parts)
                parts, size = [], 0
            parts.append(line)
            size += len(line)
    if parts:
        yield b"".join(parts), len(parts)


# == pull ==========================================================================================
def pull(remote_catalog: RemoteCatalog, remote_name: str, local_catalog: LocalCatalog, local_name: str, *,
         progress: Callable[[int], None] | None = None) -> MoveResult:
    """Make the local index ``local_name`` a copy of the remote index ``remote_name``."""
    client = remote_catalog.client
    requests0, bytes0 = client.requests, client.bytes_sent
    have = remote_catalog.config(remote_name)
    remote = RemoteIndex(client, remote_name, have)
    source = f"{remote_catalog.target.base_url} {client.account()} {remote_name}"
    kinds = remote.list_metadata_indexes()
    created = False
    try:
        local_catalog.config(local_name)
    except VcliError as exc:
        if exc.code != NOT_FOUND:
            raise
        local_catalog.create(local_name, have.dimensions, have.metric, description=have.description)
        created = True
    with local_catalog.open(local_name, write=True) as local:
        state_path = local.folder.path / "pull.json"
        state = _read_state(state_path)
        if created or state is None:
            _check_pull_target(local, have, kinds, created, local_name)
            if created:
                for m in kinds:  # before any vector, so that every vector is filterable
                    local.create_metadata_index(m.property_name, m.index_type)
            state = {"source": source, "cursor": None}
            _write_state(state_path, state)
        elif state.get("source") != source:
            raise ConfigError(f'the local index "{local_name}" holds an unfinished pull of another index '
                              f'({state.get("source")}); finish that one, or pull into another name')
        skipped = local.info().vector_count
        sent = 0
        if progress:
            progress(skipped)
        pending: list[dict] = []
        try:
            for page in _pages(remote, state.get("cursor")):
                held = {v.id for v in local.get(page.ids)} if skipped else set()
                pending += [_record(v) for v in remote.get([i for i in page.ids if i not in held])]
                if len(pending) >= PULL_COMMIT or page.next_cursor is None:
                    if pending:
                        local.upsert(pending)
                        sent += len(pending)
                        pending = []
                    state["cursor"] = page.next_cursor
                    _write_state(state_path, state)
                    if progress:
                        progress(skipped + sent)
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted after {skipped + sent} vectors were pulled into '{local_name}'; "
                              "run the same command again to fetch the rest") from None
        notes = _check_equal(remote, local)
        count = local.info().vector_count
        state_path.unlink(missing_ok=True)
    return MoveResult(f"remote:{remote_name}", local_name, count, sent, skipped, created,
                      client.requests - requests0, client.bytes_sent - bytes0, tuple(notes))


def _record(v: Vector) -> dict:
    out = {"id": v.id, "values": v.values}
    if v.namespace is not None:
        out["namespace"] = v.namespace
    if v.metadata is not None:
        out["metadata"] = v.metadata
    return out


def _check_pull_target(local: VectorIndex, have: IndexConfig, kinds: list[MetadataIndex], created: bool,
                       name: str) -> None:
    if created:
        return
    if (local.dimensions, local.metric) != (have.dimensions, have.metric):
        raise ConfigError(f'the local index "{name}" has {local.dimensions} dimensions and the {local.metric} '
                          f"metric, the remote one {have.dimensions} and {have.metric}: pull into another name")
    if local.info().vector_count:
        raise ConfigError(f'the local index "{name}" already holds vectors: pull into a new name (or delete '
                          f"it first), so that the copy is exactly the remote index")
    mine = {m.property_name: m.index_type for m in local.list_metadata_indexes()}
    for m in kinds:
        if m.property_name not in mine:
            local.create_metadata_index(m.property_name, m.index_type)


def _pages(remote: RemoteIndex, cursor: str | None) -> Iterator[VectorPage]:
    """The pages of ids from ``cursor`` when it still works, else from the start."""
    try:
        first = remote.list_ids(limits.MAX_LIST_COUNT, cursor)
    except RemoteError:
        if cursor is None:
            raise
        first = remote.list_ids(limits.MAX_LIST_COUNT)  # expired: from the start (ids held are not fetched)
    return id_pages(remote, first)


# == diff ==========================================================================================
def all_ids(index: Index) -> list[str]:
    return [i for page in id_pages(index) for i in page.ids]


def diff(a: Index, b: Index, a_name: str, b_name: str,
         progress: Callable[[int], None] | None = None) -> DiffResult:
    """Ids only in ``a``, only in ``b``, and ids whose values, metadata or namespace differ."""
    ids_a, ids_b = all_ids(a), all_ids(b)
    set_b = set(ids_b)
    set_a = set(ids_a)
    common = [i for i in ids_a if i in set_b]
    different = []
    for start in range(0, len(common), limits.MAX_GET_IDS):
        chunk = common[start : start + limits.MAX_GET_IDS]
        got_b = {v.id: v for v in b.get(chunk)}
        for va in a.get(chunk):
            vb = got_b.get(va.id)
            if vb is not None and (fields := _differs(va, vb)):
                different.append((va.id, fields))
        if progress:
            progress(start + len(chunk))
    return DiffResult(a_name, b_name, len(ids_a), len(ids_b), sorted(set_a - set_b), sorted(set_b - set_a),
                      different)


def _differs(va: Vector, vb: Vector) -> tuple[str, ...]:
    out = []
    if va.values.tobytes() != vb.values.tobytes():
        out.append("values")
    if va.namespace != vb.namespace:
        out.append("namespace")
    if (va.metadata or None) != (vb.metadata or None):
        out.append("metadata")
    return tuple(out)


def _check_equal(source: Index, destination: Index) -> list[str]:
    """After a move: the destination holds at least the source's count, and a sample of the
    source's vectors is equal there; else a ``VcliError`` saying what differs. The notes say what
    the user should know but is not wrong (ids at the destination that the source lacks)."""
    n_source, n_dest = source.info().vector_count, destination.info().vector_count
    local = destination if isinstance(source, RemoteIndex) else source  # its ids are cheap to list
    pool = all_ids(local)
    ids = random.Random(n_source).sample(pool, min(SAMPLE, len(pool)))
    for start in range(0, len(ids), limits.MAX_GET_IDS):
        chunk = ids[start : start + limits.MAX_GET_IDS]
        theirs = {v.id: v for v in destination.get(chunk)}
        for v in source.get(chunk):
            other = theirs.get(v.id)
            if other is None or _differs(v, other):
                what = "is missing" if other is None else f"differs ({', '.join(_differs(v, other))})"
                raise VcliError(f'check failed: vector "{v.id}" {what} at the destination after the move; '
                                "run the same command again, then `vcli diff` to see what differs")
    if n_dest < n_source:
        raise VcliError(f"check failed: the source holds {n_source} vectors and the destination {n_dest}; "
                        "run the same command again, then `vcli diff` to see what differs")
    if n_dest > n_source:
        return [f"the destination holds {n_dest} vectors and the source {n_source}: it has ids the source "
                f"does not (they were there before; `vcli diff` lists them)"]
    return []


# == state files ===================================================================================
def _target_key(target: Target, name: str) -> str:
    return hashlib.sha256(f"{target.base_url}\0{target.account_id}\0{name}".encode()).hexdigest()[:16]


def _read_state(path: Path) -> dict | None:
    try:
        state = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return state if isinstance(state, dict) else None


def _write_state(path: Path, state: dict) -> None:
    write_atomic(path, lambda f: f.write(orjson.dumps(state)))
