"""Metadata indexes and filters: check the filter JSON, then bind it to the index's metadata indexes.

The rules (docs/contract.md, "Metadata filters"; as Vectorize does):

* A filter is a non-empty JSON object, at most ``MAX_FILTER_BYTES`` as compact JSON. Each key is a
  property (``"a.b"`` reaches ``{"a": {"b": …}}``); several keys are ANDed. A value is a scalar
  (implicit ``$eq``) or an object of operators: ``$eq``/``$ne`` (string, number, boolean, null),
  ``$in``/``$nin`` (non-empty array of those), ``$lt``/``$lte``/``$gt``/``$gte`` (string or number;
  at most one lower and one upper bound, both of one type). Equality operators stand alone.
* Filtering needs a metadata index on the property. A vector is indexed for a property only if it
  was written after that metadata index existed; what it holds then is kept in ``metadata_values``
  (one row per vector and metadata index: strings cut to 64 UTF-8 bytes on a character boundary,
  numbers as float64, booleans as 0/1). A value of another type than the metadata index's is not
  indexed, just like a vector written before it.
* Types compare strictly. Filter strings are cut to 64 bytes as well, so comparisons are between
  indexed prefixes. A vector with no indexed value for the property matches ``$ne`` and ``$nin``
  and nothing else (``{"k": null}`` matches nothing; ``{"k": {"$ne": null}}`` matches every vector).

``parse`` checks the JSON without looking at the index; ``Plan`` binds a parsed filter (and a
namespace) to the index's metadata indexes as ``Clause``s, which ``store/filtering.py`` runs as
SQL. A query uses the plan in two ways (``query.py``): ``matching_keys(limit)`` lists the matching
keys when there are at most ``limit`` of them (score them all exactly), and ``accept`` tells which
of a batch of candidate keys pass (when many match: the search widens instead). A batch reads its
plans' conditions one by one instead, once each, and combines them (``masks.py``).

A module a concern: ``values.py`` (a value as an index keeps it), ``parse.py`` (the filter's JSON,
property names), ``plan.py`` (``Plan``, which queries the store), ``indexed.py`` (the rows a write
keeps for its metadata indexes).
"""

from __future__ import annotations

from .indexed import MetadataIndexInfo, snapshot_rows
from .parse import (
    ALL_OPS,
    EQUALITY_OPS,
    LOWER_OPS,
    UPPER_OPS,
    Condition,
    Filter,
    check_index_type,
    check_property_name,
    parse,
    property_problem,
)
from .plan import Clause, Plan, sorted_keys
from .values import cut_string, index_value, lookup, nest, output_value, value_type

__all__ = [
    "ALL_OPS", "EQUALITY_OPS", "LOWER_OPS", "UPPER_OPS", "Clause", "Condition", "Filter", "MetadataIndexInfo",
    "Plan", "check_index_type", "check_property_name", "cut_string", "index_value", "lookup", "nest",
    "output_value", "parse", "property_problem", "snapshot_rows", "sorted_keys", "value_type",
]
