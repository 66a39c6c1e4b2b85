"""Where ``vcli serve`` (and the binding) refuse what production refuses, and list-vectors pages
from one snapshot: requests against a running ``vcli serve``.

docs/contract.md, "Limits", "Writes, names and listing" and "vcli serve: the REST API".
"""

from __future__ import annotations

import httpx
import orjson
import pytest
from helpers import module_server, ndjson, serve_process, without_indexes
from test_serve import create, fails, ok

NDJSON_CT = {"content-type": "application/x-ndjson"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with module_server(tmp_path_factory, "limits") as s:
        yield s


@pytest.fixture
def http(served, monkeypatch):
    """A client of the module's server, which holds no index at the start of each test; the
    in-process CLI (``vcli``) sees the same data dir."""
    monkeypatch.setenv("VCLI_DATA_DIR", str(served.data_dir))
    without_indexes(served)
    with httpx.Client(base_url=served.api, timeout=60) as client:
        yield client


def vectors(n: int, dims: int = 3, start: int = 0, **extra) -> bytes:
    return ndjson({"id": f"v{i:05d}", "values": [1.0, float(i), 0.5][:dims], **extra}
                  for i in range(start, start + n)).encode()


def count(http, name="golden") -> int:
    return ok(http.get(f"/indexes/{name}/info"))["vectorCount"]


def test_create_answers_201(http):
    resp = http.post("/indexes", json={"name": "films", "config": {"dimensions": 3, "metric": "cosine"}})
    assert resp.status_code == 201 and resp.json()["result"]["name"] == "films"


def test_an_index_name_needs_two_characters_on_the_api(http, vcli):
    fails(http.post("/indexes", json={"name": "a", "config": {"dimensions": 3, "metric": "cosine"}}),
          400, 3001, "at least 2 characters")
    assert ok(http.get("/indexes")) == []
    assert ok(http.post("/indexes", json={"name": "ab", "config": {"dimensions": 3, "metric": "cosine"}}))["name"] == "ab"


def test_more_than_5000_vectors_in_one_request_is_refused(http):
    create(http)
    for action in ("insert", "upsert"):
        fails(http.post(f"/indexes/golden/{action}", content=vectors(5001), headers=NDJSON_CT), 400, 40007,
              "too many vectors in payload; max vector count is 5000, got 5001")
    assert count(http) == 0
    ok(http.post("/indexes/golden/upsert", content=vectors(5000) + b"\n\n", headers=NDJSON_CT))
    assert count(http) == 5000


def test_a_filter_must_be_less_than_2048_bytes(http, vcli):
    create(http)
    ok(http.post("/indexes/golden/metadata_index/create", json={"propertyName": "genre", "indexType": "string"}))
    ok(http.post("/indexes/golden/insert", content=vectors(3, metadata={"genre": "drama"}), headers=NDJSON_CT))

    def sized(size: int) -> dict:
        base = {"genre": {"$in": ["drama", ""]}}
        base["genre"]["$in"][1] = "x" * (size - len(orjson.dumps(base)))
        assert len(orjson.dumps(base)) == size
        return base

    body = {"vector": [1, 2, 0.5], "topK": 3}
    fails(http.post("/indexes/golden/query", json={**body, "filter": sized(2048)}), 400, 40003, "less than 2,048")
    assert ok(http.post("/indexes/golden/query", json={**body, "filter": sized(2047)}))["count"] == 3
    res = vcli("query", "golden", "--vector", "1", "2", "0.5", "--filter", orjson.dumps(sized(2048)).decode())
    assert res.code == 1 and "less than 2,048 bytes" in res.err


def test_metadata_over_10_kib_is_code_40016(http, vcli, tmp_path):
    create(http)
    big = {"id": "big", "values": [1, 2, 3], "metadata": {"text": "x" * (10 * 1024)}}
    body = ndjson([{"id": "ok", "values": [1, 2, 3]}, big]).encode()
    message = fails(http.post("/indexes/golden/upsert", content=body, headers=NDJSON_CT), 400, 40016)
    assert "10 KiB" in message
    assert count(http) == 0
    # the binding answers the same code
    resp = httpx.post(http.base_url.scheme + "://" + http.base_url.netloc.decode() + "/binding/golden/upsert",
                      content=body, headers=NDJSON_CT)
    assert resp.status_code == 400 and resp.json()["code"] == 40016
    (tmp_path / "big.ndjson").write_text(ndjson([big]))
    res = vcli("upsert", "golden", "--file", "big.ndjson")
    assert res.code == 1 and "10 KiB" in res.err


def test_caps_on_indexes_and_namespaces_are_settings(tmp_path, vcli, monkeypatch):
    env = {"VCLI_MAX_INDEXES": "2", "VCLI_MAX_NAMESPACES": "2"}
    with serve_process(tmp_path, "--data-dir", str(tmp_path / "data"), env=env) as capped, \
            httpx.Client(base_url=capped.api, timeout=30) as http:
        create(http, "one")
        create(http, "two")
        fails(http.post("/indexes", json={"name": "three", "config": {"dimensions": 3, "metric": "cosine"}}),
              400, 1000, "max_indexes")
        assert [i["name"] for i in ok(http.get("/indexes"))] == ["one", "two"]
        ok(http.post("/indexes/one/upsert", content=vectors(2, namespace="a") + vectors(2, start=2, namespace="b"),
                     headers=NDJSON_CT))
        ok(http.post("/indexes/one/upsert", content=vectors(3, start=4), headers=NDJSON_CT))  # no namespace
        ok(http.post("/indexes/one/upsert", content=vectors(1, start=7, namespace="a"), headers=NDJSON_CT))
        message = fails(http.post("/indexes/one/upsert", content=vectors(1, start=8, namespace="c"),
                                  headers=NDJSON_CT), 400, 1000)
        assert "3 namespaces" in message and "max_namespaces" in message
        assert count(http, "one") == 8  # the refused write changed nothing
        # replacing the last vector of namespace b by one in c leaves two namespaces: allowed
        ok(http.post("/indexes/one/upsert", content=vectors(1, start=2, namespace="c")
                     + vectors(1, start=3, namespace="c"), headers=NDJSON_CT))
    monkeypatch.setenv("VCLI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VCLI_MAX_INDEXES", "2")
    res = vcli("create", "three", "--dimensions", "3", "--metric", "cosine")
    assert res.code == 1 and "max_indexes" in res.err
    monkeypatch.setenv("VCLI_MAX_INDEXES", "3")
    assert vcli("create", "three", "--dimensions", "3", "--metric", "cosine").code == 0


def ids(page: dict) -> list[str]:
    return [v["id"] for v in page["vectors"]]


def test_list_vectors_pages_from_the_snapshot_of_its_first_request(http):
    create(http)
    ok(http.post("/indexes/golden/insert", content=vectors(6), headers=NDJSON_CT))
    first = ok(http.get("/indexes/golden/list", params={"count": 2}))
    assert ids(first) == ["v00000", "v00001"] and first["totalCount"] == 6
    # writes while the listing is under way
    ok(http.post("/indexes/golden/delete_by_ids", json={"ids": ["v00003", "v00001"]}))
    ok(http.post("/indexes/golden/insert", content=vectors(1, start=10) + b'{"id":"v00002a","values":[1,2,3]}\n',
                 headers=NDJSON_CT))
    ok(http.post("/indexes/golden/upsert", content=b'{"id":"v00004","values":[9,9,9]}', headers=NDJSON_CT))
    ok(http.post("/indexes/golden/delete_by_ids", json={"ids": ["v00004"]}))
    listed, cursor, totals = ids(first), first["nextCursor"], {first["totalCount"]}
    while cursor:
        page = ok(http.get("/indexes/golden/list", params={"count": 2, "cursor": cursor}))
        listed += ids(page)
        totals.add(page["totalCount"])
        cursor = page["nextCursor"]
    # deleted and replaced vectors still listed, those written later not: the index at the first request
    assert listed == [f"v{i:05d}" for i in range(6)] and totals == {6}
    fresh = ok(http.get("/indexes/golden/list", params={"count": 100}))
    assert ids(fresh) == ["v00000", "v00002", "v00002a", "v00005", "v00010"] and fresh["totalCount"] == 5


def test_a_cursor_is_checked(http):
    create(http)
    fails(http.get("/indexes/golden/list", params={"cursor": "%%%"}), 400, 40006, "invalid cursor")


@pytest.mark.parametrize("route", ["rest", "binding"])
def test_a_write_too_big_for_its_route_changes_nothing(http, route):
    create(http)
    if route == "rest":
        fails(http.post("/indexes/golden/insert", content=vectors(6000), headers=NDJSON_CT), 400, 40007)
    else:
        url = http.base_url.scheme + "://" + http.base_url.netloc.decode() + "/binding/golden/insert"
        resp = httpx.post(url, content=vectors(1001), headers=NDJSON_CT)
        assert resp.status_code == 400 and "at most 1000" in resp.json()["error"]
    assert count(http) == 0
