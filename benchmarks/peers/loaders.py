"""The peers' loads of a Vectorize NDJSON file, each the fastest bulk path its documentation gives.

    benchmarks/peers/.venv/bin/python benchmarks/peers/loaders.py TOOL FILE FOLDER [--dims 384]

runs in the peers' own virtual environment (``setup.sh``), one process a load, started by
``bench.py`` which measures it. Every tool parses the file itself the same way (orjson, one line
at a time, into batches of ``BATCH`` lines: ids, float32 values, metadata), makes its store in
FOLDER and returns only when the load is durable:

* ``parse``: no store; the file parsed into batches as below, the floor under every load (it
  needs only NumPy and orjson: ``bench.py`` runs it with the project's Python).
* ``lancedb``: an empty table of the schema (``id`` string, ``vector`` fixed-size list of float32,
  ``metadata`` JSON text), then one ``Table.add`` of a ``pyarrow.RecordBatchReader`` over the
  batches: one commit, one version. LanceDB's performance guide names ``add`` of Arrow data into
  a table created empty as the bulk path, and a reader of batches (iterator ingestion) as the way
  for data computed as it goes, which a parsed file is; ``--write-parallelism`` is its knob there
  (it cannot size it from a reader; default here: the cores).
* ``sqlite-vec``: a ``vec0`` virtual table (``embedding float[D] distance_metric=cosine``, the
  rowid) and an ordinary table of ``id`` (unique) and ``metadata`` by the same rowid, filled with
  ``executemany`` of each batch (values as little-endian float32 blobs, what ``serialize_float32``
  makes) inside one transaction, committed at the end. SQLite's defaults otherwise: a rollback
  journal and ``synchronous = FULL``, so the commit is durable.
* ``chroma``: a ``PersistentClient`` collection (cosine), ``Collection.add`` of batches of at most
  ``get_max_batch_size()`` rows (ids, embeddings as a NumPy array, metadata dicts). Unlike the
  others (and vcli), Chroma builds its HNSW graph as it loads.

Whatever a tool syncs itself, this process then fsyncs every file and folder it made
(``sync_tree``), the same for every tool, so that each load ends durable; the time counts (little
where the tool had synced already).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson

BATCH = 10_000


def batches(path: Path, dims: int, size: int = BATCH) -> Iterator[tuple[list[str], np.ndarray, list[dict | None]]]:
    """(ids, values as a float32 array, metadata) of each ``size`` lines of the file. Each line's
    values go straight into the batch's array: keeping 10,000 lists of floats alive until a
    batch is full and converting them then takes ~1.5x as long (the garbage collector walks
    them), which would slow the peers, not vcli."""
    ids: list[str] = []
    metas: list[dict | None] = []
    values = np.empty((size, dims), np.float32)
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            rec = orjson.loads(line)
            values[len(ids)] = rec["values"]
            ids.append(rec["id"])
            metas.append(rec.get("metadata"))
            if len(ids) == size:
                yield ids, values, metas
                ids, metas = [], []
                values = np.empty((size, dims), np.float32)  # a new one: Arrow may keep the last
    if ids:
        yield ids, values[: len(ids)], metas


def json_text(metas: list[dict | None]) -> list[str | None]:
    return [None if m is None else orjson.dumps(m).decode() for m in metas]


def load_lancedb(path: Path, folder: Path, dims: int, write_parallelism: int | None) -> int:
    import lancedb
    import pyarrow as pa

    schema = pa.schema([
        pa.field("id", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32(), dims), nullable=False),
        pa.field("metadata", pa.string()),
    ])

    def record_batches() -> Iterator[pa.RecordBatch]:
        for ids, values, metas in batches(path, dims):
            vectors = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), dims)
            yield pa.record_batch([pa.array(ids, pa.string()), vectors, pa.array(json_text(metas), pa.string())],
                                  schema=schema)

    db = lancedb.connect(str(folder))
    table = db.create_table("vectors", schema=schema)
    table.add(pa.RecordBatchReader.from_batches(schema, record_batches()),
              write_parallelism=write_parallelism or os.cpu_count() or 1)
    return table.count_rows()


def load_sqlite_vec(path: Path, folder: Path, dims: int) -> int:
    import sqlite3

    import sqlite_vec

    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(folder / "vectors.db")
    db.enable_load_extension(True)
    sqlite_vec.load(db)
    db.enable_load_extension(False)
    db.execute(f"CREATE VIRTUAL TABLE vectors USING vec0(embedding float[{dims}] distance_metric=cosine)")
    db.execute("CREATE TABLE docs (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, metadata TEXT)")
    db.commit()
    row = 0
    for ids, values, metas in batches(path, dims):
        rows = range(row + 1, row + 1 + len(ids))
        db.executemany("INSERT INTO vectors(rowid, embedding) VALUES (?, ?)",
                       zip(rows, (v.tobytes() for v in values), strict=True))
        db.executemany("INSERT INTO docs(rowid, id, metadata) VALUES (?, ?, ?)",
                       zip(rows, ids, json_text(metas), strict=True))
        row += len(ids)
    db.commit()
    count = db.execute("SELECT count(*) FROM docs").fetchone()[0]
    db.close()
    return count


def load_chroma(path: Path, folder: Path, dims: int) -> int:
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(folder), settings=Settings(anonymized_telemetry=False))
    collection = client.create_collection("vectors", configuration={"hnsw": {"space": "cosine"}})
    size = min(client.get_max_batch_size(), BATCH)
    for ids, values, metas in batches(path, dims, size):
        collection.add(ids=ids, embeddings=values, metadatas=metas if any(metas) else None)
    return collection.count()


def sync_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder`` (and ``folder`` itself)."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tool", choices=["parse", "lancedb", "sqlite-vec", "chroma"])
    parser.add_argument("file", type=Path)
    parser.add_argument("folder", type=Path, help="made by the load; must not exist (parse makes none)")
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--write-parallelism", type=int, help="LanceDB's (default: the number of cores)")
    args = parser.parse_args()
    if args.folder.exists():
        print(f"{args.folder} exists: a load starts from nothing", file=sys.stderr)
        return 2
    if args.tool == "parse":
        print(sum(len(ids) for ids, _values, _metas in batches(args.file, args.dims)))
        return 0
    if args.tool == "lancedb":
        count = load_lancedb(args.file, args.folder, args.dims, args.write_parallelism)
    elif args.tool == "sqlite-vec":
        count = load_sqlite_vec(args.file, args.folder, args.dims)
    else:
        count = load_chroma(args.file, args.folder, args.dims)
    sync_tree(args.folder)
    print(count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
