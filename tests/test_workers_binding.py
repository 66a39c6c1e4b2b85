"""A real Worker's ``env.VECTORIZE`` against ``vcli serve``, in every local Workers entry point.

The pinned npm packages of ``tests/workers/`` (wrangler, Miniflare and its workerd, vitest and
vitest-pool-workers) run the test Worker of ``tests/workers/project/``, configured only by what
``vcli workers-config`` writes:

* plain Miniflare with ``remoteProxyConnectionString`` (route 1), driven by ``drive.mjs``;
* vitest-pool-workers (route 1), whose tests call ``env.VECTORIZE`` and ``SELF.fetch``;
* ``wrangler dev --env local`` with vcli's plugin (route 2), called over HTTP, then stopped;
* ``getPlatformProxy()`` from a Node script with the plugin (route 2), from a jsonc and a toml config.

Every binding method and every error case (``CASES``) is compared with what ``vcli … --json`` says
about the same index, and, for errors, with the REST API's code and words for the same request.
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
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest
from conftest import NODE_PROJECT, vcli_executable
from test_serve import serve_process

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

    def project(self, where: Path, config: str = "wrangler.jsonc") -> Path:
        """A copy of the test Worker, configured for this server from ``config`` by
        ``vcli workers-config``: the environment written in, the Miniflare and vitest files saved."""
        shutil.copytree(NODE_PROJECT / "project", where)
        (where / "node_modules").symlink_to(NODE_PROJECT / "node_modules")
        url = ["--url", self.server.url, "--config", config]
        self.vcli("workers-config", *url, "--write", cwd=where)
        for piece, name in (("miniflare", "vectorize.local.mjs"), ("vitest", "vitest.config.mjs")):
            (where / name).write_text(self.vcli("workers-config", *url, "--only", piece, cwd=where).stdout)
        return where

    def node(self, *args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["node", "--no-warnings", *args], input=stdin, capture_output=True, text=True,
                              env=self.env, cwd=cwd, timeout=DEADLINE)

    def drive(self, *args: str, requests: list[dict]) -> list[dict]:
        proc = self.node(str(NODE_PROJECT / "drive.mjs"), *args, stdin=json.dumps(requests))
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def local(node_packages, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workers")
    data_dir = tmp / "data"
    with serve_process(tmp, "--data-dir", str(data_dir)) as server:
        here = Local(server, data_dir, tmp)
        here.vcli("create", "films", "--dimensions", "3", "--metric", "cosine")
        here.vcli("create", "launch-post", "--dimensions", "3", "--metric", "cosine")
        here.vcli("create-metadata-index", "films", "--property-name", "genre", "--type", "string")
        (tmp / "films.ndjson").write_text("".join(json.dumps(f) + "\n" for f in FILMS))
        here.vcli("insert", "films", "--file", str(tmp / "films.ndjson"))
        here.answers = {name: expect(here, how) for name, request, how in CASES}
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


def check_cases(local: Local, answers: list[dict]) -> None:
    cases = local.expected
    assert len(answers) == len(cases)
    for case, answer in zip(cases, answers, strict=True):
        close(answer, case["expected"], case["name"])
        if case["name"] in PRODUCTION_WORDS:
            assert answer["error"]["message"] == PRODUCTION_WORDS[case["name"]]


def call_requests(local: Local) -> list[dict]:
    return [{"path": "/call", "body": case["request"]} for case in local.expected]


def check_launch_post(answer: dict) -> None:
    matches = answer["result"]["matches"]
    assert [(m["id"], round(m["score"], 6)) for m in matches["matches"]] == [
        ("5", 0.999909), ("4", 0.789848), ("2", 0.611976)]


def check_writes(local: Local, run) -> None:
    """Writes through the binding (Float32Array values, namespace, metadata) land in the index as
    the CLI sees it; a refused write changes nothing."""
    before = local.json("info", "films")
    vectors = [{"id": "w1", "values": [0.5, 0.25, 1.5], "namespace": "new", "metadata": {"genre": "x"}},
               {"id": "w2", "values": [75.1, 1, 2]}]
    inserted, refused, deleted = run([
        {"path": "/call", "body": {"method": "upsert", "args": [vectors], "f32": True}},
        {"path": "/call", "body": {"method": "upsert", "args": [[{"id": str(i), "values": [1, 2, 3]}
                                                                  for i in range(1001)]]}},
        {"path": "/call", "body": {"method": "deleteByIds", "args": [["w1"]]}},
    ])
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
        for name, index in (("VECTORIZE", "films"), ("MISSING", "nope"), ("LAUNCH", "launch-post"))]
    assert ai == {"name": "AI", "type": "ai", "dev": {"plugin": {"package": str(PLUGIN), "name": "vcli-ai"},
                                                      "options": {"url": f"{local.server.url}/ai/"}}}
    assert "ai" not in env  # it is vcli's unsafe binding there, not Workers AI's remote one
    plugin = env["unsafe"]["bindings"][0]["dev"]["plugin"]
    assert plugin == {"package": str(PLUGIN), "name": "vcli"} and Path(plugin["package"]).is_file()
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


# -- the entry points -----------------------------------------------------------------------------


def test_plain_miniflare(local, tmp_path):
    project = local.project(tmp_path / "p")
    answers = local.drive("miniflare", str(project), requests=[{"path": "/launch-post", "body": {"binding": "LAUNCH"}},
                                                               *call_requests(local)])
    check_launch_post(answers[0])
    check_cases(local, answers[1:])
    check_writes(local, lambda requests: local.drive("miniflare", str(project), requests=requests))


def test_vitest_pool_workers(local, tmp_path):
    project = local.project(tmp_path / "p")
    (project / "cases.json").write_text(json.dumps(local.expected))
    vitest(local, project, "test/binding.test.mjs", len(CASES) + 1)


def test_get_platform_proxy_with_the_plugin(local, tmp_path):
    for config in ("wrangler.jsonc", "wrangler.toml"):
        project = local.project(tmp_path / config, config)
        args = ("platform-proxy", str(project), str(project / config), "local")
        answers = local.drive(*args, requests=[{"path": "/launch-post", "body": {"binding": "LAUNCH"}},
                                               *call_requests(local)])
        check_launch_post(answers[0])
        check_cases(local, answers[1:])
    check_writes(local, lambda requests: local.drive(*args, requests=requests))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def wrangler_dev(local: Local, project: Path, log: Path):
    """``wrangler dev --env local`` in ``project``: yields a function that POSTs requests to the
    Worker and returns its answers; stops it with Ctrl-C (bounded in time) and checks its log."""
    port = free_port()
    cli = NODE_PROJECT / "node_modules" / "wrangler" / "wrangler-dist" / "cli.js"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["node", "--no-warnings", str(cli), "dev", "--env", "local", "--ip", "127.0.0.1", "--port", str(port),
             "--inspector-port", str(free_port()), "--show-interactive-dev-session=false"],
            cwd=project, env=local.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + DEADLINE
        while "Ready on" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            yield lambda requests: [http.post(r["path"], json=r.get("body", {})).json() for r in requests]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) is not None  # a clean stop, bounded in time
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "Traceback" not in log.read_text(errors="replace")


def vitest(local: Local, project: Path, tests: str, count: int) -> None:
    """``vitest run`` of the project's test file ``tests``: every one of its ``count`` tests passes."""
    cli = NODE_PROJECT / "node_modules" / "vitest" / "vitest.mjs"
    proc = local.node(str(cli), "run", "--reporter=verbose", tests, cwd=project)
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    assert proc.returncode == 0, out
    assert re.search(rf"Tests\s+{count} passed", out), out


def test_wrangler_dev_with_the_plugin(local, tmp_path):
    project = local.project(tmp_path / "p")
    log = tmp_path / "wrangler-dev.log"
    with wrangler_dev(local, project, log) as run:
        check_launch_post(run([{"path": "/launch-post", "body": {"binding": "LAUNCH"}}])[0])
        check_cases(local, run(call_requests(local)))
        check_writes(local, run)
    assert "env.VECTORIZE (vectorize)" in log.read_text(errors="replace")


def test_a_load_through_a_worker(local, tmp_path, capsys):
    """2,000 binding calls from inside a Worker, 50 at a time, reads and writes mixed: none fails."""
    project = local.project(tmp_path / "p")
    (answer,) = local.drive("miniflare", str(project), requests=[
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
        [answer] = here.drive("miniflare", str(project), requests=[
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
