"""The SQL of namespaces and metadata filters, over ``metadata_values`` (see ``schema.py``).

``filters.Plan`` hands over what a query asks as abstract ``Clause``s (``filters/plan.py``): a slot
(which metadata index), whether a vector must have (``positive``) or must not have a value that
passes, and the test, a tuple of ``(operator, value)`` with operators ``=``, ``in`` (a tuple of
values), ``>``, ``>=``, ``<``, ``<=``. Values are always bound as parameters, never put into the
SQL text. Every statement reads covering indexes only: metadata_values' primary key
(slot, value, key) and its (key, slot, value) index, and vectors_namespace (namespace, key); the
vectors table itself (a float32 blob per row) is read only when there is nothing else to start from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

CHUNK = 500  # keys per IN (...) list
_COMPARE = {"=": "=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
_NAMESPACE = "SELECT {k} FROM vectors n INDEXED BY vectors_namespace WHERE n.namespace = ?"


def _test_sql(test: Sequence[tuple[str, Any]], column: str) -> tuple[str, list[Any]]:
    parts, params = [], []
    for op, value in test:
        if op == "in":
            parts.append(f"{column} IN ({','.join('?' * len(value))})")  # <= ~1000 values in 2 KiB
            params += value
        else:
            parts.append(f"{column} {_COMPARE[op]} ?")
            params.append(value)
    return " AND ".join(parts), params


def _exists(clauses, namespace: str | None, key_column: str, skip=None) -> tuple[list[str], list[Any]]:
    """``[NOT] EXISTS`` conditions on ``key_column`` for the namespace and each clause but ``skip``."""
    parts: list[str] = []
    params: list[Any] = []
    if namespace is not None:
        parts.append(f"EXISTS ({_NAMESPACE.format(k='1')} AND n.key = {key_column})")
        params.append(namespace)
    for clause in clauses:
        if clause is not skip:
            test, values = _test_sql(clause.test, "m.value")
            parts.append(f"{'' if clause.positive else 'NOT '}EXISTS (SELECT 1 FROM metadata_values m "
                         f"WHERE m.key = {key_column} AND m.slot = ? AND {test})")
            params += [clause.slot, *values]
    return parts, params


def _count(conn, sql: str, params: list[Any], limit: int) -> int:
    return conn.execute(f"SELECT count(*) FROM ({sql} LIMIT ?)", (*params, limit)).fetchone()[0]


def _scan(clause=None, namespace: str | None = None) -> tuple[str, list[Any]]:
    """SQL selecting (as ``key``) the keys of the vectors with a value in ``clause``'s metadata
    index that passes its test (a range of metadata_values' primary key), or in ``namespace``."""
    if clause is None:
        return _NAMESPACE.format(k="n.key AS key"), [namespace]
    test, values = _test_sql(clause.test, "d.value")
    return f"SELECT d.key FROM metadata_values d WHERE d.slot = ? AND {test}", [clause.slot, *values]


def _entries(clauses, namespace: str | None) -> list[tuple[str, list[Any], Any]]:
    """Where a search for every match can start: ``(sql, params, the clause or None)`` for each
    positive clause and the namespace (``_scan``)."""
    options = [(*_scan(clause), clause) for clause in clauses if clause.positive]
    if namespace is not None:
        options.append((*_scan(namespace=namespace), None))
    return options


def _smallest(conn, options, cap: int) -> tuple[int, int]:
    """The option with the fewest rows and how many (exact if at most ``cap``, else cap + 1),
    each counted only as far as the fewest found before it."""
    best, fewest = 0, cap + 1
    for i, (sql, params, _) in enumerate(options):
        n = _count(conn, sql, params, fewest)
        if n < fewest:
            best, fewest = i, n
    return best, fewest


def _matching_sql(conn, clauses, namespace: str | None, cap: int) -> tuple[str, list[Any]]:
    """SQL selecting the key of every matching vector, entered the most selective way: a positive
    clause (a range of metadata_values' primary key) or the namespace, whichever has the fewest
    rows (counted up to ``cap``); all vectors only when neither exists."""
    options = _entries(clauses, namespace)
    if not options:
        parts, params = _exists(clauses, None, "v.key")
        return "SELECT v.key FROM vectors v WHERE " + " AND ".join(parts), params
    entry = _smallest(conn, options, cap)[0] if len(options) > 1 else 0
    sql, params, first = options[entry]
    if first is None:  # entered by the namespace: every clause is a condition
        parts, more = _exists(clauses, None, "n.key")
    else:
        parts, more = _exists(clauses, namespace, "d.key", skip=first)
    if parts:
        sql += " AND " + " AND ".join(parts)
    return sql, params + more


def matching_keys(store, clauses, namespace: str | None, limit: int, entry_rows: int) -> str | None:
    """The keys of every vector in ``namespace`` (when given) that every clause admits, if there
    are at most ``limit`` of them, else None; as one text of decimal keys joined by commas, in no
    order (NumPy reads it much faster than Python builds a list of them from rows). Where to
    enter is chosen by counting rows up to ``limit``, at most ``entry_rows``."""
    sql, params = _matching_sql(store.conn, clauses, namespace, min(limit, entry_rows))
    if _count(store.conn, sql, params, limit + 1) > limit:
        return None
    return _keys_text(store, sql, params)


def condition_keys(store, clause=None, namespace: str | None = None) -> str:
    """The keys of every vector in ``namespace``, or with a value in ``clause``'s metadata index
    that passes its test (whether the clause is positive or not), as ``matching_keys`` gives them:
    one range scan (a batch reads its filters' conditions so, once each: ``masks.py``)."""
    return _keys_text(store, *_scan(clause, namespace))


def _keys_text(store, sql: str, params: list[Any]) -> str:
    return store.conn.execute(f"SELECT group_concat(key) FROM ({sql})", params).fetchone()[0] or ""


def passing(store, keys: Sequence[int], clauses, namespace: str | None) -> set[int]:
    """Those of ``keys`` (live vectors) that are in ``namespace`` and that every clause admits:
    checked one condition at a time, the positive ones first, each on the keys still standing."""
    standing = set(keys)
    checks: list[tuple[bool, str, list[Any], list[Any]]] = []
    for clause in sorted(clauses, key=lambda c: not c.positive):
        test, values = _test_sql(clause.test, "value")
        checks.append((clause.positive, "SELECT key FROM metadata_values WHERE key IN ({marks}) AND slot = ? "
                       f"AND {test}", [], [clause.slot, *values]))
    if namespace is not None:
        checks.append((True, _NAMESPACE.format(k="n.key") + " AND n.key IN ({marks})", [namespace], []))
    for positive, sql, before, after in checks:
        todo = sorted(standing)
        if not todo:
            break
        found: set[int] = set()
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            statement = sql.format(marks=",".join("?" * len(chunk)))
            found.update(r[0] for r in store.conn.execute(statement, (*before, *chunk, *after)))
        standing = standing & found if positive else standing - found
    return standing
