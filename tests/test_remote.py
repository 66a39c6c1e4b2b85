"""``--remote``, push, pull, diff and export --remote against ``vcli serve`` as the live service.

Every command runs as the installed ``vcli`` in a subprocess. The service is a real ``vcli serve``
with its own data dir; where the wire should misbehave, ``faultproxy.FaultProxy`` sits between
the two and answers some requests with 429, 5xx, a dropped connection, a slow or a cut-short answer.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from faultproxy import FaultProxy, busiest_window
from helpers import module_server, serve_process, vcli_executable

TOKEN = "tok-0a1b2c3d4e5f-never-shown"
DIMS = 8


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with module_server(tmp_path_factory, "service") as s:
        yield s


@pytest.fixture
def remote(service, monkeypatch):
    """The service with no indexes, and --remote pointed at it (the account found from the token)."""
    for name in [c["name"] for c in _run("list", "--remote", "--json", env=_env(service.url)).json()]:
        _run("delete", name, "--force", "--remote", env=_env(service.url))
    for k, v in _env(service.url).items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CLOUDFLARE_ACCOUNT_ID", raising=False)
    return service


def _env(url: str, rate: str = "100000/1") -> dict:
    return {"CLOUDFLARE_API_BASE_URL": f"{url}/client/v4", "CLOUDFLARE_API_TOKEN": TOKEN,
            "VCLI_REMOTE_RATE": rate}


class Result:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.code, self.out, self.err = proc.returncode, proc.stdout.decode(), proc.stderr.decode()
        assert TOKEN not in self.out + self.err
        assert "Traceback" not in self.err, self.err

    def json(self):
        return orjson.loads(self.out)


def _run(*args, env: dict | None = None, input: bytes | None = None, timeout: float = 300) -> Result:
    return Result(subprocess.run([vcli_executable(), *map(str, args)], input=input, capture_output=True,
                                 env={**os.environ, **(env or {})}, timeout=timeout))


def records(n: int, seed: int = 0, dims: int = DIMS) -> list[dict]:
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((n, dims)).astype(np.float32)
    out = []
    for i in range(n):
        rec = {"id": f"v{i:06d}", "values": values[i], "metadata": {"genre": f"g{i % 5}", "year": 1990 + i % 30}}
        if i % 4 == 0:
            rec["namespace"] = f"ns{i % 3}"
        out.append(rec)
    return out


def write_ndjson(path: Path, recs) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for r in recs))
    return path


def local_index(tmp_path: Path, name: str, n: int, seed: int = 0) -> None:
    assert _run("create", name, "--dimensions", DIMS, "--metric", "cosine", "--description", "films").code == 0
    assert _run("create-metadata-index", name, "--property-name", "genre", "--type", "string").code == 0
    assert _run("upsert", name, "--file", write_ndjson(tmp_path / f"{name}.ndjson", records(n, seed))).code == 0


# (a list cursor carries its index's last mutation, which differs between the two indexes)
_VOLATILE = re.compile(r'"(created_on|modified_on|mutationId|processedUpToMutation|processedUpToDatetime|cursorExpirationTimestamp'
                       r'|nextCursor)": "[^"]*"')


def normal(text: str) -> str:
    return _VOLATILE.sub(r'"\1": "-"', text)


# == every command, local and remote ============================================================
def test_every_command_answers_the_same_locally_and_remotely(remote, tmp_path):
    data = write_ndjson(tmp_path / "v.ndjson", records(40))
    more = write_ndjson(tmp_path / "more.ndjson", records(10, seed=1))
    q = ",".join(["0.5"] * DIMS)
    queries = tmp_path / "q.ndjson"
    queries.write_bytes(b'{"vector": [%s], "topK": 3}\n{"vectorId": "v000003", "filter": {"genre": "g1"}}\n'
                        % q.encode())
    steps = [
        ("create", "films", "--dimensions", DIMS, "--metric", "cosine", "--description", "d", "--json"),
        ("get", "films", "--json"),
        ("list", "--json"),
        ("create-metadata-index", "films", "--property-name", "genre", "--type", "string", "--json"),
        ("list-metadata-index", "films", "--json"),
        ("insert", "films", "--file", data, "--batch-size", 15, "--json"),
        ("upsert", "films", "--file", more, "--json", "--wait"),
        ("info", "films", "--json"),
        ("query", "films", "--vector", f"[{q}]", "--top-k", 4, "--return-values", "--return-metadata", "all",
         "--json"),
        ("query", "films", "--vector", f"[{q}]", "--filter", '{"genre": {"$in": ["g1", "g2"]}}', "--json"),
        ("query", "films", "--vector-id", "v000007", "--namespace", "ns1", "--return-metadata", "indexed", "--json"),
        ("query", "films", "--file", queries),
        ("get-vectors", "films", "--ids", "v000001", "v000004", "nope", "--json"),
        ("list-vectors", "films", "--count", 7, "--json"),
        ("delete-vectors", "films", "--ids", "v000001", "v000002", "--json"),
        ("export", "films"),
        ("export", "films", "--namespace", "ns0"),
        ("delete-metadata-index", "films", "--property-name", "genre", "--json"),
        ("query", "films", "--vector", f"[{q}]", "--filter", '{"genre": "g1"}'),  # fails alike
        ("get", "missing"),
        ("delete", "films", "--force", "--json"),
    ]
    for step in steps:
        here, there = _run(*step), _run(*step, "--remote")
        if step[0] == "export":  # locally in the order written, remotely in id order
            here.out, there.out = (sorted(x.out.splitlines()) for x in (here, there))
        assert (here.code, normal(str(here.out))) == (there.code, normal(str(there.out))), step
        assert bool(here.err) == bool(there.err), (step, here.err, there.err)
        if here.code:
            assert there.err.startswith("Error: ") and there.err.count("\n") == 1, there.err
    assert _run("list", "--remote", "--json").json() == []


def test_export_remote_is_a_backup_that_restores(remote, tmp_path):
    _run("create", "src", "--dimensions", DIMS, "--metric", "euclidean", "--remote")
    _run("upsert", "src", "--file", write_ndjson(tmp_path / "v.ndjson", records(2500)), "--remote")
    backup = tmp_path / "backup.ndjson"
    done = _run("export", "src", "--remote", "--output", backup, "--json")
    assert done.code == 0 and done.json()["count"] == 2500
    assert _run("create", "copy", "--dimensions", DIMS, "--metric", "euclidean").code == 0
    assert _run("insert", "copy", "--file", backup).code == 0
    assert _run("diff", "copy", "remote:src").code == 0


# == writes: checked first, refused batches named ===============================================
def test_a_bad_line_sends_nothing(remote, tmp_path):
    _run("create", "films", "--dimensions", DIMS, "--metric", "cosine", "--remote")
    lines = [orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY) for r in records(3000)]
    lines[2500] = b'{"id": "bad", "values": [1, 2]}'
    proxy = FaultProxy(remote.url)
    try:
        r = _run("upsert", "films", "--file", "-", "--batch-size", 100, "--remote", env=_env(proxy.url),
                 input=b"\n".join(lines) + b"\n")
        assert not proxy.requests("/upsert")
    finally:
        proxy.close()
    assert r.code == 1 and r.err.startswith("Error: line 2501") and r.err.count("\n") == 1, r.err
    assert _run("info", "films", "--remote", "--json").json()["vectorCount"] == 0


def test_a_batch_refused_later_names_what_was_written(remote, tmp_path):
    _run("create", "films", "--dimensions", DIMS, "--metric", "cosine", "--remote")
    uploads = 0

    def plan(n, method, path):
        nonlocal uploads
        if path.endswith("/upsert"):
            uploads += 1
            if uploads == 3:
                return ("refuse", 40012, "invalid vector for id=\"v002100\", expected 8 dimensions")
        return None

    proxy = FaultProxy(remote.url, plan)
    try:
        r = _run("upsert", "films", "--file", write_ndjson(tmp_path / "v.ndjson", records(5000)),
                 "--batch-size", 1000, "--remote", env=_env(proxy.url))
    finally:
        proxy.close()
    assert r.code == 1 and r.err.count("\n") == 1, r.err
    assert "batch 3 of 5 (lines 2001-3000)" in r.err and "(code 40012)" in r.err, r.err
    assert "batches 1-2 (lines 1-2000) had been accepted" in r.err, r.err
    assert _run("info", "films", "--remote", "--json").json()["vectorCount"] == 2000


# == credentials and safety =====================================================================
def test_the_token_is_never_shown(remote, tmp_path):
    with serve_process(tmp_path, "--data-dir", str(tmp_path / "guarded"), "--token", "right-token") as guarded:
        env = _env(guarded.url)  # TOKEN is the wrong one here
        r = _run("list", "--remote", env=env)
        assert r.code == 1 and r.err.startswith("Error: ") and "CLOUDFLARE_API_TOKEN" in r.err, r.err
        r = _run("info", "x", "--remote", "--json", env={**env, "CLOUDFLARE_ACCOUNT_ID": "a" * 32})
        assert r.code == 1
    for args in (("config",), ("config", "--json")):
        r = _run(*args)
        assert r.code == 0 and "api_token" in r.out and "(set, hidden)" in r.out
    bad = _run("list", "--remote", env={"CLOUDFLARE_API_TOKEN": "tok with spaces " + TOKEN})
    assert bad.code == 1 and "(hidden)" in bad.err


def test_a_token_in_a_config_file_must_be_the_users_alone(remote, tmp_path):
    config = tmp_path / "config-home" / "vcli" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'api_token = "{TOKEN}"\n')
    config.chmod(0o644)
    env = {"CLOUDFLARE_API_TOKEN": ""}
    r = _run("list", "--remote", env=env)
    assert r.code == 1 and "chmod 600" in r.err, r.err
    config.chmod(0o600)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert _run("list", "--remote", "--json", env=env).code == 0
    (tmp_path / "vcli.toml").write_text(f'api_token = "{TOKEN}"\n')
    r = _run("list", "--remote", env=env)
    assert r.code == 1 and "project file" in r.err, r.err


def test_plain_http_only_to_this_machine():
    r = _run("list", "--remote", env={"CLOUDFLARE_API_BASE_URL": "http://api.example.com/client/v4",
                                      "CLOUDFLARE_API_TOKEN": TOKEN})
    assert r.code == 1 and "plain http is only for this machine" in r.err, r.err
    r = _run("list", "--remote", env={"CLOUDFLARE_API_TOKEN": ""})
    assert r.code == 1 and "CLOUDFLARE_API_TOKEN" in r.err


def test_wait_is_immediate_locally_and_waits_for_the_mutation_remotely(remote, tmp_path):
    data = write_ndjson(tmp_path / "v.ndjson", records(10))
    for extra in ((), ("--remote",)):
        assert _run("create", "ww", "--dimensions", DIMS, "--metric", "cosine", *extra).code == 0
        r = _run("upsert", "ww", "--file", data, "--wait", "--json", *extra)
        assert r.code == 0
        assert _run("info", "ww", "--json", *extra).json()["vectorCount"] == 10


# == push, pull, diff ===========================================================================
def test_push_then_pull_round_trip_with_metadata_indexes(remote, tmp_path):
    local_index(tmp_path, "films", 3000)
    r = _run("push", "films", "--json")
    assert r.code == 0, r.err
    assert r.json()["count"] == 3000 and r.json()["created"] is True
    assert _run("list-metadata-index", "films", "--remote", "--json").json() == [
        {"propertyName": "genre", "indexType": "string"}]
    remote_cfg = _run("get", "films", "--remote", "--json").json()
    assert (remote_cfg["config"], remote_cfg["description"]) == ({"dimensions": DIMS, "metric": "cosine"}, "films")
    assert _run("diff", "films", "remote:films").code == 0
    # filtered queries answer the same on both sides: every pushed vector is filterable
    q = ("query", "films", "--vector", *["0.1"] * DIMS, "--filter", '{"genre": "g2"}', "--top-k", 10, "--json")
    assert _run(*q).out == _run(*q, "--remote").out
    r = _run("pull", "films", "copy", "--json")
    assert r.code == 0 and r.json()["count"] == 3000, r.err
    assert _run("diff", "films", "copy").code == 0
    assert _run("list-metadata-index", "copy", "--json").json() == [{"propertyName": "genre", "indexType": "string"}]
    # once more: nothing to do but check
    assert _run("push", "films").code == 0


def test_push_refuses_another_configuration_and_pull_a_non_empty_index(remote, tmp_path):
    local_index(tmp_path, "films", 10)
    _run("create", "films", "--dimensions", DIMS + 1, "--metric", "cosine", "--remote")
    r = _run("push", "films")
    assert r.code == 1 and "has 9 dimensions" in r.err, r.err
    assert _run("info", "films", "--remote", "--json").json()["vectorCount"] == 0
    _run("push", "films", "other")
    r = _run("pull", "other", "films")
    assert r.code == 1 and "already holds vectors" in r.err, r.err


def test_diff_lists_what_differs(remote, tmp_path):
    local_index(tmp_path, "a", 50)
    _run("push", "a", "bb")  # (the API takes names of two characters or more)
    changed = records(50)[7]
    changed["metadata"] = {"genre": "other"}
    _run("upsert", "bb", "--file", "-", "--remote", input=orjson.dumps(changed, option=orjson.OPT_SERIALIZE_NUMPY))
    _run("delete-vectors", "bb", "--ids", "v000003", "--remote")
    r = _run("diff", "a", "remote:bb", "--json")
    assert r.code == 1
    assert r.json() == {"equal": False, "a": "a", "b": "remote:bb", "count": {"a": 50, "b": 49},
                        "onlyInA": ["v000003"], "onlyInB": [], "different": [{"id": "v000007", "fields": ["metadata"]}]}
    human = _run("diff", "a", "remote:bb")
    assert human.code == 1 and "v000003" in human.out and "metadata differ" in human.out


# == a misbehaving wire =========================================================================
FAULTS = {3: "500", 5: "502", 8: "503", 11: "drop", 14: "truncate", 17: "429", 19: "slow"}


def faulty(n, method, path):
    """Faults in a cycle of 150 requests, 429 and slow answers rarer (each costs a second)."""
    fault = FAULTS.get(n % 150)
    if fault in ("429", "slow") and n % 600 >= 150:
        return None
    return fault


def test_push_and_pull_through_faults_within_the_rate_limit(remote, tmp_path):
    local_index(tmp_path, "big", 20_000)
    limit, period = 250, 1.0
    proxy = FaultProxy(remote.url, faulty)
    env = _env(proxy.url, rate=f"{limit}/{period:g}")
    try:
        r = _run("push", "big", "--batch-size", 2000, "--json", env=env)
        assert r.code == 0, r.err
        assert r.json()["sent"] == 20_000
        r = _run("pull", "big", "back", "--json", env=env)
        assert r.code == 0, r.err
        assert r.json()["count"] == 20_000
        seen = {f for *_x, f, _b in proxy.log if f}
        assert {"500", "502", "503", "drop", "truncate", "429", "slow"} <= seen
        assert busiest_window([t for t, *_ in proxy.log], period) <= limit
    finally:
        proxy.close()
    assert _run("diff", "big", "remote:big").code == 0
    assert _run("diff", "big", "back").code == 0


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the move never got far enough"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_killed_push_resumes_and_sends_only_what_is_left(remote, tmp_path):
    local_index(tmp_path, "big", 20_000)
    proxy = FaultProxy(remote.url)
    env = {**os.environ, **_env(proxy.url, rate="40/1")}
    try:
        proc = subprocess.Popen([vcli_executable(), "push", "big", "--batch-size", "500"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _kill_when(proc, lambda: len(proxy.requests("/upsert")) >= 15)
        first = len(proxy.requests("/upsert"))
        assert first < 40
        r = _run("push", "big", "--batch-size", 500, "--json", env=env)
        assert r.code == 0, r.err
        again = len(proxy.requests("/upsert")) - first
        assert 40 - first <= again <= 40 - first + 1  # at most the batch in flight is sent twice
        assert r.json()["skipped"] + r.json()["sent"] == 20_000 and r.json()["skipped"] >= (first - 1) * 500
    finally:
        proxy.close()
    assert _run("diff", "big", "remote:big").code == 0
    assert not list((Path(os.environ["VCLI_DATA_DIR"]) / "big").glob("push-*.json"))


def test_a_killed_pull_resumes_and_fetches_only_what_is_left(remote, tmp_path):
    local_index(tmp_path, "big", 20_000)
    assert _run("push", "big").code == 0
    proxy = FaultProxy(remote.url)
    env = {**os.environ, **_env(proxy.url, rate="400/1")}
    try:
        proc = subprocess.Popen([vcli_executable(), "pull", "big", "back"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _kill_when(proc, lambda: len(proxy.requests("/get_by_ids")) >= 600)
        first = len(proxy.requests("/get_by_ids"))
        assert first < 1000
        r = _run("pull", "big", "back", "--json", env=env)
        assert r.code == 0, r.err
        again = len(proxy.requests("/get_by_ids")) - first
        assert again <= 1000 - 250 + 5  # at least one commit of 5,000 vectors was kept
        assert r.json()["count"] == 20_000 and r.json()["skipped"] >= 5000
    finally:
        proxy.close()
    assert _run("diff", "big", "back").code == 0
