"""Growth without copying: every write appends its values to the current generation's columns
(their one home), and a fold appends the norms of the rows written since the matrix and
tombstones the removed ones, leaving every byte already written as it was; it compacts into a
new generation only when tombstones pass ``Tuning.fold_compact_share``. Answers stay exact across
many folds, a reader's open matrix never changes under it, bytes a killed write or fold left
past the committed length are ignored and written over, a damaged derived segment is found by
``vcli check`` and rebuilt by ``--repair`` while damaged values are reported, and an index of an
older vcli (values in the store, a one-file matrix) is read as it is and migrated by its first
writer."""

from __future__ import annotations

import hashlib
import sqlite3

import numpy as np
import pytest
from helpers import as_older_vcli, column_files, exact_order

from vcli.engine import Catalog, Tuning, matrix
from vcli.engine.check import check_index
from vcli.engine.layout import seq_of

DIMS = 16
FOLDS = Tuning(fold_rows=20)


def vectors(rng, n: int, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}{i}": v for i, v in enumerate(rng.standard_normal((n, DIMS)).astype(np.float32))}


def records(model: dict[str, np.ndarray]) -> list[dict]:
    return [{"id": k, "values": v.tolist()} for k, v in model.items()]


def open_matrix(folder) -> matrix.Matrix:
    (path,) = folder.glob("matrix-*.manifest")
    return matrix.Matrix.load(path, seq_of(path), DIMS)


def columns(folder) -> dict[str, object]:
    return {p.suffix[1:]: p for p in column_files(folder)}


def digest(path, size: int) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read(size)).hexdigest()


def assert_exact(ix, model, rng, metric="cosine", queries=3):
    for _ in range(queries):
        q = rng.standard_normal(DIMS).astype(np.float32)
        got = ix.query(q.tolist(), top_k=10)
        want = exact_order(model, q, metric)[:10]
        assert [m.id for m in got.matches] == [w[0] for w in want]
        assert np.allclose([m.score for m in got.matches], [w[1] for w in want], atol=1e-5)


def loaded(data_dir, rng, n: int, metric: str):
    """A catalog folding at ``FOLDS`` with index ``idx`` of ``n`` random vectors: (catalog, model)."""
    cat = Catalog(data_dir, tuning=FOLDS)
    cat.create("idx", DIMS, metric)
    model = vectors(rng, n, "a")
    with cat.open("idx", write=True) as ix:
        ix.insert(records(model))
    return cat, model


def test_the_values_are_stored_once_in_the_columns(data_dir):
    """A write's values go to the columns only (the store keeps no blob, so its log carries none),
    exactly once each, and come back bit for bit."""
    rng = np.random.default_rng(10)
    cat, model = loaded(data_dir, rng, 3000, "cosine")
    folder = data_dir / "idx"
    with cat.open("idx", write=True) as ix:
        ix.upsert(records({"a1": model["a1"] + 1}))
        model["a1"] = model["a1"] + 1
        got = {v.id: v.values for v in ix.get(sorted(model))}
    assert all(got[k].tobytes() == v.tobytes() for k, v in model.items())
    assert columns(folder)["f32"].stat().st_size == 3001 * DIMS * 4
    with sqlite3.connect(folder / "store.sqlite") as conn:
        assert "vec" not in [r[1] for r in conn.execute("PRAGMA table_info(vectors)")]
        assert conn.execute('SELECT start, "end" FROM appends ORDER BY start').fetchall() == [(0, 3000), (3000, 3001)]
    conn.close()
    store = sum(p.stat().st_size for p in folder.glob("store.sqlite*"))
    assert store < 3000 * DIMS * 4  # ids, keys and bookkeeping, not the 192 kB of values


def test_a_fold_appends_and_leaves_the_rows_written_before_untouched(data_dir):
    rng = np.random.default_rng(1)
    cat, model = loaded(data_dir, rng, 5000, "cosine")
    folder = data_dir / "idx"
    before = {c: (p, p.stat().st_ino, p.stat().st_size, digest(p, p.stat().st_size)) for c, p in columns(folder).items()}
    assert before["f32"][2] == 5000 * DIMS * 4 and before["gone"][2] == 0
    more = vectors(rng, 100, "b")
    with cat.open("idx", write=True) as ix:
        ix.insert(records(more))
        ix.delete(["a7", "a4999"])  # (two changes: not folded yet)
        ix.upsert(records({k: more[k] + 1 for k in list(more)[:30]}))  # folds: 30 new rows, 32 tombstones
    model |= more | {k: more[k] + 1 for k in list(more)[:30]}
    del model["a7"], model["a4999"]
    after = columns(folder)
    assert set(after) == set(before)
    for column, (path, inode, size, old) in before.items():
        assert after[column] == path and path.stat().st_ino == inode  # the same file, grown
        assert digest(path, size) == old  # and every byte it held as it was
    grown = {c: p.stat().st_size - before[c][2] for c, p in after.items()}
    assert grown == {"keys": 130 * 8, "norms": 130 * 4, "f32": 130 * DIMS * 4, "gone": 32 * 8}
    m = open_matrix(folder)
    assert len(m.manifest.segments) == 3 and len(m.keys) == 5130 and m.live() == len(model)
    with cat.open("idx", write=True) as ix:
        assert_exact(ix, model, rng)
        assert check_index(ix).healthy


@pytest.mark.parametrize("tuning", [
    FOLDS,
    Tuning(fold_rows=20, graph_min_floats=1, graph_in_background=False, graph_part_rows=300),
], ids=["matrix", "graph"])
def test_answers_stay_exact_over_many_folds_with_deletes_and_upserts(data_dir, tuning):
    rng = np.random.default_rng(2)
    cat = Catalog(data_dir, tuning=tuning)
    cat.create("idx", DIMS, "euclidean")
    model = vectors(rng, 600, "s")
    with cat.open("idx", write=True) as ix:
        ix.insert(records(model))
    folder = data_dir / "idx"
    generations, tombstoned, serial = set(), 0, 0
    for round_ in range(40):
        with cat.open("idx", write=True) as ix:
            kind = round_ % 3
            if kind == 0:  # new vectors
                serial += 1
                new = vectors(rng, int(rng.integers(5, 60)), f"n{serial}-")
                ix.insert(records(new))
                model |= new
            elif kind == 1:  # replace some
                ids = list(rng.choice(sorted(model), size=min(len(model), int(rng.integers(5, 60))), replace=False))
                new = {i: rng.standard_normal(DIMS).astype(np.float32) for i in ids}
                ix.upsert(records(new))
                model |= new
            else:  # delete some
                ids = list(rng.choice(sorted(model), size=min(len(model), int(rng.integers(5, 60))), replace=False))
                ix.delete(ids)
                for i in ids:
                    del model[i]
            assert_exact(ix, model, rng, "euclidean", queries=2)
        m = open_matrix(folder)
        generations.add(m.manifest.generation)
        tombstoned = max(tombstoned, len(m.gone))
        assert len(m.gone) <= tuning.fold_compact_share * len(m.keys)
        assert len(columns(folder)) == 4  # one generation's columns, no other left behind
    assert tombstoned > 0 and len(generations) > 1  # folds appended, and some compacted
    with cat.open("idx", write=True) as ix:
        assert ix.info().vector_count == len(model)
        got = {v.id: np.asarray(v.values, np.float32) for v in ix.get(sorted(model))}
        assert all(np.array_equal(got[k], v) for k, v in model.items())
        assert check_index(ix).healthy


def test_an_open_matrix_never_changes_under_its_reader(data_dir):
    """A reader maps only the prefix its manifest names: folds that append to the same files,
    and a compaction that removes them, leave what it reads as it was."""
    rng = np.random.default_rng(3)
    cat, model = loaded(data_dir, rng, 400, "cosine")
    held = open_matrix(data_dir / "idx")
    copies = [np.array(held.keys), np.array(held.norms), np.array(held.values)]
    with cat.open("idx", write=True) as ix:
        ix.insert(records(vectors(rng, 50, "b")))  # appended
        ix.delete([f"a{i}" for i in range(200)])  # compacted: the held generation's files removed
    assert open_matrix(data_dir / "idx").manifest.generation != held.manifest.generation
    for mine, copy in zip([held.keys, held.norms, held.values], copies, strict=True):
        assert np.array_equal(mine, copy)


def test_bytes_a_killed_fold_left_are_ignored_then_written_over(data_dir):
    rng = np.random.default_rng(4)
    cat, model = loaded(data_dir, rng, 300, "cosine")
    folder = data_dir / "idx"
    for path in columns(folder).values():  # as a fold killed before its manifest would leave them
        with open(path, "ab") as f:
            f.write(rng.bytes(4096))
    with cat.open("idx", write=True) as ix:
        assert_exact(ix, model, rng)
        report = check_index(ix)
        assert report.healthy, report.problems
        more = vectors(rng, 40, "b")
        ix.insert(records(more))  # folded: written over the leftovers
        model |= more
        assert_exact(ix, model, rng)
        assert check_index(ix).healthy
    assert len(open_matrix(folder).manifest.segments) == 2


def test_check_finds_a_damaged_segment_and_repair_rebuilds_it(data_dir, vcli):
    rng = np.random.default_rng(5)
    cat = Catalog(data_dir, tuning=FOLDS)
    cat.create("idx", DIMS, "cosine")
    model = vectors(rng, 2100, "a")  # (more than the CLI's fold_rows: it keeps a matrix)
    with cat.open("idx", write=True) as ix:
        ix.insert(records(model))
        for j in range(2):
            more = vectors(rng, 30, f"b{j}-")
            ix.insert(records(more))
            model |= more
    folder = data_dir / "idx"
    m = open_matrix(folder)
    assert [s.rows for s in m.manifest.segments] == [2100, 2130, 2160]
    norms = columns(folder)["norms"]  # derived: the values are not touched
    data = bytearray(norms.read_bytes())
    data[2110 * 4 + 1] ^= 0x40  # one bit of a row of the second segment
    norms.write_bytes(bytes(data))
    res = vcli("check", "idx", "--json")
    assert res.code == 1 and [p["code"] for p in res.json["problems"]] == ["search-damaged"]
    assert "segment 2" in res.json["problems"][0]["problem"]
    res = vcli("check", "idx", "--repair", "--json")
    assert res.code == 3 and res.json["repaired"] is True, res.err
    assert vcli("check", "idx").code == 0
    assert open_matrix(folder).manifest.generation != m.manifest.generation
    with cat.open("idx") as ix:
        assert_exact(ix, model, rng)


def test_damaged_values_are_found_by_their_checksums_and_not_repaired(data_dir, vcli):
    rng = np.random.default_rng(9)
    cat, model = loaded(data_dir, rng, 300, "cosine")
    with cat.open("idx", write=True) as ix:
        ix.insert(records(vectors(rng, 5, "b")))  # (a second append: rows 300..304)
    values = columns(data_dir / "idx")["f32"]
    data = bytearray(values.read_bytes())
    data[(302 * DIMS + 3) * 4] ^= 0x01  # the lowest bit of one number: still a finite float32
    values.write_bytes(bytes(data))
    res = vcli("check", "idx", "--repair", "--json")
    assert res.code == 1 and "could not be repaired" in res.err
    (damaged,) = [p for p in res.json["problems"] if p["code"] == "columns-damaged"]
    assert '"b0", "b1", "b2", "b3", "b4"' in damaged["problem"] and not damaged["repaired"]
    assert '"a' not in damaged["problem"]  # the first append is sound


def appends(folder) -> list[tuple[int, int]]:
    with sqlite3.connect(folder / "store.sqlite") as conn:
        rows = conn.execute('SELECT start, "end" FROM appends ORDER BY start').fetchall()
    conn.close()
    return rows


def test_a_fold_merges_the_records_of_the_small_writes_it_checked(data_dir, vcli):
    """Many one-vector writes leave one record each; the fold that takes them in checks each
    against its bytes and keeps one record for them all, unless one of them is damaged."""
    rng = np.random.default_rng(13)
    cat, model = loaded(data_dir, rng, 100, "cosine")
    folder = data_dir / "idx"
    with cat.open("idx", write=True) as ix:
        for i in range(15):  # (fewer changes than FOLDS.fold_rows: not folded yet)
            ix.insert(records(vectors(rng, 1, f"s{i}-")))
    assert appends(folder) == [(0, 100)] + [(100 + i, 101 + i) for i in range(15)]
    with cat.open("idx", write=True) as ix:
        for i in range(15, 25):  # the fold
            ix.insert(records(vectors(rng, 1, f"s{i}-")))
    assert appends(folder)[0] == (0, 100) and len(appends(folder)) < 10 and appends(folder)[-1][1] == 125
    with cat.open("idx", write=True) as ix:
        assert check_index(ix).healthy
    values = columns(folder)["f32"]
    with cat.open("idx", write=True) as ix:
        for i in range(25, 35):
            ix.insert(records(vectors(rng, 1, f"t{i}-")))
        before = appends(folder)
        data = bytearray(values.read_bytes())
        data[(before[-1][0] * DIMS + 1) * 4] ^= 0x01  # the last small write's values, before its fold
        values.write_bytes(bytes(data))
        for i in range(35, 50):  # the fold: the damaged record is not merged away
            ix.insert(records(vectors(rng, 1, f"t{i}-")))
    assert len(appends(folder)) > len(before)
    res = vcli("check", "idx", "--json")
    assert res.code == 1 and "columns-damaged" in [p["code"] for p in res.json["problems"]]


def test_a_values_column_cut_short_is_one_clear_error_and_reported(data_dir, vcli):
    rng = np.random.default_rng(12)
    loaded(data_dir, rng, 100, "cosine")
    values = columns(data_dir / "idx")["f32"]
    with open(values, "r+b") as f:
        f.truncate(50 * DIMS * 4)
    for args in (("query", "idx", "--vector", *["0.5"] * DIMS), ("get-vectors", "idx", "--ids", "a1"), ("export", "idx")):
        res = vcli(*args)
        assert res.code == 1 and res.err.startswith("Error: ") and res.err.count("\n") == 1, (args, res.err)
        assert "fewer than the" in res.err
    res = vcli("check", "idx", "--repair", "--json")
    assert res.code == 1 and [p["code"] for p in res.json["problems"] if not p["repaired"]] == ["columns-missing"]


@pytest.mark.parametrize("one_file", [True, False], ids=["one-file-matrix", "generation"])
def test_an_index_of_an_older_vcli_is_read_as_it_is_and_migrated_by_its_first_writer(data_dir, vcli, one_file):
    rng = np.random.default_rng(6)
    cat, model = loaded(data_dir, rng, 500, "dot-product")
    folder = data_dir / "idx"
    as_older_vcli(folder, DIMS, one_file)
    old_columns = set(columns(folder).values())
    with cat.open("idx") as ix:  # a reader: nothing changes
        got = ix.query(rng.standard_normal(DIMS).tolist(), top_k=5)
        assert got.notes == ()  # read as it is: no rebuild
        assert_exact(ix, model, rng, "dot-product")
        assert all(np.array_equal(v.values, model[v.id]) for v in ix.get(["a1", "a499"]))
        assert check_index(ix).healthy
    res = vcli("export", "idx")
    assert res.code == 0 and len(res.out.splitlines()) == 500
    assert set(columns(folder).values()) == old_columns  # nothing written by a reader
    with cat.open("idx", write=True) as ix:
        more = vectors(rng, 30, "b")
        ix.insert(records(more))  # migrates first
        model |= more
        assert_exact(ix, model, rng, "dot-product")
        assert check_index(ix).healthy
        got = {v.id: v.values for v in ix.get(sorted(model))}
        assert all(np.array_equal(got[k], v) for k, v in model.items())  # bit for bit
    with sqlite3.connect(folder / "store.sqlite") as conn:
        assert "vec" not in [r[1] for r in conn.execute("PRAGMA table_info(vectors)")]
        assert conn.execute("SELECT v FROM settings WHERE k = 'format'").fetchone()[0] == 2
    conn.close()
    assert not (folder / "matrix-1.f32").exists() and len(column_files(folder)) == 4
    assert not set(column_files(folder)) & old_columns  # the old generation is gone
    with cat.open("idx", write=True) as ix:  # the key counter survived: new keys above the old
        ix.upsert(records({"a0": model["a0"] + 1}))
        assert ix.store.max_key() == 531


@pytest.mark.parametrize("one_file", [True, False], ids=["one-file-matrix", "generation"])
def test_a_small_write_that_migrates_leaves_one_copy_of_the_values(data_dir, one_file):
    """The write that migrates an index of an older vcli rebuilds its matrix on the new columns
    (norms only), even when it is too small to fold: the old matrix, a second copy of every value,
    does not stay behind."""
    rng = np.random.default_rng(8)
    cat, model = loaded(data_dir, rng, 500, "cosine")
    folder = data_dir / "idx"
    as_older_vcli(folder, DIMS, one_file)
    with cat.open("idx", write=True) as ix:
        more = vectors(rng, 3, "b")  # below FOLDS.fold_rows: no fold due
        ix.insert(records(more))
        model |= more
    assert not list(folder.glob("matrix-*.f32"))
    files = column_files(folder)
    assert len(files) == 4 and len({p.name.split(".")[0].split("-", 1)[1] for p in files}) == 1, files
    with cat.open("idx") as ix:
        assert_exact(ix, model, rng, "cosine")
        assert check_index(ix).healthy
