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

Nothing here prints, exits or imports the CLI stack; NumPy and usearch load only for queries and
for the writes that rebuild search files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .catalog import Catalog
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
from .settings import load_settings
from .tuning import Tuning
from .validate import check_name


def open_catalog(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    tuning: Tuning | None = None,
) -> Catalog:
    """The catalog of indexes as the CLI sees it, with the configured settings.

    ``data_dir`` wins as ``--data-dir`` does; without it the data dir comes from ``VCLI_DATA_DIR``,
    a project ``vcli.toml`` (searched from ``cwd`` upwards), the user ``config.toml``, or the
    platform's user data dir. ``lock_timeout`` and ``max_top_k_with_values`` come from the same
    places. ``env`` defaults to ``os.environ``; ``tuning`` to ``Tuning()``. Raises ``ConfigError``
    for a bad config file."""
    settings = load_settings({"data_dir": data_dir}, env, cwd)
    return Catalog(settings.data_dir, lock_timeout=settings.lock_timeout,
                   max_top_k_with_values=settings.max_top_k_with_values, tuning=tuning)


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
