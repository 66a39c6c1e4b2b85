"""Every way an index can answer a query gives the same matches: ids, order and scores (to 1e-6).

The plans: exact search over the memory-mapped matrix; the usearch graph (forced on a small index
by lowering ``Tuning.graph_min_floats``); either of them with a delta of rows written or removed
since the file was made (``Tuning.fold_rows`` raised so that writes do not fold it in); the delta
folded in; and after deletes. Batches include namespaces and filters that several lines share,
which are searched together (gathered and kept for the batch, or, with ``Tuning.gather_floats``
lowered so that not all can be kept, gathered again or searched in the graph). Each state is checked against a brute-force answer computed here in float64 from
the float32 values, with ties broken by id, through ``vcli query --vector``, ``--vector-id`` and
``--file`` (batch), whose lines include a filter on almost every line (``many``: answered on a
matrix through the block's one product and each line's mask, or from the rows of its filter,
gathered). The vectors are clustered and include exact duplicates and scaled copies, so
ties are exercised.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from helpers import ndjson

from vcli.engine import Tuning

DIMS = 16
QUERIES = 12


def vectors(rng: np.random.Generator, n: int, prefix: str) -> dict[str, np.ndarray]:
    centres = rng.standard_normal((8, DIMS)) * 3
    out = {}
    for i in range(n):
        out[f"{prefix}{i:04d}"] = (centres[i % 8] + rng.standard_normal(DIMS)).astype(np.float32)
    first = next(iter(out.values()))
    out[f"{prefix}dup-b"] = first.copy()  # same values: ties, broken by id
    out[f"{prefix}dup-a"] = first.copy()
    out[f"{prefix}scaled"] = (first * 2).astype(np.float32)  # same cosine as the two above
    return out


def reference(stored: dict[str, np.ndarray], metric: str, q: np.ndarray, k: int) -> list[tuple[str, float]]:
    ids = sorted(stored)
    v = np.array([stored[i] for i in ids], np.float64)
    q = np.asarray(q, np.float32).astype(np.float64)
    dots = np.einsum("ij,j->i", v, q)  # each row alone: BLAS may round a row differently with others
    if metric == "cosine":
        scores = dots / (np.linalg.norm(v, axis=1) * np.linalg.norm(q))
        order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))
    elif metric == "euclidean":
        scores = np.sqrt(((v - q) ** 2).sum(axis=1))
        order = sorted(range(len(ids)), key=lambda i: (scores[i], ids[i]))
    else:
        scores = -dots
        order = sorted(range(len(ids)), key=lambda i: (scores[i], ids[i]))
    return [(ids[i], float(scores[i])) for i in order[:k]]


def same(got: list[dict], want: list[tuple[str, float]]) -> None:
    assert [m["id"] for m in got] == [w[0] for w in want]
    for m, (_id, score) in zip(got, want, strict=True):
        assert m["score"] == pytest.approx(score, rel=1e-9, abs=1e-6)


def group(vector_id: str) -> str:
    return "xyz"[sum(map(ord, vector_id)) % 3]


def in_namespace(vector_id: str) -> bool:
    return vector_id[-1] in "02468ab"


def user(vector_id: str) -> str:
    return f"u{sum(i * ord(ch) for i, ch in enumerate(vector_id)) % 7}"


SHARED = [{"filter": {"g": "x"}}, {"filter": {"g": {"$in": ["x", "y"]}}}, {"namespace": "ns"},
          {"namespace": "ns", "filter": {"g": {"$ne": "z"}}}, {"filter": {"u": {"$nin": ["u1", "u2"]}}}]


def many(j: int) -> list[dict]:
    """Namespaces and filters of query ``j``'s lines in a batch with a filter on almost every
    line: ``$eq``, ``$in``, ``$ne``, ``$nin`` over one or two properties, most of them on this
    query's lines alone."""
    u, v, w = (f"u{(j + d) % 7}" for d in (0, 2, 3))
    return [{"filter": {"u": u}}, {"namespace": "ns", "filter": {"u": {"$in": [u, v]}}},
            {"filter": {"u": {"$in": [u, v, w]}, "g": {"$ne": "z"}}},
            {**({"namespace": "ns"} if j % 2 else {}), "filter": {"u": {"$nin": [v]}, "g": "x"}},
            {"filter": {"g": {"$in": ["x", "z"]}, "u": {"$ne": f"u{j % 3}"}}}]


def passes(vector_id: str, line: dict) -> bool:
    """Whether a vector is among the candidates of a query line (of no filter, of ``SHARED`` or of
    ``many``)."""
    if "namespace" in line and not in_namespace(vector_id):
        return False
    values = {"g": group(vector_id), "u": user(vector_id)}
    for prop, cond in line.get("filter", {}).items():
        op, value = next(iter(cond.items())) if isinstance(cond, dict) else ("$eq", cond)
        have = values[prop]
        if not {"$eq": have == value, "$ne": have != value, "$in": have in value, "$nin": have not in value}[op]:
            return False
    return True


class Checker:
    """An index and what it must hold; every command runs with the tuning of the moment."""

    def __init__(self, vcli, tmp_path, metric: str):
        self.vcli, self.tmp, self.metric = vcli, tmp_path, metric
        self.tuning = Tuning()
        self.name = f"plans-{metric}"
        self.stored: dict[str, np.ndarray] = {}
        rng = np.random.default_rng(7)
        self.queries = [rng.standard_normal(DIMS).astype(np.float32) * 3 for _ in range(QUERIES)]
        assert vcli("create", self.name, "--dimensions", DIMS, "--metric", metric).code == 0
        for prop in ("g", "u"):
            assert vcli("create-metadata-index", self.name, "--property-name", prop, "--type", "string").code == 0

    def run(self, *args, **kw):
        return self.vcli(*args, tuning=self.tuning, **kw)

    def tune(self, **thresholds) -> None:
        self.tuning = self.tuning._replace(**thresholds)

    def write(self, mode: str, vecs: dict[str, np.ndarray]) -> None:
        path = self.tmp / "in.ndjson"
        path.write_text(ndjson({"id": i, "values": v.tolist(), "metadata": {"g": group(i), "u": user(i)},
                                **({"namespace": "ns"} if in_namespace(i) else {})} for i, v in vecs.items()))
        assert self.run(mode, self.name, "--file", path).code == 0
        for i, v in vecs.items():
            if mode == "upsert" or i not in self.stored:
                self.stored[i] = v

    def delete(self, ids: list[str]) -> None:
        assert self.run("delete-vectors", self.name, "--ids", *ids).code == 0
        for i in ids:
            self.stored.pop(i, None)

    def files(self, data_dir) -> list[str]:
        return sorted(p.name for p in (data_dir / self.name).iterdir() if p.name.startswith(("matrix-", "graph-")))

    def check_kept_subsets(self) -> None:
        """``check`` when the shared filters' vectors cannot all be kept for the batch: room for
        the first only (the others are gathered again, or on a graph searched in it), or for none
        (on a graph, all searched in it); with a shared group's queries scored one or two at a
        time (as a large subset's are, to bound the memory of its distances); with blocks cut
        after a few queries' matches (as a batch of large top-k's are); and, on a graph, with every
        group searched in it because that is judged cheaper than gathering its rows, and with a
        product of its own costing nothing (so that most filters go by their conditions' rows,
        scored from a bfloat16 copy first, in groups of columns few enough that the pre-score
        chooses what is rescored, and without that pre-score, from float32 at once). On
        a matrix, also with every filtered line of a block scored with the block's product and
        masked, and with none (each filter's rows gathered, its keys from the batch's masks), and
        with room for the bitmaps of only a few conditions, and blocks cut at each filter."""
        for floats in (3000, 1):
            self.tune(gather_floats=floats)
            self.check()
        self.tune(gather_floats=Tuning().gather_floats)
        for cost in (0, 1e12):
            self.tune(masked_row_cost=cost)
            self.check()
        self.tune(masked_row_cost=Tuning().masked_row_cost, batch_mask_bytes=1000, block_mask_bytes=1)
        self.check()
        self.tune(batch_mask_bytes=Tuning().batch_mask_bytes, block_mask_bytes=Tuning().block_mask_bytes)
        for threshold in ({"group_floats": 300}, {"max_block_matches": 25}, {"graph_rows_per_depth": 0},
                          {"product_rows": 0, "score_groups": 16}, {"product_rows": 0, "prescore": False}):
            self.tune(**threshold)
            try:
                self.check()
            finally:
                self.tune(**{name: getattr(Tuning(), name) for name in threshold})

    def check(self) -> None:
        """Batch, one-shot and by-id queries all give the brute-force answer."""
        lines = [{"vector": q.tolist(), "topK": k} for q in self.queries for k in (1, 10)]
        ids = sorted(self.stored)[:: max(1, len(self.stored) // 5)]
        lines += [{"vectorId": i, "topK": 6} for i in ids]
        # namespaces and filters that several lines share: their queries are searched together
        lines += [{"vector": q.tolist(), "topK": 10, **extra} for q in self.queries for extra in SHARED]
        # a filter on almost every line, most of them on no other line
        lines += [{"vector": q.tolist(), "topK": k, **extra}
                  for j, q in enumerate(self.queries) for extra, k in zip(many(j), (10, 3, 10, 1, 10), strict=True)]
        run = self.run("query", self.name, "--file", "-", input=ndjson(lines))
        assert run.code == 0, run.err
        answers = [orjson.loads(x) for x in run.out.splitlines()]
        assert len(answers) == len(lines)
        for line, answer in zip(lines, answers, strict=True):
            q = line["vector"] if "vector" in line else self.stored[line["vectorId"]]
            stored = {i: v for i, v in self.stored.items() if passes(i, line)}
            same(answer["matches"], reference(stored, self.metric, q, line["topK"]))
        for q in self.queries[:1]:  # one-shot takes the same path as the batch (a block of one)
            one = self.run("query", self.name, "--vector", orjson.dumps(q.tolist()).decode(),
                            "--top-k", "10", "--json")
            assert one.code == 0, one.err
            same(one.json["matches"], reference(self.stored, self.metric, q, 10))


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_every_plan_gives_the_same_matches(vcli, tmp_path, data_dir, metric):
    rng = np.random.default_rng(1)
    c = Checker(vcli, tmp_path, metric)

    # 1. Small index: exact search over the matrix (which, below fold_rows vectors, it would
    # not need: its rows would be scanned from the store, as a delta).
    c.tune(fold_rows=100)
    c.write("insert", vectors(rng, 300, "a"))
    assert c.files(data_dir) == ["matrix-3.manifest"]  # mutations 1 and 2 made the metadata indexes
    c.check()

    # 2. Matrix plus a delta (upserts replacing some rows, new rows, deletes).
    c.tune(fold_rows=10**6)
    c.write("upsert", {**{f"a{i:04d}": rng.standard_normal(DIMS).astype(np.float32) for i in range(0, 40, 2)},
                       **vectors(rng, 25, "b")})
    c.delete([f"a{i:04d}" for i in range(1, 30, 3)] + ["adup-a"])
    assert c.files(data_dir) == ["matrix-3.manifest"]  # mutations 1 and 2 made the metadata indexes
    c.check()
    c.check_kept_subsets()

    # 3. Past the threshold: the next write builds the graph of the matrix, which finds the
    # candidates from then on (scored from the matrix, the rows since from the delta).
    c.tune(graph_min_floats=1, graph_in_background=False)
    c.write("insert", vectors(rng, 10, "c"))
    graph = c.files(data_dir)
    assert [name.split("-")[:3] for name in graph] == [["graph", "3", "0"], ["matrix", "3.manifest"]]  # one part
    c.check()

    # 4. Graph plus a delta: rows written and removed since the graph was saved.
    c.write("upsert", {**{f"a{i:04d}": rng.standard_normal(DIMS).astype(np.float32) for i in range(100, 140)},
                       **vectors(rng, 30, "d")})
    c.delete([f"a{i:04d}" for i in range(150, 200, 2)] + ["bdup-b", "cscaled"])
    assert c.files(data_dir) == graph  # not folded in yet
    c.check()
    c.check_kept_subsets()

    # 5. The delta folded into a new matrix (caught up) and the graph part extended, then deletes on top.
    c.tune(fold_rows=5)
    c.write("upsert", vectors(rng, 8, "e"))
    folded = c.files(data_dir)
    assert len(folded) == 2 and folded != graph and folded[0].split("-")[1].split(".")[0] \
        == folded[1].split("-")[1].split(".")[0]  # the same mutation
    c.check()
    c.tune(fold_rows=10**6)
    c.delete([f"a{i:04d}" for i in range(200, 260)])
    c.check()

    # 6. Back under the threshold: the next write removes the graph; the matrix answers alone.
    c.tune(graph_min_floats=Tuning().graph_min_floats, fold_rows=5)
    c.delete([f"a{i:04d}" for i in range(260, 290)])
    assert [f.split("-")[0] for f in c.files(data_dir)] == ["matrix"]
    c.check()


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_near_copies_that_bfloat16_cannot_tell_apart(vcli, tmp_path, data_dir, metric):
    """A batch's gathered rows are scored in bfloat16 first (``Tuning.prescore``), which cannot
    tell apart vectors within ~2^-8 of each other: clusters of such near-copies, whose exact order
    the rescoring must still find, on a matrix, every filtered line from its conditions' or its own
    rows, gathered, with the pre-score and without. (Not on a graph: there the unfiltered lines'
    candidates come from the graph's own bfloat16 ranking, which such clusters defeat.)"""
    rng = np.random.default_rng(5)
    c = Checker(vcli, tmp_path, metric)
    base = rng.standard_normal((12, DIMS)).astype(np.float32) * 3
    near = {f"n{i:04d}": (base[i % 12] * (1 + rng.uniform(-1e-3, 1e-3)) + rng.standard_normal(DIMS) * 1e-3)
            .astype(np.float32) for i in range(300)}
    c.queries = [(base[j] + rng.standard_normal(DIMS) * 0.01).astype(np.float32) for j in range(QUERIES)]
    c.tune(fold_rows=100, masked_row_cost=1e12, score_groups=16)  # (groups few enough that the pre-score chooses)
    c.write("insert", near)
    assert c.files(data_dir) == ["matrix-3.manifest"]
    c.check()
    c.tune(prescore=False)
    c.check()


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_a_crowd_of_near_copies_within_the_prescore_window(vcli, tmp_path, data_dir, metric):
    """3,000 near-copies of one vector, all within the bfloat16 pre-score's window of each query
    (far more than the ``MAX_EXTRA_TIES`` candidates kept beyond k): the window's rows are
    rescored in float32 before any is left out, so the exact top k is never cut by bfloat16
    order. On a matrix, every filtered line from its own or its conditions' rows, gathered."""
    rng = np.random.default_rng(11)
    c = Checker(vcli, tmp_path, metric)
    base = rng.standard_normal(DIMS)
    base *= 3 / np.linalg.norm(base)
    c.queries = [(base + rng.standard_normal(DIMS) * 5e-3).astype(np.float32) for _ in range(QUERIES)]
    c.tune(fold_rows=100, masked_row_cost=1e12, score_groups=16)  # (groups few enough that the pre-score chooses)
    noise = rng.standard_normal((3000, DIMS)) * 1e-2
    noise -= np.outer(noise @ base, base) / 9  # across base: their dot products too differ by little
    c.write("insert", {f"n{i:04d}": (base + n).astype(np.float32) for i, n in enumerate(noise)})
    assert c.files(data_dir) == ["matrix-3.manifest"]
    c.check()
    c.tune(product_rows=0)
    c.check()


def test_batch_and_single_queries_agree_on_a_graph_with_many_removed(vcli, tmp_path, data_dir):
    """More removed keys than a graph search returns: the query widens and still finds top k."""
    rng = np.random.default_rng(3)
    c = Checker(vcli, tmp_path, "cosine")
    c.tune(graph_min_floats=1, graph_in_background=False)
    c.write("insert", vectors(rng, 400, "a"))
    c.tune(fold_rows=10**6)
    c.delete([f"a{i:04d}" for i in range(0, 400) if i % 10])  # 360 of 403 removed
    assert c.files(data_dir)[0].startswith("graph-")
    c.check()
    c.tune(fold_rows=5)  # folded: a new matrix, and the graph part (nine in ten gone) rebuilt
    c.delete(["a0010"])
    assert [f.split("-")[0] for f in c.files(data_dir)] == ["graph", "matrix"]
    c.check()


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_huge_and_tiny_values_are_still_exact(vcli, tmp_path, metric):
    """float32 holds values up to 3.4e38; squares of values over ~1.8e19 overflow float32, so such
    searches run in float64 and still find the right matches."""
    rng = np.random.default_rng(11)
    c = Checker(vcli, tmp_path, metric)
    scale = 10.0 ** rng.integers(-30, 30, (60, 1))
    c.write("insert", {f"h{i:02d}": (v * s).astype(np.float32)
                       for i, (v, s) in enumerate(zip(rng.standard_normal((60, DIMS)), scale, strict=True))})
    c.queries = [q * 1e20 for q in c.queries[:4]] + c.queries[:4]
    c.check()


def test_a_batch_mixing_namespaces_and_plain_queries_on_a_graph(vcli, tmp_path, data_dir):
    """Namespaced queries are answered one by one while the plain ones around them are searched
    as a block in the background: both kinds keep their answers and their order."""
    cli = vcli

    def vcli(*args, **kw):
        return cli(*args, tuning=Tuning(graph_min_floats=1, graph_in_background=False), **kw)

    rng = np.random.default_rng(5)
    vecs = vectors(rng, 300, "a")
    rows = [{"id": i, "values": v.tolist(), **({"namespace": "even"} if n % 2 == 0 else {})}
            for n, (i, v) in enumerate(vecs.items())]
    assert vcli("create", "mixed", "--dimensions", DIMS, "--metric", "cosine").code == 0
    assert vcli("insert", "mixed", "--file", "-", input=ndjson(rows)).code == 0
    assert any(p.name.startswith("graph-") for p in (data_dir / "mixed").iterdir())
    even = {r["id"]: vecs[r["id"]] for r in rows if "namespace" in r}
    queries = [rng.standard_normal(DIMS).astype(np.float32) for _ in range(40)]
    lines = [{"vector": q.tolist(), "topK": 5, **({"namespace": "even"} if n % 3 == 0 else {})}
             for n, q in enumerate(queries)]
    run = vcli("query", "mixed", "--file", "-", input=ndjson(lines))
    assert run.code == 0, run.err
    for line, out, q in zip(lines, run.out.splitlines(), queries, strict=True):
        want = reference(even if "namespace" in line else vecs, "cosine", q, 5)
        same(orjson.loads(out)["matches"], want)


def test_a_folded_matrix_equals_one_built_from_the_store(data_dir, tmp_path):
    """Folding appends new rows and tombstones removed ones: its live rows are, byte for byte and
    in order, those of the matrix a build from the store would write (and the graph, one part,
    covers its keys)."""
    import shutil
    from contextlib import closing

    from vcli.engine import Catalog, matrix
    from vcli.engine.check import check_index
    from vcli.engine.layout import Folder, seq_of
    from vcli.engine.store import Store

    rng = np.random.default_rng(8)
    cat = Catalog(data_dir, tuning=Tuning(fold_rows=5, graph_min_floats=1, graph_in_background=False))
    cat.create("fold", DIMS, "euclidean")
    with cat.open("fold", write=True) as ix:
        ix.insert([{"id": f"v{i}", "values": v.tolist()} for i, v in enumerate(rng.standard_normal((500, DIMS)))])
        ix.upsert([{"id": f"v{i}", "values": rng.standard_normal(DIMS).tolist()} for i in range(0, 500, 7)]
                  + [{"id": f"n{i}", "values": rng.standard_normal(DIMS).tolist()} for i in range(30)])
        ix.delete([f"v{i}" for i in range(1, 500, 11)])
    folder = data_dir / "fold"
    (folded,) = folder.glob("matrix-*.manifest")
    m = matrix.Matrix.load(folded, seq_of(folded), DIMS)
    assert len(m.manifest.segments) == 3 and len(m.gone) == 72 + 46  # one build, two folds
    rebuilt = tmp_path / "rebuilt"
    shutil.copytree(folder, rebuilt)  # (a copy: a build compacts into a generation the store then names)
    for path in rebuilt.glob("matrix-*.manifest"):
        path.unlink()
    with closing(Store.open(rebuilt / "store.sqlite")) as store:
        built = matrix.build(store, Folder(rebuilt), DIMS, 0.25)
    b = matrix.Matrix.load(built, seq_of(built), DIMS)
    live = ~np.isin(m.keys, m.gone)
    assert built.name == folded.name and len(b.gone) == 0
    for column in ("keys", "norms", "values"):
        assert np.asarray(getattr(m, column))[live].tobytes() == np.asarray(getattr(b, column)).tobytes()
    (part,) = folder.glob("graph-*.usearch")  # one part, holding every key of the matrix
    lo, hi = (int(x) for x in part.name.split(".")[0].split("-")[2:])
    assert lo == 0 and hi >= m.keys[-1]
    with cat.open("fold", write=True) as ix:
        assert check_index(ix).healthy


def parts_of(names: list[str]) -> list[tuple[int, int]]:
    """The key ranges of the graph parts among search file names, in key order."""
    return sorted(tuple(int(x) for x in n.split(".")[0].split("-")[2:]) for n in names if n.startswith("graph-"))


@pytest.mark.parametrize("metric,long_runs", [("cosine", False), ("euclidean", False), ("euclidean", True)])
def test_graph_parts_and_rows_no_part_covers(vcli, tmp_path, data_dir, metric, long_runs):
    """A graph in parts of at most ``graph_part_rows`` vectors: filled and extended as rows come,
    a part rebuilt once a quarter of it is gone, and rows that no part covers (a part missing, the
    rows after the last, most of the matrix) scanned exactly beside the parts (``long_runs``: as
    runs too long to keep whole, of which each query keeps its nearest few)."""
    from vcli.engine.builder import needs_graph
    from vcli.engine.layout import Folder
    from vcli.engine.lock import writer_lock

    rng = np.random.default_rng(12)
    c = Checker(vcli, tmp_path, metric)
    c.tune(graph_min_floats=1, graph_in_background=False, graph_part_rows=100, fold_rows=5,
           **({"small_run": 0} if long_runs else {}))
    c.write("insert", vectors(rng, 347, "a"))  # 350 vectors: parts of 100, 100, 100 and 50
    first = parts_of(c.files(data_dir))
    assert len(first) == 4 and first[0][0] == 0
    assert all(hi + 1 == lo for (_, hi), (lo, _) in zip(first[:-1], first[1:], strict=True))  # consecutive keys
    c.check()

    c.write("insert", vectors(rng, 77, "b"))  # 80 more: the last part filled to 100, then a new one
    grown = parts_of(c.files(data_dir))
    assert grown[:3] == first[:3] and grown[3][0] == first[3][0] and len(grown) == 5
    c.check()

    # more than a quarter of the first part deleted: it is rebuilt over the same keys
    folder = Folder(data_dir / c.name)
    before = {f.path.name for f in folder.search_files() if f.kind == "graph"}
    c.delete([f"a{i:04d}" for i in range(0, 60)])
    after = {f.path.name for f in folder.search_files() if f.kind == "graph"}
    assert parts_of(sorted(after)) == grown and len(after - before) == 1
    c.check()

    # a delta on top (not folded), then parts missing while no builder can run (the build lock
    # held): the rows of a missing part in the middle and at the end are scanned exactly
    c.tune(fold_rows=10**6)
    c.write("upsert", {**{f"a{i:04d}": rng.standard_normal(DIMS).astype(np.float32) for i in range(100, 130)},
                       **vectors(rng, 20, "c")})
    c.delete([f"b{i:04d}" for i in range(0, 20, 3)])
    parts = sorted((f for f in folder.search_files() if f.kind == "graph"), key=lambda f: f.lo)
    with writer_lock(folder.build_lock, 0):
        parts[2].path.unlink()
        parts[4].path.unlink()
        c.check()
        c.check_kept_subsets()
        parts[0].path.unlink()  # now most rows are in no part: the matrix is searched exactly
        c.check()
        # rows written now are folded into a new matrix but get no part: a filter whose matches are
        # mostly there (and, with few rows scored exactly, found by widening) still answers exactly
        c.tune(fold_rows=5, filter_exact_rows=5)
        c.write("insert", {f"z{i:04d}": rng.standard_normal(DIMS).astype(np.float32) * 3 for i in range(150)})
        c.check()
        c.tune(fold_rows=10**6, filter_exact_rows=Tuning().filter_exact_rows)
    c.check()  # a query starts the builder again (here, in its own process), which fills the gaps
    now, before = parts_of(c.files(data_dir)), parts_of([f.path.name for f in parts])
    assert now[:4] == before[:4] and now[4][0] == before[4][0]  # the same keys (the last one extended)
    assert not needs_graph(folder, DIMS, 100)  # and the rows written since have parts too
    c.check()

    # every vector rewritten, a fifth at a time, twice: emptied parts are dropped and thinned ones
    # merged, so the parts do not pile up with the index's history
    c.tune(fold_rows=5)
    for _ in range(2):
        ids = sorted(c.stored)
        for start in range(0, len(ids), len(ids) // 5 + 1):
            c.write("upsert", {i: rng.standard_normal(DIMS).astype(np.float32) for i in ids[start:start + len(ids) // 5 + 1]})
    after = parts_of(c.files(data_dir))
    assert len(after) <= len(c.stored) // 100 + 2, after
    c.check()


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_huge_values_on_a_graph_are_still_exact(vcli, tmp_path, data_dir, metric):
    """The graph's own distances overflow for such values (usearch computes them in float32 or
    less): a query that large, or any query of an index whose matrix holds vectors that large, is
    answered exactly from the matrix."""
    rng = np.random.default_rng(12)
    c = Checker(vcli, tmp_path, metric)
    c.tune(graph_min_floats=1, graph_in_background=False, fold_rows=5)
    c.write("insert", vectors(rng, 80, "a"))
    assert any(name.startswith("graph-") for name in c.files(data_dir))
    c.queries = [q * 1e20 for q in c.queries[:4]] + c.queries[:4]
    c.check()  # huge queries, ordinary vectors
    scale = 10.0 ** rng.integers(-30, 30, (40, 1))
    c.write("insert", {f"h{i:02d}": (v * s).astype(np.float32)
                       for i, (v, s) in enumerate(zip(rng.standard_normal((40, DIMS)), scale, strict=True))})
    c.check()  # and huge vectors in the matrix


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_a_condition_split_into_cells(vcli, tmp_path, data_dir, monkeypatch, metric):
    """The lines that share a condition (``cat``) but not its namespace (three) or ``flag`` drop
    different rows of it: its rows split into cells (rows the same lines drop), each scored
    against the lines that keep it (``groups._Cells``). On a matrix, every filtered line from its
    conditions' rows: cells gathered cell by cell, scored from bfloat16 first and from float32; a
    copy kept from an earlier block whose cells differ (blocks cut after a few lines), its rows
    taken cell by cell or scored in one product with the drops in its order; and one product of
    every line when the cells do not pay. Which of these ran is checked beside the answers."""
    from vcli.engine.search import groups

    ran: list[str] = []
    view = groups._Cells.view

    def spy(self, at, take):
        found = view(self, at, take)
        # (``at`` None: the copy is in the rows' order, not an earlier block's cells')
        ran.append("one product" if found is None else "contiguous" if found.take is None else "taken")
        ran.append("in row order" if at is None else "in cell order")
        return found

    monkeypatch.setattr(groups._Cells, "view", spy)
    rng = np.random.default_rng(9)
    stored = vectors(rng, 400, "a")
    meta = {i: {"cat": f"c{n % 8}", "flag": bool(n // 3 % 2), "ns": ["left", "right"][n // 8 % 2] if n % 5 else ""}
            for n, i in enumerate(stored)}  # (a cat has fewer rows than a namespace or a flag: the narrowest part)
    rows = [{"id": i, "values": v.tolist(), "metadata": {"cat": meta[i]["cat"], "flag": meta[i]["flag"]},
             **({"namespace": meta[i]["ns"]} if meta[i]["ns"] else {})} for i, v in stored.items()]
    # (one background thread: which block's job gathers a copy first, and so its order, is then fixed)
    tuning = Tuning(fold_rows=100, masked_row_cost=1e12, product_rows=0, score_groups=4, batch_threads=1)
    assert vcli("create", "cells", "--dimensions", DIMS, "--metric", metric).code == 0
    assert vcli("create-metadata-index", "cells", "--property-name", "cat", "--type", "string").code == 0
    assert vcli("create-metadata-index", "cells", "--property-name", "flag", "--type", "boolean").code == 0
    assert vcli("insert", "cells", "--file", "-", input=ndjson(rows), tuning=tuning).code == 0
    assert [p.name for p in (data_dir / "cells").iterdir() if p.name.startswith(("matrix-", "graph-"))] \
        == ["matrix-3.manifest"]
    queries = [rng.standard_normal(DIMS).astype(np.float32) * 3 for _ in range(QUERIES)]
    lines = []
    for j in sorted(range(QUERIES), key=lambda j: j % 4):  # a condition's lines together, in several blocks
        q, cat, other = queries[j], f"c{j % 4}", f"c{(j + 1) % 4}"
        for extra in ({"filter": {"cat": cat}}, {"namespace": "left", "filter": {"cat": cat}},
                      {"namespace": "right", "filter": {"cat": {"$in": [cat, other]}, "flag": True}},
                      {"filter": {"cat": cat, "flag": {"$ne": True}}},
                      {"namespace": ["left", "right"][j % 2], "filter": {"cat": other, "flag": False}}):
            lines.append({"vector": q.tolist(), "topK": 4, **extra})

    def passes_line(i: str, line: dict) -> bool:
        f = line["filter"]
        cats = f["cat"]["$in"] if isinstance(f["cat"], dict) else [f["cat"]]
        flag = f.get("flag")
        return (line.get("namespace", meta[i]["ns"]) == meta[i]["ns"] and meta[i]["cat"] in cats
                and (flag is None or (meta[i]["flag"] != flag["$ne"] if isinstance(flag, dict) else meta[i]["flag"] == flag)))

    def check(**change) -> list[str]:
        ran.clear()
        run = vcli("query", "cells", "--file", "-", input=ndjson(lines), tuning=tuning._replace(**change))
        assert run.code == 0, run.err
        for line, out in zip(lines, run.out.splitlines(), strict=True):
            want = reference({i: v for i, v in stored.items() if passes_line(i, line)}, metric,
                             line["vector"], line["topK"])
            same(orjson.loads(out)["matches"], want)
        return ran

    assert set(check(cell_product_pairs=0)) == {"contiguous", "in cell order"}
    assert set(check(cell_product_pairs=0, prescore=False)) == {"contiguous", "in cell order"}
    # blocks of three lines: a condition's copy kept from the block before, whose cells differ
    assert set(check(cell_product_pairs=0, cell_take_pairs=0, max_block_matches=12)) \
        == {"contiguous", "taken", "in cell order"}
    for prescore in (True, False):
        assert set(check(cell_product_pairs=0, cell_take_pairs=1e12, max_block_matches=12, prescore=prescore)) \
            == {"contiguous", "one product", "in cell order"}
    assert check() == []  # 50 rows a condition: a cell's product costs more than the pairs it saves


@pytest.mark.parametrize("patterns", [3, 20])
def test_cells_are_exactly_the_rows_the_same_lines_drop(patterns):
    """``_Cells.of``: two rows share a cell exactly when every line drops both or neither, and a
    line keeps a cell exactly when it drops none of its rows, for a few drop patterns (counted)
    and for more than sixteen (sorted); lines share arrays and repeat one another's content."""
    from vcli.engine.search.groups import _Cells

    rng = np.random.default_rng(patterns)
    n = 3000
    factors = rng.random((5, n)) < 0.5  # (at most 32 cells, however many patterns combine them)
    base = [factors[a] | ~factors[b] for a in range(5) for b in range(5) if a != b][:patterns]
    drops = [None] + [base[j % patterns] if j % 3 else base[j % patterns].copy() for j in range(3 * patterns)]
    cells = _Cells.of(drops, n, 0)
    assert cells is not None
    matrix = np.stack([np.zeros(n, bool) if d is None else d for d in drops], axis=1)  # (rows, lines)
    kinds, truth = np.unique(matrix, axis=0, return_inverse=True)
    assert len(cells.sizes) == len(kinds)
    pairs = {(int(a), int(b)) for a, b in zip(cells.labels, truth.reshape(-1), strict=True)}
    assert len(pairs) == len(kinds)  # a one-to-one map: no two cells merged, none split
    assert (cells.keeps[cells.labels] == ~matrix).all()
    assert np.array_equal(cells.labels[cells.order], np.sort(cells.labels))
    assert cells.saved == int(matrix.sum()) and cells.pairs == matrix.size


def test_a_copy_in_the_same_cells_numbered_otherwise_is_read_in_its_runs():
    """A block whose lines come in another order numbers the same cells otherwise: a copy gathered
    in the first block's cells still holds each of the second's as one run, scored from there,
    not taken (``_Cells.view``)."""
    from vcli.engine.search.groups import _Cells

    space = np.random.default_rng(4).integers(0, 3, 1000)  # no namespace, "left", "right"
    left, right = space != 1, space != 2  # what a line in each namespace drops
    first, second = _Cells.of([left, right], 1000, 0), _Cells.of([right, left], 1000, 0)
    assert first is not None and second is not None
    labels = second.labels[first.order]  # the second block's cells, over the first's copy
    assert not (labels[1:] >= labels[:-1]).all()  # (numbered otherwise)
    view = second.view(first.order, take=1e12)
    assert view is not None and view.take is None
    for cell, (a, b) in enumerate(view.spans):
        assert b - a == second.sizes[cell] and (labels[a:b] == cell).all()
