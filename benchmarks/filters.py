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
1,000 queries with no filter, with each filter, with six filters (and namespaces) in turn, and
with a filter on almost every line of its own (``many_filters``: hundreds of ``$eq``/``$in``
filters over two or three values, half with a namespace, 1-30 % selective), then 10,000 lines with
5,000 distinct filters, each used twice. Each rate is printed beside the unfiltered batch's and
beside NumPy answering the same batch exactly (mask the rows once, one matrix product; for the
many-filter batches, one product per 64 lines and each line's row masked); each batch runs
``--repeat`` times (3; the 10,000-line one once) and the median rate is shown, since one run on a
busy machine strays by a third; beside it ("by CPU"), the unfiltered batch's CPU time (this
process's, all threads) over the batch's, the medians of the runs, which other processes on the
machine move less than the rate (at load 3.7-5.1 on 2 cores, ten runs of the unfiltered batch
at 500k ranged over 460-1,245 q/s and 0.76-1.14 CPU s). Targets: a batch with one filter no
slower than the unfiltered one, the mixed batch at least half the single-filter rate, the many-filter batch at most twice the
unfiltered batch's time (recall@10 >= 0.999 on a matrix, 0.99 on a graph), the 10,000-line batch
at least half the 1,000-line one's rate, its memory bounded.

It measures both search paths: first the exact memory-mapped matrix (what an index of this size
uses), then the usearch HNSW graph, forced by lowering ``Tuning.graph_min_floats``. This
is a script, not a timed test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson

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
    one of 10 strings (``"c0"``..``"c9"``), ``flag`` true for half of them, ``user`` one of 100
    strings (``"u00"``..``"u99"``, a tenant or owner: 1 % each)."""
    rng = np.random.default_rng([seed, 77])
    return {
        "bucket": rng.integers(0, 1000, n),
        "cat": rng.integers(0, 10, n),
        "flag": rng.random(n) < 0.5,
        "user": np.random.default_rng([seed, 78]).integers(0, USERS, n),
    }


USERS = 100


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
        index.create_metadata_index("user", "string")
        n = len(data)
        for start in range(0, n, 20_000):
            stop = min(n, start + 20_000)
            ids = [f"doc-{i:07d}" for i in range(start, stop)]
            metas = [
                {"bucket": int(meta["bucket"][i]), "cat": f"c{meta['cat'][i]}", "flag": bool(meta["flag"][i]),
                 "user": f"u{meta['user'][i]:02d}", "title": f"document {i}"}
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


def measure_batch(index, queries: np.ndarray, data64, norms, meta, nsp, repeat: int = 1,
                  many_only: bool = False) -> list:
    """(label, queries/s (the median of ``repeat`` runs), recall@10, NumPy's queries/s) for each
    kind of batch (``many_only``: the unfiltered batch and those of ``many_filters`` alone), then
    a line of text on the 10,000-line batch."""
    qs = np.resize(queries, (1000, queries.shape[1]))  # 1,000 queries (the set repeated)
    q64 = qs.astype(np.float64)
    q64 /= np.linalg.norm(q64, axis=1, keepdims=True)
    unit = data64 / norms[:, None]

    def vcli_rate(lines) -> tuple[float, list[list[str]], float]:
        rates, cpu = [], []
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            answers = [[m.id for m in r.matches] for r in index.query_many(lines)]
            rates.append(len(lines) / (time.perf_counter() - t0))
            cpu.append(time.process_time() - c0)
        return statistics.median(rates), answers, statistics.median(cpu)

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

    out: list = []
    everything = np.ones(len(data64), bool)
    for label, flt, mask in [("no filter", None, everything)] + ([] if many_only else [
            (f"{label} ({select(meta).mean():.1%})", flt, select(meta)) for label, flt, select in FILTERS]):
        lines = [{"vector": q.tolist(), "topK": TOP_K, **({"filter": flt} if flt else {})} for q in qs]
        rate, got, cpu = vcli_rate(lines)
        base, truth = numpy_rate([(mask, np.arange(len(qs)))])
        out.append((label, rate, recall(got, truth), base, cpu))
    if not many_only:
        out.append(_mixed(index, qs, meta, nsp, vcli_rate, numpy_rate, recall))
    many, grew_many = measure_many(index, queries, data64, norms, meta, nsp, repeat, 1000, None)
    out.append(many)
    big, grew = measure_many(index, queries, data64, norms, meta, nsp, 1, 10_000, 5_000, sample=10)
    out.append(big)
    out.append(f"  the 10,000-line batch ran at {big[1] / many[1]:.2f}x the 1,000-line one's rate; memory beyond "
               f"what the process held before each, at its peak: {grew / 2**20:,.0f} MiB (1,000 lines: "
               f"{grew_many / 2**20:,.0f} MiB)")
    return out


def _mixed(index, qs, meta, nsp, vcli_rate, numpy_rate, recall) -> tuple:
    lines, groups = [], {}
    for i, q in enumerate(qs):
        flt, ns = MIXED[i % len(MIXED)]
        lines.append({"vector": q.tolist(), "topK": TOP_K, "filter": flt, **({"namespace": ns} if ns else {})})
        groups.setdefault(i % len(MIXED), []).append(i)
    rate, got, cpu = vcli_rate(lines)
    masks = [(_mask(meta, nsp, *MIXED[g]), np.array(rows)) for g, rows in groups.items()]
    base, truth = numpy_rate(masks)
    order = np.argsort(np.concatenate([rows for _, rows in masks]), kind="stable")
    return ("six filters in turn, namespaces (mixed)", rate, recall(got, [truth[i] for i in order]), base, cpu)


def _mask(meta, nsp, flt: dict, ns: str | None) -> np.ndarray:
    mask = np.ones(len(meta["cat"]), bool) if ns is None else nsp == ns
    for prop, cond in flt.items():
        col = meta[prop]
        if not isinstance(cond, dict):
            cond = {"$eq": cond}
        for op, v in cond.items():
            if prop in ("cat", "user"):  # "c3", "u07": the number after the letter
                v = [int(x[1:]) for x in v] if isinstance(v, list) else int(v[1:])
            mask &= {"$eq": np.equal, "$in": np.isin, "$gte": np.greater_equal, "$lt": np.less}[op](col, v)
    return mask


KINDS = [0.4, 0.1, 0.2, 0.1, 0.2]  # how often ``many_filters`` draws each kind of filter


def many_filters(rng: np.random.Generator, lines: int, distinct: int | None = None) -> list[tuple[dict, str | None]]:
    """A filter (and half the time a namespace) per line, as a retrieval service's log has them:
    ``$eq`` or ``$in`` over two or three values of ``user`` or ``cat`` (sometimes with ``flag``),
    each matching 1-30 % of the vectors. With ``distinct``, exactly that many different ones, each
    on ``lines // distinct`` lines in a shuffled order; else every line draws its own (so a few
    repeat by chance)."""
    def pick(values: int, letter: str, width: int) -> list[str]:
        return [f"{letter}{v:0{width}d}" for v in sorted(rng.choice(values, int(rng.integers(2, 4)), replace=False))]

    def draw() -> tuple[dict, str | None]:
        kind, ns = int(rng.choice(5, p=KINDS)), [None, "even", "odd"][int(rng.integers(0, 3))]
        if kind == 0:  # two or three users: 2-3 %, 1-1.5 % in a namespace
            return {"user": {"$in": pick(USERS, "u", 2)}}, ns
        if kind == 1:  # one user: 1 %
            return {"user": f"u{int(rng.integers(USERS)):02d}"}, None
        if kind == 2:  # two or three categories: 20-30 %, 10-15 % in a namespace
            return {"cat": {"$in": pick(10, "c", 1)}}, ns
        if kind == 3:  # one category: 10 %, 5 %
            return {"cat": f"c{int(rng.integers(10))}"}, ns
        return {"cat": {"$in": pick(10, "c", 1)[:2]}, "flag": bool(rng.integers(2))}, ns  # 10 %, 5 %

    if distinct is None:
        return [draw() for _ in range(lines)]
    pool: dict[bytes, tuple[dict, str | None]] = {}
    while len(pool) < distinct:
        flt, ns = draw()
        pool.setdefault(orjson.dumps([flt, ns], option=orjson.OPT_SORT_KEYS), (flt, ns))
    chosen = list(pool.values()) * (lines // distinct)
    return [chosen[i] for i in rng.permutation(len(chosen))]


def measure_many(index, queries: np.ndarray, data64, norms, meta, nsp, repeat: int, lines: int,
                 distinct: int | None, sample: int = 1) -> tuple[tuple, int]:
    """A batch of ``lines`` queries with ``many_filters``: (label, queries/s (median of ``repeat``
    runs), recall@10 against exact filtered search and NumPy's queries/s, both over every
    ``sample``-th line), and the batch's peak memory beyond what the process held before it."""
    rng = np.random.default_rng([lines, distinct or 0])
    chosen = many_filters(rng, lines, distinct)
    qs = np.resize(queries, (lines, queries.shape[1]))
    batch = [{"vector": q.tolist(), "topK": TOP_K, "filter": flt, **({"namespace": ns} if ns else {})}
             for q, (flt, ns) in zip(qs, chosen, strict=True)]
    rates, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        got = [[m.id for m in r.matches] for r in index.query_many(batch)]
        rates.append(lines / (time.perf_counter() - t0))
        cpu.append((time.process_time() - c0) * 1000 / lines)  # per 1,000 lines, as the other batches
    # its memory in a run of its own: the sampling thread, waking every 5 ms, takes Python's lock
    # from the batch's threads (and is not part of what the other batches' rates measure)
    extra = _peak_growth(lambda: list(index.query_many(batch)))[1]
    # exact filtered search in NumPy: one float64 product per 64 lines, each line's row masked
    picked = np.arange(0, lines, sample)
    masks = [_mask(meta, nsp, *chosen[i]) for i in picked]
    q64 = qs[picked].astype(np.float64)
    q64 /= np.linalg.norm(q64, axis=1, keepdims=True)
    unit = data64 / norms[:, None]
    t0 = time.perf_counter()
    truth = []
    for start in range(0, len(picked), 64):
        scores = q64[start : start + 64] @ unit.T
        for s, mask in zip(scores, masks[start : start + 64], strict=True):
            rows = np.flatnonzero(mask)
            s = s[rows]
            top = np.argpartition(-s, TOP_K)[:TOP_K] if len(s) > TOP_K else np.arange(len(s))
            truth.append([f"doc-{rows[i]:07d}" for i in sorted(top, key=lambda i: (-s[i], rows[i]))])
    numpy_qps = len(picked) / (time.perf_counter() - t0)
    recall = float(np.mean([len(set(got[i]) & set(t)) / max(1, len(t)) for i, t in zip(picked, truth, strict=True)]))
    n_distinct = len({orjson.dumps(c, option=orjson.OPT_SORT_KEYS) for c in chosen})
    share = float(np.mean([m.mean() for m in masks]))
    label = f"{lines:,} lines, {n_distinct:,} filters ({share:.0%} avg)"
    return (label, statistics.median(rates), recall, numpy_qps, statistics.median(cpu)), extra


def _peak_growth(run):
    """``run()``'s result and how far this process's resident memory rose above where it was
    before, sampled every 5 ms."""
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    before = peak = rss()
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, rss())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = run()
    finally:
        done.set()
        watcher.join()
    return result, max(peak, rss()) - before


def report_batch(title: str, rows) -> None:
    print(f"\n{title}: batches of 1,000 queries, top-k {TOP_K}")
    print(f"  {'batch':<42} {'queries/s':>10} {'vs unfiltered':>14} {'by CPU':>7} {'recall@10':>9} {'NumPy q/s':>10}")
    base, base_cpu = rows[0][1], rows[0][4]
    for row in rows:
        if isinstance(row, str):
            print(row)
            continue
        label, rate, rec, numpy_qps, cpu = row
        print(f"  {label:<42} {rate:>10,.0f} {rate / base:>13.2f}x {base_cpu / cpu:>6.2f}x {rec:>9.4f} "
              f"{numpy_qps:>10,.0f}")


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
    parser.add_argument("--many-only", action="store_true",
                        help="with --batch: only the unfiltered batch and those with a filter on every line")
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
    run, show = (lambda i: measure_batch(i, queries, data64, norms, meta, nsp, args.repeat, args.many_only), report_batch) \
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
