"""Damaged, foreign, stale and missing search files are found and repaired from the store, on the
next query and by `vcli check [--repair]`; store damage is reported, never papered over."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import orjson
import pytest
from helpers import column_files, exact_order

from vcli.engine import Catalog, Tuning

DIMS = 8
GRAPHS = Tuning(graph_min_floats=1, graph_in_background=False)  # every index big enough for a graph (really: millions of floats)


def make_index(data_dir, name="idx", n=2100, seed=0, metric="cosine", tuning=None):
    """An index of ``n`` random vectors, built in-process; returns {id: float32 values}."""
    cat = Catalog(data_dir, tuning=tuning)
    cat.create(name, DIMS, metric)
    rng = np.random.default_rng(seed)
    vals = rng.standard_normal((n, DIMS)).astype(np.float32)
    model = {f"v{i}": vals[i] for i in range(n)}
    with cat.open(name, write=True) as ix:
        ix.insert([{"id": k, "values": v.tolist()} for k, v in model.items()])
    return model


def brute(model, q, k, metric="cosine"):
    return exact_order(model, q, metric)[:k]


def assert_query_right(vcli, name, model, seed=1, k=7, metric="cosine"):
    q = np.random.default_rng(seed).standard_normal(DIMS).astype(np.float32)
    res = vcli("query", name, "--vector", *[repr(float(x)) for x in q], "--top-k", k, "--json")
    assert res.code == 0, res.err
    got = [(m["id"], m["score"]) for m in res.json["matches"]]
    want = brute(model, q, k, metric)
    assert [g[0] for g in got] == [w[0] for w in want]
    assert np.allclose([g[1] for g in got], [w[1] for w in want], atol=1e-6)
    return res


def derived(data_dir, name="idx"):
    """The matrix's manifest and the graph parts."""
    return sorted(p for p in (data_dir / name).iterdir() if p.suffix in (".manifest", ".usearch"))


def columns(data_dir, name="idx"):
    """The column files of the matrix's generations, by column (keys, norms, f32, gone)."""
    found = column_files(data_dir / name)
    return {p.suffix[1:]: p for p in found}


def graph_of(data_dir, name="idx"):
    (path,) = (p for p in derived(data_dir, name) if p.suffix == ".usearch")
    return path


def check_json(vcli, name="idx", *extra):
    res = vcli("check", name, "--json", *extra)
    assert "Traceback" not in res.err
    return res, orjson.loads(res.out)


def test_healthy_index_exits_0(vcli, data_dir):
    make_index(data_dir)
    res, report = check_json(vcli)
    assert res.code == 0, res.err
    assert report["healthy"] is True and report["problems"] == []
    assert report["vectorCount"] == 2100 and report["searchFile"] == "matrix-1.manifest"
    human = vcli("check", "idx")
    assert human.code == 0 and "healthy" in human.out


def test_truncated_matrix_is_repaired_on_the_next_query(vcli, data_dir):
    model = make_index(data_dir)
    path = columns(data_dir)["norms"]  # (never done to a file a reader may have mapped)
    path.write_bytes(path.read_bytes()[:1000])
    res, report = check_json(vcli)
    assert res.code == 1
    assert res.err.startswith("Error: ") and res.err.count("\n") == 1 and "--repair" in res.err
    assert [p["code"] for p in report["problems"]] == ["search-damaged"]
    q = assert_query_right(vcli, "idx", model)
    assert "matrix-1.manifest" in q.err and "rebuilt it from the store" in q.err
    res, report = check_json(vcli)
    assert res.code == 0, report["problems"]
    assert assert_query_right(vcli, "idx", model, seed=2).err == ""


def test_check_repair_exits_3_then_0(vcli, data_dir):
    model = make_index(data_dir)
    path = columns(data_dir)["norms"]
    path.write_bytes(b"\0" * path.stat().st_size)  # right size, wrong bytes
    (data_dir / "idx" / ".matrix-7.f32.tmp-0badc0de").write_bytes(b"half a file")
    res, report = check_json(vcli, "idx", "--repair")
    assert res.code == 3, res.err
    assert report["repaired"] is True and report["healthy"] is False
    assert {p["code"] for p in report["problems"]} == {"search-damaged", "temp:.matrix-7.f32.tmp-0badc0de"}
    assert all(p["repaired"] for p in report["problems"])
    assert not (data_dir / "idx" / ".matrix-7.f32.tmp-0badc0de").exists()
    res, report = check_json(vcli)
    assert res.code == 0, report["problems"]
    assert_query_right(vcli, "idx", model)
    human = vcli("check", "idx", "--repair")
    assert human.code == 0


def test_missing_search_file_is_rebuilt(vcli, data_dir):
    model = make_index(data_dir)
    for p in [*derived(data_dir), columns(data_dir)["norms"], columns(data_dir)["gone"]]:
        p.unlink()
    res, report = check_json(vcli)
    assert res.code == 1 and report["problems"][0]["code"] == "search-missing"
    q = assert_query_right(vcli, "idx", model)
    assert "missing" in q.err
    assert len(derived(data_dir)) == 1
    res, report = check_json(vcli)
    assert res.code == 0, report["problems"]


def test_search_file_from_another_index_is_refused(vcli, data_dir):
    make_index(data_dir, "other", seed=9)
    model = make_index(data_dir, "idx", seed=0)
    # Same dimensions, same number of vectors, same mutation number: only the contents differ.
    for path in [*derived(data_dir, "other"), *columns(data_dir, "other").values()]:
        shutil.copy(path, data_dir / "idx" / path.name)
    res, report = check_json(vcli)
    assert res.code == 1 and report["problems"][0]["code"] == "search-damaged"
    q = assert_query_right(vcli, "idx", model)
    assert "does not match the store" in q.err
    res, report = check_json(vcli)
    assert res.code == 0, report["problems"]


def test_search_file_newer_than_the_store_is_refused(vcli, data_dir):
    model = make_index(data_dir)
    (path,) = derived(data_dir)
    path.rename(path.with_name("matrix-99.manifest"))
    res, report = check_json(vcli)
    assert res.code == 1
    assert "another index" in report["problems"][0]["problem"] or "damaged" in report["problems"][0]["problem"]
    q = assert_query_right(vcli, "idx", model)
    assert "rebuilt" in q.err
    assert [p.name for p in derived(data_dir)] == ["matrix-1.manifest"]


def test_old_copy_of_a_search_file_is_not_caught_up_wrongly(vcli, data_dir, tmp_path):
    """A file restored from before removals the store no longer remembers must be rebuilt, or
    deleted and replaced vectors would come back (or be missing from the answer)."""
    model = make_index(data_dir, n=2500)
    old = [*derived(data_dir), *columns(data_dir).values()]
    keep = tmp_path / "old-copy"
    keep.mkdir()
    for path in old:
        shutil.copy(path, keep / path.name)
    cat = Catalog(data_dir)
    rng = np.random.default_rng(5)
    with cat.open("idx", write=True) as ix:  # replace 2100 vectors: the writer refreshes and prunes
        new = {f"v{i}": rng.standard_normal(DIMS).astype(np.float32) for i in range(2100)}
        ix.upsert([{"id": k, "values": v.tolist()} for k, v in new.items()])
        ix.delete([f"v{i}" for i in range(2100, 2200)])
    model.update(new)
    for i in range(2100, 2200):
        del model[f"v{i}"]
    for p in derived(data_dir):
        p.unlink()
    for path in old:  # the search files as they were (the values stay the store's)
        if path.suffix == ".manifest" or not path.exists():
            shutil.copy(keep / path.name, path)
    res, report = check_json(vcli)
    assert res.code == 1 and report["problems"][0]["code"] == "search-damaged"
    for seed in range(3):
        assert_query_right(vcli, "idx", model, seed=seed, k=20)
    res, report = check_json(vcli)
    assert res.code == 0, report["problems"]


def test_search_file_far_behind_is_caught_up(vcli, data_dir):
    model = make_index(data_dir)
    # A writer killed before its refresh leaves the file behind: simulate it with a writer that
    # never folds the delta in.
    rng = np.random.default_rng(3)
    extra = {f"w{i}": rng.standard_normal(DIMS).astype(np.float32) for i in range(Tuning().fold_rows + 100)}
    with Catalog(data_dir, tuning=Tuning(fold_rows=10**9)).open("idx", write=True) as ix:
        ix.insert([{"id": k, "values": v.tolist()} for k, v in extra.items()])
    model.update(extra)
    res, report = check_json(vcli)
    assert res.code == 1 and report["problems"][0]["code"] == "search-behind"
    q = assert_query_right(vcli, "idx", model)
    assert "changes behind" in q.err and "brought it up to date" in q.err
    assert [p.name for p in derived(data_dir)] == ["matrix-2.manifest"]
    res, report = check_json(vcli)
    assert res.code == 0, report["problems"]


def test_superseded_files_are_tidied_by_repair(vcli, data_dir):
    make_index(data_dir)
    (path,) = derived(data_dir)
    shutil.copy(path, path.with_name("matrix-0.manifest"))
    orphan = columns(data_dir)["f32"].with_name("vectors-0-0badc0de.f32")  # a killed build's
    shutil.copy(columns(data_dir)["f32"], orphan)
    res, report = check_json(vcli)
    assert res.code == 1
    assert [p["code"] for p in report["problems"]] == ["old:matrix-0.manifest", "old:vectors-0-0badc0de.f32"]
    assert check_json(vcli, "idx", "--repair")[0].code == 3
    assert [p.name for p in derived(data_dir)] == ["matrix-1.manifest"]
    assert not orphan.exists() and len(columns(data_dir)) == 4


def test_damaged_vectors_are_reported_not_deleted(vcli, data_dir):
    make_index(data_dir, n=100)
    with Catalog(data_dir).open("idx", write=True) as ix:  # a second append: v100..v102
        ix.insert([{"id": f"v{i}", "values": [1.0] * DIMS} for i in range(100, 103)])
    with sqlite3.connect(data_dir / "idx" / "store.sqlite") as conn:
        conn.execute("UPDATE vectors SET metadata = x'7b7b' WHERE id = 'v4'")
    with open(columns(data_dir)["f32"], "r+b") as f:  # v101's values, in the second append
        f.seek(101 * DIMS * 4)
        f.write(np.full(DIMS, np.inf, np.float32).tobytes())
    res, report = check_json(vcli, "idx", "--repair")
    assert res.code == 1
    assert "could not be repaired" in res.err
    codes = {p["code"]: p for p in report["problems"]}
    assert {"columns-damaged", "vector-metadata", "vector-not-finite"} <= set(codes)
    damaged = codes["columns-damaged"]["problem"]
    assert '"v100", "v101", "v102"' in damaged and '"v3"' not in damaged and not codes["columns-damaged"]["repaired"]
    assert '"v101"' in codes["vector-not-finite"]["problem"]
    got = vcli("get-vectors", "idx", "--ids", "v3", "v6", "--json")
    assert got.code in (0, 1) and "Traceback" not in got.err
    with sqlite3.connect(data_dir / "idx" / "store.sqlite") as conn:  # still there: the user decides
        assert conn.execute("SELECT count(*) FROM vectors WHERE id IN ('v4', 'v101')").fetchone()[0] == 2


def test_key_counter_behind_is_repaired(vcli, data_dir):
    make_index(data_dir)
    with sqlite3.connect(data_dir / "idx" / "store.sqlite") as conn:
        conn.execute("UPDATE sqlite_sequence SET seq = 3 WHERE name = 'vectors'")
    res, report = check_json(vcli)
    assert res.code == 1 and report["problems"][0]["code"] == "sequence-vectors"
    assert check_json(vcli, "idx", "--repair")[0].code == 3
    res, report = check_json(vcli)
    assert res.code == 0, report["problems"]


def test_key_counter_stays_past_the_keys_graph_parts_cover(data_dir, graph_mode):
    """The last vectors deleted and their removal forgotten, and the key counter lost: a repair
    moves it past the last graph part's keys, else new vectors would get keys the part claims
    to hold and no search would find them."""
    vcli = graph_mode
    model = make_index(data_dir, tuning=GRAPHS)
    top = [f"v{i}" for i in range(2050, 2100)]  # the last keys
    with Catalog(data_dir, tuning=GRAPHS).open("idx", write=True) as ix:
        ix.delete(top)
        with ix.writing():  # a new matrix: the removals are forgotten
            ix.refresh(force=True)
    for i in top:
        model.pop(i)
    with sqlite3.connect(data_dir / "idx" / "store.sqlite") as conn:
        conn.execute("UPDATE sqlite_sequence SET seq = 3 WHERE name = 'vectors'")
    res, report = check_json(vcli)
    assert res.code == 1 and [p["code"] for p in report["problems"]] == ["sequence-vectors"]
    assert check_json(vcli, "idx", "--repair")[0].code == 3
    new = {f"new{i}": v for i, v in enumerate(np.random.default_rng(5).standard_normal((2100, DIMS)).astype(np.float32))}
    with Catalog(data_dir, tuning=GRAPHS).open("idx", write=True) as ix:
        ix.insert([{"id": i, "values": v.tolist()} for i, v in new.items()])
    model |= new
    for i in range(0, 100, 7):  # the first new keys, which the old counter would have reused
        got = vcli("query", "idx", "--vector-id", f"new{i}", "--top-k", "1", "--json")
        assert got.code == 0 and got.json["matches"][0]["id"] == f"new{i}"
    for seed in range(3):
        assert_query_right(vcli, "idx", model, seed=seed)
    res, report = check_json(vcli)
    assert res.code == 0, report["problems"]


def test_garbage_store_is_one_clear_error(vcli, data_dir):
    make_index(data_dir)
    store = data_dir / "idx" / "store.sqlite"
    for suffix in ("-wal", "-shm"):
        store.with_name(store.name + suffix).unlink(missing_ok=True)
    store.write_bytes(b"this is not a database" * 500)
    res, report = check_json(vcli)
    assert res.code == 1 and report["problems"][0]["code"] == "store-unreadable"
    for args in (("info", "idx"), ("query", "idx", "--vector", *["1"] * DIMS), ("get-vectors", "idx", "--ids", "a"),
                 ("insert", "idx", "--file", "-")):
        r = vcli(*args, input='{"id": "a", "values": [1,2,3,4,5,6,7,8]}\n')
        assert r.code == 1, args
        assert r.err.startswith("Error: ") and r.err.count("\n") == 1, (args, r.err)


def test_unknown_index(vcli):
    res = vcli("check", "nope")
    assert res.code == 1 and res.err == 'Error: index "nope" not found\n'


@pytest.fixture
def graph_mode(vcli):
    """The CLI with ``GRAPHS`` (build indexes in-process with ``tuning=GRAPHS`` too)."""
    return lambda *args, **kw: vcli(*args, tuning=GRAPHS, **kw)


def test_graph_of_one_vector_is_trusted(data_dir, graph_mode):
    """The check searches the graph for one vector only (usearch answers a batch of one in
    another shape): a sound graph passes, a foreign one is still caught."""
    vcli = graph_mode
    cat = Catalog(data_dir, tuning=GRAPHS)
    for name, seed in (("idx", 1), ("other", 2)):
        cat.create(name, DIMS, "cosine")
        with cat.open(name, write=True) as ix:
            ix.insert([{"id": "only", "values": np.random.default_rng(seed).standard_normal(DIMS).tolist()}])
    model = {"only": np.asarray(cat.open("idx").get(["only"])[0].values)}
    assert assert_query_right(vcli, "idx", model).err == ""
    shutil.copy(graph_of(data_dir, "other"), graph_of(data_dir))
    assert "built anew" in assert_query_right(vcli, "idx", model).err
    assert assert_query_right(vcli, "idx", model).err == ""  # (built by that query: GRAPHS)


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
@pytest.mark.parametrize("damage", ["truncate", "foreign", "delete", "garbage"])
def test_damaged_graph_is_rebuilt(data_dir, graph_mode, damage, metric):
    vcli = graph_mode
    make_index(data_dir, "other", seed=9, metric=metric, tuning=GRAPHS)
    model = make_index(data_dir, metric=metric, tuning=GRAPHS)
    path = graph_of(data_dir)
    assert [p.name for p in derived(data_dir)] == ["graph-1-0-2100.usearch", "matrix-1.manifest"]
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "foreign":
        shutil.copy(graph_of(data_dir, "other"), path)
    elif damage == "garbage":  # not even a header
        path.write_bytes(b"not a graph")
    else:
        path.unlink()
    res, report = check_json(vcli)
    assert res.code == 1
    assert [p["code"] for p in report["problems"]] == ["graph-missing" if damage == "delete" else "graph-damaged"]
    q = assert_query_right(vcli, "idx", model, metric=metric)  # exact from the matrix meanwhile
    assert ("built anew" in q.err) == (damage != "delete")
    assert [p.name for p in derived(data_dir)] == ["graph-1-0-2100.usearch", "matrix-1.manifest"]
    res, report = check_json(vcli)
    assert res.code == 0, report["problems"]


def test_sound_graph_of_equal_vectors_is_trusted(data_dir, graph_mode):
    """A one-shot query opens the graph without its key table and checks it by searching it for
    some of the store's vectors; many keys sharing one vector must not make it look foreign."""
    vcli = graph_mode
    cat = Catalog(data_dir, tuning=GRAPHS)
    cat.create("idx", DIMS, "cosine")
    same = np.ones(DIMS, np.float32)
    model = {f"same{i:03}": same for i in range(60)}
    model |= {f"v{i}": v for i, v in enumerate(np.random.default_rng(3).standard_normal((240, DIMS)).astype(np.float32))}
    with cat.open("idx", write=True) as ix:
        ix.insert([{"id": k, "values": v.tolist()} for k, v in model.items()])
    for _ in range(3):
        q = assert_query_right(vcli, "idx", model)
        assert q.err == ""  # no repair, no note
    assert [p.name for p in derived(data_dir)] == ["graph-1-0-300.usearch", "matrix-1.manifest"]


def test_a_small_index_keeps_no_matrix_and_no_pile_of_removals(vcli, data_dir):
    """Up to fold_rows vectors an index is scanned from the store: a repair removes a damaged
    matrix rather than writing one, and rewriting the same vectors over and over does not keep
    a record of every removal."""
    from vcli.engine import matrix

    model = make_index(data_dir, n=100)
    with Catalog(data_dir).open("idx", write=True) as ix:
        for round_ in range(25):  # 2,500 removals, more than fold_rows
            ix.upsert([{"id": i, "values": (v + round_).tolist()} for i, v in model.items()])
            model = {i: (v + round_).astype(np.float32) for i, v in model.items()}
        assert ix.store.removed_rows() <= Tuning().fold_rows
        path = matrix.build(ix.store, ix.folder, DIMS, 0.25)  # as an older vcli would have left it
    path.write_bytes(path.read_bytes()[:20])
    res, report = check_json(vcli)
    assert res.code == 1 and [p["code"] for p in report["problems"]] == ["search-damaged"]
    res, report = check_json(vcli, "idx", "--repair")
    assert res.code == 3 and derived(data_dir) == []
    assert len(column_files(data_dir / "idx")) == 4  # the values' generation, and no other
    res, report = check_json(vcli)
    assert res.code == 0 and report["searchFile"] is None
    assert_query_right(vcli, "idx", model)
