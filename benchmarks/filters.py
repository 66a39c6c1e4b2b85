"""Filtered query benchmark: recall and latency of metadata filters at several selectivities.

    python benchmarks/filters.py            # 100,000 x 384 (about 10 minutes on 2 cores)
    python benchmarks/filters.py --quick    # 10,000 x 384 (well under a minute)

Builds an index of synthetic embeddings (``datagen.Generator``, deterministic) with metadata and
three metadata indexes, then for filters matching about 0.1 %, 1 %, 10 % and 50 % of the vectors
reports, over a set of query vectors:

* recall@10 against exact filtered search (brute force in NumPy over the same float32 vectors,
  float64 scores, ties by id) - target >= 0.99 at every selectivity;
* median query latency through ``VectorIndex.query`` against an unfiltered query on the same
  index - target <= 2x.

It measures both search paths: first the exact memory-mapped matrix (what an index of this size
uses), then the usearch HNSW graph, forced by lowering ``Tuning.graph_min_floats``. This
is a script, not a timed test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vcli.engine import Catalog, Tuning  # noqa: E402

DIMS = 384
TOP_K = 10
BATCH = 5000


def vectors(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(data, queries), deterministic."""
    try:
        from datagen import Generator
    except ImportError:  # pragma: no cover - a plain Gaussian stand-in
        rng = np.random.default_rng(seed)
        data = rng.standard_normal((n, DIMS)).astype(np.float32)
        return data, rng.standard_normal((200, DIMS)).astype(np.float32)
    gen = Generator(DIMS, seed)
    return gen.rows(0, n), gen.queries(200)


def metadata(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Per-vector properties, independent of the vectors: ``bucket`` 0..999 (number), ``cat``
    one of 10 strings (``"c0"``..``"c9"``), ``flag`` true for half of them."""
    rng = np.random.default_rng([seed, 77])
    return {
        "bucket": rng.integers(0, 1000, n),
        "cat": rng.integers(0, 10, n),
        "flag": rng.random(n) < 0.5,
    }


FILTERS = [
    # (label, filter, NumPy mask of the vectors it matches)
    ("0.1% number $eq", {"bucket": 7}, lambda m: m["bucket"] == 7),
    ("1% number range", {"bucket": {"$gte": 100, "$lt": 110}}, lambda m: (m["bucket"] >= 100) & (m["bucket"] < 110)),
    ("10% string $eq", {"cat": "c3"}, lambda m: m["cat"] == 3),
    ("50% boolean $eq", {"flag": True}, lambda m: m["flag"]),
]


def build(catalog: Catalog, name: str, data: np.ndarray, meta: dict[str, np.ndarray]) -> None:
    catalog.create(name, dimensions=DIMS, metric="cosine")
    with catalog.open(name, write=True) as index:
        index.create_metadata_index("bucket", "number")
        index.create_metadata_index("cat", "string")
        index.create_metadata_index("flag", "boolean")
        n = len(data)
        for start in range(0, n, 20_000):
            stop = min(n, start + 20_000)
            ids = [f"doc-{i:07d}" for i in range(start, stop)]
            metas = [
                {"bucket": int(meta["bucket"][i]), "cat": f"c{meta['cat'][i]}", "flag": bool(meta["flag"][i]),
                 "title": f"document {i}"}
                for i in range(start, stop)
            ]
            index.insert_arrays(ids, data[start:stop], metas, batch_size=BATCH)


def exact_top(data64: np.ndarray, norms: np.ndarray, q: np.ndarray, mask: np.ndarray, k: int) -> list[str]:
    """Exact filtered top k by cosine (float64 from the float32 values), ties by id."""
    rows = np.flatnonzero(mask)
    q64 = q.astype(np.float32).astype(np.float64)
    scores = (data64[rows] @ q64) / (norms[rows] * np.linalg.norm(q64))
    order = sorted(range(len(rows)), key=lambda i: (-scores[i], rows[i]))[:k]
    return [f"doc-{rows[i]:07d}" for i in order]


def measure(index, queries: np.ndarray, data64, norms, meta, repeat: int) -> list[tuple[str, float, float, float]]:
    def timed(q, **kw) -> tuple[float, list[str]]:
        t0 = time.perf_counter()
        result = index.query(q, top_k=TOP_K, **kw)
        return time.perf_counter() - t0, [m.id for m in result.matches]

    for q in queries[:5]:  # warm the page cache and imports
        timed(q)
    everything = np.ones(len(data64), bool)
    recalls, times = [], []
    for q in queries:
        took, ids = timed(q)
        for _ in range(repeat - 1):
            took = min(took, timed(q)[0])
        truth = exact_top(data64, norms, q, everything, TOP_K)
        recalls.append(len(set(ids) & set(truth)) / TOP_K)
        times.append(took)
    base = statistics.median(times)
    out = [("no filter", float(np.mean(recalls)), base * 1000, 1.0)]
    for label, flt, select in FILTERS:
        mask = select(meta)
        recalls, times = [], []
        for q in queries:
            took, ids = timed(q, filter=flt)
            for _ in range(repeat - 1):
                took = min(took, timed(q, filter=flt)[0])
            truth = exact_top(data64, norms, q, mask, TOP_K)
            recalls.append(len(set(ids) & set(truth)) / max(1, len(truth)))
            times.append(took)
        lat = statistics.median(times)
        out.append((f"{label} ({mask.mean():.2%})", float(np.mean(recalls)), lat * 1000, lat / base))
    return out


def report(title: str, rows) -> None:
    print(f"\n{title}")
    print(f"  {'filter':<34} {'recall@10':>9} {'median ms':>10} {'vs unfiltered':>14}")
    for label, recall, ms, ratio in rows:
        print(f"  {label:<34} {recall:>9.4f} {ms:>10.2f} {ratio:>13.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 vectors instead of 100,000")
    parser.add_argument("-n", type=int, default=None, help="number of vectors")
    parser.add_argument("--queries", type=int, default=None, help="query vectors per filter")
    parser.add_argument("--no-graph", action="store_true", help="skip the forced graph run")
    args = parser.parse_args(argv)
    n = args.n or (10_000 if args.quick else 100_000)
    nq = args.queries or (30 if args.quick else 100)
    repeat = 2 if args.quick else 3

    t0 = time.perf_counter()
    data, queries = vectors(n)
    queries = queries[:nq]
    meta = metadata(n)
    data64 = data.astype(np.float64)
    norms = np.linalg.norm(data64, axis=1)
    with tempfile.TemporaryDirectory(prefix="vcli-bench-") as tmp:
        catalog = Catalog(Path(tmp))
        build(catalog, "bench", data, meta)
        print(f"{n:,} x {DIMS} vectors with metadata, built in {time.perf_counter() - t0:.1f} s; "
              f"{len(queries)} queries, top-k {TOP_K}")
        with catalog.open("bench") as index:
            kinds = [f.kind for f in index.folder.search_files()]
            report(f"exact path ({', '.join(kinds) or 'delta only'})",
                   measure(index, queries, data64, norms, meta, repeat))
        if args.no_graph:
            return
        graphs = Catalog(Path(tmp), tuning=Tuning(graph_min_floats=1))  # force the HNSW graph
        t1 = time.perf_counter()
        with graphs.open("bench", write=True) as index:
            with index.writing():
                index.refresh(force=True)
            kinds = [f.kind for f in index.folder.search_files()]
            print(f"\n(graph built in {time.perf_counter() - t1:.1f} s)")
            report(f"graph path ({', '.join(kinds)}, forced)",
                   measure(index, queries, data64, norms, meta, repeat))


if __name__ == "__main__":
    main()
