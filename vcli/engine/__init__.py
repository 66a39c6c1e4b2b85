"""The vcli engine: local Vectorize indexes as a Python library.

    from vcli.engine import Catalog

    catalog = Catalog("/tmp/indexes")
    catalog.create("docs", dimensions=3, metric="cosine")
    with catalog.open("docs") as index:
        index.insert([{"id": "a", "values": [1, 2, 3], "metadata": {"lang": "en"}}])
        result = index.query([1, 2, 3], top_k=1)

Nothing here prints, exits or imports the CLI stack; NumPy and usearch load only for queries and
for the writes that rebuild search files.
"""

from .catalog import Catalog, check_name
from .index import VectorIndex
from .presets import METRICS, PRESETS
from .records import (
    DeleteResult,
    IndexConfig,
    IndexInfo,
    Match,
    MetadataIndex,
    QueryResult,
    Vector,
    VectorPage,
    WriteResult,
)

__all__ = [
    "Catalog",
    "DeleteResult",
    "IndexConfig",
    "IndexInfo",
    "METRICS",
    "Match",
    "MetadataIndex",
    "PRESETS",
    "QueryResult",
    "Vector",
    "VectorIndex",
    "VectorPage",
    "WriteResult",
    "check_name",
]
