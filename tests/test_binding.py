"""The Workers binding's protocol of ``vcli serve``, spoken directly with httpx.

The requests are the ones a Worker's ``env.VECTORIZE`` makes (docs/workers.md): plain requests to
``/binding/<index>/<endpoint>`` as vcli's plugin forwards them (route 2), and requests to the base
URL with ``MF-URL`` and ``MF-Header-*`` as Miniflare's proxy client sends them (route 1). The real
runtimes speak it in tests/test_workers_binding.py; here each rule is pinned on its own, fast.
"""

from __future__ import annotations

import httpx
import orjson
import pytest
from helpers import GOLDEN, GOLDEN_QUERY, module_server, ndjson, serve_process


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with module_server(tmp_path_factory, "binding") as server:
        yield server


@pytest.fixture
def films(served, vcli, monkeypatch, tmp_path):
    """A fresh cosine index "films" with the launch post's vectors and a metadata index on genre."""
    monkeypatch.setenv("VCLI_DATA_DIR", str(served.data_dir))
    vcli("delete", "films", "--force")
    assert vcli("create", "films", "--dimensions", "3", "--metric", "cosine").code == 0
    assert vcli("create-metadata-index", "films", "--property-name", "genre", "--type", "string").code == 0
    lines = [{"id": i, "values": v, "metadata": {"genre": "drama" if int(i) % 2 else "comedy", "n": int(i)},
              **({"namespace": "old"} if i == "3" else {})} for i, v in GOLDEN]
    (tmp_path / "films.ndjson").write_text(ndjson(lines))
    assert vcli("insert", "films", "--file", str(tmp_path / "films.ndjson")).code == 0
    return f"{served.url}/binding/films/"


def call(base: str, endpoint: str, body=None, route: int = 2, ndjson_body: bytes | None = None):
    """One binding call as the runtime makes it: method, headers and body of ``endpoint``."""
    if ndjson_body is not None:
        content, ctype = ndjson_body, "application/x-ndjson"
    elif body is not None:
        content, ctype = orjson.dumps(body), "application/json"
    else:
        content, ctype = None, None
    method = "GET" if endpoint == "info" else "POST"
    if route == 2:
        headers = {"content-type": ctype} if ctype else {}
        return httpx.request(method, base + endpoint, content=content, headers=headers, timeout=30)
    headers = {"MF-URL": f"http://vector-search/{endpoint}", "MF-Binding": "VECTORIZE",
               **({"MF-Header-content-type": ctype} if ctype else {})}
    return httpx.request(method, base, content=content, headers=headers, timeout=30)


def result(resp: httpx.Response):
    assert resp.status_code == 200, resp.text
    return resp.json()


def failure(resp: httpx.Response) -> tuple[int, int, str]:
    body = resp.json()
    assert set(body) == {"code", "error"}, body
    return resp.status_code, body["code"], body["error"]


@pytest.mark.parametrize("route", [1, 2])
def test_every_method_answers_like_the_cli(films, vcli, route):
    info = result(call(films, "info", route=route))
    assert info == vcli("info", "films", "--json").json
    # the launch post's query with the binding's defaults: topK 5, no values, no metadata
    answer = result(call(films, "query", {"vector": GOLDEN_QUERY}, route=route))
    cli = vcli("query", "films", "--vector", *map(str, GOLDEN_QUERY), "--json").json
    assert answer == cli
    assert [(m["id"], round(m["score"], 6)) for m in answer["matches"][:3]] == [
        ("5", 0.999909), ("4", 0.789848), ("2", 0.611976)]
    # {"filter": {}} is no filter at all (a common client sends it on every query)
    assert result(call(films, "query", {"vector": GOLDEN_QUERY, "filter": {}}, route=route)) == cli
    filtered = result(call(films, "query", {"vector": GOLDEN_QUERY, "topK": 3, "returnMetadata": "all",
                                            "returnValues": True, "filter": {"genre": "drama"}}, route=route))
    assert filtered == vcli("query", "films", "--vector", *map(str, GOLDEN_QUERY), "--top-k", "3",
                            "--return-metadata", "all", "--return-values", "--filter", '{"genre":"drama"}',
                            "--json").json
    assert {m["id"] for m in filtered["matches"]} == {"1", "3", "5"}  # every namespace when none is named
    by_id = result(call(films, "query", {"vectorId": "4", "topK": 2, "namespace": "old"}, route=route))
    assert by_id == vcli("query", "films", "--vector-id", "4", "--top-k", "2", "--namespace", "old", "--json").json
    got = result(call(films, "getByIds", {"ids": ["3", "1", "nope"]}, route=route))
    assert got == vcli("get-vectors", "films", "--ids", "3", "1", "nope", "--json").json


def test_writes_take_ndjson_without_a_trailing_newline(films, vcli):
    body = b'{"id":"6","values":[1,2,3]}\n{"id":"1","values":[3,2,1],"metadata":{"genre":"x"}}'
    inserted = result(call(films, "insert", ndjson_body=body, route=1))
    assert set(inserted) == {"mutationId"}
    assert vcli("info", "films", "--json").json["processedUpToMutation"] == inserted["mutationId"]
    # insert keeps the first "1"; upsert replaces it
    assert vcli("get-vectors", "films", "--ids", "1", "--json").json[0]["values"] == [32.4, 74.1, 3.2]
    result(call(films, "upsert", ndjson_body=body, route=2))
    assert vcli("get-vectors", "films", "--ids", "1", "--json").json[0]["metadata"] == {"genre": "x"}
    deleted = result(call(films, "deleteByIds", {"ids": ["6", "1"]}))
    assert set(deleted) == {"mutationId"}
    assert vcli("info", "films", "--json").json["vectorCount"] == 4


@pytest.mark.parametrize("route", [1, 2])
def test_errors_are_the_services_code_and_words(films, served, vcli, route):
    before = vcli("info", "films", "--json").json
    q = GOLDEN_QUERY
    cases = [
        (call(f"{served.url}/binding/nope/", "info", route=route), 404, 3000, 'Index name "nope"'),
        (call(films, "query", {"vector": q, "topK": 60, "returnMetadata": "all"}, route=route),
         400, 40025, "max top K is 50, but got 60"),
        (call(films, "query", {"vector": q, "topK": 101}, route=route), 400, 40025, "max top K is 100, but got 101"),
        (call(films, "query", {"vector": [1, 2]}, route=route), 400, 40006,
         "invalid query vector, expected 3 dimensions, and got 2 dimensions"),
        (call(films, "query", {"vector": q, "filter": {"n": 1}}, route=route), 400, 40020, "n"),
        (call(films, "query", {"vector": q, "filter": {"genre": {"$regex": "x"}}}, route=route), 400, 40003, ""),
        (call(films, "upsert", ndjson_body=b'{"id":"x","values":[1,2]}', route=route), 400, 40012,
         'invalid vector for id="x", expected 3 dimensions, and got 2 dimensions'),
        (call(films, "upsert", ndjson_body=orjson.dumps({"id": "i" * 65, "values": [1, 2, 3]}), route=route),
         400, 40023, "64 bytes"),
        (call(films, "upsert", ndjson_body=b'{"id":"y","values":[1,2,NaN]}', route=route), 400, 40023, ""),
        (call(films, "upsert", ndjson_body=b"\n".join(
            orjson.dumps({"id": str(i), "values": [1, 2, 3]}) for i in range(1001)), route=route),
         400, 40025, "at most 1000"),
        (call(films, "getByIds", {"ids": "1"}, route=route), 400, None, ""),
    ]
    for resp, status, code, text in cases:
        got_status, got_code, message = failure(resp)
        assert got_status == status, (resp.request.content[:80], resp.text)
        if code is not None:
            assert got_code == code, resp.text
        assert text in message, resp.text
    assert vcli("info", "films", "--json").json == before  # nothing a failed call touched changed


def test_routes_methods_and_the_proxy_clients_websocket(films, served):
    status, code, message = failure(call(films, "nosuch"))
    assert status == 404 and "not an endpoint" in message
    assert httpx.post(films + "info").status_code == 405
    # Miniflare's proxy client opens a WebSocket at the base URL beside every binding: refused, quietly
    ws = httpx.get(films + "?MF-Binding=VECTORIZE", headers={
        "connection": "upgrade", "upgrade": "websocket", "sec-websocket-version": "13",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert ws.status_code in (400, 426)
    assert "websocket" not in served.output().lower()


def test_a_binding_url_may_carry_the_token(tmp_path, vcli, monkeypatch):
    monkeypatch.setenv("VCLI_DATA_DIR", str(tmp_path / "data"))
    assert vcli("create", "films", "--dimensions", "3", "--metric", "cosine").code == 0
    with serve_process(tmp_path, "--token", "s3cret", "--access-log", "--data-dir", str(tmp_path / "data")) as s:
        base = f"{s.url}/binding/films/"
        assert failure(call(base, "info"))[:2] == (401, 10000)
        assert failure(call(base + "?token=wrong", "info"))[:2] == (401, 10000)
        assert result(httpx.get(base + "info?token=s3cret"))["dimensions"] == 3
        assert result(httpx.get(base + "info", headers={"authorization": "Bearer s3cret"}))["vectorCount"] == 0
        # only a binding URL takes it there: the REST API wants the header
        assert httpx.get(f"{s.api}/indexes?token=s3cret").status_code == 401
        output = s.output()
    assert "s3cret" not in output and "token=***" in output  # the access log masks it


def test_empty_filter_is_no_filter_in_the_cli_and_the_rest_api(films, served, vcli):
    plain = vcli("query", "films", "--vector", *map(str, GOLDEN_QUERY), "--json").json
    assert vcli("query", "films", "--vector", *map(str, GOLDEN_QUERY), "--filter", "{}", "--json").json == plain
    rest = httpx.post(f"{served.api}/indexes/films/query", json={"vector": GOLDEN_QUERY, "filter": {}})
    assert rest.json()["result"] == plain
