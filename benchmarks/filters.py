"""Filtered query benchmark: recall and latency of metadata filters at several selectivities.

    python benchmarks/filters.py            # 100,000 x 384 (about 10 minutes on 2 cores)
    python benchmarks/filters.py --quick    # 10,000 x 384 (well under a minute)
    python benchmarks/filters.py --batch -n 59000 --no-graph   # batch rates (vcli query --file)
    python benchmarks/filters.py --batch -n 500000 --no-graph --keep DIR   # keep the index for next time

Builds an index of synthetic embeddings (``datagen.Generator``, deterministic) with metadata and
three metadata indexes, then for filters matching about 0.1 %, 1 %, 10 % and 50 % of the vectors
reports, over a set of query vectors:

* recall@10 against exact filtered search (brute force in NumPy over the same float32 vectors,
  float64 scores, ties by id) - target >= 0.99 at every selectivity;
* median query latency through ``VectorIndex.query`` against an unfiltered query on the same
  index - target <= 2x.

``--batch`` measures batches instead (``VectorIndex.query_many``, what ``vcli query --file`` runs):
1,000 queries with no filter, with each filter, and with a filter (and half the time a namespace)
of its own on every line, each rate printed beside the unfiltered batch and beside NumPy answering
the same batch exactly (mask the rows once, one matrix product); each batch runs ``--repeat`` times
(3) and the median rate is shown, since one run on a busy machine strays by a third. Targets: a
filtered batch no slower than the unfiltered one, and the mixed batch at least half the
single-filter rate.

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


def build(catalog: Catalog, name: str, data: np.ndarray, meta: dict[str, np.ndarray], nsp: np.ndarray) -> None:
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
            index.insert_arrays(ids, data[start:stop], metas, batch_size=BATCH, namespace=[str(s) for s in nsp[start:stop]])


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


MIXED = [  # one per line in turn: different values, $in, ranges, with and without a namespace
    ({"cat": "c1"}, None), ({"cat": {"$in": ["c2", "c5"]}}, "even"), ({"bucket": {"$gte": 300, "$lt": 400}}, None),
    ({"flag": False}, "odd"), ({"cat": "c7", "flag": True}, None), ({"bucket": {"$lt": 50}}, "even"),
]


def measure_batch(index, queries: np.ndarray, data64, norms, meta, nsp, repeat: int = 1) -> list[tuple]:
    """(label, queries/s (the median of ``repeat`` runs), recall@10, NumPy's queries/s) for each
    kind of batch."""
    qs = np.resize(queries, (1000, queries.shape[1]))  # 1,000 queries (the set repeated)
    q64 = qs.astype(np.float64)
    q64 /= np.linalg.norm(q64, axis=1, keepdims=True)
    unit = data64 / norms[:, None]

    def vcli_rate(lines) -> tuple[float, list[list[str]]]:
        rates = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            answers = [[m.id for m in r.matches] for r in index.query_many(lines)]
            rates.append(len(lines) / (time.perf_counter() - t0))
        return statistics.median(rates), answers

    def numpy_rate(masks) -> tuple[float, list[list[str]]]:
        t0 = time.perf_counter()
        out = []
        for mask, rows_q in masks:  # groups of queries sharing one mask
            rows = np.flatnonzero(mask)
            scores = q64[rows_q] @ unit[rows].T
            for s in scores:
                top = np.argpartition(-s, min(TOP_K, len(s) - 1))[:TOP_K] if len(s) > TOP_K else np.arange(len(s))
                out.append([f"doc-{rows[i]:07d}" for i in sorted(top, key=lambda i: (-s[i], rows[i]))])
        return len(qs) / (time.perf_counter() - t0), out

    def recall(got, truth) -> float:
        return float(np.mean([len(set(g) & set(t)) / max(1, len(t)) for g, t in zip(got, truth, strict=True)]))

    out = []
    everything = np.ones(len(data64), bool)
    for label, flt, mask in [("no filter", None, everything)] + [
            (f"{label} ({select(meta).mean():.1%})", flt, select(meta)) for label, flt, select in FILTERS]:
        lines = [{"vector": q.tolist(), "topK": TOP_K, **({"filter": flt} if flt else {})} for q in qs]
        rate, got = vcli_rate(lines)
        base, truth = numpy_rate([(mask, np.arange(len(qs)))])
        out.append((label, rate, recall(got, truth), base))
    lines, groups = [], {}
    for i, q in enumerate(qs):
        flt, ns = MIXED[i % len(MIXED)]
        lines.append({"vector": q.tolist(), "topK": TOP_K, "filter": flt, **({"namespace": ns} if ns else {})})
        groups.setdefault(i % len(MIXED), []).append(i)
    rate, got = vcli_rate(lines)
    masks = [(_mask(meta, nsp, *MIXED[g]), np.array(rows)) for g, rows in groups.items()]
    base, truth = numpy_rate(masks)
    order = np.argsort(np.concatenate([rows for _, rows in masks]), kind="stable")
    out.append(("a filter of its own per line, namespaces", rate, recall(got, [truth[i] for i in order]), base))
    return out


def _mask(meta, nsp, flt: dict, ns: str | None) -> np.ndarray:
    mask = np.ones(len(meta["cat"]), bool) if ns is None else nsp == ns
    for prop, cond in flt.items():
        col = meta[prop]
        if prop == "cat":
            col = np.array([f"c{c}" for c in range(10)])[col]
        if not isinstance(cond, dict):
            cond = {"$eq": cond}
        for op, v in cond.items():
            mask &= {"$eq": np.equal, "$in": np.isin, "$gte": np.greater_equal, "$lt": np.less}[op](col, v)
    return mask


def report_batch(title: str, rows) -> None:
    print(f"\n{title}: batches of 1,000 queries, top-k {TOP_K}")
    print(f"  {'batch':<42} {'queries/s':>10} {'vs unfiltered':>14} {'recall@10':>9} {'NumPy q/s':>10}")
    base = rows[0][1]
    for label, rate, rec, numpy_qps in rows:
        print(f"  {label:<42} {rate:>10,.0f} {rate / base:>13.2f}x {rec:>9.4f} {numpy_qps:>10,.0f}")


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
    parser.add_argument("--batch", action="store_true", help="batch rates (query_many) instead of latencies")
    parser.add_argument("--keep", metavar="DIR", help="build the index in DIR and keep it; reuse it when there")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each batch: the median rate is shown")
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
    nsp = np.where(np.arange(n) % 2 == 0, "even", "odd")  # the namespace of each vector
    run, show = (lambda i: measure_batch(i, queries, data64, norms, meta, nsp, args.repeat), report_batch) \
        if args.batch else (
        lambda i: measure(i, queries, data64, norms, meta, repeat), report)
    with tempfile.TemporaryDirectory(prefix="vcli-bench-") as scratch:
        tmp = args.keep or scratch
        catalog = Catalog(Path(tmp))
        if not (Path(tmp) / "bench").exists():
            build(catalog, "bench", data, meta, nsp)
        with catalog.open("bench") as index:
            if index.info().vector_count != n:
                sys.exit(f"{tmp}/bench holds {index.info().vector_count:,} vectors, not {n:,}")
        from vcli.engine.builder import running
        from vcli.engine.layout import Folder

        while running(Folder(Path(tmp) / "bench")):  # a graph (for a size that has one) is built
            time.sleep(0.5)  # by a builder this process started: measure after it, not beside it
        print(f"{n:,} x {DIMS} vectors with metadata, built in {time.perf_counter() - t0:.1f} s; "
              f"{len(queries)} queries, top-k {TOP_K}")
        with catalog.open("bench") as index:
            kinds = [f.kind for f in index.folder.search_files()]
            show(f"default path ({', '.join(kinds) or 'delta only'})", run(index))
        if args.no_graph:
            return
        graphs = Catalog(Path(tmp), tuning=Tuning(graph_min_floats=1, graph_in_background=False))  # force the HNSW graph
        t1 = time.perf_counter()
        with graphs.open("bench", write=True) as index:
            with index.writing():
                index.refresh(force=True)
            kinds = [f.kind for f in index.folder.search_files()]
            print(f"\n(graph built in {time.perf_counter() - t1:.1f} s)")
            show(f"graph path ({', '.join(kinds)}, forced)", run(index))


if __name__ == "__main__":
    main()
