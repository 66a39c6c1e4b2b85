"""Metadata indexes and filters: check the filter JSON, then run it as SQL over the snapshot table.

The rules (SPEC.md §4, as Vectorize does):

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
namespace) to the index's metadata indexes and builds parameterised SQL (no value is ever put into
the SQL text). ``VectorIndex.query`` uses the plan in two ways: ``matching_keys(limit)`` lists the
matching keys when there are at most ``limit`` of them (score them all exactly), and ``accept``
tells which of a batch of candidate keys pass (when many match: the search widens instead).
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any, NamedTuple

import orjson

from ..errors import BadFilter, BadQuery, MetadataIndexError
from ..ndjson import json_type as _kind

MAX_FILTER_BYTES = 2048
MAX_KEY_CHARS = 512
MAX_METADATA_INDEXES = 10
INDEXED_STRING_BYTES = 64
INDEX_TYPES = ("string", "number", "boolean")
EQUALITY_OPS = ("$eq", "$ne", "$in", "$nin")
LOWER_OPS = ("$gt", "$gte")
UPPER_OPS = ("$lt", "$lte")
ALL_OPS = EQUALITY_OPS + LOWER_OPS + UPPER_OPS
_SQL_OP = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
CHUNK = 500  # keys per IN (...) list
# A filtered query lists the matching keys and scores them all exactly when at most this many
# match; beyond that the search widens and checks its candidates against the filter.
EXACT_ROWS = 2048


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
    if len(name) > MAX_KEY_CHARS:
        return f"is {len(name)} characters long; the limit is {MAX_KEY_CHARS}"
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
    if not obj:
        raise BadFilter('the filter is an empty object; give at least one property, e.g. {"genre": "drama"}')
    try:
        size = len(orjson.dumps(obj))
    except TypeError as exc:
        raise BadFilter(f"the filter must hold only JSON values ({exc})") from None
    if size > MAX_FILTER_BYTES:
        raise BadFilter(
            f"the filter is {size:,} bytes as compact JSON; the limit is {MAX_FILTER_BYTES:,} bytes"
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
    bounds = [spec[op] for op in spec if op in _SQL_OP]
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
    """``[NOT] EXISTS`` a row of ``metadata_values`` for ``slot`` whose value passes ``test``."""

    slot: int
    positive: bool
    test: str  # SQL on the column "{v}", with ? placeholders
    params: tuple

    def sql(self, column: str) -> str:
        return self.test.format(v=column)


class Plan:
    """A filter and namespace bound to an index's metadata indexes, as SQL over the store."""

    def __init__(self, conn: sqlite3.Connection, namespace: str | None = None):
        self.conn = conn
        self.clauses: list[Clause] = []
        self.namespace = namespace
        self.nothing = False  # some condition can never hold: no vector matches
        self.notes: list[str] = []

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def build(
        cls, conn: sqlite3.Connection, index_name: str, indexes: list[MetadataIndexInfo],
        filter: Filter | None, namespace: str | None,
    ) -> Plan:
        plan = cls(conn, namespace=namespace)
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
            if op == "$eq":
                if not fits(value):
                    self.nothing = True
                    mismatch([value], "matches no vector")
                    return
                self.clauses.append(Clause(meta.slot, True, "{v} = ?", (key(value),)))
            else:
                if not fits(value):
                    mismatch([value], "differs from every vector")
                    return
                self.clauses.append(Clause(meta.slot, False, "{v} = ?", (key(value),)))
            return
        if "$in" in ops or "$nin" in ops:
            op = "$in" if "$in" in ops else "$nin"
            values = list(ops[op])
            kept = list(dict.fromkeys(key(v) for v in values if fits(v)))
            wrong = [v for v in values if not fits(v)]
            if wrong:
                mismatch(wrong, "never equals a vector's value" if kept else
                         ("matches no vector" if op == "$in" else "differs from every vector"))
            if not kept:
                if op == "$in":
                    self.nothing = True
                return
            marks = ",".join("?" * len(kept))  # at most ~1000 values fit in 2048 bytes
            self.clauses.append(Clause(meta.slot, op == "$in", f"{{v}} IN ({marks})", tuple(kept)))
            return
        # range: one or two bounds of one type
        bounds = [(op, ops[op]) for op in ops]
        if not fits(bounds[0][1]):
            self.nothing = True
            mismatch([b[1] for b in bounds], "matches no vector")
            return
        test = " AND ".join(f"{{v}} {_SQL_OP[op]} ?" for op, _ in bounds)
        self.clauses.append(Clause(meta.slot, True, test, tuple(key(v) for _, v in bounds)))

    @property
    def active(self) -> bool:
        """Whether the plan restricts the candidates at all."""
        return self.nothing or bool(self.clauses) or self.namespace is not None

    # -- SQL -----------------------------------------------------------------------------------
    # Every statement reads covering indexes only: metadata_values' primary key (slot, value, key)
    # and its (key, slot, value) index, and vectors_namespace (namespace, key). The vectors table
    # itself (a float32 blob per row) is read only when there is nothing else to start from.
    _NAMESPACE = "SELECT {k} FROM vectors n INDEXED BY vectors_namespace WHERE n.namespace = ?"

    def _exists(self, key_column: str, skip: Clause | None, with_namespace: bool) -> tuple[list[str], list[Any]]:
        parts: list[str] = []
        params: list[Any] = []
        if with_namespace and self.namespace is not None:
            parts.append(f"EXISTS ({self._NAMESPACE.format(k='1')} AND n.key = {key_column})")
            params.append(self.namespace)
        for clause in self.clauses:
            if clause is not skip:
                parts.append(
                    f"{'' if clause.positive else 'NOT '}EXISTS (SELECT 1 FROM metadata_values m "
                    f"WHERE m.key = {key_column} AND m.slot = ? AND {clause.sql('m.value')})"
                )
                params += [clause.slot, *clause.params]
        return parts, params

    def _count(self, sql: str, params: list[Any], limit: int) -> int:
        return self.conn.execute(f"SELECT count(*) FROM ({sql} LIMIT ?)", (*params, limit)).fetchone()[0]

    def _matching_sql(self, limit: int) -> tuple[str, list[Any]]:
        """SQL selecting the key of every matching vector, entered the most selective way: a
        positive clause (a range of metadata_values' primary key) or the namespace, picking the
        one with the fewest rows (counted up to ``limit``); all vectors only when neither exists."""
        options: list[tuple[str, list[Any], Clause | None]] = []
        for clause in self.clauses:
            if clause.positive:
                sql = f"SELECT d.key FROM metadata_values d WHERE d.slot = ? AND {clause.sql('d.value')}"
                options.append((sql, [clause.slot, *clause.params], clause))
        if self.namespace is not None:
            options.append((self._NAMESPACE.format(k="n.key AS key"), [self.namespace], None))
        if not options:
            parts, params = self._exists("v.key", None, with_namespace=False)
            return "SELECT v.key FROM vectors v WHERE " + " AND ".join(parts), params
        if len(options) > 1:
            options.sort(key=lambda o: self._count(o[0], o[1], limit + 1))
        sql, params, skip = options[0]
        parts, more = self._exists("n.key" if skip is None else "d.key", skip, with_namespace=skip is not None)
        if parts:
            sql += " AND " + " AND ".join(parts)
        return sql, params + more

    def matching_keys(self, limit: int):
        """The sorted int64 keys of every matching vector if there are at most ``limit`` of them,
        else None."""
        import numpy as np

        if self.nothing:
            return np.zeros(0, np.int64)
        sql, params = self._matching_sql(limit)
        if self._count(sql, params, limit + 1) > limit:
            return None
        rows = self.conn.execute(sql, params).fetchall()
        keys = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        keys.sort()
        return keys

    def accept(self, keys):
        """A boolean mask: which of ``keys`` (int64 array of existing vectors) pass."""
        import numpy as np

        keys = np.asarray(keys, np.int64)
        ok = np.full(len(keys), not self.nothing)
        # (positive, SQL with {marks} for the keys, parameters before the keys, after them)
        checks: list[tuple[bool, str, list[Any], list[Any]]] = [
            (c.positive, f"SELECT key FROM metadata_values WHERE key IN ({{marks}}) AND slot = ? "
                         f"AND {c.sql('value')}", [], [c.slot, *c.params])
            for c in sorted(self.clauses, key=lambda c: not c.positive)
        ]
        if self.namespace is not None:
            checks.append((True, self._NAMESPACE.format(k="n.key") + " AND n.key IN ({marks})",
                           [self.namespace], []))
        for positive, sql, before, after in checks:
            todo = np.unique(keys[ok]).tolist()
            if not todo:
                break
            found: list[int] = []
            for start in range(0, len(todo), CHUNK):
                chunk = todo[start : start + CHUNK]
                statement = sql.format(marks=",".join("?" * len(chunk)))
                found += [r[0] for r in self.conn.execute(statement, (*before, *chunk, *after))]
            hit = np.isin(keys, np.asarray(found, np.int64))
            ok &= hit if positive else ~hit
        return ok


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


def check_namespace(namespace: Any) -> str | None:
    if namespace is None:
        return None
    from ..ndjson import check_namespace as check

    try:
        return check(namespace)
    except ValueError as exc:
        raise BadQuery(str(exc)) from None


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
