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
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import orjson

from ..errors import BadFilter, MetadataIndexError
from .limits import INDEX_TYPES, INDEXED_STRING_BYTES, MAX_FILTER_BYTES, MAX_PROPERTY_CHARS
from .store import filtering
from .validate import json_type as _kind

EQUALITY_OPS = ("$eq", "$ne", "$in", "$nin")
LOWER_OPS = ("$gt", "$gte")
UPPER_OPS = ("$lt", "$lte")
ALL_OPS = EQUALITY_OPS + LOWER_OPS + UPPER_OPS
_COMPARE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


# == values ==================================================================================
def cut_string(text: str, limit: int = INDEXED_STRING_BYTES) -> str:
    """The longest prefix of ``text`` that is at most ``limit`` UTF-8 bytes (whole characters)."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def value_type(value: Any) -> str | None:
    """The metadata index type a JSON value would be indexed as, or None (null, array, object)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def index_value(value: Any, index_type: str) -> str | float | int | None:
    """What a metadata index of ``index_type`` keeps of ``value`` (None: not indexed)."""
    kind = value_type(value)
    if kind != index_type:
        return None
    if kind == "string":
        return cut_string(value)
    if kind == "boolean":
        return int(value)
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def lookup(metadata: Any, prop: str) -> tuple[bool, Any]:
    """``(found, value)`` of a dotted property in a metadata object."""
    node = metadata
    for part in prop.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def output_value(value: Any, index_type: str) -> Any:
    """An indexed value as ``--return-metadata indexed`` shows it."""
    if index_type == "boolean":
        return bool(value)
    if index_type == "number":
        number = float(value)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    return value


def nest(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``[("a.b", 1), ("c", 2)]`` -> ``{"a": {"b": 1}, "c": 2}``."""
    out: dict[str, Any] = {}
    for prop, value in pairs:
        *parents, last = prop.split(".")
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[last] = value
    return out


# == property names ==========================================================================
def property_problem(name: Any) -> str | None:
    """Why ``name`` cannot be a filter key or metadata index property, or None if it can."""
    if not isinstance(name, str):
        return "must be a string"
    if not name:
        return "is empty"
    if len(name) > MAX_PROPERTY_CHARS:
        return f"is {len(name)} characters long; the limit is {MAX_PROPERTY_CHARS}"
    if '"' in name:
        return "may not contain '\"'"
    if name.startswith("$"):
        return 'may not start with "$"'
    if any(not part for part in name.split(".")):
        return 'has an empty part between dots (nested properties are written "a.b")'
    return None


def check_property_name(name: Any) -> str:
    problem = property_problem(name)
    if problem:
        raise MetadataIndexError(f'property name "{name}" {problem}')
    return name


def check_index_type(kind: Any) -> str:
    if kind not in INDEX_TYPES:
        raise MetadataIndexError(f'metadata index type must be string, number or boolean, got "{kind}"')
    return kind


# == parsing =================================================================================
class Condition(NamedTuple):
    """One key of the filter with its operators, e.g. ``("price", {"$gte": 10, "$lt": 20})``."""

    prop: str
    ops: dict[str, Any]


class Filter(NamedTuple):
    conditions: tuple[Condition, ...]


def _describe(value: Any) -> str:
    text = orjson.dumps(value).decode() if _jsonable(value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _jsonable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


def _check_number(prop: str, op: str, value: Any) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            ok = math.isfinite(float(value))
        except OverflowError:
            ok = False
        if not ok:
            raise BadFilter(f'filter key "{prop}": {op} {value!r} is not a finite number')


def _check_scalar(prop: str, op: str, value: Any) -> None:
    if value is not None and value_type(value) is None:
        raise BadFilter(
            f'filter key "{prop}": {op} takes a string, number, boolean or null, not {_kind(value)}'
            + (" (use $in for several values)" if isinstance(value, (list, tuple)) and op == "$eq" else "")
        )
    _check_number(prop, op, value)


def parse(obj: Any) -> Filter:
    """Check a decoded filter; ``BadFilter`` says precisely what is wrong."""
    if not isinstance(obj, dict):
        raise BadFilter(f'the filter must be a JSON object such as {{"genre": "drama"}}, not {_kind(obj)}')
    if not obj:  # no condition: no filter (a widely used client of the REST API sends {} always)
        return Filter(())
    try:
        size = len(orjson.dumps(obj))
    except TypeError as exc:
        raise BadFilter(f"the filter must hold only JSON values ({exc})") from None
    if size >= MAX_FILTER_BYTES:  # Vectorize: "less than 2048 bytes"
        raise BadFilter(
            f"the filter is {size:,} bytes as compact JSON; it must be less than {MAX_FILTER_BYTES:,} bytes"
        )
    conditions = []
    for prop, spec in obj.items():
        problem = property_problem(prop)
        if problem:
            raise BadFilter(f'filter key "{prop}" {problem}')
        conditions.append(Condition(prop, _parse_ops(prop, spec)))
    return Filter(tuple(conditions))


def _parse_ops(prop: str, spec: Any) -> dict[str, Any]:
    if isinstance(spec, (list, tuple)):
        raise BadFilter(
            f'filter key "{prop}": an array is not a value to compare with; '
            f'use {{"$in": [...]}} to match any of several values'
        )
    if not isinstance(spec, dict):
        _check_scalar(prop, "$eq", spec)
        return {"$eq": spec}
    if not spec:
        raise BadFilter(f'filter key "{prop}": the operator object is empty; use e.g. {{"$eq": ...}}')
    for op in spec:
        if op not in ALL_OPS:
            if isinstance(op, str) and not op.startswith("$"):
                raise BadFilter(
                    f'filter key "{prop}": "{op}" is not an operator; nested properties are '
                    f'written with dots, e.g. {{"{prop}.{op}": ...}}'
                )
            raise BadFilter(
                f'filter key "{prop}": unknown operator "{op}" (use $eq, $ne, $in, $nin, $lt, $lte, '
                f"$gt or $gte)"
            )
    equality = [op for op in spec if op in EQUALITY_OPS]
    if equality and len(spec) > 1:
        other = next(op for op in spec if op != equality[0])
        raise BadFilter(
            f'filter key "{prop}": {equality[0]} cannot be combined with {other} on the same key '
            f"(only one lower bound and one upper bound may be combined)"
        )
    for group, names in ((LOWER_OPS, "lower bound ($gt or $gte)"), (UPPER_OPS, "upper bound ($lt or $lte)")):
        used = [op for op in spec if op in group]
        if len(used) > 1:
            raise BadFilter(f'filter key "{prop}": at most one {names} per key, got {" and ".join(used)}')
    for op, value in spec.items():
        if op in ("$eq", "$ne"):
            _check_scalar(prop, op, value)
        elif op in ("$in", "$nin"):
            if not isinstance(value, (list, tuple)):
                raise BadFilter(f'filter key "{prop}": {op} takes an array of values, not {_kind(value)}')
            if not value:
                raise BadFilter(f'filter key "{prop}": {op} needs a non-empty array')
            for item in value:
                if item is not None and value_type(item) is None:
                    raise BadFilter(
                        f'filter key "{prop}": {op} values must be strings, numbers, booleans or null, '
                        f"not {_kind(item)} ({_describe(item)})"
                    )
                _check_number(prop, op, item)
        else:
            if value_type(value) not in ("string", "number"):
                raise BadFilter(f'filter key "{prop}": {op} takes a string or a number, not {_kind(value)}')
            _check_number(prop, op, value)
    bounds = [spec[op] for op in spec if op in _COMPARE]
    if len(bounds) == 2 and value_type(bounds[0]) != value_type(bounds[1]):
        raise BadFilter(
            f'filter key "{prop}": the lower and upper bounds must both be numbers or both strings, '
            f"got {_describe(bounds[0])} and {_describe(bounds[1])}"
        )
    return dict(spec)


# == planning ================================================================================
class MetadataIndexInfo(NamedTuple):
    """A metadata index as the store keeps it: ``slot`` is the mutation that created it (its id in
    ``metadata_values``; never reused)."""

    property_name: str
    index_type: str
    slot: int


class Clause(NamedTuple):
    """A vector must have (``positive``) or must not have a value in metadata index ``slot`` that
    passes ``test``: ``(operator, value)`` pairs, all of which hold (see ``store/filtering.py``)."""

    slot: int
    positive: bool
    test: tuple[tuple[str, Any], ...]


class Plan:
    """A filter and namespace bound to an index's metadata indexes."""

    def __init__(self, store, namespace: str | None = None):
        self.store = store
        self.clauses: list[Clause] = []
        self.namespace = namespace
        self.nothing = False  # some condition can never hold: no vector matches
        self.notes: list[str] = []

    @classmethod
    def build(
        cls, store, index_name: str, indexes: list[MetadataIndexInfo], filter: Filter | None,
        namespace: str | None,
    ) -> Plan:
        plan = cls(store, namespace=namespace)
        by_prop = {m.property_name: m for m in indexes}
        for cond in filter.conditions if filter else ():
            meta = by_prop.get(cond.prop)
            if meta is None:
                raise MetadataIndexError(_no_index_message(index_name, cond, indexes))
            plan._add(cond, meta)
        return plan

    def _add(self, cond: Condition, meta: MetadataIndexInfo) -> None:
        kind = meta.index_type

        def fits(value: Any) -> bool:
            return value_type(value) == kind

        def key(value: Any) -> Any:
            return index_value(value, kind)

        def mismatch(values: list[Any], effect: str) -> None:
            shown = ", ".join(_describe(v) for v in values[:3])
            if all(v is None for v in values):
                why = f'a metadata index holds no nulls; a vector without "{cond.prop}" matches only $ne and $nin'
            else:
                why = f"its metadata index is of type {kind}, and types compare strictly"
            self.notes.append(f'filter on "{cond.prop}": {shown} {effect} ({why})')

        ops = cond.ops
        if "$eq" in ops or "$ne" in ops:
            op = "$eq" if "$eq" in ops else "$ne"
            value = ops[op]
            if not fits(value):
                if op == "$eq":
                    self.nothing = True
                mismatch([value], "matches no vector" if op == "$eq" else "differs from every vector")
                return
            self.clauses.append(Clause(meta.slot, op == "$eq", (("=", key(value)),)))
            return
        if "$in" in ops or "$nin" in ops:
            op = "$in" if "$in" in ops else "$nin"
            values = list(ops[op])
            kept = tuple(dict.fromkeys(key(v) for v in values if fits(v)))
            wrong = [v for v in values if not fits(v)]
            if wrong:
                mismatch(wrong, "never equals a vector's value" if kept else
                         ("matches no vector" if op == "$in" else "differs from every vector"))
            if not kept:
                if op == "$in":
                    self.nothing = True
                return
            self.clauses.append(Clause(meta.slot, op == "$in", (("in", kept),)))
            return
        # range: one or two bounds of one type
        bounds = [(op, ops[op]) for op in ops]
        if not fits(bounds[0][1]):
            self.nothing = True
            mismatch([b[1] for b in bounds], "matches no vector")
            return
        self.clauses.append(Clause(meta.slot, True, tuple((_COMPARE[op], key(v)) for op, v in bounds)))

    @property
    def active(self) -> bool:
        """Whether the plan restricts the candidates at all."""
        return self.nothing or bool(self.clauses) or self.namespace is not None

    def matching_keys(self, limit: int):
        """The sorted int64 keys of every matching vector if there are at most ``limit`` of them,
        else None."""
        import numpy as np

        if self.nothing:
            return np.zeros(0, np.int64)
        found = filtering.matching_keys(self.store, self.clauses, self.namespace, limit)
        if found is None:
            return None
        return sorted_keys(found)

    def accept(self, keys):
        """A boolean mask: which of ``keys`` (int64 array of existing vectors) pass."""
        import numpy as np

        keys = np.asarray(keys, np.int64)
        if self.nothing:
            return np.zeros(len(keys), bool)
        # a set, not np.unique / np.isin: they import numpy.ma, ~20 ms of a one-shot query
        listed = keys.tolist()
        passing = filtering.passing(self.store, listed, self.clauses, self.namespace)
        return np.fromiter((k in passing for k in listed), bool, len(listed))


def sorted_keys(text: str):
    import numpy as np

    keys = np.fromstring(text, np.int64, sep=",")
    keys.sort()
    return keys


def _no_index_message(index_name: str, cond: Condition, indexes: list[MetadataIndexInfo]) -> str:
    kinds = {value_type(v) for op, v in cond.ops.items() for v in (v if op in ("$in", "$nin") else [v])}
    kinds.discard(None)
    kind = kinds.pop() if len(kinds) == 1 else "string|number|boolean"
    have = ", ".join(f'"{m.property_name}"' for m in indexes)
    known = f" (it has metadata indexes on {have})" if have else " (it has none)"
    return (
        f'cannot filter on "{cond.prop}": index "{index_name}" has no metadata index on that '
        f"property{known}. Create one with `vcli create-metadata-index {index_name} "
        f"--property-name {cond.prop} --type {kind}`, then upsert the vectors again so they are "
        f"indexed for it"
    )


def snapshot_rows(metadata: dict | None, indexes: list[MetadataIndexInfo], key: int) -> list[tuple]:
    """``(slot, value, key)`` rows of ``metadata_values`` for one vector written now."""
    if not metadata:
        return []
    rows = []
    for meta in indexes:
        found, value = lookup(metadata, meta.property_name)
        if found:
            kept = index_value(value, meta.index_type)
            if kept is not None:
                rows.append((meta.slot, kept, key))
    return rows
