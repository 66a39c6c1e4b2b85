"""The real wrangler CLI against ``vcli serve``: all fourteen ``wrangler vectorize`` subcommands.

wrangler 4.86.0 (the newest that runs on Node 20) is pinned by ``tests/workers/package.json`` and
its lockfile and installed with ``npm ci --ignore-scripts`` into the git-ignored
``tests/workers/node_modules`` when it is not there yet. A failed install fails the test; only a
machine without node or npm skips it. wrangler talks to the server through its own environment
variables (``CLOUDFLARE_API_BASE_URL`` and friends, set below) and never leaves the loopback.

For every command with ``--json`` in wrangler, the JSON wrangler prints equals what ``vcli … --json``
prints for the same index (list-vectors' cursor expiry time aside, as it is computed per request);
``query`` and ``get-vectors`` print their JSON after a progress line. A failure exits 1 and shows
the server's message with its Vectorize code: the CLI's own message for the same mistake, or
Vectorize's text for unknown and duplicate indexes. A few lines use yargs' boolean forms
(``--return-values=true``, ``--no-return-values``, ``--force=true``) and wrangler's global flags
(``--cwd``, ``-c``, ``-e``, ``--env-file``), run unchanged through both.

Each wrangler run costs about 1.5 s of CPU (loading its 16 MB bundle), so the scenario runs as four
independent tracks (one index each) in parallel threads, then a last step over all of them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import ACCOUNT, Run, ndjson, serve_process

from vcli.errors import MetadataIndexError

ANSI = re.compile(r"\x1b\[[0-9;]*m")
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

MOVIES = [
    {"id": "1", "values": [32.4, 74.1, 3.2], "namespace": "movies",
     "metadata": {"genre": "drama", "year": 1999, "streaming_platform": "netflix"}},
    {"id": "2", "values": [15.1, 19.2, 15.8], "namespace": "movies",
     "metadata": {"genre": "comedy", "year": 2005}},
    {"id": "3", "values": [0.16, 1.2, 3.8], "metadata": {"genre": "drama", "year": 2012}},
    {"id": "4", "values": [75.1, 67.1, 29.9], "namespace": "movies",
     "metadata": {"genre": "action", "year": 2020, "streaming_platform": "netflix"}},
    {"id": "5", "values": [58.8, 6.7, 3.4], "namespace": "shows",
     "metadata": {"genre": "comedy", "year": 1987, "nested": {"rating": 4.5}}},
]
QUERY = ["54.8", "5.5", "3.1"]


@pytest.fixture(scope="session")
def wrangler_cmd(node_packages: Path) -> list[str]:
    # What bin/wrangler.js runs, without its extra node process (0.4 s of CPU a run here).
    cli = node_packages / "wrangler" / "wrangler-dist" / "cli.js"
    return [shutil.which("node"), "--no-warnings", "--experimental-vm-modules", str(cli)]


class Wrangler:
    """Runs ``wrangler vectorize …`` against one server, in a private home and cwd."""

    def __init__(self, cmd: list[str], url: str, tmp: Path):
        self.cmd = cmd
        self.cwd = tmp / "wrangler-cwd"
        for sub in ("wrangler-cwd", "home", "logs", "cache", "tmp"):
            (tmp / sub).mkdir(exist_ok=True)
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "CF_", "WRANGLER_"))}
        self.env = keep | {
            "CLOUDFLARE_API_BASE_URL": f"{url}/client/v4",
            "CLOUDFLARE_API_TOKEN": "dummy",
            "CLOUDFLARE_ACCOUNT_ID": ACCOUNT,
            "WRANGLER_SEND_METRICS": "false",
            "WRANGLER_HIDE_BANNER": "true",
            "WRANGLER_SEND_ERROR_REPORTS": "false",
            "HOME": str(tmp / "home"),
            "WRANGLER_LOG_PATH": str(tmp / "logs"),
            "WRANGLER_CACHE_DIR": str(tmp / "cache"),
            "TMPDIR": str(tmp / "tmp"),
        }

    def __call__(self, *args: str) -> Run:
        proc = subprocess.run(
            [*self.cmd, "vectorize", *map(str, args)], cwd=self.cwd, env=self.env,
            stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
        )
        clean = [ANSI.sub("", s.decode()) for s in (proc.stdout, proc.stderr)]
        err = "\n".join(ln for ln in clean[1].splitlines() if "Logs were written" not in ln)
        return Run(proc.returncode, clean[0], err)


def shown(res: Run, what: str):
    """The JSON that ``query``/``get-vectors`` print after their progress line."""
    assert res.code == 0, f"{what}: rc {res.code}\n{res.out}\n{res.err}"
    start = min(i for i in (res.out.find("{"), res.out.find("[")) if i >= 0)
    return json.loads(res.out[start:])


def as_json(res: Run, what: str):
    assert res.code == 0, f"{what}: rc {res.code}\n{res.out}\n{res.err}"
    return json.loads(res.out)


def failed_with(res: Run, message: str, code: int) -> None:
    """wrangler exited 1 and showed the server's message with its Vectorize code."""
    assert res.code == 1, f"rc {res.code}\n{res.out}\n{res.err}"
    assert "A request to the Cloudflare API" in res.err, res.err
    assert f"{message} [code: {code}]" in res.err, res.err


def cli_error(res: Run) -> str:
    assert res.code == 1, res
    return res.err.strip().removeprefix("Error: ")


def mutation(res: Run) -> str:
    assert res.code == 0, f"{res.out}\n{res.err}"
    ids = re.findall(rf"Mutation changeset identifier: ({UUID})", res.out)
    assert ids, res.out
    return ids[-1]


def same_page(wrangler_page: dict, vcli_page: dict) -> None:
    for page in (wrangler_page, vcli_page):
        assert re.fullmatch(r"\d{4}-.*Z", page.pop("cursorExpirationTimestamp") or "2000-Z")
    assert wrangler_page == vcli_page


# == the four tracks ===========================================================================
def track_metadata(w: Wrangler, v, files: dict[str, Path]) -> None:
    """create --json, create-metadata-index (both spellings), insert in batches, filtered
    queries with namespaces, list-metadata-index, delete-metadata-index."""
    made = as_json(w("create", "alpha", "--dimensions", "3", "--metric", "cosine",
                     "--description", "films", "--json"), "create")
    assert made == v("get", "alpha", "--json").json
    assert made["config"] == {"dimensions": 3, "metric": "cosine"} and made["description"] == "films"

    res = w("create-metadata-index", "alpha", "--property-name", "genre", "--type", "string")
    assert "Successfully enqueued metadata index creation request" in res.out
    assert mutation(res) == v("info", "alpha", "--json").json["processedUpToMutation"]
    res = w("create-metadata-index", "alpha", "--propertyName", "year", "--type", "number")
    assert mutation(res) == v("info", "alpha", "--json").json["processedUpToMutation"]

    res = w("insert", "alpha", "--file", files["movies"], "--batch-size", "2")
    assert re.findall(r"Enqueued (\d) vectors into index 'alpha' for insertion", res.out) == ["2", "2", "1"]
    assert "Successfully enqueued 5 vectors into index 'alpha' for insertion." in res.out
    info = v("info", "alpha", "--json").json
    assert info["vectorCount"] == 5 and info["processedUpToMutation"] == mutation(res)

    listed = as_json(w("list-metadata-index", "alpha", "--json"), "list-metadata-index")
    assert listed == v("list-metadata-index", "alpha", "--json").json
    assert sorted((m["propertyName"], m["indexType"]) for m in listed) == [("genre", "string"), ("year", "number")]

    for flags in (
        ["--namespace", "movies", "--filter", '{"genre":{"$in":["drama","action"]}}',
         "--return-metadata", "all", "--return-values", "--top-k", "5"],
        ["--filter", '{"year":{"$lt":2010},"genre":{"$ne":"drama"}}', "--return-metadata", "indexed"],
    ):
        got = shown(w("query", "alpha", "--vector", *QUERY, *flags), f"query {flags}")
        assert got == v("query", "alpha", "--vector", *QUERY, *flags, "--json").json, flags
        assert got["count"] >= 1
    # a filter on a property without a metadata index: the CLI's error, through wrangler
    flt = '{"streaming_platform":"netflix"}'
    failed_with(w("query", "alpha", "--vector", *QUERY, "--filter", flt),
                cli_error(v("query", "alpha", "--vector", *QUERY, "--filter", flt)), MetadataIndexError.code)

    res = w("delete-metadata-index", "alpha", "--property-name", "year")
    assert "Successfully enqueued metadata index deletion request" in res.out
    assert mutation(res) == v("info", "alpha", "--json").json["processedUpToMutation"]
    res = w("list-metadata-index", "alpha")
    assert "propertyName" in res.out and "genre" in res.out and "year" not in res.out, res.out


def track_writes_and_queries(w: Wrangler, v, files: dict[str, Path]) -> None:
    """upsert in batches, insert/upsert --json, queries by vector and by id, info, error cases."""
    assert v("create", "delta", "--dimensions", "3", "--metric", "cosine").code == 0
    res = w("upsert", "delta", "--file", files["movies"], "--batch-size", "2")
    assert re.findall(r"Enqueued (\d) vectors into index 'delta' for upsertion", res.out) == ["2", "2", "1"]
    assert "Successfully enqueued 5 vectors into index 'delta' for upsertion." in res.out
    assert mutation(res) == v("info", "delta", "--json").json["processedUpToMutation"]

    for command in ("upsert", "insert"):  # the same file again: the index does not change
        got = as_json(w(command, "delta", "--file", files["movies"], "--batch-size", "3", "--json"), command)
        assert got == {"index": "delta", "count": 5}
        assert got == v(command, "delta", "--file", files["movies"], "--json").json

    flags = ["--top-k", "5", "--return-values=true"]  # yargs' boolean forms, the same line for both
    got = shown(w("query", "delta", "--vector", *QUERY, *flags), "query")
    assert got == v("query", "delta", "--vector", *QUERY, *flags, "--json").json
    assert [m["id"] for m in got["matches"]] == ["5", "4", "2", "1", "3"]
    assert got["matches"][0]["values"] == [58.8, 6.7, 3.4]
    for flags in (["--no-return-values"], ["--return-values=false"], ["--return-values", "--no-return-values"]):
        got = shown(w("query", "delta", "--vector", *QUERY, *flags), f"query {flags}")
        assert got == v("query", "delta", "--vector", *QUERY, *flags, "--json").json, flags
        assert "values" not in got["matches"][0], flags
    assert got["matches"][0]["score"] == pytest.approx(0.999909, abs=1e-6)
    flags = ["--vector-id", "4", "--top-k", "2", "--return-metadata", "all"]
    got = shown(w("query", "delta", *flags), "query by id")
    assert got == v("query", "delta", *flags, "--json").json
    assert got["matches"][0]["id"] == "4" and got["matches"][0]["metadata"]["genre"] == "action"

    res = w("query", "delta", "--vector", *QUERY, "--namespace", "nope")
    assert res.code == 0 and "Could not find any relevant vectors" in res.err
    assert v("query", "delta", "--vector", *QUERY, "--namespace", "nope", "--json").json == {
        "count": 0, "matches": []}

    assert as_json(w("info", "delta", "--json"), "info") == v("info", "delta", "--json").json

    failed_with(w("query", "delta", "--vector", "1", "2"),
                "invalid query vector, expected 3 dimensions, and got 2 dimensions", 40006)
    res = w("query", "delta", "--vector", "1", "2", "3", "--top-k", "60", "--return-metadata", "all")
    failed_with(res, "max top K is 50, but got 60", 40025)  # the service's words, as production
    res = w("insert", "delta", "--file", files["bad"])
    failed_with(res, cli_error(v("insert", "delta", "--file", files["bad"])), 40023)
    assert "line 2: not valid JSON" in res.err
    assert v("info", "delta", "--json").json["vectorCount"] == 5


def track_vectors(w: Wrangler, v, files: dict[str, Path]) -> None:
    """list-vectors paging (JSON and table), get-vectors, delete-vectors."""
    res = w("create", "beta", "--dimensions", "4", "--metric", "euclidean")
    assert "Successfully created a new Vectorize index: 'beta'" in res.out, res.out
    got = as_json(w("insert", "beta", "--file", files["many"], "--batch-size", "5", "--json"), "insert")
    assert got == {"index": "beta", "count": 12}

    ids, cursor = [], None
    while True:
        more = ["--cursor", cursor] if cursor else []
        page = as_json(w("list-vectors", "beta", "--count", "7", *more, "--json"), "list-vectors")
        ids += [x["id"] for x in page["vectors"]]
        cursor = page["nextCursor"]
        same_page(page, v("list-vectors", "beta", "--count", "7", *more, "--json").json)
        if not page["isTruncated"]:
            break
    assert ids == sorted(f"p{i:03d}" for i in range(12))

    # wrangler's global flags: the same command line, run from elsewhere with --cwd, -c, -e, --env-file
    # (--env-file is read from where the command started, as wrangler reads it, before --cwd)
    flags = ["--count", "7", "--json", "--cwd", str(files["project"]), "-c", "wrangler.jsonc", "-e", "staging",
             "--env-file", str(files["project"] / "vars.env")]
    page = as_json(w("list-vectors", "beta", *flags), "list-vectors with global flags")
    same_page(page, v("list-vectors", "beta", *flags).json)
    assert len(page["vectors"]) == 7

    res = w("list-vectors", "beta", "--count", "5")
    assert "Showing 5 of 12 total vectors" in res.out, res.out
    first = v("list-vectors", "beta", "--count", "5", "--json").json["nextCursor"]
    assert f"wrangler vectorize list-vectors beta --cursor {first}" in res.out

    got = shown(w("get-vectors", "beta", "--ids", "p001", "p003", "zz"), "get-vectors")
    assert got == v("get-vectors", "beta", "--ids", "p001", "p003", "zz", "--json").json
    assert [x["id"] for x in got] == ["p001", "p003"]

    res = w("delete-vectors", "beta", "--ids", "p001", "p002")
    assert "Successfully enqueued 2 vectors into index 'beta' for deletion." in res.out
    info = v("info", "beta", "--json").json
    assert info["processedUpToMutation"] == mutation(res) and info["vectorCount"] == 10
    res = w("get-vectors", "beta", "--ids", "p001")
    assert res.code == 0 and "does not contain vectors corresponding to the provided identifiers" in res.err


def track_indexes(w: Wrangler, v, files: dict[str, Path]) -> None:
    """create with a preset, duplicate and unknown names, get (JSON and table), delete."""
    made = as_json(w("create", "gamma", "--preset", "@cf/baai/bge-small-en-v1.5", "--json"), "create")
    assert made["config"] == {"dimensions": 384, "metric": "cosine"}
    assert made == v("get", "gamma", "--json").json
    failed_with(w("create", "gamma", "--dimensions", "3", "--metric", "cosine"),
                'vectorize.index.duplicate_name - Index name "gamma"', 3002)
    failed_with(w("get", "missing", "--json"), 'vectorize.index.not_found - Index name "missing"', 3000)
    assert as_json(w("get", "gamma", "--json"), "get") == v("get", "gamma", "--json").json
    res = w("get", "gamma")
    assert res.code == 0 and "│ gamma " in res.out and "│ 384 " in res.out, res.out
    res = w("delete", "gamma", "--force=true")
    assert res.code == 0 and "Deleted index gamma" in res.out, res.out
    assert v("get", "gamma").code == 1
    failed_with(w("info", "gamma"), 'vectorize.index.not_found - Index name "gamma"', 3000)


def test_all_fourteen_wrangler_commands(wrangler_cmd, tmp_path, vcli):
    files = {
        "movies": tmp_path / "movies.ndjson",
        "many": tmp_path / "many.ndjson",
        "bad": tmp_path / "bad.ndjson",
        "project": tmp_path / "project",
    }
    files["project"].mkdir()
    (files["project"] / "wrangler.jsonc").write_text('{\n  // a Worker\n  "name": "w",\n  "env": {"staging": {}}\n}\n')
    (files["project"] / "vars.env").write_text("VCLI_CONFORMANCE_MARK=1\n")
    files["movies"].write_text(ndjson(MOVIES))
    files["many"].write_text(ndjson({"id": f"p{i:03d}", "values": [i, i / 2, -i, 1]} for i in range(12)))
    files["bad"].write_text('{"id":"ok","values":[1,2,3]}\n{"id":"broken",\n{"id":"ok2","values":[1,2,3]}\n')

    lock = threading.Lock()

    def v(*args) -> Run:  # the CLI in-process (one at a time: it swaps sys.stdout)
        with lock:
            return vcli(*args)

    with serve_process(tmp_path) as server:
        w = Wrangler(wrangler_cmd, server.url, tmp_path)
        tracks = (track_metadata, track_writes_and_queries, track_vectors, track_indexes)
        with ThreadPoolExecutor(len(tracks)) as pool:
            futures = [pool.submit(track, w, v, files) for track in tracks]
            for future in futures:
                future.result()

        listed = as_json(w("list", "--json"), "list")
        assert listed == v("list", "--json").json
        assert [i["name"] for i in listed] == ["alpha", "beta", "delta"]
        res = w("list")
        assert res.code == 0 and all(n in res.out for n in ("alpha", "beta", "delta", "euclidean")), res.out


def test_wrangler_finds_the_local_account_without_an_account_id(wrangler_cmd, tmp_path):
    """Without CLOUDFLARE_ACCOUNT_ID wrangler asks the server's /memberships, takes its only
    account and caches it; later runs use the cache."""
    with serve_process(tmp_path, "--access-log") as server:
        w = Wrangler(wrangler_cmd, server.url, tmp_path)
        del w.env["CLOUDFLARE_ACCOUNT_ID"]
        made = w("create", "acct", "--dimensions", "3", "--metric", "cosine")
        assert made.code == 0, f"{made.out}\n{made.err}"
        assert "GET /client/v4/memberships?page=1" in server.output()
        cached = json.loads((tmp_path / "cache" / "wrangler-account.json").read_text())
        assert cached["account"]["id"] == "0" * 32
        assert [i["name"] for i in as_json(w("list", "--json"), "list")] == ["acct"]
        assert f"/accounts/{'0' * 32}/vectorize/v2/indexes" in server.output()
