"""The tables of ``store.sqlite`` (format 2; format 1, of vcli before 2026-12-07, also held each vector's
float32 values as a ``vec`` blob in ``vectors``: ``migrate.py`` moves them out, once).

* ``vectors``: one row per live vector. ``key`` is AUTOINCREMENT (never reused) and is also the
  columns' and search files' key; ``seq`` the mutation that wrote it. Its float32 values are in
  the columns of the current generation (``values-<gen>.keys`` / ``.f32``: ``columns.py``), found
  by the key, whose rows ascend.
* ``appends``: the committed rows of the current generation's columns: one row per write (or copy)
  that appended to them, with its first row and end row and the CRC-32 of the bytes it appended to
  the keys and the values column. ``settings`` holds the generation (``generation``) and its
  committed end (``rows``, the largest ``end``), written in the transaction of the write itself.
* ``removed``: a key deleted or replaced, with the mutations that added and removed it, so that a
  search file written before can still be caught up (``prune`` forgets what every file reflects).
* ``mutations``: one row per write command (``seq``, its public UUID, its kind and time).
* ``metadata_indexes`` and ``metadata_values``: what each vector held, when it was written, for the
  metadata indexes that existed then (see filters/): ``slot`` = the mutation that created the
  metadata index; ``value`` = a string cut to 64 bytes, a float64 number or 0/1. Its primary key
  serves filters; its second index, lookups by vector.
* ``settings``: ``format``, ``pruned_upto``, ``generation`` and ``rows``; ``refused_append``, the
  damaged append a compaction last refused to copy (``Store.record_refusal``).
* ``listed_gone`` (made when first needed): the versions of vectors removed (deleted or replaced)
  while a ``list-vectors`` listing may be open: ``id``, the mutation that wrote the version
  (``born``) and the one that removed it (``died``), so that a listing pages from the snapshot it
  started on. Emptied by the first write after no listing has been seen for an hour.
* ``pending``: writes acknowledged but not applied yet (``vcli serve --apply-delay``): the public
  UUID their mutation will have, their kind, when they are due (Unix time) and their checked input.
  Applying one deletes its row in the same transaction as the write, so it happens exactly once.
"""

from __future__ import annotations

FORMAT = 2
OLD_FORMAT = 1  # values in ``vectors.vec``: read as they are, migrated by the first writer

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mutations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL,
    kind TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vectors (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    namespace TEXT,
    metadata BLOB,
    seq INTEGER NOT NULL
);
"""
VECTOR_INDEXES = """
CREATE INDEX IF NOT EXISTS vectors_seq ON vectors (seq);
CREATE INDEX IF NOT EXISTS vectors_namespace ON vectors (namespace) WHERE namespace IS NOT NULL;
CREATE TABLE IF NOT EXISTS appends (
    gen TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    crc_keys INTEGER NOT NULL,
    crc_values INTEGER NOT NULL,
    PRIMARY KEY (gen, start)
) WITHOUT ROWID;
"""
SCHEMA += VECTOR_INDEXES + """
CREATE TABLE IF NOT EXISTS removed (
    key INTEGER PRIMARY KEY,
    added_seq INTEGER NOT NULL,
    removed_seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS removed_seq ON removed (removed_seq);
CREATE TABLE IF NOT EXISTS metadata_indexes (
    property TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    seq INTEGER NOT NULL
);
"""
# Created with the first metadata index too, for stores made before they existed.
METADATA_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS metadata_values (
    slot INTEGER NOT NULL,
    value NOT NULL,
    key INTEGER NOT NULL,
    PRIMARY KEY (slot, value, key)
) WITHOUT ROWID;""",
    "CREATE INDEX IF NOT EXISTS metadata_values_key ON metadata_values (key, slot, value);",
)
SCHEMA += "\n".join(METADATA_SCHEMA) + "\n"
# Created with the first deferred write (stores made before it, or never deferred to, have none).
LISTED_GONE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS listed_gone (id TEXT NOT NULL, born INTEGER NOT NULL, died INTEGER NOT NULL);",
    "CREATE INDEX IF NOT EXISTS listed_gone_id ON listed_gone (id);",
)
PENDING_SCHEMA = """CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL,
    kind TEXT NOT NULL,
    due REAL NOT NULL,
    payload BLOB NOT NULL
);"""
