"""Every limit vcli enforces, defined once: Vectorize's own (docs/contract.md, "Limits") and vcli's
defaults. The CLI, the engine, the REST API and ``vcli check`` all read them from here; the checks
that apply them are in ``validate.py`` (and ``filters.py`` for filters).
"""

from __future__ import annotations

# == indexes ======================================================================================
MAX_NAME_BYTES = 64
MAX_DIMENSIONS = 1536
METRICS = ("euclidean", "cosine", "dot-product")

# == vectors ======================================================================================
MAX_ID_BYTES = 64
MAX_NAMESPACE_BYTES = 64
MAX_METADATA_BYTES = 10 * 1024  # compact JSON
MAX_METADATA_DEPTH = 200  # nested objects (orjson writes at most 254 levels)
VECTOR_FIELDS = ("id", "values", "metadata", "namespace")
MAX_BATCH_SIZE = 5000  # vectors a write sends at once (--batch-size 1..5000); the REST API's cap a request
INSERT_BATCH_SIZE = 1000  # wrangler's defaults
UPSERT_BATCH_SIZE = 5000

# == queries ======================================================================================
DEFAULT_TOP_K = 5
MAX_TOP_K = 100
# With values or all metadata returned: 50, as the live service and (since 2026-03-16) its
# documentation say; the ``max_top_k_with_values`` setting may lower it.
MAX_TOP_K_WITH_DATA = 50
RETURN_METADATA = ("none", "indexed", "all")
QUERY_FIELDS = ("vector", "vectorId", "topK", "filter", "namespace", "returnValues", "returnMetadata")

# == metadata indexes and filters =================================================================
MAX_METADATA_INDEXES = 10
INDEX_TYPES = ("string", "number", "boolean")
INDEXED_STRING_BYTES = 64  # strings are indexed (and filtered) on their first 64 bytes
MAX_FILTER_BYTES = 2048  # compact JSON
MAX_PROPERTY_CHARS = 512  # a filter key or metadata index property

# == listing ======================================================================================
DEFAULT_LIST_COUNT = 100
MAX_LIST_COUNT = 1000
CURSOR_TTL_SECONDS = 3600

# == one request of the REST API or the Workers binding ===========================================
MAX_GET_IDS = 20  # ids per get_by_ids (more fail with 40007); the CLI takes any number
MAX_DELETE_IDS = 100  # ids per delete_by_ids
MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # an insert or upsert body
MAX_WORKER_BATCH = 1000  # vectors a Worker's binding inserts or upserts in one call

# == an account and an index: caps a local test suite should meet before production does ==========
# (settings max_indexes and max_namespaces; Vectorize's figures for Workers Paid, Free in brackets)
DEFAULT_MAX_INDEXES = 50_000  # indexes per account (Free: 100)
DEFAULT_MAX_NAMESPACES = 50_000  # namespaces per index (Free: 1,000)

# == vcli's own ===================================================================================
DEFAULT_LOCK_TIMEOUT = 60.0  # seconds a write waits for another writer (setting lock_timeout)
