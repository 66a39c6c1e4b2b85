"""A parsed filter (and a namespace) bound to an index's metadata indexes: ``Clause``s that
``store/filtering.py`` runs as SQL, to list the matching keys or check candidate keys."""

from __future__ import annotations

from typing import Any, NamedTuple

from ...errors import MetadataIndexError
from ..store import filtering
from .indexed import MetadataIndexInfo
from .parse import _COMPARE, Condition, Filter, _describe
from .values import index_value, value_type


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

    def matching_keys(self, limit: int, entry_rows: int):
        """The sorted int64 keys of every matching vector if there are at most ``limit`` of them,
        else None (``entry_rows``: ``Tuning.filter_entry_rows``)."""
        import numpy as np

        if self.nothing:
            return np.zeros(0, np.int64)
        found = filtering.matching_keys(self.store, self.clauses, self.namespace, limit, entry_rows)
        if found is None:
            return None
        return sorted_keys(found)

    def accept(self, keys):
        """A boolean mask: which of ``keys`` (int64 array of existing vectors) pass."""
        import numpy as np

        keys = np.asarray(keys, np.int64)
        if self.nothing:
            return np.zeros(len(keys), bool)
        # a set, not np.unique / np.isin: they import numpy.ma, a cost to a one-shot query
        listed = keys.tolist()
        passing = filtering.passing(self.store, listed, self.clauses, self.namespace)
        return np.fromiter((k in passing for k in listed), bool, len(listed))


def sorted_keys(text: str):
    import numpy as np

    keys = np.fromstring(text, np.int64, sep=",")
    if len(keys) > 1 and not (keys[1:] >= keys[:-1]).all():  # (a range of one index's key is sorted already)
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
