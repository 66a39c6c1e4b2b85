"""The Python API for test suites: open or create an index, write dicts or NumPy arrays, query,
get, delete; the CLI sees what the API wrote and the API honours the configuration."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import GOLDEN, GOLDEN_QUERY

from vcli.engine import Catalog, VectorIndex, open_catalog
from vcli.errors import BadInput, DimensionMismatch, InvalidConfig, LimitExceeded, VcliError

IDS = [i for i, _ in GOLDEN]
ARRAY = np.array([v for _, v in GOLDEN])


@pytest.fixture
def index(tmp_path):
    with open_catalog(tmp_path / "indexes").open_or_create("docs", dimensions=3, metric="cosine") as idx:
        yield idx


def test_open_or_create_then_query_get_delete(index):
    assert isinstance(index, VectorIndex)
    result = index.upsert_arrays(IDS, ARRAY, metadata=[{"n": n} for n in range(5)])
    assert (result.count, result.written) == (5, 5)
    found = index.query(GOLDEN_QUERY, top_k=3, return_metadata="all")
    assert [m.id for m in found.matches] == ["5", "4", "2"]
    assert [round(m.score, 6) for m in found.matches] == [0.999909, 0.789848, 0.611976]
    assert found.matches[0].metadata == {"n": 4}
    got = index.get(["4", "missing"])
    assert [v.id for v in got] == ["4"] and got[0].values.tolist() == np.float32([75.1, 67.1, 29.9]).tolist()
    assert index.delete(["4", "missing"]).deleted == 1
    assert index.info().vector_count == 4


def test_open_or_create_opens_an_existing_index_and_checks_its_shape(tmp_path):
    catalog = open_catalog(tmp_path)
    with catalog.open_or_create("docs", dimensions=3, metric="cosine") as idx:
        idx.insert([{"id": "a", "values": [1, 2, 3]}])
    with catalog.open_or_create("docs", dimensions=3, metric="cosine") as idx:
        assert idx.info().vector_count == 1
    with pytest.raises(InvalidConfig, match='index "docs" exists with 3 dimensions and metric cosine'):
        catalog.open_or_create("docs", dimensions=4, metric="cosine")
    with catalog.open_or_create("bge", preset="@cf/baai/bge-small-en-v1.5") as idx:
        assert (idx.dimensions, idx.metric) == (384, "cosine")


def test_arrays_of_any_real_dtype_with_namespaces(index):
    index.insert_arrays(["a", "b"], np.array([[1, 0, 0], [0, 1, 0]], dtype=np.int64), namespace="ints")
    index.upsert_arrays(np.array(["c"]), np.array([[0.5, 0.25, 1e-3]], dtype=np.float64),
                        namespace=["floats"])
    got = {v.id: v for v in index.get(["a", "b", "c"])}
    assert got["a"].namespace == "ints" and got["c"].namespace == "floats"
    assert got["c"].values.dtype == np.float32 and got["c"].values.tolist() == np.float32([0.5, 0.25, 1e-3]).tolist()


def test_insert_arrays_keeps_first_copy_and_upsert_arrays_replaces(index):
    index.insert_arrays(["a"], [[1, 0, 0]], metadata=[{"v": 1}])
    assert index.insert_arrays(["a"], [[0, 1, 0]], metadata=[{"v": 2}]).written == 0
    assert index.get(["a"])[0].metadata == {"v": 1}
    index.upsert_arrays(["a"], [[0, 1, 0]])
    replaced = index.get(["a"])[0]
    assert replaced.metadata is None and replaced.values.tolist() == [0, 1, 0]


@pytest.mark.parametrize(("ids", "array", "kwargs", "error", "message"), [
    (["a"], [1, 2, 3], {}, BadInput, "must be 2-D"),
    (["a"], [[1, 2]], {}, DimensionMismatch, "expected 3 dimensions"),
    (["a", "b"], [[1, 2, 3]], {}, BadInput, "2 ids for 1 rows"),
    (["a"], [[1, 2, 3]], {"metadata": [{}, {}]}, BadInput, "2 metadata entries for 1 rows"),
    (["a", "b"], [[1, 2, 3], [np.nan, 0, 0]], {}, BadInput, 'id "b": row 1: values hold a number that is not finite'),
    (["a", "b"], [[1, 2, 3], [1e39, 0, 0]], {}, BadInput, "row 1"),
    (["a", ""], [[1, 2, 3], [1, 2, 3]], {}, BadInput, 'row 1: "id" is empty'),
    (["a"], [[1, 2, 3]], {"metadata": [{"$k": 1}]}, BadInput, "row 0: metadata key"),
    (["a"], [[1, 2, 3]], {"namespace": ""}, BadInput, "row 0: namespace must be 1 to 64 bytes"),
    (["a"], [["x", "y", "z"]], {}, BadInput, "real numbers"),
])
def test_bad_arrays_are_errors_and_write_nothing(index, ids, array, kwargs, error, message):
    index.insert([{"id": "keep", "values": [1, 1, 1]}])
    with pytest.raises(error, match=message.replace("$", r"\$")):
        index.upsert_arrays(ids, array, **kwargs)
    assert index.info().vector_count == 1 and [v.id for v in index.get(["a"])] == []


def test_open_catalog_honours_the_configuration(vcli, data_dir, monkeypatch):
    catalog = open_catalog()
    assert catalog.data_dir == data_dir  # VCLI_DATA_DIR, set by conftest
    with catalog.open_or_create("shared", dimensions=3, metric="cosine") as idx:
        idx.upsert_arrays(IDS, ARRAY)
    cli = vcli("query", "shared", "--vector", *map(str, GOLDEN_QUERY), "--top-k", "1", "--json")
    assert cli.json["matches"][0]["id"] == "5"
    monkeypatch.setenv("VCLI_MAX_TOP_K_WITH_VALUES", "10")
    with open_catalog().open("shared") as idx, pytest.raises(LimitExceeded, match="max top K is 10"):
        idx.query(GOLDEN_QUERY, top_k=11, return_values=True)
    with Catalog(data_dir).open("shared") as idx:  # a bare Catalog uses only what it is given
        assert len(idx.query(GOLDEN_QUERY, top_k=11, return_values=True).matches) == 5


def test_open_catalog_takes_an_explicit_environment(tmp_path):
    catalog = open_catalog(env={"VCLI_DATA_DIR": str(tmp_path / "x"), "VCLI_LOCK_TIMEOUT": "1.5"}, cwd=tmp_path)
    assert catalog.data_dir == tmp_path / "x" and catalog.lock_timeout == 1.5


def test_errors_carry_a_message():
    with pytest.raises(VcliError) as info:
        open_catalog(env={"VCLI_LOCK_TIMEOUT": "later"})
    assert "VCLI_LOCK_TIMEOUT" in info.value.message


def test_the_api_does_not_load_the_cli_stack():
    code = ("import sys, vcli.engine; from vcli.engine import open_catalog; "
            "bad = [m for m in ('typer', 'rich', 'click', 'numpy', 'usearch') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_remote_face_does_not_load_the_cli_stack():
    code = ("import sys, vcli.remote, vcli.remote.sync; "
            "bad = [m for m in ('typer', 'rich', 'click', 'vcli.cli') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
