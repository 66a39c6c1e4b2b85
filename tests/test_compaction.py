"""The columns stay bounded and honest: an index too small for a matrix compacts its columns once
rows upserted again or deleted pile up; a compaction (a fold's, a rebuild's, a repair's) checks
every append it copies against the checksums recorded with it and refuses damaged values rather
than record fresh checksums of them; damage only in rows no vector uses any more is compacted
away by ``vcli check --repair``."""

from __future__ import annotations

import re
import sqlite3

import numpy as np
import orjson
import pytest
from helpers import as_older_vcli, column_files

from vcli.engine import Catalog, Tuning

DIMS = 8


def records(rng, ids, dims=DIMS) -> tuple[list[dict], dict[str, np.ndarray]]:
    values = rng.standard_normal((len(ids), dims)).astype(np.float32)
    return ([{"id": i, "values": v.tolist()} for i, v in zip(ids, values, strict=True)],
            dict(zip(ids, values, strict=True)))


def column(folder, suffix: str):
    (path,) = [p for p in column_files(folder) if p.suffix == f".{suffix}"]
    return path


def appends(folder) -> int:
    conn = sqlite3.connect(folder / "store.sqlite")
    try:
        return conn.execute("SELECT count(*) FROM appends").fetchone()[0]
    finally:
        conn.close()


def flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01  # the lowest bit of a number: still finite
    path.write_bytes(bytes(data))


def test_a_small_index_upserted_again_and_again_keeps_its_columns_bounded(data_dir, vcli):
    rng = np.random.default_rng(1)
    cat = Catalog(data_dir)  # (the CLI's tuning: 1,000 vectors keep no matrix)
    cat.create("idx", DIMS, "cosine")
    ids = [f"v{i}" for i in range(1000)]
    for _ in range(12):
        with cat.open("idx", write=True) as ix:
            batch, model = records(rng, ids)
            ix.upsert(batch)
    folder = data_dir / "idx"
    assert not list(folder.glob("matrix-*"))
    rows = column(folder, "f32").stat().st_size // (DIMS * 4)
    assert rows <= 4000, rows  # (12,000 without compaction)
    assert appends(folder) <= 4
    assert len(column_files(folder)) == 4  # one generation: the old ones were removed
    with cat.open("idx") as ix:
        got = {v.id: np.asarray(v.values, np.float32) for v in ix.get(ids)}
    assert all(np.array_equal(got[i], model[i]) for i in ids)
    assert vcli("check", "idx").code == 0


def loaded(data_dir, n: int, seed: int):
    """An index "idx" of ``n`` random vectors ``v0``...: (catalog, model, rng)."""
    rng = np.random.default_rng(seed)
    cat = Catalog(data_dir)
    cat.create("idx", DIMS, "cosine")
    batch, model = records(rng, [f"v{i}" for i in range(n)])
    with cat.open("idx", write=True) as ix:
        ix.upsert(batch)
    return cat, model, rng


def loaded_and_damaged(data_dir, vcli, n=3000):
    """``n`` vectors (a matrix) with one bit of row 100's values flipped: (catalog, model, rng)."""
    made = loaded(data_dir, n, 2)
    flip(column(data_dir / "idx", "f32"), 100 * DIMS * 4 + 1)
    return made


def test_repair_does_not_launder_damaged_values(data_dir, vcli):
    cat, model, _rng = loaded_and_damaged(data_dir, vcli)
    folder = data_dir / "idx"
    before = {p.name for p in column_files(folder)}
    res = vcli("check", "idx", "--repair", "--json")
    assert res.code == 1 and "could not be repaired" in res.err
    damaged = [p for p in res.json["problems"] if p["code"] == "columns-damaged"]
    assert damaged and not damaged[0]["repaired"]
    assert {p.name for p in column_files(folder)} == before  # the damaged generation is left as it is
    res = vcli("check", "idx", "--json")
    assert res.code == 1 and "columns-damaged" in [p["code"] for p in res.json["problems"]]


def test_a_compacting_fold_refuses_damaged_values_and_the_write_still_commits(data_dir, vcli):
    cat, model, rng = loaded_and_damaged(data_dir, vcli, 5000)
    folder = data_dir / "idx"
    generation = column(folder, "f32").name
    matrix_seqs = lambda: sorted(int(p.name.split("-")[1].split(".")[0]) for p in folder.glob("matrix-*.manifest"))  # noqa: E731
    before = matrix_seqs()
    res = vcli("delete-vectors", "idx", "--ids", *[f"v{i}" for i in range(2500, 5000)])
    assert res.code == 0, res.err  # (the write commits; its refresh reports what it could not do)
    assert "differ from the checksums recorded when they were written" in res.err, res.err
    assert column(folder, "f32").name == generation
    res = vcli("check", "idx", "--json")
    assert res.code == 1 and "columns-damaged" in [p["code"] for p in res.json["problems"]]
    assert "2500 of the 5,000 vectors" in [p for p in res.json["problems"] if p["code"] == "columns-damaged"][0]["problem"]
    with cat.open("idx") as ix:
        assert ix.info().vector_count == 2500
    # the matrix went on by appending (not compacted), so queries need no repair
    assert matrix_seqs()[-1] > before[-1], (before, matrix_seqs())
    query = vcli("query", "idx", "--vector-id", "v10", "--top-k", "1", "--json")
    assert query.code == 0 and query.err == "", query.err
    assert query.json["matches"][0]["id"] == "v10"


def test_damage_in_rows_no_vector_uses_is_compacted_away_by_repair(data_dir, vcli):
    rng = np.random.default_rng(3)
    cat = Catalog(data_dir)
    cat.create("idx", DIMS, "cosine")
    batch, model = records(rng, [f"v{i}" for i in range(3000)])
    small, _ = records(rng, [f"w{i}" for i in range(50)])
    with cat.open("idx", write=True) as ix:
        ix.upsert(batch)
        ix.upsert(small)  # (its own append: rows 3000..3049)
    flip(column(data_dir / "idx", "f32"), 3010 * DIMS * 4 + 1)
    res = vcli("check", "idx", "--json")
    assert res.code == 1 and [p["code"] for p in res.json["problems"]] == ["columns-damaged"]
    assert "50 of the 50 vectors" in res.json["problems"][0]["problem"]
    small, fresh = records(rng, [f"w{i}" for i in range(50)])  # every damaged row upserted again
    with cat.open("idx", write=True) as ix:
        ix.upsert(small)
    model |= fresh
    res = vcli("check", "idx", "--json")
    assert res.code == 1 and [p["code"] for p in res.json["problems"]] == ["columns-damaged-dead"], res.json
    res = vcli("check", "idx", "--repair", "--json")
    assert res.code == 3 and res.json["repaired"] is True, (res.err, res.json)
    assert vcli("check", "idx").code == 0
    with cat.open("idx") as ix:
        got = {v.id: np.asarray(v.values, np.float32) for v in ix.get(list(model))}
    assert len(got) == 3050 and all(np.array_equal(got[i], model[i]) for i in model)


def test_a_store_of_an_older_vcli_with_one_damaged_blob_is_migrated_without_it(data_dir, vcli):
    """The good blobs move to the columns; the damaged one's vector is left without values, which
    check reports and the user deletes or upserts again. Every write works meanwhile."""
    rng = np.random.default_rng(4)
    cat = Catalog(data_dir, tuning=Tuning(fold_rows=20))  # (a matrix, as as_older_vcli needs)
    cat.create("idx", DIMS, "cosine")
    batch, model = records(rng, [f"v{i}" for i in range(300)])
    with cat.open("idx", write=True) as ix:
        ix.upsert(batch)
    folder = data_dir / "idx"
    as_older_vcli(folder, DIMS)
    conn = sqlite3.connect(folder / "store.sqlite")
    with conn:
        conn.execute("UPDATE vectors SET vec = x'0000' WHERE id = 'v7'")
    conn.close()
    extra, more = records(rng, ["new"])
    res = vcli("upsert", "idx", "--file", "-", input="".join(orjson.dumps(r).decode() + "\n" for r in extra))
    assert res.code == 0, res.err
    assert len(column_files(folder)) == 4  # one generation, no orphans of failed attempts
    res = vcli("check", "idx", "--json")
    (size,) = [p for p in res.json["problems"] if p["code"] == "vector-size"]
    assert res.code == 1 and '"v7"' in size["problem"] and not size["repairable"]
    model |= more
    del model["v7"]
    with Catalog(data_dir).open("idx") as ix:
        got = {v.id: np.asarray(v.values, np.float32) for v in ix.get(list(model))}
    assert len(got) == 300 and all(np.array_equal(got[i], model[i]) for i in model)
    assert vcli("delete-vectors", "idx", "--ids", "v7").code == 0
    res = vcli("check", "idx", "--repair")  # (the matrix of the older vcli is superseded)
    assert res.code in (0, 3), res.err
    assert vcli("check", "idx").code == 0


def test_the_files_an_older_vcli_removes_as_its_own_hold_no_values(data_dir, vcli):
    """A vcli before the columns removes every ``vectors-<gen>.*`` of an index too small for its
    matrix: only derived columns go by that name, so the values survive it."""
    rng = np.random.default_rng(5)
    cat = Catalog(data_dir)
    cat.create("idx", DIMS, "cosine")
    batch, model = records(rng, [f"v{i}" for i in range(2500)])  # (a matrix: norms and tombstones)
    with cat.open("idx", write=True) as ix:
        ix.upsert(batch)
    folder = data_dir / "idx"
    older = re.compile(r"vectors-(\d+-[0-9a-f]{8})\.(keys|norms|f32|gone)")  # that vcli's pattern
    gone = [p for p in folder.iterdir() if older.fullmatch(p.name)]
    assert sorted(p.suffix for p in gone) == [".gone", ".norms"]
    for path in gone:
        path.unlink()
    with cat.open("idx") as ix:
        got = {v.id: np.asarray(v.values, np.float32) for v in ix.get(list(model))}
    assert len(got) == 2500 and all(np.array_equal(got[i], model[i]) for i in model)
    assert vcli("check", "idx", "--repair").code == 3
    assert vcli("check", "idx").code == 0


def test_an_index_of_a_newer_vcli_is_one_clear_error(data_dir, vcli):
    rng = np.random.default_rng(6)
    cat = Catalog(data_dir)
    cat.create("idx", DIMS, "cosine")
    with cat.open("idx", write=True) as ix:
        ix.upsert(records(rng, ["a"])[0])
    conn = sqlite3.connect(data_dir / "idx" / "store.sqlite")
    with conn:
        conn.execute("UPDATE settings SET v = 99 WHERE k = 'format'")
    conn.close()
    for args in (("info", "idx"), ("get-vectors", "idx", "--ids", "a"), ("check", "idx")):
        res = vcli(*args)
        assert res.code == 1 and res.err.count("\n") == 1 and "newer vcli" in res.err, (args, res.err)


def test_values_missing_from_the_columns_are_named_by_the_vector_id(data_dir, vcli):
    """The error a read gives names the vector as `vcli check` does: by its id, not a key."""
    loaded(data_dir, 10, 7)
    keys = column(data_dir / "idx", "keys")
    data = bytearray(keys.read_bytes())
    data[-8:] = (2**62).to_bytes(8, "little")  # the last row's key, still the largest, no vector's
    keys.write_bytes(bytes(data))
    res = vcli("get-vectors", "idx", "--ids", "v9")
    assert res.code != 0 and "Traceback" not in res.err
    assert res.err.strip().count("\n") == 0, res.err
    assert 'the columns lack the values of 1 vector ("v9")' in res.err, res.err
    res = vcli("check", "idx", "--json")
    (size,) = [p for p in res.json["problems"] if p["code"] == "vector-size"]
    assert '"v9"' in size["problem"]


def test_a_refused_compaction_is_not_tried_again_until_its_damaged_vectors_change(data_dir, vcli):
    """The refusal is remembered: later writes do not read the columns again for a compaction
    that would be refused again, until a vector of the damaged append is upserted again or
    deleted; `vcli check` keeps reporting the damage meanwhile."""
    cat, model, rng = loaded_and_damaged(data_dir, vcli, 5000)  # (row 100 damaged: vector v100)
    folder = data_dir / "idx"
    generation = column(folder, "f32").name

    def upsert(ids: list[str]):
        lines, values = records(rng, ids)
        model.update(values)
        return vcli("upsert", "idx", "--file", "-", input="".join(orjson.dumps(r).decode() + "\n" for r in lines))

    res = vcli("delete-vectors", "idx", "--ids", *[f"v{i}" for i in range(2500, 5000)])
    assert res.code == 0 and "not compacted: rows 0 to 5,000" in res.err, res.err
    # a fold is due again and half the rows are dead, but nothing the refusal depends on changed
    res = upsert([f"n{i}" for i in range(2100)])
    assert res.code == 0 and res.err == "", res.err
    assert vcli("check", "idx").code == 1  # (the damage is still reported)
    # vectors of the damaged append deleted (v100 kept): tried again, refused again
    res = vcli("delete-vectors", "idx", "--ids", *[f"v{i}" for i in range(2100) if i != 100])
    assert res.code == 0 and "not compacted: rows 0 to 5,000" in res.err, res.err
    # every vector left in the damaged append upserted again (and enough else for a fold): compacted
    res = upsert([f"v{i}" for i in (100, *range(2100, 2500))] + [f"m{i}" for i in range(1700)])
    assert res.code == 0 and res.err == "", res.err
    assert column(folder, "f32").name != generation
    assert vcli("check", "idx").code == 0
    for i in [*range(100), *range(101, 2100), *range(2500, 5000)]:
        del model[f"v{i}"]
    with cat.open("idx") as ix:
        got = {v.id: np.asarray(v.values, np.float32) for v in ix.get(list(model))}
    assert len(got) == len(model) and all(np.array_equal(got[i], model[i]) for i in model)


def test_a_refusal_whose_values_are_sound_again_is_reported_and_forgotten_by_repair(data_dir, vcli):
    """Damage mended in place (the column restored from a copy) leaves the refusal behind: `vcli
    check` reports it, and `--repair` forgets it and compacts what was held back."""
    _cat, _model, _rng = loaded_and_damaged(data_dir, vcli, 5000)
    folder = data_dir / "idx"
    res = vcli("delete-vectors", "idx", "--ids", *[f"v{i}" for i in range(2500, 5000)])
    assert res.code == 0 and "not compacted" in res.err, res.err
    generation = column(folder, "f32").name
    flip(column(folder, "f32"), 100 * DIMS * 4 + 1)  # (restored: the bit flipped back)
    res = vcli("check", "idx", "--json")
    assert res.code == 1 and [p["code"] for p in res.json["problems"]] == ["compaction-held-back"], res.json
    assert res.json["problems"][0]["repairable"]
    res = vcli("check", "idx", "--repair")
    assert res.code == 3 and "the index is healthy now" in res.out, (res.code, res.err)  # (repaired)
    assert column(folder, "f32").name != generation  # compacted at last: the dead half is gone
    assert vcli("check", "idx").code == 0


def test_the_live_rows_are_found_a_block_at_a_time_as_all_at_once(data_dir):
    """The first matrix finds the store's keys in the columns a block at a time (its memory):
    the same rows as all at once, and a key the columns lack is found in any block."""
    from vcli.engine.columns import MissingValues, open_values
    from vcli.engine.matrix import _live_rows

    cat, _model, _rng = loaded(data_dir, 50, 4)
    with cat.open("idx", write=True) as ix:
        ix.delete([f"v{i}" for i in range(0, 50, 3)])
        store = ix.store
        with store.snapshot():
            cols = open_values(store, DIMS)
            whole = cols.rows_of(np.array([r[0] for r in store.keys()], np.int64))
            assert np.array_equal(_live_rows(store, cols, block=7), whole)
            short = type(cols)(cols.generation, cols.keys[:-1], cols.values[:-1])  # (the last row lost)
            with pytest.raises(MissingValues):
                _live_rows(store, short, block=7)
