"""The thresholds that decide how an index is searched, built and exported, as one value.

``Tuning()`` holds the defaults, chosen by measurement (docs/performance.md has the figures and
how they were taken); the comments below give each one's reason. A ``Catalog`` hands its tuning to every index it opens; tests and experiments
pass another one (``Catalog(path, tuning=Tuning(graph_min_floats=1, graph_in_background=False))``
builds a graph at any size, before a write returns), never by changing module globals. It changes speed, never answers.
"""

from __future__ import annotations

import os
from typing import NamedTuple


class Tuning(NamedTuple):
    # Below this many numbers (vectors x dimensions; 64M = 256 MiB of float32, ~175k x 384) an
    # index is searched exactly from its memory-mapped matrix; from it on, a usearch HNSW graph of
    # the matrix finds the candidates, keeping a one-shot query at a few ms of search however
    # large the index grows (docs/scale.md).
    graph_min_floats: int = 64 * 2**20
    # A large index's graph is made of parts of at most this many vectors (graph.py): one graph of
    # 2M x 384 finds at most ~0.985 of the true top 10 however deep it is searched, four parts of
    # 500k 0.995 at less depth, and a part builds and is rewritten faster than one big graph.
    graph_part_rows: int = 500_000
    # A part is rebuilt once more than this share of its vectors are gone from the matrix (deleted
    # or replaced): searches step over them, so they cost depth and, in the end, recall.
    graph_stale_share: float = 0.25
    # Graphs are built by a detached builder process after a write returns (builder.py), where the
    # catalog allows it (``Catalog(..., background_builds=True)``: the CLI's and the server's);
    # False, or a catalog that does not, builds them in the writing process instead, before it
    # returns (tests use it to have a graph deterministically).
    graph_in_background: bool = True
    # Changes (rows written + rows removed) since the matrix before the writer folds them in.
    # Every query scans them exactly (2,000 x 384 is ~3 MB read from SQLite); folding appends
    # them to the matrix (and for a large index, a builder then extends its last graph part), so once
    # every 2,000 changes keeps that cheap per change. An index of at most this many vectors has
    # no matrix: all its rows are a delta.
    fold_rows: int = 2000
    # A fold appends to the matrix's generation (matrix.py) and keeps the rows removed since it
    # began as tombstones, which every query steps over; once more than this share of its rows
    # are tombstones, the fold copies the live rows into a new generation instead. A quarter
    # bounds the dead weight and makes a copy of n rows wait for n / 3 removals.
    fold_compact_share: float = 0.25
    # A filtered or namespaced query lists the matching keys and scores them all exactly when at
    # most this many match; beyond that the search widens and checks its candidates instead.
    filter_exact_rows: int = 2048
    # To list a filter's matches, SQLite enters by the namespace or a condition, whichever holds
    # the fewest rows, counted up to ``filter_exact_rows`` and at most this many: past it,
    # either way in is slow, and counting further only adds to it.
    filter_entry_rows: int = 100_000
    # A batch's queries that share a namespace or filter are scored together against one
    # contiguous copy of the matching vectors, kept for the batch: at most this many float32
    # numbers' worth of bytes in all (256 MiB; a bfloat16 copy takes half a row's). On a graph, a
    # larger set of matches is searched in the graph instead.
    gather_floats: int = 64 * 2**20
    # A batch reads each condition of its filters (a namespace, a value, a range) once and keeps
    # the matrix's rows that hold it, as a list and as a bitmap (masks.py): at most this many
    # bytes of them (a byte a row and 4 a row held: 128 MiB is ~1,900 conditions of 1 % at 59k
    # rows, ~250 at 500k), the least recently used given up first.
    batch_mask_bytes: int = 128 * 2**20
    # And the rows each distinct filter of a block of a batch passes (4 bytes a row of the matrix,
    # 1 a row of the delta): at most this many bytes, however wide the filters, as a block ends
    # once they pass it, counted as each filter's rows are found (the 1,000-line batch of 1-30 %
    # filters of benchmarks/filters.py is one block at 500k). Two blocks are under way at a time.
    block_mask_bytes: int = 128 * 2**20
    # A line whose filter few lines of its block share is answered with the block (scored against
    # every row of the matrix, or on a graph searched as deep as its filter calls for, whichever
    # costs less) rather than from a gathered copy of its matches when that costs less: a row of
    # the product counts this much for each such line, a row gathered ``gather_rows``, a unit of
    # graph depth ``graph_rows_per_depth`` (``Searcher.route``).
    # 0: always the product; a huge number: never.
    masked_row_cost: float = 1.0
    # On a graph, such a line scored against every row of the matrix has a product of its own, a
    # few dozen lines at a time, not the block's, which costs more a row: a row of it counts this
    # much more (docs/performance.md has the figures; broad filters are then searched in the
    # graph rather than scored so).
    graph_product_row_cost: float = 2.5
    # Batch queries score a block of queries against all rows at once: at most this many
    # distances at a time (64 MiB of float32).
    block_floats: int = 16 * 2**20
    # At most this many queries a block (a graph's block is that large: its queries that share a
    # filter are scored together, a gathered subset used by more of them).
    max_block_queries: int = 1024
    # The queries of a block that share a filter: at most this many distances at a time.
    group_floats: int = 16 * 2**20
    # A block also ends once its queries ask for this many matches in all: their stored rows
    # (values and metadata, up to 10 KiB each) are read together (1,024 queries of top-k 10, 102
    # of top-k 100).
    max_block_matches: int = 10_240
    # A filtered graph search that still has too few passing candidates at this many a part gives
    # up for an exact scan of the matrix (``Searcher._graph``).
    max_widening: int = 4096
    # Rows no graph part covers are scored for a whole block at once; from a run longer than this
    # only each query's nearest few are kept (``scoring.Groups``), not the whole row of distances.
    small_run: int = 4096
    # What a batch's group of queries sharing a filter costs, in rows scored exactly by one matrix
    # product: a graph part searched to expansion e costs about this many rows times e a query
    # (the search and its exact rescoring) ...
    graph_rows_per_depth: float = 400
    # ... and each matching row gathered from the matrix into a contiguous copy this many, shared
    # by the lines of a block whose filters use the condition it holds (docs/performance.md).
    gather_rows: float = 64
    # ... and each matrix product of its own (a filter's rows, a condition's) this many, beside
    # its rows: BLAS hands even a small product to its threads, and on a busy machine waking
    # them costs milliseconds (at 59k, 320 products of a few lines took 3.1 s at load 7, the
    # same batch on one thread 0.8 s), which the block's one product pays once.
    product_rows: float = 150_000
    # The rows a batch gathers (a condition's, a filter's) are kept as a bfloat16 copy (half the
    # bytes) and scored with NumKong's bfloat16 kernel first; every row within twice that score's
    # error bound (plus float32's tolerance) of the k-th is rescored in float32 from the matrix,
    # then as before (``Grouped._nears``): the same answers and scores. False: a float32 copy,
    # scored in float32 at once.
    prescore: bool = True
    # ... but only for products of fewer queries than this: one thread's bfloat16 products grow
    # with the queries faster than BLAS's float32 ones (docs/performance.md).
    prescore_queries: int = 128
    # A condition's rows that its lines' other conditions (a namespace, a flag) split into cells
    # (rows the same lines drop) are scored cell by cell, each against the lines that keep it,
    # when that scores fewer row-line pairs than one product of every line, counting this many
    # for each cell's product (packing its queries, the call) ...
    cell_product_pairs: float = 4096
    # ... and, for a copy kept in another order (an earlier block's cells), this many a row taken
    # from it cell by cell (``groups._Cells``; docs/performance.md).
    cell_take_pairs: float = 32
    # The threads that do a batch's heavy parts (its blocks' products or graph searches, its
    # filters' gathers and products: each runs without Python's lock) while the caller reads and
    # answers lines; 0: one a core, at most four (each holds a product of up to
    # ``group_floats`` and a gathered copy; the gathers, bound by memory, gain little past a few).
    # The many-filter batch at 500k, whose conditions are a hundred jobs, ran in ~0.7x the time
    # on two threads of two cores as on one (docs/performance.md).
    batch_threads: int = 0
    # A block's distances are read once more per row for the minimum of each of this many
    # interleaved groups of columns (``scoring.Groups``): the k-th smallest minimum bounds the k-th
    # distance, and only the groups within it (plus the tolerance) are looked into.
    score_groups: int = 1024
    # Candidates asked of each graph part per query (at least twice k); as many of all the parts'
    # answers, the nearest by the graphs' own distances (``graph.nearest``), are scored exactly
    # from the matrix. The bf16 graph ranks so close to float32 that more do not help (recall@10
    # after rescoring was the same for 16 a part as for 32; docs/scale.md): what recall needs is
    # search depth.
    graph_candidates: int = 16
    # A smaller part needs a deeper search for the same recall (docs/scale.md): a part of fewer
    # than this many vectors is searched up to 1.5 times as deep, by the square root of how much
    # smaller it is. A graph starts at ``graph_min_floats``, so its first part is that small for
    # wide vectors (43,690 x 1536).
    graph_small_part: int = 160_000
    # The deepest a filtered graph search goes (beyond, it asks for more candidates instead).
    graph_max_expansion: int = 2048
    # How a graph part is built (usearch's connectivity, and expansion when adding), and how deep
    # a search of it goes for an unfiltered query of a part of at least ``graph_small_part``:
    # chosen by measurement with parts of at most 500,000 vectors (docs/scale.md), recall@10
    # after exact rescoring >= 0.99 at every size.
    graph_connectivity: int = 16
    graph_expansion_add: int = 128
    graph_expansion_search: int = 128
    # A graph that will hold fewer vectors than this is built on one thread: concurrent inserts
    # into a small graph contend for the same few nodes, and usearch then sometimes leaves a node
    # that searches cannot reach (seen on graphs of a few hundred vectors: a top-10 match missing
    # even at ef 128); on one thread, or on large graphs, that did not happen.
    graph_parallel_rows: int = 20_000
    # A builder process lowers its priority by this much (``os.nice``): it yields the cores to
    # queries and writes.
    builder_nice: int = 10
    # A ``.create-*`` folder that a killed create left in the data dir is removed by the next
    # create or delete once it is this old (a create in progress in another process takes
    # milliseconds, and must not lose its folder); a ``.delete-*`` one is removed at once.
    stale_create_seconds: float = 600
    # Store vectors compared with the search file a query opens (a cheap check that it fits the
    # store, run on every open), and with the search files ``vcli check`` looks at (thorough).
    verify_samples: int = 8
    check_samples: int = 64
    # Exports of more numbers than this (~22k x 384) format them in one process per core: below
    # it, starting the processes costs more than formatting on one core saves.
    export_parallel_floats: int = 8 * 2**20
    export_block_rows: int = 1024  # lines per block that an export yields
    # A write that takes an index's search files (matrix and graph) past this many bytes notes
    # that the index has outgrown the machine (docs/scale.md); 0: this machine's physical memory.
    memory_bytes: int = 0

    def wants_graph(self, count: int, dimensions: int) -> bool:
        """Whether an index of ``count`` vectors is searched through a graph (else a matrix)."""
        return count * dimensions >= self.graph_min_floats

    def outgrows_memory(self, count: int, dimensions: int) -> bool:
        """Whether the search files of ``count`` vectors are more than the memory that queries
        and the graph's build need them in."""
        return search_file_bytes(count, dimensions) > (self.memory_bytes or physical_memory())

    def search_count(self, k: int) -> int:
        """How many candidates a search asks each graph part for, to find the top ``k``."""
        return max(2 * k, self.graph_candidates)

    def due(self, changes: tuple[int, int]) -> bool:
        """Whether ``(added, removed)`` rows since a search file are more than a query should scan
        one by one: the writer folds them in, a reader repairs the file."""
        added, removed = changes
        return added + removed > self.fold_rows


def search_file_bytes(count: int, dimensions: int) -> int:
    """The matrix (4 bytes a number, 12 a row) and the graph (2 a number, ~150 a node for its
    links), as measured in docs/scale.md."""
    return count * (6 * dimensions + 162)


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return 2**62  # unknown: never say the index outgrew it


DEFAULT = Tuning()
