"""A real Worker's ``env.AI`` (Workers AI) against ``vcli serve``, in every local Workers entry point,
on both toolchains of tests/test_workers_binding.py.

The AI calls ride in that file's starts: each entry point (plain Miniflare, vitest, ``wrangler dev
--env local``, ``getPlatformProxy()``) is started once per toolchain for both bindings. Its ``local``
fixture serves the tiny BERT-shaped model of ``tests/aimodel.py`` (installed as bge-small, 384) and
an index ``docs`` made from text with bge-small's preset (``vcli insert`` with ``"text"`` lines);
``WorkerAi`` gives the calls the test Worker makes beside the Vectorize ones and checks what it saw.
Without the ai extra this file skips and those starts run the Vectorize calls alone.

The Worker embeds a question with ``env.AI.run(model, {text})`` and queries ``env.DOCS`` with the
result, as a retrieval Worker does. Each answer is compared with what vcli says for the same texts:
the embeddings with ``vcli.embeddings.embed`` on the same model files, the matches with ``vcli query
--text``, and every error with the REST route's code and words, which the binding must throw as
production's does (``AiError``, ``5007: No such model …``). The route each entry point takes:
Miniflare's remote-proxy client on Miniflare 4 (plain Miniflare, vitest-pool-workers 0.15), vcli's
plugin everywhere else.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from helpers import ACCOUNT
from test_ai_serve import BASE_MODEL, ERRORS
from test_workers_binding import close

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytest.importorskip("onnx")

from aimodel import SMALL_MODEL, pulled_models_dir  # noqa: E402

from vcli.embeddings import embed  # noqa: E402
from vcli.workers import PLUGIN  # noqa: E402
from vcli.workers.config import POOL_WORKERS, Package, Toolchain, build, read_config  # noqa: E402

DOCS = [
    {"id": "cat", "text": "the cat sat on the mat", "metadata": {"kind": "pet"}},
    {"id": "dog", "text": "a dog sat on a mat", "metadata": {"kind": "pet"}},
    {"id": "index", "text": "a vector index in the cloud", "metadata": {"kind": "tech"}},
    {"id": "worker", "text": "the worker answers a query", "metadata": {"kind": "tech"}},
    {"id": "mat", "text": "mat mat mat", "metadata": {"kind": "thing"}},
]
QUESTION = "which cat sat on a mat"
TEXTS = ["the cat sat on the mat", "a vector index", "query the cloud worker"]


def models_env(tmp: Path) -> dict[str, str]:
    """A models dir with the tiny model, as the server's and the CLI's environment."""
    return {"VCLI_MODELS_DIR": str(pulled_models_dir(tmp))}


class WorkerAi:
    """The ``env.AI`` calls the test Worker makes in each start, and what it must see, for the
    server of ``local`` (a ``test_workers_binding.Local`` serving ``models_env``)."""

    def __init__(self, local):
        self.local = local
        self.models = {"VCLI_MODELS_DIR": local.env["VCLI_MODELS_DIR"]}
        local.vcli("create", "docs", "--preset", SMALL_MODEL)
        (local.home / "docs.ndjson").write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in DOCS))
        local.vcli("insert", "docs", "--file", str(local.home / "docs.ndjson"))
        self.cases = self._cases()
        self.requests = [{"path": "/ai", "body": case["request"]} for case in self.cases]

    def embedding(self, texts, pooling: str = "mean") -> dict:
        data = embed(SMALL_MODEL, [texts] if isinstance(texts, str) else texts, pooling, env=self.models)
        return {"shape": list(data.shape), "data": data.astype(np.float64).tolist(), "pooling": pooling}

    def _cases(self) -> list[dict]:
        """Each call, with what it must see: vcli's embeddings and matches, or the REST route's
        error as the binding throws it."""
        matches = self.local.json("query", "docs", "--text", QUESTION, "--top-k", "3", "--return-metadata", "all")
        assert matches["count"] == 3
        out = [
            {"name": "embed a question, then query the index with it",
             "request": {"model": SMALL_MODEL, "inputs": {"text": [QUESTION]},
                         "query": {"binding": "DOCS", "options": {"topK": 3, "returnMetadata": "all"}}},
             "expected": {"result": {"embedding": self.embedding([QUESTION]), "matches": matches}}},
            {"name": "a batch with cls pooling",
             "request": {"model": SMALL_MODEL, "inputs": {"text": TEXTS, "pooling": "cls"}},
             "expected": {"result": self.embedding(TEXTS, "cls")}},
            {"name": "one string", "request": {"model": SMALL_MODEL, "inputs": {"text": TEXTS[2]}},
             "expected": {"result": self.embedding(TEXTS[2])}},
        ]
        for name, model, inputs, code, _ in ERRORS:
            resp = httpx.post(f"{self.local.server.url}/client/v4/accounts/{ACCOUNT}/ai/run/{model}",
                              json=inputs, timeout=60)
            [error] = resp.json()["errors"]
            assert error["code"] == code
            out.append({"name": name, "request": {"model": model, "inputs": inputs},
                        "expected": {"error": {"name": "AiError", "message": f"{code}: {error['message']}"}}})
        return out

    def check(self, answers: list[dict], error_name: str = "AiError") -> None:
        """The Worker's answers to ``requests``, its errors named ``error_name`` (Miniflare 4's
        Node-side proxy, under getPlatformProxy, carries an error's message but names it "Error")."""
        assert len(answers) == len(self.cases)
        for case, answer in zip(self.cases, answers, strict=True):
            expected = case["expected"]
            if "error" in expected:
                expected = {"error": {**expected["error"], "name": error_name}}
            close(answer, expected, f"env.AI: {case['name']}")
        found = {case["name"]: answer for case, answer in zip(self.cases, answers, strict=True)}
        # the embeddings arrive as vcli computes them: float32 values, exactly
        got = np.asarray(found["a batch with cls pooling"]["result"]["data"], np.float32)
        assert np.array_equal(got, embed(SMALL_MODEL, TEXTS, "cls", env=self.models))
        message = found["a served model not pulled"]["error"]["message"]
        assert message.startswith(f"5007: No such model {BASE_MODEL} or task: ")
        assert f"vcli models pull {BASE_MODEL}" in message


def test_workers_config_with_only_an_ai_binding(vcli, tmp_path):
    """The AI binding alone is enough; each piece follows the toolchain: vcli's plugin on Miniflare 5
    (assumed here: no packages), Miniflare 4's own ``ai`` option through its remote-proxy client."""
    (tmp_path / "wrangler.toml").write_text('name = "w"\nmain = "src/index.js"\n\n[ai]\nbinding = "BRAIN"\n')
    out = vcli("workers-config", "--url", "http://127.0.0.1:9000", "--json")
    assert out.code == 0, out.err
    result, url = out.json, "http://127.0.0.1:9000/ai/"
    assert result["bindings"] == [] and result["ai"] == {"binding": "BRAIN", "url": url}
    plugin = {"package": str(PLUGIN), "name": "vcli-ai"}
    section = result["wrangler"]["section"]
    assert "ai" not in section
    assert section["unsafe"]["bindings"] == [{"name": "BRAIN", "type": "ai", "dev": {"plugin": plugin, "options": {"url": url}}}]
    assert result["toolchain"]["miniflare"]["major"] == 5
    assert json.dumps({"name": "BRAIN", "type": "ai", "plugin": plugin, "options": {"url": url}}) in result["miniflare"]
    assert 'environment: "local"' in result["vitest"] and "remoteProxyConnectionString" not in result["vitest"]

    miniflare4 = Toolchain(Package("miniflare", "4.20260426.0", "node_modules"),
                           Package(POOL_WORKERS, "0.15.1", "node_modules"))
    old = build(read_config(tmp_path / "wrangler.toml"), "http://127.0.0.1:9000", toolchain=miniflare4)
    proxy = f'{{ binding: "BRAIN", remoteProxyConnectionString: new URL("{url}") }}'
    assert f"export const ai = {proxy};" in old.miniflare and f"ai: {proxy}," in old.vitest

    assert vcli("workers-config", "--write").code == 0
    assert "[[env.local.unsafe.bindings]]" in (tmp_path / "wrangler.toml").read_text()
    (tmp_path / "wrangler.toml").write_text('name = "w"\nai = ["BRAIN"]\n')
    bad = vcli("workers-config")
    assert bad.code == 1 and 'ai must be one binding, {"binding": "AI"}' in bad.err
