"""Answering queries: check a query against the index, find candidates, rescore them exactly.

1. **Check** (``check``): top-k against its caps, the namespace, the filter's syntax, and the query
   vector (its dimensions, finite float32 numbers) or the stored vector of ``vector_id``.
2. **Candidates** (``_candidates``): namespace first, then the filter, then the top k. With neither,
   the search file and the delta are searched as they are (``search/``). With one, a ``Plan``
   counts the matching rows in SQLite: when few match (``Tuning.filter_exact_rows``) all of them
   are scored exactly; when many do, the search widens and keeps the candidates that pass. Either
   way the answer has an unfiltered query's recall.
3. **Rescore** (``_matches``): every candidate's score is computed in float64 from its stored
   float32 values, sorted by the metric's order with ties broken by id, and values and metadata
   are attached as asked. So a score never depends on which path found the match.

``Answerer.many`` answers a batch (``vcli query --file``) over one open searcher: queries without
namespace or filter a block at a time (one matrix product or one graph search on all cores per
block, on background threads while the block before is answered). Queries of a block that share a
namespace and a filter form a group. Each filter is made of the batch's conditions
(``masks.BatchMasks``: each condition read from SQLite once per batch, ahead of the lines that
need it), and its group is answered either from the rows of the conditions of its narrowest
part, each condition's rows gathered once for every group of the block that uses it and scored
against all their queries at once, or with
the block (its queries scored by a matrix product over every row and masked, or on a graph
searched with the block's other masked queries of about its share, as deep as that calls for, and
masked), or from the filter's own rows, gathered, whichever costs least (``Searcher.route``), in
the background threads (``Tuning.batch_threads``), largest first, started with the block.
Answers come out in input order.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np
import orjson

from ..errors import BadInput, BadQuery, VcliError
from . import filters
from .columns import Values, reading
from .masks import BatchMasks
from .records import IndexConfig, Match, Query, QueryResult
from .scoring import exact_scores
from .search import Searcher
from .searchfiles import SearchFiles
from .store import Store
from .validate import check_query, check_query_namespace, check_top_k, pack_values

READ_AHEAD = 16  # a batch's filters whose conditions are being read while the lines after them are


class Checked(NamedTuple):
    """A query checked against the index: its float32 vector, and the plan of its namespace and
    filter (None when it has neither)."""

    query: Query
    q: Any  # float32 array
    plan: filters.Plan | None

    @property
    def plain(self) -> bool:
        """No namespace or filter that restricts the candidates."""
        return self.plan is None or not self.plan.active

    @property
    def group(self) -> tuple:
        """Queries of a batch with the same group have the same candidates."""
        return (self.query.namespace, orjson.dumps(self.query.filter, option=orjson.OPT_SORT_KEYS))


class Answerer:
    """Answers queries on one open index (``VectorIndex.query`` and ``query_many``)."""

    def __init__(self, store: Store, files: SearchFiles, config: IndexConfig, top_k_cap: int):
        self.store = store
        self.files = files
        self.config = config
        self.top_k_cap = top_k_cap
        self._indexes: list[filters.MetadataIndexInfo] | None = None
        self._masks: BatchMasks | None = None  # a batch's: the rows of its filters' conditions

    # -- entry points ---------------------------------------------------------------------------
    def one(self, query: Query) -> QueryResult:
        checked = self.check(query)
        notes: list[str] = []
        with Searcher(self.files, notes) as searcher:
            result = self._answer(searcher, checked, notes)
        return result._replace(notes=tuple(notes))

    def many(self, queries: Iterable[Query | dict | None], progress=None) -> Generator[QueryResult, None, None]:
        """Answer queries in order, one result each, over one open searcher. A wrong query raises
        its error naming its line, once the answers to the lines before it have been yielded. A
        ``None`` among the queries (a pause in the input, see ``ndjson.lines_with_pauses``)
        answers everything read so far before reading on. Each result carries the notes that
        arose since the one before it."""
        notes: list[str] = []
        done = n = 0
        pending: list[Checked] = []  # read, not started
        asked = 0  # the matches the pending queries ask for
        started: list = []  # at most one block: (block, its _Started)
        filters: dict = {}  # the rows of each distinct namespace and filter of the pending queries
        held = 0  # their bytes
        unread: dict = {}  # the plans of the pending queries' filters not in ``filters`` yet, in order
        with Searcher(self.files, notes) as searcher:
            size = searcher.block_size()
            most_bytes = self.files.tuning.block_mask_bytes

            def settle(most: int) -> None:
                """Find the rows of the first of the ``unread`` filters, till at most ``most`` are left."""
                nonlocal held
                while len(unread) > most:
                    group = next(iter(unread))
                    filters[group] = found = self._batch_masks(searcher).filter(unread.pop(group))
                    held += found.nbytes

            def advance(everything: bool) -> Iterator[QueryResult]:
                """Start the pending block; answer the one started before it (or all)."""
                nonlocal pending, done, asked, filters, held
                settle(0)
                if pending:
                    started.append((pending, self._begin_block(searcher, pending, filters)))
                    pending, asked, filters, held = [], 0, {}, 0
                while len(started) > (0 if everything else 1):
                    block, handle = started.pop(0)
                    for result in self._finish_block(searcher, block, handle, notes):
                        yield result._replace(notes=tuple(notes))
                        notes.clear()
                    done += len(block)
                    if progress:
                        progress(done)

            items = iter(queries)
            try:
                while True:
                    try:
                        item = next(items)
                        if item is not None:
                            n += 1
                            query = item if isinstance(item, Query) else _at_line(check_query, item, n)
                            try:
                                pending.append(self.check(query))
                            except VcliError as exc:
                                raise _with_line(exc, query.line or n) from None
                            asked += pending[-1].query.top_k
                            last = pending[-1]
                            if last.plan is not None and not last.plain and last.group not in filters \
                                    and last.group not in unread:
                                # its conditions read ahead while the next lines are read
                                self._batch_masks(searcher).want(last.plan)
                                unread[last.group] = last.plan
                                settle(READ_AHEAD)
                    except StopIteration:
                        break
                    except VcliError:
                        yield from advance(everything=True)  # the lines before it, then the error
                        raise
                    if item is None or len(pending) >= size or asked >= self.files.tuning.max_block_matches \
                            or held >= most_bytes:
                        yield from advance(everything=item is None)
                yield from advance(everything=True)
            except VcliError as exc:
                exc.notes = (*exc.notes, *notes)  # what arose since the last answer
                raise
            finally:
                if self._masks is not None:
                    self._masks.close()

    # -- checking -------------------------------------------------------------------------------
    def check(self, query: Query) -> Checked:
        """Check a query's options and resolve its vector: everything that does not need the search
        files."""
        check_top_k(query.top_k, query.return_values, query.return_metadata, self.top_k_cap)
        query = query._replace(namespace=check_query_namespace(query.namespace))
        parsed = filters.parse(query.filter) if query.filter is not None else None
        if parsed is not None and not parsed.conditions:
            parsed = None
        plan = None
        if parsed is not None or query.namespace is not None:
            if self._indexes is None:
                self._indexes = [filters.MetadataIndexInfo(*m) for m in self.store.metadata_indexes()]
            plan = filters.Plan.build(self.store, self.config.name, self._indexes, parsed, query.namespace)
        if (query.vector is None) == (query.vector_id is None):
            raise BadQuery("give either a query vector or a vector id, but not both")
        if query.vector_id is not None:
            with reading(self.store, self.config.dimensions) as values:
                rows = self.store.get_rows([query.vector_id])
                if query.vector_id not in rows:
                    raise BadQuery(f'vector id "{query.vector_id}" not found in index "{self.config.name}"')
                q = values.of([rows[query.vector_id][0]])[0]
        else:
            q = self._query_vector(query.vector)
        return Checked(query, q, plan)

    def _query_vector(self, vector: Any):
        dims = self.config.dimensions
        if isinstance(vector, np.ndarray):
            vector = vector.tolist()
        try:
            blob = pack_values(list(vector) if isinstance(vector, tuple) else vector, dims, what="query vector")
        except BadInput as exc:  # dimension mismatch
            raise BadQuery(
                f"invalid query vector, expected {dims} dimensions, and got {len(vector)} dimensions"
            ) from exc
        except ValueError as exc:
            raise BadQuery(str(exc)) from exc
        return np.frombuffer(blob, "<f4")

    # -- answering ------------------------------------------------------------------------------
    def _answer(self, searcher: Searcher, c: Checked, notes: list[str], keys: list[int] | None = None,
                rows: dict | None = None) -> QueryResult:
        """The matches of one checked query (``keys``: its candidates, when already found; ``rows``:
        their store rows by key, when already read)."""
        if c.plan is not None:
            notes += c.plan.notes
        if keys is None:
            keys = self._candidates(searcher, c)
            rows = None
        found = self.store.rows_for_keys(keys) if rows is None else [rows[k] for k in keys if k in rows]
        assert searcher.values is not None  # (opened on entry)
        return QueryResult(self._matches(c, found, searcher.values))

    def _candidates(self, searcher: Searcher, c: Checked) -> list[int]:
        """Namespace first, then the filter, then the top k: when few vectors match, score them all
        exactly; when many do, let the search widen, keeping those that pass."""
        top_k, plan = c.query.top_k, c.plan
        if c.plain:
            return searcher.candidates(c.q, top_k)
        assert plan is not None  # (a query that is not plain has a plan: for the type checker)
        tuning = self.files.tuning
        allowed = plan.matching_keys(tuning.filter_exact_rows, tuning.filter_entry_rows)
        if allowed is None:
            return searcher.candidates(c.q, top_k, accept=plan.accept)
        return searcher.candidates(c.q, top_k, allowed) if len(allowed) else []

    def _matches(self, c: Checked, rows: list[tuple], values: Values) -> list[Match]:
        """The top k of ``rows`` (``(key, id, namespace, metadata)`` of the candidates), scored
        exactly with their ``values``."""
        if not rows:
            return []
        metric, query = self.config.metric, c.query
        vecs = values.of([r[0] for r in rows])
        scores = exact_scores(metric, c.q, vecs)
        sign = -1.0 if metric == "cosine" else 1.0
        order = sorted(range(len(rows)), key=lambda i: (sign * scores[i], rows[i][1]))[: query.top_k]
        mode = query.return_metadata
        indexed = self._indexed_metadata([rows[i][0] for i in order]) if mode == "indexed" else None
        out = []
        for i in order:
            key, vid, ns, meta = rows[i]
            metadata: dict | None
            if indexed is not None:
                metadata = indexed.get(key, {})
            else:
                metadata = None if mode == "none" or meta is None else orjson.loads(meta)
            out.append(Match(id=vid, score=float(scores[i]), values=vecs[i].copy() if query.return_values else None,
                             namespace=ns, metadata=metadata, with_metadata=mode != "none"))
        return out

    def _indexed_metadata(self, keys: list[int]) -> dict[int, dict]:
        """``--return-metadata indexed``: per vector, the values its metadata indexes hold (strings
        cut to 64 bytes), nested back under dotted names; vectors written before a metadata index
        existed have nothing for it."""
        pairs: dict[int, list] = {}
        for key, prop, kind, value in self.store.metadata_values_for(keys):
            pairs.setdefault(key, []).append((prop, filters.output_value(value, kind)))
        return {key: filters.nest(found) for key, found in pairs.items()}

    def _begin_block(self, searcher: Searcher, block: list[Checked], rows: dict) -> _Started:
        """Start the block's heavy part in the background: its plain queries, and the filtered
        ones that ``_routes`` sends with them, each with its filter's ``rows`` (by group); then
        the others' (``_start_shared``)."""
        plain = [i for i, c in enumerate(block) if c.plain]
        routes = self._routes(searcher, block, rows)
        masked = [i for i, c in enumerate(block) if routes.get(c.group) == "block"]
        order = plain + masked
        handle = None if not order else searcher.begin(
            np.stack([block[i].q for i in order]), [block[i].query.top_k for i in order],
            masks=[rows[block[i].group].rows() for i in masked])
        return _Started(order, handle, self._start_shared(searcher, block, rows, routes))

    def _batch_masks(self, searcher: Searcher) -> BatchMasks:
        """The batch's rows of its filters' conditions (made on its first filter)."""
        if self._masks is None:
            m_keys = searcher.matrix.keys if searcher.matrix is not None else np.zeros(0, np.int64)
            self._masks = BatchMasks(self.store, m_keys, searcher.delta_keys(), self.files.tuning.batch_mask_bytes)
            searcher.values_ahead()
        return self._masks

    def _routes(self, searcher: Searcher, block: list[Checked], rows: dict) -> dict[tuple, str]:
        """How each filter's group of lines is answered (``Searcher.route``), given its ``rows``
        (``masks.BatchMasks.filter``): with the block, masked; from its rows, gathered; or from
        its conditions' rows, each gathered once for all the groups of the block that use it."""
        groups: dict[tuple, list[int]] = {}
        for i, c in enumerate(block):
            if not c.plain:
                groups.setdefault(c.group, []).append(i)
        users: dict[tuple, int] = {}  # the block's queries that use each condition
        for group, members in groups.items():
            for name, _, _ in rows[group].parts or ():
                users[name] = users.get(name, 0) + len(members)
        routes = {}
        for group, members in groups.items():
            found = rows[group]
            conditions = None if found.parts is None else [(len(r), users[name]) for name, r, _ in found.parts]
            routes[group] = searcher.route(len(members), found.matches, conditions)
        return routes

    def _finish_block(self, searcher: Searcher, block: list[Checked], started: _Started,
                      notes) -> Iterator[QueryResult]:
        keys: list = [None] * len(block)
        if started.handle is not None:
            for i, found in zip(started.order, searcher.finish(started.handle), strict=True):
                keys[i] = found
        shared: set[int] = set()
        for which, future in started.shared:
            answers: list[list[int]] = future.result() if future is not None else [[] for _ in which]
            for i, candidates in zip(which, answers, strict=True):
                keys[i] = (keys[i] or []) + candidates
                shared.add(i)
        for i in shared:
            keys[i] = list(dict.fromkeys(keys[i]))  # a row of two conditions of a $in is one candidate
        rows = {row[0]: row for row in self.store.rows_for_keys(k for ks in keys if ks for k in ks)}
        for c, candidates in zip(block, keys, strict=True):
            try:
                yield self._answer(searcher, c, notes, candidates, rows)
            except VcliError as exc:
                raise _with_line(exc, c.query.line) from None

    def _start_shared(self, searcher: Searcher, block: list[Checked], filter_rows: dict,
                      routes: dict) -> list[tuple[list[int], Any]]:
        """Start, in the background, the candidates of the filtered queries of ``block`` that
        ``routes`` does not answer with the block: those it answers from their conditions' rows
        by condition (the rows of each condition their filters need gathered once, and every
        query whose filter has it as a part of its narrowest, ``BatchMasks.split``, scored
        against them at once, keeping the rows its filter passes:
        ``Searcher.candidates_in_rows``), the others by filter, against its own rows, gathered
        (``Searcher.candidates_within``). ``(the queries, the future of their candidates, or
        None when nothing matches)`` for each."""
        groups: dict[tuple, list[int]] = {}
        for i, c in enumerate(block):
            if not c.plain and routes[c.group] != "block":
                groups.setdefault(c.group, []).append(i)
        if not groups:
            return []
        masks = self._masks
        assert masks is not None  # (made for the batch's first filter)
        jobs: dict[tuple, tuple[np.ndarray, list]] = {}  # per condition: its rows, and its queries
        whole = []  # groups answered from their own rows
        for group, members in groups.items():
            found = filter_rows[group]
            if routes[group] != "conditions":
                whole.append((group, members, masks.keys(found.rows())))
                continue
            for n, (name, rows, drop) in enumerate(found.parts):
                lines = jobs.setdefault(("condition", name), (rows, []))[1]
                lines += [(i, drop, found.delta if n == 0 else None) for i in members]
        busy = frozenset(jobs) | frozenset(group for group, _, _ in whole)
        started: list = []
        # the largest first (rows x lines), so that the threads finish together rather than one
        # of them ending the block alone on a large job
        for token, (rows, lines) in sorted(jobs.items(), key=lambda job: -len(job[1][0]) * len(job[1][1])):
            which = [i for i, _, _ in lines]
            started.append((which, searcher.begin_in_rows(
                np.stack([block[i].q for i in which]), [block[i].query.top_k for i in which], rows, token,
                [p for _, p, _ in lines], [d for _, _, d in lines], busy)))
        for group, members, allowed in sorted(whole, key=lambda job: -len(job[1]) * len(job[2])):
            started.append((members, None if not len(allowed) else searcher.begin_within(
                np.stack([block[i].q for i in members]), [block[i].query.top_k for i in members], allowed,
                group, busy)))
        return started


class _Started(NamedTuple):
    """A block begun: the lines its heavy part answers (in its order), the handle of that part
    (None when there are none), and the lines answered from gathered rows with the futures of
    their candidates (``Answerer._start_shared``)."""

    order: list[int]
    handle: Any
    shared: list[tuple[list[int], Any]]


def _at_line(check, obj: Any, line: int) -> Query:
    try:
        return check(obj, line=line)
    except VcliError as exc:
        raise _with_line(exc, line) from None


def _with_line(exc: VcliError, line: int | None) -> VcliError:
    """The same error, its message starting with the query's line number."""
    if line is not None and not exc.message.startswith(f"line {line}"):
        exc.message = f"line {line}: {exc.message}"
        exc.args = (exc.message,)
    return exc
