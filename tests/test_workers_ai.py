"""A real Worker's ``env.AI`` (Workers AI) against ``vcli serve``, in every local Workers entry point.

The test Worker of ``tests/workers/project/`` (configured only by what ``vcli workers-config``
writes) embeds a question with ``env.AI.run(model, {text})`` and queries ``env.VECTORIZE`` with the
result, as a retrieval Worker does, under plain Miniflare (remote-proxy route), vitest-pool-workers
(remote-proxy route, ``env.AI`` and ``SELF.fetch``), ``wrangler dev --env local`` and
``getPlatformProxy()`` (vcli's plugin). Each answer is compared with what vcli says for the same
texts: the embeddings with ``vcli.embeddings.embed`` on the same model files, the matches with
``vcli query --text``, and every error with the REST route's code and words, which the binding must throw
as production's does (``AiError``, ``5007: No such model …``).

The model is the tiny BERT-shaped one of ``tests/aimodel.py``, installed as bge-small (384).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import numpy as np
import orjson
import pytest
from test_ai_serve import BASE_MODEL, ERRORS
from test_serve import ACCOUNT, serve_process
from test_workers_binding import Local, close, vitest, wrangler_dev

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytest.importorskip("onnx")

from aimodel import SMALL_MODEL, pulled_models_dir  # noqa: E402

from vcli.embeddings import embed  # noqa: E402
from vcli.workers import PLUGIN  # noqa: E402

DOCS = [
    {"id": "cat", "text": "the cat sat on the mat", "metadata": {"kind": "pet"}},
    {"id": "dog", "text": "a dog sat on a mat", "metadata": {"kind": "pet"}},
    {"id": "index", "text": "a vector index in the cloud", "metadata": {"kind": "tech"}},
    {"id": "worker", "text": "the worker answers a query", "metadata": {"kind": "tech"}},
    {"id": "mat", "text": "mat mat mat", "metadata": {"kind": "thing"}},
]
QUESTION = "which cat sat on a mat"
TEXTS = ["the cat sat on the mat", "a vector index", "query the cloud worker"]


@pytest.fixture(scope="module")
def ai_local(node_packages, tmp_path_factory):
    """One server with the tiny model and an index of DOCS made from text with bge-small's preset
    (``vcli insert`` with ``"text"`` lines)."""
    tmp = tmp_path_factory.mktemp("workers-ai")
    models = pulled_models_dir(tmp)
    with serve_process(tmp, "--data-dir", str(tmp / "data"), env={"VCLI_MODELS_DIR": str(models)}) as server:
        here = Local(server, tmp / "data", tmp)
        here.env["VCLI_MODELS_DIR"] = str(models)
        here.models = {"VCLI_MODELS_DIR": str(models)}
        here.vcli("create", "films", "--preset", SMALL_MODEL)
        (tmp / "docs.ndjson").write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in DOCS))
        here.vcli("insert", "films", "--file", str(tmp / "docs.ndjson"))
        here.cases = cases(here)
        yield here


def embedding(local: Local, texts, pooling: str = "mean") -> dict:
    data = embed(SMALL_MODEL, [texts] if isinstance(texts, str) else texts, pooling, env=local.models)
    return {"shape": list(data.shape), "data": data.astype(np.float64).tolist(), "pooling": pooling}


def cases(local: Local) -> list[dict]:
    """Each call the Worker makes, with what it must see: vcli's embeddings and matches, or the
    REST route's error as the binding throws it."""
    question = embedding(local, [QUESTION])
    matches = local.json("query", "films", "--text", QUESTION, "--top-k", "3", "--return-metadata", "all")
    out = [
        {"name": "embed a question, then query the index with it",
         "request": {"model": SMALL_MODEL, "inputs": {"text": [QUESTION]},
                     "query": {"options": {"topK": 3, "returnMetadata": "all"}}},
         "expected": {"result": {"embedding": question, "matches": matches}}},
        {"name": "a batch with cls pooling", "request": {"model": SMALL_MODEL, "inputs": {"text": TEXTS, "pooling": "cls"}},
         "expected": {"result": embedding(local, TEXTS, "cls")}},
        {"name": "one string", "request": {"model": SMALL_MODEL, "inputs": {"text": TEXTS[2]}},
         "expected": {"result": embedding(local, TEXTS[2])}},
    ]
    assert matches["count"] == 3

    for name, model, inputs, code, _ in ERRORS:
        resp = httpx.post(f"{local.server.url}/client/v4/accounts/{ACCOUNT}/ai/run/{model}", json=inputs, timeout=60)
        [error] = resp.json()["errors"]
        assert error["code"] == code
        out.append({"name": name, "request": {"model": model, "inputs": inputs},
                    "expected": {"error": {"name": "AiError", "message": f"{code}: {error['message']}"}}})
    return out


def check(local: Local, answers: list[dict], error_name: str = "AiError") -> None:
    assert len(answers) == len(local.cases)
    for case, answer in zip(local.cases, answers, strict=True):
        expected = case["expected"]
        if "error" in expected:
            expected = {"error": {**expected["error"], "name": error_name}}
        close(answer, expected, case["name"])
    found = {case["name"]: answer for case, answer in zip(local.cases, answers, strict=True)}
    # the embeddings arrive as vcli computes them: float32 values, exactly
    got = np.asarray(found["a batch with cls pooling"]["result"]["data"], np.float32)
    assert np.array_equal(got, embed(SMALL_MODEL, TEXTS, "cls", env=local.models))
    assert found["a served model not pulled"]["error"]["message"].startswith(
        f"5007: No such model {BASE_MODEL} or task: ")
    assert f"vcli models pull {BASE_MODEL}" in found["a served model not pulled"]["error"]["message"]


def requests(local: Local) -> list[dict]:
    return [{"path": "/ai", "body": case["request"]} for case in local.cases]


def test_plain_miniflare(ai_local, tmp_path):
    project = ai_local.project(tmp_path / "p")
    check(ai_local, ai_local.drive("miniflare", str(project), requests=requests(ai_local)))


def test_vitest_pool_workers(ai_local, tmp_path):
    project = ai_local.project(tmp_path / "p")
    (project / "ai-cases.json").write_text(json.dumps(ai_local.cases))
    vitest(ai_local, project, "test/ai.test.mjs", len(ai_local.cases) + 1)


def test_wrangler_dev_with_the_plugin(ai_local, tmp_path):
    project = ai_local.project(tmp_path / "p")
    log = tmp_path / "wrangler-dev.log"
    with wrangler_dev(ai_local, project, log) as run:
        check(ai_local, run(requests(ai_local)))
    assert "env.AI (ai)" in log.read_text(errors="replace")


def test_get_platform_proxy_with_the_plugin(ai_local, tmp_path):
    project = ai_local.project(tmp_path / "p", "wrangler.toml")
    answers = ai_local.drive("platform-proxy", str(project), str(project / "wrangler.toml"), "local",
                             requests=requests(ai_local))
    # Miniflare's Node-side proxy carries an error's message, not its class: "Error" there
    check(ai_local, answers, error_name="Error")


def test_workers_config_with_only_an_ai_binding(vcli, tmp_path):
    (tmp_path / "wrangler.toml").write_text('name = "w"\nmain = "src/index.js"\n\n[ai]\nbinding = "BRAIN"\n')
    out = vcli("workers-config", "--url", "http://127.0.0.1:9000", "--json")
    assert out.code == 0, out.err
    result = out.json
    assert result["bindings"] == [] and result["ai"] == {"binding": "BRAIN", "url": "http://127.0.0.1:9000/ai/"}
    section = result["wrangler"]["section"]
    assert "ai" not in section and [b["name"] for b in section["unsafe"]["bindings"]] == ["BRAIN"]
    assert 'export const ai = { binding: "BRAIN", remoteProxyConnectionString: new URL("http://127.0.0.1:9000/ai/") };' \
        in result["miniflare"]
    assert 'ai: { binding: "BRAIN", remoteProxyConnectionString: new URL("http://127.0.0.1:9000/ai/") },' \
        in result["vitest"]
    assert vcli("workers-config", "--write").code == 0
    assert "[[env.local.unsafe.bindings]]" in (tmp_path / "wrangler.toml").read_text()
    (tmp_path / "wrangler.toml").write_text('name = "w"\nai = ["BRAIN"]\n')
    bad = vcli("workers-config")
    assert bad.code == 1 and 'ai must be one binding, {"binding": "AI"}' in bad.err


def test_the_ai_plugin_reads_miniflare_4_and_5_call_shapes(tmp_path):
    """Miniflare 4 hands the plugin an array of ``{name, options}``; Miniflare 5 the Worker's options
    with the bindings in ``config.env`` (not run here: the shape is the one observed with wrangler
    4.164.0). Both give the same binding and forwarding service."""
    if not shutil.which("node"):
        pytest.skip("node is needed to load the plugin")
    url = "http://127.0.0.1:8787/ai/"
    script = f"""
const {{ plugins }} = await import({json.dumps(PLUGIN.as_uri())});
const ai = plugins["vcli-ai"];
const v4 = [{{ name: "AI", options: {{ url: {json.dumps(url)} }} }}];
const v5 = {{ config: {{ env: {{
  AI: {{ type: "unsafe:ai", dev: {{ plugin: {{ package: "x", name: "vcli-ai" }}, options: {{ url: {json.dumps(url)} }} }} }},
  VECTORIZE: {{ type: "unsafe:vectorize", dev: {{ plugin: {{ package: "x", name: "vcli" }}, options: {{ url: "u" }} }} }},
  WHERE: {{ type: "plain_text", value: "local" }} }} }} }};
const out = {{}};
for (const [shape, given] of [["v4", v4], ["v5", v5]]) {{
  out[shape] = {{ bindings: await ai.getBindings(given), services: await ai.getServices({{ options: given }}) }};
}}
out.none = {{ bindings: await ai.getBindings({{ config: {{ env: {{}} }} }}), nodeBindings: ai.getNodeBindings([]) }};
try {{ await ai.getBindings([{{ name: "AI", options: {{}} }}]); }} catch (e) {{ out.error = e.message; }}
process.stdout.write(JSON.stringify(out));
"""
    proc = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["v4"] == out["v5"]
    assert out["v4"]["bindings"] == [{"name": "AI", "wrapped": {
        "moduleName": "cloudflare-internal:ai-api",
        "innerBindings": [{"name": "fetcher", "service": {"name": "vcli-ai:AI"}}]}}]
    [service] = out["v4"]["services"]
    assert service["name"] == "vcli-ai:AI" and url in service["worker"]["modules"][0]["esModule"]
    assert out["none"] == {"bindings": [], "nodeBindings": {}}
    assert 'binding AI needs "dev": {"options": {"url": ' in out["error"]
