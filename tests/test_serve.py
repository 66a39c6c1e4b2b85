"""``vcli serve`` over HTTP: a real server process on a free loopback port, driven with httpx.

Envelopes, Vectorize's error codes and HTTP statuses, both NDJSON body kinds, the token, the URL
prefixes, malformed requests, concurrency and a clean stop (the server: ``helpers.serve_process``).
"""

from __future__ import annotations

import re
import signal
import socket
import threading

import httpx
import orjson
import pytest
from helpers import (
    ACCOUNT,
    GOLDEN,
    GOLDEN_QUERY,
    ServeProcess,
    module_server,
    ndjson,
    serve_process,
    without_indexes,
)

JSON_CT = {"content-type": "application/json; charset=utf-8;"}  # as wrangler sends it


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    with module_server(tmp_path_factory, "serve") as s:
        yield s


@pytest.fixture
def server(shared_server, monkeypatch):
    """One server for the module (starting one costs a second); each test starts with no
    indexes, and the in-process CLI (the ``vcli`` fixture) sees the server's data dir."""
    monkeypatch.setenv("VCLI_DATA_DIR", str(shared_server.data_dir))
    without_indexes(shared_server)
    return shared_server


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.api, timeout=30) as client:
        yield client


def ok(resp: httpx.Response):
    """The result of a successful envelope (201 for a new index, as Cloudflare's API documents)."""
    created = resp.request.method == "POST" and resp.request.url.path.rstrip("/").endswith("/indexes")
    assert resp.status_code == (201 if created else 200), resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"success", "errors", "messages", "result"}
    assert body["success"] is True and body["errors"] == [] and body["messages"] == []
    return body["result"]


def fails(resp: httpx.Response, status: int, code: int, text: str = "") -> str:
    """Check a failed envelope; return its message."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["success"] is False and body["result"] is None and body["messages"] == []
    assert len(body["errors"]) == 1
    assert body["errors"][0]["code"] == code, body
    assert text in body["errors"][0]["message"], body
    return body["errors"][0]["message"]


def create(http, name="golden", dims=3, metric="cosine"):
    return ok(http.post("/indexes", content=orjson.dumps(
        {"name": name, "config": {"metric": metric, "dimensions": dims}}), headers=JSON_CT))


def golden_ndjson() -> bytes:
    return ndjson({"id": i, "values": v} for i, v in GOLDEN).encode()


def multipart(lines: bytes, name: str = "vectors") -> tuple[bytes, dict]:
    """A body byte for byte as wrangler (undici) sends it."""
    boundary = "----formdata-undici-012287996616"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"vectors.ndjson\"\r\n"
        "Content-Type: application/x-ndjson\r\n\r\n"
    ).encode() + lines + f"\r\n--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def raw_exchange(server: ServeProcess, request: bytes) -> bytes:
    """Send raw bytes; read the answer until its body is complete or the server closes."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    data = b""
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            m = re.search(rb"content-length: (\d+)", head, re.I)
            if sep and m and len(body) >= int(m.group(1)):
                return data
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


# == the fourteen endpoints =====================================================================
def test_index_lifecycle_and_envelopes(http, vcli):
    assert ok(http.get("/indexes")) == []
    made = create(http)
    assert made["name"] == "golden"
    assert made["config"] == {"dimensions": 3, "metric": "cosine"}
    assert made["description"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", made["created_on"])
    with_desc = ok(http.post("/indexes", json={"name": "second", "description": "two",
                                               "config": {"metric": "euclidean", "dimensions": 4}}))
    assert with_desc["description"] == "two"
    preset = ok(http.post("/indexes", json={"name": "pp", "config": {"preset": "@cf/baai/bge-small-en-v1.5"}}))
    assert preset["config"] == {"dimensions": 384, "metric": "cosine"}
    listed = ok(http.get("/indexes"))
    assert [i["name"] for i in listed] == ["golden", "pp", "second"]
    assert ok(http.get("/indexes/golden")) == made
    # the CLI sees the same indexes, with the same JSON
    assert vcli("list", "--json").json == listed
    assert vcli("get", "second", "--json").json == with_desc
    assert ok(http.get("/indexes/golden/info")) == {
        "vectorCount": 0, "dimensions": 3, "processedUpToDatetime": None, "processedUpToMutation": None}
    assert ok(http.delete("/indexes/pp")) is None
    fails(http.get("/indexes/pp"), 404, 3000, 'vectorize.index.not_found - Index name "pp"')
    assert vcli("get", "pp").code == 1


def test_insert_raw_and_multipart_then_query(http, vcli):
    create(http)
    raw = golden_ndjson().splitlines(keepends=True)
    m1 = ok(http.post("/indexes/golden/insert", content=b"".join(raw[:3]),
                      headers={"content-type": "application/x-ndjson"}))
    assert re.fullmatch(r"[0-9a-f-]{36}", m1["mutationId"])
    body, headers = multipart(b"".join(raw[3:]).rstrip(b"\n"))
    m2 = ok(http.post("/indexes/golden/insert", content=body, headers=headers))
    assert m2["mutationId"] != m1["mutationId"]
    info = ok(http.get("/indexes/golden/info"))
    assert info["vectorCount"] == 5 and info["processedUpToMutation"] == m2["mutationId"]
    res = ok(http.post("/indexes/golden/query", content=orjson.dumps(
        {"topK": 3, "returnValues": False, "returnMetadata": "none", "vector": GOLDEN_QUERY}), headers=JSON_CT))
    assert [m["id"] for m in res["matches"]] == ["5", "4", "2"] and res["count"] == 3
    for m, want in zip(res["matches"], [0.999909, 0.789848, 0.611976], strict=True):
        assert m["score"] == pytest.approx(want, abs=1e-6)
    cli = vcli("query", "golden", "--vector", *map(str, GOLDEN_QUERY), "--top-k", "3", "--json")
    assert cli.json == res
    by_id = ok(http.post("/indexes/golden/query", json={"vectorId": "5", "topK": 2, "returnValues": True}))
    assert by_id["matches"][0] == {"id": "5", "score": pytest.approx(1.0), "values": [58.8, 6.7, 3.4]}


def test_insert_keeps_first_upsert_replaces(http, vcli):
    create(http)
    ok(http.post("/indexes/golden/insert", content=golden_ndjson()))  # no content type: NDJSON
    again = ndjson([{"id": "1", "values": [1, 1, 1], "namespace": "ns", "metadata": {"k": "v"}}]).encode()
    ok(http.post("/indexes/golden/insert", content=again, headers={"content-type": "application/x-ndjson"}))
    got = ok(http.post("/indexes/golden/get_by_ids", json={"ids": ["1", "zz"]}))
    assert got == [{"id": "1", "values": [32.4, 74.1, 3.2], "namespace": None, "metadata": None}]
    body, headers = multipart(again)
    ok(http.post("/indexes/golden/upsert", content=body, headers=headers))
    got = ok(http.post("/indexes/golden/get_by_ids", json={"ids": ["1"]}))
    assert got == [{"id": "1", "values": [1, 1, 1], "namespace": "ns", "metadata": {"k": "v"}}]
    assert vcli("get-vectors", "golden", "--ids", "1", "zz", "--json").json == got


def test_crlf_and_blank_lines_as_wrangler_sends_them(http):
    create(http)
    lines = b'{"id":"w1","values":[1,0,0]}\n\n{"id":"w2","values":[0,1,0]}\r\n{"id":"w3","values":[0,0,1]}'
    body, headers = multipart(lines)
    ok(http.post("/indexes/golden/upsert", content=body, headers=headers))
    assert ok(http.get("/indexes/golden/info"))["vectorCount"] == 3


def test_delete_by_ids_and_list_paging(http, vcli):
    create(http)
    ok(http.post("/indexes/golden/insert", content=golden_ndjson()))
    deleted = ok(http.post("/indexes/golden/delete_by_ids", json={"ids": ["3", "nope"]}))
    assert set(deleted) == {"mutationId"}
    seen, cursor = [], None
    while True:
        params = {"count": 2} | ({"cursor": cursor} if cursor else {})
        page = ok(http.get("/indexes/golden/list", params=params))
        assert page["totalCount"] == 4 and page["count"] == len(page["vectors"])
        cli = vcli("list-vectors", "golden", "--count", "2", *(["--cursor", cursor] if cursor else []),
                   "--json").json
        for p in (page, cli):
            p.pop("cursorExpirationTimestamp")
        assert cli == page
        seen += [v["id"] for v in page["vectors"]]
        if not page["isTruncated"]:
            assert page["nextCursor"] is None
            break
        cursor = page["nextCursor"]
    assert seen == ["1", "2", "4", "5"]
    whole = ok(http.get("/indexes/golden/list"))
    assert whole["count"] == 4 and whole["isTruncated"] is False


def test_query_options_and_metadata(http, vcli):
    create(http)
    rows = [{"id": i, "values": v, "metadata": {"n": int(i)}} | ({"namespace": "odd"} if int(i) % 2 else {})
            for i, v in GOLDEN]
    ok(http.post("/indexes/golden/upsert", content=ndjson(rows).encode()))
    res = ok(http.post("/indexes/golden/query", json={
        "vector": GOLDEN_QUERY, "topK": 2, "returnValues": True, "returnMetadata": "all"}))
    cli = vcli("query", "golden", "--vector", *map(str, GOLDEN_QUERY), "--top-k", "2", "--return-values",
               "--return-metadata", "all", "--json")
    assert res == cli.json
    assert res["matches"][0] == {"id": "5", "score": pytest.approx(0.999909, abs=1e-6),
                                 "values": [58.8, 6.7, 3.4], "namespace": "odd", "metadata": {"n": 5}}
    # the Workers binding's boolean returnMetadata is understood too
    assert ok(http.post("/indexes/golden/query", json={
        "vector": GOLDEN_QUERY, "topK": 2, "returnMetadata": True})) == ok(http.post(
            "/indexes/golden/query", json={"vector": GOLDEN_QUERY, "topK": 2, "returnMetadata": "all"}))


# == prefixes, content types ====================================================================
@pytest.mark.parametrize("prefix", [
    "/client/v4/accounts/{a}/vectorize/v2",
    "/accounts/{a}/vectorize/v2",
    "/client/v4//accounts/{a}/vectorize/v2",
    "//accounts/{a}//vectorize/v2/",
])
def test_url_prefixes(server, prefix):
    base = server.url + prefix.format(a=ACCOUNT)
    assert ok(httpx.get(base + "/indexes")) == []
    assert ok(httpx.post(base + "/indexes/", json={"name": "aa", "config": {"dimensions": 2, "metric": "cosine"}}))
    assert ok(httpx.get(base + "//indexes//aa/info"))["dimensions"] == 2


@pytest.mark.parametrize("ctype", [
    "application/json", "application/json; charset=utf-8;", "APPLICATION/JSON;charset=UTF-8", None,
])
def test_json_content_types_accepted(server, ctype):
    headers = {"content-type": ctype} if ctype else {}
    body = orjson.dumps({"name": "aa", "config": {"dimensions": 2, "metric": "cosine"}})
    ok(httpx.post(server.api + "/indexes", content=body, headers=headers))


# == errors =====================================================================================
def test_vectorize_error_codes(http):
    create(http)
    ok(http.post("/indexes/golden/insert", content=golden_ndjson()))
    fails(http.post("/indexes", json={
        "name": "golden", "config": {"dimensions": 3, "metric": "cosine"}}),
        409, 3002, 'vectorize.index.duplicate_name - Index name "golden"')
    fails(http.get("/indexes/missing/info"), 404, 3000, 'Index name "missing"')
    fails(http.post("/indexes/missing/query", json={"vector": [1, 2, 3]}), 404, 3000)
    fails(http.post("/indexes/missing/insert", content=golden_ndjson()), 404, 3000)
    fails(http.post("/indexes/golden/query", json={"vector": [1, 2]}), 400, 40006,
          "invalid query vector, expected 3 dimensions, and got 2 dimensions")
    fails(http.post("/indexes/golden/query", json={"vectorId": "nope"}), 400, 40006, "nope")
    fails(http.post("/indexes/golden/query", json={"vector": [1, 2, 3], "topK": 60, "returnMetadata": "all"}),
          400, 40025, "max top K is 50")
    fails(http.post("/indexes/golden/query", json={"vector": [1, 2, 3], "topK": 101}), 400, 40025, "100")
    fails(http.post("/indexes/golden/query", json={"vector": [1, 2, 3], "topK": "5"}), 400, 40006, "topK")
    fails(http.post("/indexes/golden/query", json={"vector": [1, 2, 3], "vectorId": "1"}), 400, 40006)
    fails(http.post("/indexes/golden/insert", content=b'{"id":"x","values":[1,2]}'), 400, 40012, '"x"')
    msg = fails(http.post("/indexes/golden/upsert", content=b'{"id":"ok","values":[1,2,3]}\n{nope'),
                400, 40023, "line 2")
    assert "not valid JSON" in msg
    fails(http.post("/indexes", json={"name": "Bad/Name", "config": {"dimensions": 3, "metric": "cosine"}}),
          400, 3001)
    fails(http.post("/indexes", json={"name": "dd", "config": {"dimensions": 0, "metric": "cosine"}}), 400, 3003)
    fails(http.post("/indexes", json={"name": "dd", "config": {"dimensions": 3, "metric": "nope"}}), 400, 3003)
    fails(http.post("/indexes", json={"name": "dd", "config": {"preset": ["x"]}}), 400, 3003)
    fails(http.post("/indexes", json={"name": "dd"}), 400, 3003, "config")
    fails(http.get("/indexes/golden/list", params={"count": 0}), 400, 40025)
    fails(http.get("/indexes/golden/list", params={"count": "ten"}), 400, 40006, "ten")
    fails(http.get("/indexes/golden/list", params={"cursor": "%%%"}), 400, 40006, "cursor")
    fails(http.post("/indexes/golden/get_by_ids", json={"ids": [1, 2]}), 400, 40006, "ids")
    fails(http.post("/indexes/golden/delete_by_ids", json={"ids": []}), 400, 40006)
    # Vectorize's caps per request: 20 ids to get, 100 to delete
    assert len(ok(http.post("/indexes/golden/get_by_ids", json={"ids": [str(i) for i in range(20)]}))) == 5
    fails(http.post("/indexes/golden/get_by_ids", json={"ids": [str(i) for i in range(21)]}), 400, 40007,
          "max id count is 20, got 21")
    fails(http.post("/indexes/golden/delete_by_ids", json={"ids": [f"x{i}" for i in range(101)]}), 400, 40007,
          "max id count is 100, got 101")
    # nothing of the failed writes landed
    assert ok(http.get("/indexes/golden/info"))["vectorCount"] == 5


def test_unparsable_behavior_discard(http):
    create(http)
    body = b'{"id":"a","values":[1,2,3]}\n{not json\n["x"]\n{"id":"b","values":[3,2,1]}'
    fails(http.post("/indexes/golden/insert", content=body), 400, 40023, "line 2")
    ok(http.post("/indexes/golden/insert", params={"unparsable-behavior": "discard"}, content=body))
    assert ok(http.get("/indexes/golden/info"))["vectorCount"] == 2


def test_routes_and_methods(http, server):
    fails(http.get("/nothing"), 404, 7000, "No route")
    fails(httpx.get(server.url + "/"), 404, 7000)
    fails(httpx.get(f"{server.url}/client/v4/accounts/{ACCOUNT}/vectorize/indexes"), 404, 7000, "v2")
    fails(http.put("/indexes/golden"), 405, 7001, "DELETE or GET")
    fails(http.get("/indexes/golden/query"), 405, 7001, "POST")
    fails(http.delete("/indexes"), 405, 7001)


def test_the_account_wrangler_finds_without_an_account_id(server):
    """wrangler without CLOUDFLARE_ACCOUNT_ID asks GET /memberships (newer ones /accounts too)
    and takes the only account; its id then works in every path, like any other id."""
    for prefix in ("/client/v4", "", "/client/v4/"):
        body = httpx.get(f"{server.url}{prefix}/memberships", params={"page": 1}).json()
        assert body["success"] is True and body["result_info"] == {
            "page": 1, "per_page": 20, "count": 1, "total_count": 1, "total_pages": 1}
        (member,) = body["result"]
        assert member["status"] == "accepted"
        account = member["account"]
        assert re.fullmatch(r"[0-9a-f]{32}", account["id"]) and account["name"]
    accounts = httpx.get(f"{server.url}/client/v4/accounts").json()
    assert [(a["id"], a["name"]) for a in accounts["result"]] == [(account["id"], account["name"])]
    assert httpx.get(f"{server.url}/accounts", params={"page": 2}).json()["result"] == []
    fails(httpx.get(f"{server.url}/accounts", params={"per_page": "x"}), 400, 40006, "per_page")
    fails(httpx.post(f"{server.url}/memberships"), 405, 7001, "GET")
    ok(httpx.get(f"{server.url}/client/v4/accounts/{account['id']}/vectorize/v2/indexes"))


def test_malformed_bodies_get_4xx_envelopes(http, server):
    create(http)
    fails(http.post("/indexes", content=b"{not json", headers=JSON_CT), 400, 1000, "not valid JSON")
    fails(http.post("/indexes", content=b"", headers=JSON_CT), 400, 1000, "empty")
    fails(http.post("/indexes", json=[1, 2]), 400, 1000, "JSON object")
    fails(http.post("/indexes/golden/query", content=b'{"vector":[1,2,3]}',
                    headers={"content-type": "text/html"}), 400, 40026, "application/json")
    fails(http.post("/indexes/golden/insert", content=golden_ndjson(),
                    headers={"content-type": "application/x-www-form-urlencoded"}), 400, 40026,
          "unknown_content_type")
    body, headers = multipart(golden_ndjson(), name="other")
    fails(http.post("/indexes/golden/insert", content=body, headers=headers), 400, 1000, '"vectors"')
    fails(http.post("/indexes/golden/insert", content=b"garbage",
                    headers={"content-type": "multipart/form-data"}), 400, 1000, "multipart")
    fails(http.post("/indexes/golden/insert", content=b"--x\r\nnot a header\r\n\r\n",
                    headers={"content-type": "multipart/form-data; boundary=x"}), 400, 1000)
    fails(http.post("/indexes/golden/insert", content=b"\xff\xfe\x00garbage"), 400, 40023, "line 1")
    fails(http.post("/indexes/golden/insert", content=b"\n\n  \n"), 400, 40023, "no vectors")
    fails(http.post("/indexes/golden/query", json={"vector": "abc"}), 400, 40006)
    fails(http.post("/indexes/golden/query", json={"vector": [1, "x", 3]}), 400, 40006)
    fails(http.post("/indexes/golden/query", json={"vector": [1, 2, 3], "returnValues": "yes"}), 400, 40006)
    # a raw socket speaking broken HTTP gets a 400 and the server lives on
    assert raw_exchange(server, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert ok(http.get("/indexes/golden/info"))["vectorCount"] == 0


def test_body_size_limit(http, server):
    create(http)
    # a declared length over 100 MB is refused before the body is read
    answer = raw_exchange(server, (
        f"POST /accounts/{ACCOUNT}/vectorize/v2/indexes/golden/insert HTTP/1.1\r\n"
        f"Host: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: {100 * 2**20 + 1}\r\n\r\n"
    ).encode())
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b'"success":false' in answer and b"larger than 104,857,600 bytes" in answer
    # a chunked body that grows past the limit is cut off with the same answer
    line = b'{"id":"x","values":[1,2,3]}\n' * 1000

    def chunks():
        for _ in range(100 * 2**20 // len(line) + 2):
            yield line

    try:
        resp = http.post("/indexes/golden/insert", content=chunks(),
                         headers={"content-type": "application/x-ndjson"})
    except httpx.TransportError:
        pass  # the server may close while the client still sends; then the status is not read
    else:
        fails(resp, 413, 1000, "larger than")
    assert ok(http.get("/indexes/golden/info"))["vectorCount"] == 0


# == token and binding ==========================================================================
def test_token_required_on_every_request(tmp_path):
    with serve_process(tmp_path, "--token", "s3cret") as server:
        url = server.api + "/indexes"
        fails(httpx.get(url), 401, 10000, "Authorization: Bearer")
        fails(httpx.get(url, headers={"authorization": "Bearer wrong"}), 401, 10000)
        fails(httpx.get(url, headers={"authorization": "Basic s3cret"}), 401, 10000)
        fails(httpx.get(server.url + "/unknown"), 401, 10000)  # no route hints without the token
        assert ok(httpx.get(url, headers={"authorization": "Bearer s3cret"})) == []
    with serve_process(tmp_path, env={"VCLI_SERVE_TOKEN": "fromenv"}) as server:
        fails(httpx.get(server.api + "/indexes"), 401, 10000)
        assert ok(httpx.get(server.api + "/indexes", headers={"authorization": "bearer fromenv"})) == []


def test_the_server_reads_the_project_config_as_the_cli_does(tmp_path, vcli, monkeypatch):
    monkeypatch.delenv("VCLI_DATA_DIR")
    (tmp_path / "vcli.toml").write_text('data_dir = "project-indexes"\nmax_top_k_with_values = 20\n')
    with serve_process(tmp_path) as server:  # started in tmp_path, where vcli.toml is
        assert ok(httpx.post(server.api + "/indexes", json={
            "name": "cfg", "config": {"dimensions": 2, "metric": "cosine"}}))["name"] == "cfg"
        ok(httpx.post(server.api + "/indexes/cfg/insert", content=b'{"id":"a","values":[1,2]}'))
        fails(httpx.post(server.api + "/indexes/cfg/query", json={"vector": [1, 2], "topK": 30,
                                                                 "returnValues": True}), 400, 40025, "20")
    assert (tmp_path / "project-indexes" / "cfg").is_dir()
    assert vcli("info", "cfg", "--json").json["vectorCount"] == 1


def test_access_log(tmp_path):
    with serve_process(tmp_path, "--access-log") as server:
        ok(httpx.get(server.api + "/indexes"))
        fails(httpx.get(server.api + "/indexes/nope"), 404, 3000)
    log = server.output()
    assert f'"GET /client/v4/accounts/{ACCOUNT}/vectorize/v2/indexes HTTP/1.1" 200' in log
    assert '/indexes/nope HTTP/1.1" 404' in log


def test_other_than_loopback_needs_a_token(vcli_proc, tmp_path):
    res = vcli_proc("serve", "--host", "0.0.0.0", "--port", "0", timeout=30)
    assert res.code == 1
    assert res.err.startswith("Error: refusing to listen on 0.0.0.0 without --token")
    res = vcli_proc("serve", "--host", "no-such-host.invalid", "--port", "0", timeout=30)
    assert res.code == 1 and res.err.startswith('Error: cannot listen on "no-such-host.invalid"')
    with serve_process(tmp_path, "--host", "0.0.0.0", "--token", "t") as server:
        port = server.url.rsplit(":", 1)[1]
        api = f"http://127.0.0.1:{port}/accounts/{ACCOUNT}/vectorize/v2/indexes"
        fails(httpx.get(api), 401, 10000)
        assert ok(httpx.get(api, headers={"authorization": "Bearer t"})) == []


def test_port_in_use_is_a_clear_error(vcli_proc):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        res = vcli_proc("serve", "--port", str(taken.getsockname()[1]), timeout=30)
    assert res.code == 1
    assert res.err.startswith("Error: cannot listen on 127.0.0.1 port")
    assert "Traceback" not in res.err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_clean_stop_on_signal(tmp_path, sig):
    server = ServeProcess(log=tmp_path / "serve.log")
    ok(httpx.get(server.api + "/indexes"))
    assert server.stop(sig) == 0
    out = server.output()
    assert out.rstrip().endswith("Stopped.") and "Traceback" not in out


# == concurrency ===============================================================================
def test_concurrent_queries_and_writes(http, server, vcli):
    create(http, "conc", dims=8, metric="euclidean")
    errors: list[str] = []

    def writer(w: int):
        with httpx.Client(base_url=server.api, timeout=60) as c:
            for b in range(5):
                rows = [{"id": f"w{w}-{b}-{i}", "values": [w, b, i, 1, 2, 3, 4, 5]} for i in range(20)]
                r = c.post("/indexes/conc/upsert", content=ndjson(rows).encode())
                if r.status_code != 200:
                    errors.append(r.text)

    def reader():
        with httpx.Client(base_url=server.api, timeout=60) as c:
            for _ in range(15):
                r = c.post("/indexes/conc/query", json={"vector": [1] * 8, "topK": 3})
                if r.status_code != 200 or not r.json()["success"]:
                    errors.append(r.text)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    threads += [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert ok(http.get("/indexes/conc/info"))["vectorCount"] == 300
    assert vcli("info", "conc", "--json").json["vectorCount"] == 300
