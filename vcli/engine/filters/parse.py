"""Checking a filter's JSON (and a metadata index's property name and type) without looking at
the index: ``parse`` gives a ``Filter`` or raises ``BadFilter`` saying precisely what is wrong."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import orjson

from ...errors import BadFilter, MetadataIndexError
from ..limits import INDEX_TYPES, MAX_FILTER_BYTES, MAX_PROPERTY_CHARS
from ..validate import json_type as _kind
from .values import value_type

EQUALITY_OPS = ("$eq", "$ne", "$in", "$nin")
LOWER_OPS = ("$gt", "$gte")
UPPER_OPS = ("$lt", "$lte")
ALL_OPS = EQUALITY_OPS + LOWER_OPS + UPPER_OPS
_COMPARE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}



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
