"""``vcli serve --apply-delay``: writes acknowledged at once and applied later, as on the service.

Through the REST API, through a real Worker's binding (plain Miniflare), with ``--remote --wait``,
and across a SIGKILL of the server with writes still pending.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import orjson
import pytest
from helpers import serve_process, vcli_executable

DELAY = 1.5
DEADLINE = 120  # seconds a poll may take on a busy machine


def api(server) -> str:
    return server.api


def info(server, name="films") -> dict:
    return httpx.get(f"{server.api}/indexes/{name}/info").json()["result"]


def upsert(server, lines: list[dict], name="films") -> str:
    body = b"".join(orjson.dumps(v) + b"\n" for v in lines)
    resp = httpx.post(f"{server.api}/indexes/{name}/upsert", content=body,
                      headers={"content-type": "application/x-ndjson"})
    assert resp.status_code == 200, resp.text
    return resp.json()["result"]["mutationId"]


def get(server, ids, name="films") -> list[dict]:
    return httpx.post(f"{server.api}/indexes/{name}/get_by_ids", json={"ids": ids}).json()["result"]


def wait_until_processed(server, mutation: str, name="films") -> float:
    """The loop users write: poll info until processedUpToMutation is the write's. Seconds taken."""
    start = time.monotonic()
    while info(server, name)["processedUpToMutation"] != mutation:
        assert time.monotonic() - start < DEADLINE, "the write was never applied"
        time.sleep(0.02)
    return time.monotonic() - start


def make_index(server, name="films", dims=3) -> None:
    resp = httpx.post(f"{server.api}/indexes", json={"name": name, "config": {"dimensions": dims, "metric": "cosine"}})
    assert resp.status_code == 201, resp.text


@pytest.fixture
def delayed(tmp_path):
    with serve_process(tmp_path, "--data-dir", str(tmp_path / "data"), "--apply-delay", str(DELAY)) as s:
        s.data_dir = tmp_path / "data"
        yield s


def test_a_write_is_acknowledged_now_and_visible_after_the_delay(delayed):
    make_index(delayed)
    first = upsert(delayed, [{"id": "a", "values": [1, 0, 0]}])
    wait_until_processed(delayed, first)
    sent = time.monotonic()
    second = upsert(delayed, [{"id": "b", "values": [0, 1, 0]}, {"id": "a", "values": [0, 0, 1]}])
    # right after: the old state, everywhere
    assert get(delayed, ["a", "b"]) == [{"id": "a", "namespace": None, "metadata": None, "values": [1.0, 0.0, 0.0]}]
    now = info(delayed)
    assert (now["vectorCount"], now["processedUpToMutation"]) == (1, first)
    query = httpx.post(f"{delayed.api}/indexes/films/query", json={"vector": [0, 1, 0], "topK": 1}).json()["result"]
    assert [m["id"] for m in query["matches"]] == ["a"]
    listed = httpx.get(f"{delayed.api}/indexes/films/list").json()["result"]
    assert [v["id"] for v in listed["vectors"]] == ["a"]
    # the polling loop ends exactly when the write is visible
    wait_until_processed(delayed, second)
    assert time.monotonic() - sent >= DELAY * 0.9
    assert {v["id"]: v["values"] for v in get(delayed, ["a", "b"])} == {"a": [0.0, 0.0, 1.0], "b": [0.0, 1.0, 0.0]}
    assert info(delayed)["vectorCount"] == 2
    # a bad write is refused at once, as on the service, and never applied
    resp = httpx.post(f"{delayed.api}/indexes/films/upsert", content=b'{"id": "c", "values": [1, 2]}\n',
                      headers={"content-type": "application/x-ndjson"})
    assert resp.status_code == 400 and resp.json()["errors"][0]["code"] == 40012


def test_deletes_and_metadata_indexes_wait_their_turn(delayed):
    make_index(delayed)
    upsert(delayed, [{"id": "a", "values": [1, 0, 0]}, {"id": "b", "values": [0, 1, 0]}])
    created = httpx.post(f"{delayed.api}/indexes/films/metadata_index/create",
                         json={"propertyName": "genre", "indexType": "string"}).json()["result"]["mutationId"]
    deleted = httpx.post(f"{delayed.api}/indexes/films/delete_by_ids", json={"ids": ["a"]}).json()["result"]["mutationId"]
    assert info(delayed)["vectorCount"] == 0  # nothing applied yet
    wait_until_processed(delayed, deleted)
    assert info(delayed)["vectorCount"] == 1
    indexes = httpx.get(f"{delayed.api}/indexes/films/metadata_index/list").json()["result"]["metadataIndexes"]
    assert indexes == [{"propertyName": "genre", "indexType": "string"}] and created


def test_remote_wait_returns_once_the_write_is_applied(delayed, tmp_path):
    make_index(delayed)
    env = {**os.environ, "CLOUDFLARE_API_BASE_URL": f"{delayed.url}/client/v4", "CLOUDFLARE_API_TOKEN": "t"}
    data = tmp_path / "v.ndjson"
    data.write_text('{"id": "a", "values": [1, 2, 3]}\n')
    start = time.monotonic()
    run = subprocess.run([vcli_executable(), "upsert", "films", "--file", str(data), "--remote", "--wait", "--json"],
                         env=env, capture_output=True, timeout=DEADLINE)
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - start >= DELAY * 0.9
    assert info(delayed)["vectorCount"] == 1  # visible when --wait returned
    # the CLI's own writes stay immediate
    local = subprocess.run([vcli_executable(), "upsert", "films", "--file", "-", "--data-dir", str(delayed.data_dir)],
                           input=b'{"id": "b", "values": [3, 2, 1]}', capture_output=True, timeout=DEADLINE)
    assert local.returncode == 0, local.stderr
    assert info(delayed)["vectorCount"] == 2


def test_writes_pending_at_a_sigkill_are_applied_once_in_order_on_restart(tmp_path):
    data = tmp_path / "data"
    with serve_process(tmp_path, "--data-dir", str(data), "--apply-delay", "600") as server:
        make_index(server)
        ids = [upsert(server, [{"id": "a", "values": [1, 0, 0]}]),
               upsert(server, [{"id": "a", "values": [0, 1, 0]}, {"id": "b", "values": [1, 1, 0]}]),
               httpx.post(f"{server.api}/indexes/films/delete_by_ids", json={"ids": ["b"]}).json()["result"]["mutationId"],
               upsert(server, [{"id": "c", "values": [0, 0, 1]}])]
        assert info(server)["vectorCount"] == 0
        server.stop(signal.SIGKILL)
    with serve_process(tmp_path, "--data-dir", str(data)) as again:  # no delay: applied at start
        wait_until_processed(again, ids[-1])
        assert {v["id"]: v["values"] for v in get(again, ["a", "b", "c"])} == {"a": [0.0, 1.0, 0.0], "c": [0.0, 0.0, 1.0]}
        assert info(again)["vectorCount"] == 2
    history = _mutations(data / "films")
    assert history == ids  # each once, in the order acknowledged


def test_a_cli_write_applies_what_a_killed_server_left_first(tmp_path):
    data = tmp_path / "data"
    with serve_process(tmp_path, "--data-dir", str(data), "--apply-delay", "600") as server:
        make_index(server)
        acked = upsert(server, [{"id": "a", "values": [1, 0, 0]}])
        server.stop(signal.SIGKILL)
    run = subprocess.run([vcli_executable(), "upsert", "films", "--file", "-", "--data-dir", str(data), "--json"],
                         input=b'{"id": "a", "values": [0, 0, 1]}', capture_output=True, timeout=DEADLINE)
    assert run.returncode == 0, run.stderr
    got = subprocess.run([vcli_executable(), "get-vectors", "films", "--ids", "a", "--data-dir", str(data), "--json"],
                         capture_output=True, timeout=DEADLINE)
    assert orjson.loads(got.stdout)[0]["values"] == [0.0, 0.0, 1.0]  # the server's write went first
    assert _mutations(data / "films")[0] == acked


def _mutations(folder) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(folder / "store.sqlite")
    try:
        return [row[0] for row in conn.execute("SELECT uuid FROM mutations ORDER BY seq")]
    finally:
        conn.close()


def test_a_kept_write_that_cannot_take_the_lock_stays_kept(tmp_path):
    """A passing failure (another writer holds the lock too long) is retried later, never dropped."""
    import threading

    from vcli.engine import Catalog
    from vcli.errors import LockTimeout

    cat = Catalog(tmp_path / "data", lock_timeout=0.2)
    cat.create("films", 3, "cosine")
    with cat.open("films", write=True) as index:
        mid, _ = index.defer("upsert", [{"id": "a", "values": [1, 2, 3]}], 0)
        held, release = threading.Event(), threading.Event()

        def hold():
            with cat.open("films", write=True) as other, other.writing():
                held.set()
                release.wait(60)

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(60)
        try:
            with pytest.raises(LockTimeout):
                index.apply_pending()
        finally:
            release.set()
            holder.join()
        assert index.info().vector_count == 0 and index.next_due() is not None
        assert index.apply_pending() == ()
        assert index.info().processed_up_to_mutation == mid and index.info().vector_count == 1
