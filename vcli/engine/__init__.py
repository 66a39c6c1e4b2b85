"""The vcli engine: local Vectorize indexes as a Python library (the CLI is a skin over it).

    import numpy as np
    from vcli.engine import open_catalog

    catalog = open_catalog("/tmp/indexes")      # or open_catalog(): the configured data dir
    with catalog.open_or_create("docs", dimensions=3, metric="cosine") as index:
        index.insert([{"id": "a", "values": [1, 2, 3], "metadata": {"lang": "en"}}])
        index.upsert_arrays(["b", "c"], np.array([[1, 0, 0], [0, 1, 0]]),
                            metadata=[{"lang": "fr"}, None])
        result = index.query([1, 2, 3], top_k=1)   # QueryResult: .matches[0].id, .score
        vectors = index.get(["a", "b"])            # [Vector(id, values, namespace, metadata)]
        index.delete(["c"])

``open_catalog`` reads the configuration (``config.toml``, ``vcli.toml``, ``VCLI_*``) as the CLI
does; ``Catalog(path)`` uses only what it is given. Every user-fixable failure is a
``vcli.errors.VcliError`` subclass with a readable ``message``.

Background builds are opt-in: a library call starts no process unless the catalog is opened with
``background_builds=True`` (as the CLI and ``vcli serve`` do), which lets a write of a large index
(from 64M numbers, ~175,000 vectors of 384 dimensions) return before a detached builder process
makes its search graph. Without it, that graph is built in the calling process, by the write (or
the first query) that finds it missing.

Nothing here prints, exits or imports the CLI stack; NumPy and usearch load only for queries and
for the writes that rebuild search files. The names below are loaded when first used, so that
importing one module of the engine (``vcli.engine.limits``) does not import all of it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_RECORDS = ("DeleteResult", "IndexConfig", "IndexInfo", "Match", "MetadataIndex", "Query", "QueryResult",
            "Vector", "VectorPage", "WriteResult")
_WHERE = {"Catalog": "catalog", "open_catalog": "catalog", "VectorIndex": "index", "METRICS": "limits",
          "PRESETS": "presets", "Tuning": "tuning", "check_name": "validate", **dict.fromkeys(_RECORDS, "records")}


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .catalog import Catalog, open_catalog
    from .index import VectorIndex
    from .limits import METRICS
    from .presets import PRESETS
    from .records import (
        DeleteResult,
        IndexConfig,
        IndexInfo,
        Match,
        MetadataIndex,
        Query,
        QueryResult,
        Vector,
        VectorPage,
        WriteResult,
    )
    from .tuning import Tuning
    from .validate import check_name

__all__ = [
    "Catalog",
    "DeleteResult",
    "IndexConfig",
    "IndexInfo",
    "METRICS",
    "Match",
    "MetadataIndex",
    "PRESETS",
    "Query",
    "QueryResult",
    "Tuning",
    "Vector",
    "VectorIndex",
    "VectorPage",
    "WriteResult",
    "check_name",
    "open_catalog",
]
