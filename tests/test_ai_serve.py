"""Workers AI's embeddings from ``vcli serve``: the REST route (httpx and the Cloudflare Python
SDK's ``client.ai.run``) and the AI binding's wire format on both routes a Worker's ``env.AI``
reaches it by (Miniflare's remote-proxy client, with ``MF-*`` headers; vcli's plugin, plain).

The server runs the tiny BERT-shaped model of ``tests/aimodel.py`` as ``@cf/baai/bge-small-en-v1.5``;
every answer is compared with ``vcli.embeddings.embed`` in this process on the same files.
"""

from __future__ import annotations

import httpx
import numpy as np
import orjson
import pytest
from helpers import ACCOUNT, serve_process

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytest.importorskip("onnx")

from aimodel import SMALL_MODEL, pulled_models_dir  # noqa: E402

from vcli.embeddings import MODELS, embed  # noqa: E402

BASE_MODEL = "@cf/baai/bge-base-en-v1.5"  # served, but not pulled here
TEXTS = ["the cat sat on the mat", "a vector index", "query the cloud worker"]
RUN = "https://workers-binding.ai/run?version=3"  # where the binding sends env.AI.run


@pytest.fixture(scope="module")
def ai_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ai")
    models = pulled_models_dir(tmp)
    with serve_process(tmp, "--data-dir", str(tmp / "data"), env={"VCLI_MODELS_DIR": str(models)}) as server:
        server.models = {"VCLI_MODELS_DIR": str(models)}
        yield server


@pytest.fixture
def http(ai_server):
    with httpx.Client(base_url=ai_server.url, timeout=60) as client:
        yield client


def expected(server, texts, pooling="mean") -> np.ndarray:
    return embed(SMALL_MODEL, texts, pooling, env=server.models)


def proxied(http, model: str, inputs, options=None, **extra) -> httpx.Response:
    """env.AI.run as Miniflare's remote-proxy client forwards it to ``/ai/``."""
    body = orjson.dumps({"inputs": inputs, "options": options or {}})
    headers = {"MF-URL": RUN, "MF-Binding": "AI", "MF-Header-content-type": "application/json",
               "MF-Header-cf-consn-sdk-version": "2.0.0", "MF-Header-cf-consn-model-id": model, **extra}
    return http.post("/ai/", content=body, headers=headers)


def plugin(http, model: str, inputs, options=None) -> httpx.Response:
    """env.AI.run as vcli's plugin forwards it: ``/ai/run?version=3`` with the Worker's headers."""
    return http.post("/ai/run?version=3", content=orjson.dumps({"inputs": inputs, "options": options or {}}),
                     headers={"content-type": "application/json", "cf-consn-sdk-version": "2.0.0",
                              "cf-consn-model-id": model})


def check_embeddings(resp: httpx.Response, want: np.ndarray, pooling: str = "mean") -> None:
    assert resp.status_code == 200, resp.text
    # exactly: the binding parses only "application/json"; with a charset the Worker gets a stream
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == {"shape", "data", "pooling"}
    assert body["shape"] == list(want.shape) and body["pooling"] == pooling
    got = np.asarray(body["data"], np.float32)
    assert got.shape == want.shape and np.array_equal(got, want)


def test_the_binding_on_both_routes(ai_server, http):
    want = expected(ai_server, TEXTS)
    for send in (proxied, plugin):
        check_embeddings(send(http, SMALL_MODEL, {"text": TEXTS}), want)
        one = send(http, SMALL_MODEL, {"text": TEXTS[1]})  # one string: shape [1, 384]
        check_embeddings(one, want[1:2])
        cls = send(http, SMALL_MODEL, {"text": TEXTS, "pooling": "cls"}, {"gateway": {"id": "g"}})
        check_embeddings(cls, expected(ai_server, TEXTS, "cls"), "cls")
    assert not np.allclose(want, expected(ai_server, TEXTS, "cls"))  # the two poolings differ
    # the proxy client's WebSocket attempt beside the binding: refused, nothing logged
    ws = http.get("/ai/?MF-Binding=AI", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                 "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "x3JJHMbDL1EzLkh9GBhXDw=="})
    assert ws.status_code == 426
    assert "websocket" not in ai_server.output().lower()


def test_calls_at_once_each_get_their_own_embeddings(ai_server):
    """Calls in parallel (a Worker's Promise.all) queue for the model in the server's threads; each
    gets its own texts' vectors, and the REST API answers meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    batches = [[f"{word} worker {i}" for word in TEXTS] for i in range(8)]
    with httpx.Client(base_url=ai_server.url, timeout=120) as http, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda texts: plugin(http, SMALL_MODEL, {"text": texts}), batches))
        assert http.get(f"/client/v4/accounts/{ACCOUNT}/vectorize/v2/indexes").status_code == 200
    for texts, resp in zip(batches, answers, strict=True):
        check_embeddings(resp, expected(ai_server, texts))


# (name, model, inputs, internalCode, words the description holds)
ERRORS = [
    ("a model vcli does not serve", "@cf/meta/llama-3.1-8b-instruct", {"text": "hi"}, 5007,
     ["No such model @cf/meta/llama-3.1-8b-instruct or task", *MODELS]),
    ("a served model not pulled", BASE_MODEL, {"text": "hi"}, 5007,
     [f"No such model {BASE_MODEL} or task", f"vcli models pull {BASE_MODEL}"]),
    ("an empty text", SMALL_MODEL, {"text": ""}, 5006, ["Error: ", "empty"]),
    ("an empty text in a list", SMALL_MODEL, {"text": ["a", ""]}, 5006, ["Error: ", "text 1 is empty"]),
    ("an empty list", SMALL_MODEL, {"text": []}, 5006, ["Error: ", "empty"]),
    ("more than 100 texts", SMALL_MODEL, {"text": ["a cat"] * 101}, 5006, ["Error: ", "101", "100"]),
    ("a bad pooling", SMALL_MODEL, {"text": "a", "pooling": "max"}, 5006, ["Error: ", "pooling", "max"]),
    ("a text that is not a string", SMALL_MODEL, {"text": [1]}, 5006, ["Error: ", "not a string"]),
    ("no text", SMALL_MODEL, {"prompt": "a"}, 5006, ["Error: ", '"text"']),
]


@pytest.mark.parametrize(("name", "model", "inputs", "code", "words"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_as_the_binding_reads_them(ai_server, http, name, model, inputs, code, words):
    answers = [send(http, model, inputs) for send in (proxied, plugin)]
    rest = http.post(f"/client/v4/accounts/{ACCOUNT}/ai/run/{model}", json=inputs)
    for resp in answers:
        assert resp.status_code == 400, resp.text
        assert resp.headers["content-type"] == "application/json"
        body = resp.json()
        assert set(body) == {"internalCode", "name", "description"}
        assert body["internalCode"] == code and body["name"] == "AiError"
        for word in words:
            assert word in body["description"], (word, body)
    assert answers[0].json() == answers[1].json()
    # the REST route: the same code and words in Cloudflare's envelope
    assert rest.status_code == 400
    assert rest.json() == {"success": False, "result": None, "messages": [],
                           "errors": [{"code": code, "message": answers[0].json()["description"]}]}


def test_requests_the_binding_never_sends(ai_server, http):
    def error(resp, status, code):
        assert resp.status_code == status, resp.text
        assert resp.headers["content-type"] == "application/json"
        body = resp.json()
        assert body["internalCode"] == code and body["name"] == "AiError"
        return body["description"]

    no_model = http.post("/ai/run?version=3", json={"inputs": {"text": "a"}})
    assert "cf-consn-model-id" in error(no_model, 400, 3003)
    no_inputs = http.post("/ai/run", json={"text": "a"}, headers={"cf-consn-model-id": SMALL_MODEL})
    assert '"inputs"' in error(no_inputs, 400, 3003)
    assert "No route" in error(http.post("/ai/models/search", json={}), 404, 7000)
    other = proxied(http, SMALL_MODEL, {"text": "a"}, **{"MF-URL": "https://workers-binding.ai/ai-gateway/run"})
    assert "No route" in error(other, 404, 7000)
    assert "use POST" in error(http.get("/ai/run"), 405, 7001)


def test_rest_route_with_httpx(ai_server, http):
    want = expected(ai_server, TEXTS[:2])
    for prefix in ("/client/v4", ""):
        resp = http.post(f"{prefix}/accounts/{ACCOUNT}/ai/run/{SMALL_MODEL}", json={"text": TEXTS[:2]},
                         headers={"authorization": "Bearer anything"})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["success"] is True and body["errors"] == [] and body["messages"] == []
        assert body["result"]["shape"] == [2, 384] and body["result"]["pooling"] == "mean"
        assert np.array_equal(np.asarray(body["result"]["data"], np.float32), want)
    wrong = http.get(f"/client/v4/accounts/{ACCOUNT}/ai/run/{SMALL_MODEL}")
    assert wrong.status_code == 405 and wrong.json()["errors"][0]["code"] == 7001


def test_cloudflare_python_sdk_ai_run(ai_server):
    cloudflare = pytest.importorskip("cloudflare")
    want = expected(ai_server, TEXTS)
    with cloudflare.Cloudflare(api_token="dummy", base_url=f"{ai_server.url}/client/v4", max_retries=0) as client:
        # the result is the SDK's union of every model's output: it hands the JSON back as it came
        result = client.ai.run(SMALL_MODEL, account_id=ACCOUNT, text=TEXTS)
        assert result["shape"] == [3, 384] and result["pooling"] == "mean"
        assert np.array_equal(np.asarray(result["data"], np.float32), want)
        one = client.ai.run(SMALL_MODEL, account_id=ACCOUNT, text=TEXTS[0])  # (its signature has no pooling)
        assert np.array_equal(np.asarray(one["data"], np.float32), want[:1])
        with pytest.raises(cloudflare.BadRequestError) as missing:
            client.ai.run("@cf/baai/bge-m3", account_id=ACCOUNT, text=["a"])
        [err] = missing.value.body["errors"] if isinstance(missing.value.body, dict) else missing.value.response.json()["errors"]
        assert err["code"] == 5007 and err["message"].startswith("No such model @cf/baai/bge-m3 or task")


def test_a_token_guards_the_ai_routes(tmp_path):
    models = pulled_models_dir(tmp_path)
    with serve_process(tmp_path, "--token", "s3cret", env={"VCLI_MODELS_DIR": str(models)}) as server, \
            httpx.Client(base_url=server.url, timeout=60) as http:
        assert proxied(http, SMALL_MODEL, {"text": "a"}).status_code == 401
        assert http.post(f"/client/v4/accounts/{ACCOUNT}/ai/run/{SMALL_MODEL}", json={"text": "a"}).status_code == 401
        # Miniflare's proxy client sends no header of ours: the token may end the binding's URL
        body = orjson.dumps({"inputs": {"text": "a"}, "options": {}})
        ok = http.post("/ai/?token=s3cret", content=body, headers={
            "MF-URL": RUN, "MF-Header-content-type": "application/json", "MF-Header-cf-consn-model-id": SMALL_MODEL})
        assert ok.status_code == 200, ok.text
        rest = http.post(f"/client/v4/accounts/{ACCOUNT}/ai/run/{SMALL_MODEL}", json={"text": "a"},
                         headers={"authorization": "Bearer s3cret"})
        assert rest.status_code == 200 and rest.json()["result"]["shape"] == [1, 384]
        assert "s3cret" not in server.output()


def test_a_server_without_the_ai_extra(tmp_path):
    """ONNX Runtime not importable (as without ``vcli[ai]``): the Worker is told how to install it."""
    hidden = tmp_path / "hide"
    (hidden / "onnxruntime").mkdir(parents=True)
    (hidden / "onnxruntime" / "__init__.py").write_text('raise ImportError("not installed")\n')
    models = pulled_models_dir(tmp_path)
    env = {"VCLI_MODELS_DIR": str(models), "PYTHONPATH": str(hidden)}
    with serve_process(tmp_path, env=env) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        resp = plugin(http, SMALL_MODEL, {"text": "a"})
        assert resp.status_code == 503 and resp.headers["content-type"] == "application/json"
        body = resp.json()
        assert body["internalCode"] == 5007 and body["name"] == "AiError"
        assert "pip install 'vcli[ai]'" in body["description"] and "onnxruntime" in body["description"]
