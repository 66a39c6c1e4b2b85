"""Concurrent use, with real processes: writers take turns (never fail, never lose a write), a
writer kept waiting past VCLI_LOCK_TIMEOUT gives up with a clear message and writes nothing, and
readers running during writes never fail and never see half of a command.

``VCLI_CONCURRENCY_ROUNDS=N`` makes the reader/writer run N times longer (benchmarks/soak.py).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading
import time
from contextlib import contextmanager

import numpy as np
import orjson
from helpers import program, vcli_executable, writer_lock_held
from test_crash import report

from vcli.engine import Catalog

DIMS = 16
NAME = "conc"
ROUNDS = int(os.environ.get("VCLI_CONCURRENCY_ROUNDS", "1"))


def lines(prefix: str, n: int, seed: int, probe=None, probes: int = 0) -> list[dict]:
    """``n`` random vectors; the first ``probes`` (spread through the file) point exactly along
    ``probe``, so a query for it finds all of them or none."""
    rng = np.random.default_rng(seed)
    out = [{"id": f"{prefix}-{i}", "values": rng.standard_normal(DIMS).astype(np.float32).tolist()}
           for i in range(n)]
    if probes:
        for i in range(probes):
            scale = float(rng.uniform(0.5, 2.0))
            out[i * (n // probes)]["values"] = (np.asarray(probe, np.float32) * scale).tolist()
    return out


def payload(recs) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in recs)


def create(data_dir, n=0):
    Catalog(data_dir).create(NAME, DIMS, "cosine")
    if n:
        with Catalog(data_dir).open(NAME, write=True) as ix:
            ix.insert(lines("seed", n, 0))


@contextmanager
def hold_lock(data_dir):
    fd = os.open(data_dir / NAME / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def lock_is_held(data_dir) -> bool:
    return writer_lock_held(data_dir / NAME)


def wait_until(cond, timeout=60.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def count(data_dir) -> int:
    with Catalog(data_dir).open(NAME) as ix:
        return ix.info().vector_count


def test_two_writers_at_once_both_succeed_in_turn(data_dir):
    """Writer A holds the lock (its input is still coming); writer B waits for it, then writes."""
    create(data_dir, 100)
    a_lines, b_lines = lines("a", 3000, 1), lines("b", 3000, 2)
    exe = vcli_executable()
    a = subprocess.Popen([exe, "upsert", NAME, "--file", "-", "--json", "--batch-size", "100"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    data = payload(a_lines)
    a.stdin.write(data[: len(data) // 2])
    a.stdin.flush()
    wait_until(lambda: lock_is_held(data_dir))
    b = subprocess.Popen([exe, "insert", NAME, "--file", "-", "--json"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    b_out = threading.Thread(target=b.communicate, args=(payload(b_lines),))
    b_out.start()
    time.sleep(0.5)
    assert b.poll() is None  # B is waiting for A
    assert count(data_dir) == 100  # and nothing of A is visible yet
    a.stdin.write(data[len(data) // 2:])
    a_res = a.communicate()
    b_out.join(60)
    assert a.returncode == 0, a_res[1]
    assert b.returncode == 0
    assert count(data_dir) == 6100
    with Catalog(data_dir).open(NAME) as ix:
        got = {v.id: v.values.tolist() for v in ix.get(["a-0", "a-2999", "b-0", "b-2999"])}
    want = {r["id"]: np.float32(r["values"]).tolist() for r in a_lines + b_lines}
    assert got == {k: want[k] for k in got} and len(got) == 4


def test_readers_read_through_a_write_that_has_appended_but_not_committed(data_dir, vcli_proc):
    """A writer has appended values past the columns' committed end and holds its transaction
    open (its input is still coming): readers in other processes answer at once, from the
    committed rows only, bit for bit; once it commits they see all of it."""
    create(data_dir, 100)
    with Catalog(data_dir).open(NAME) as ix:
        before = {v.id: v.values.tobytes() for v in ix.get([f"seed-{i}" for i in range(100)])}
    (f32,) = (data_dir / NAME).glob("values-*.f32")
    committed = f32.stat().st_size
    new = lines("w", 2000, 3)
    data = payload(new)
    w = subprocess.Popen([vcli_executable(), "upsert", NAME, "--file", "-", "--json", "--batch-size", "50"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    w.stdin.write(data[: len(data) // 2])
    w.stdin.flush()
    wait_until(lambda: f32.stat().st_size > committed)  # appended, not committed
    got = vcli_proc("get-vectors", NAME, "--ids", "seed-0", "seed-99", "w-0", "--json")
    assert got.code == 0, got.err
    assert {v["id"]: np.float32(v["values"]).tobytes() for v in got.json} == {
        k: before[k] for k in ("seed-0", "seed-99")}
    q = vcli_proc("query", NAME, "--vector", *map(repr, new[0]["values"]), "--top-k", "3", "--json")
    assert q.code == 0 and "w-0" not in [m["id"] for m in q.json["matches"]]
    assert vcli_proc("info", NAME, "--json").json["vectorCount"] == 100
    assert w.poll() is None  # (the writer was waiting for its input all along)
    w.stdin.write(data[len(data) // 2:])
    out, err = w.communicate(timeout=120)
    assert w.returncode == 0, err
    q = vcli_proc("query", NAME, "--vector", *map(repr, new[0]["values"]), "--top-k", "1", "--json")
    assert q.json["matches"][0]["id"] == "w-0"
    with Catalog(data_dir).open(NAME) as ix:
        got = {v.id: v.values.tobytes() for v in ix.get([r["id"] for r in new])}
    assert got == {r["id"]: np.float32(r["values"]).tobytes() for r in new}


def test_three_kinds_of_writer_at_once(data_dir, tmp_path):
    """insert, upsert and delete-vectors started together all succeed and all take effect."""
    create(data_dir, 600)
    exe = vcli_executable()
    new, changed = lines("new", 2500, 3), lines("seed", 300, 4)  # seed-0..299 get new values
    (tmp_path / "new.ndjson").write_bytes(payload(new))
    (tmp_path / "changed.ndjson").write_bytes(payload(changed))
    gone = [f"seed-{i}" for i in range(300, 500)]
    procs = [
        subprocess.Popen([exe, "insert", NAME, "--file", str(tmp_path / "new.ndjson")], stderr=subprocess.PIPE),
        subprocess.Popen([exe, "upsert", NAME, "--file", str(tmp_path / "changed.ndjson")], stderr=subprocess.PIPE),
        subprocess.Popen([exe, "delete-vectors", NAME, "--ids", *gone], stderr=subprocess.PIPE),
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with Catalog(data_dir).open(NAME) as ix:
        assert ix.info().vector_count == 600 + 2500 - 200
        got = {v.id: v.values.tolist() for v in ix.get([r["id"] for r in changed] + gone + ["new-7"])}
    assert set(got) == {r["id"] for r in changed} | {"new-7"}
    assert all(got[r["id"]] == np.float32(r["values"]).tolist() for r in changed)


def test_writer_waiting_past_the_timeout_gives_up_cleanly(data_dir, vcli_proc):
    create(data_dir, 50)
    line = payload(lines("late", 10, 5)).decode()
    with Catalog(data_dir).open(NAME) as ix:
        before = ix.info()
    with hold_lock(data_dir):
        started = time.monotonic()
        for args in (("insert", NAME, "--file", "-"), ("delete-vectors", NAME, "--ids", "seed-1")):
            res = vcli_proc(*args, input=line, env={"VCLI_LOCK_TIMEOUT": "0.5"})
            assert res.code == 1
            assert res.err.startswith("Error: ") and res.err.count("\n") == 1
            assert "VCLI_LOCK_TIMEOUT" in res.err and "writing to this index" in res.err
            assert res.out == ""
        assert time.monotonic() - started < 20
    with Catalog(data_dir).open(NAME) as ix:
        assert ix.info() == before  # nothing written, not even a mutation
    # Within the timeout, the waiting writer just goes ahead once the lock is free.
    proc = subprocess.Popen([vcli_executable(), "insert", NAME, "--file", "-", "--json"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "VCLI_LOCK_TIMEOUT": "30"})
    with hold_lock(data_dir):
        out = threading.Thread(target=proc.communicate, args=(line.encode(),))
        out.start()
        time.sleep(1.0)
        assert proc.poll() is None
    out.join(60)
    assert proc.returncode == 0
    assert count(data_dir) == 60


def test_readers_never_fail_nor_see_half_a_command(data_dir, tmp_path):
    """A writer runs upsert and delete-vectors commands one after the other (each big enough for
    the search file to be refreshed often); an engine reader polls in a tight loop and the CLI
    answers info and query, all at the same time. Every count seen is a committed count, every
    batch is seen whole or not at all, and no reader ever fails. The writer goes on (upserting a
    deleted batch again and deleting it) until both readers have seen enough, however slow the
    machine: only a hang reaches the deadline."""
    create(data_dir, 1000)
    batch, probes = 1100, 20
    commands = 6 * ROUNDS
    rng = np.random.default_rng(11)
    dirs = [rng.standard_normal(DIMS).astype(np.float32) for _ in range(commands)]
    plan, counts, c = [], {1000}, 1000
    for j in range(commands):
        if j % 4 == 3:  # delete an earlier batch (its probes vanish at once)
            plan.append(("delete-vectors", j - 2))
            c -= batch
        else:
            plan.append(("upsert", j))
            c += batch
        counts.add(c)
    again = plan[3][1]  # a batch the plan deleted: upserted and deleted again while readers need more
    counts.add(c + batch)
    ids = [[f"b{j}-{i}" for i in range(batch)] for j in range(commands)]
    plan_file = tmp_path / "plan.json"
    plan_file.write_bytes(orjson.dumps({"probes": [d.tolist() for d in dirs], "ids": ids},
                                       option=orjson.OPT_SERIALIZE_NUMPY))
    stop = tmp_path / "stop"
    reader = subprocess.Popen(program("poll_reader", data_dir, NAME, plan_file, stop),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen: list[dict] = []
    reading = threading.Thread(target=lambda: seen.extend(orjson.loads(x) for x in reader.stdout))
    reading.start()
    cli_seen, cli_fail = [], []
    stop_cli = threading.Event()

    def cli_reader():
        exe, k = vcli_executable(), 0
        while not stop_cli.wait(0.5):
            j = k % commands
            k += 1
            r = subprocess.run([exe, "query", NAME, "--vector", *map(repr, dirs[j].tolist()), "--top-k", "40",
                                "--json"], capture_output=True)
            i = subprocess.run([exe, "info", NAME, "--json"], capture_output=True)
            if r.returncode or i.returncode or b"Traceback" in r.stderr + i.stderr:
                cli_fail.append((r.stderr, i.stderr))
                continue
            hits = sum(1 for m in orjson.loads(r.stdout)["matches"] if m["score"] > 0.9999)
            cli_seen.append((orjson.loads(i.stdout)["vectorCount"], hits))

    def run(op: str, j: int) -> None:
        if op == "upsert":
            src = tmp_path / "in.ndjson"
            src.write_bytes(payload(lines(f"b{j}", batch, 100 + j, dirs[j], probes)))
            res = subprocess.run([exe, "upsert", NAME, "--file", str(src), "--batch-size", "50"],
                                 capture_output=True)
        else:
            res = subprocess.run([exe, "delete-vectors", NAME, "--ids", *ids[j]], capture_output=True)
        assert res.returncode == 0, res.stderr

    t = threading.Thread(target=cli_reader)
    t.start()
    exe = vcli_executable()
    deadline = time.monotonic() + 900
    try:
        for op, target in plan:
            run(op, target)
        while len(seen) <= 20 or len(cli_seen) < 2:
            assert reader.poll() is None, reader.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, (len(seen), len(cli_seen))
            run("upsert", again)
            run("delete-vectors", again)
    finally:
        stop.write_text("")
        stop_cli.set()
        t.join(120)
        reader.wait(120)
        reading.join(120)
    assert reader.returncode == 0, reader.stderr.read().decode()[-2000:]
    assert len(seen) > 20
    for s in seen:
        assert s["count"] in counts, s
        assert s["hits"] in (0, probes), s
        assert s["present"] in (0, batch), s
    assert not cli_fail, cli_fail[:2]
    for vcount, hits in cli_seen:
        assert vcount in counts and hits in (0, probes)
    report("readers-during-writes", {"write commands": commands, "engine reads": len(seen),
                                     "cli reads": 2 * len(cli_seen),
                                     "reads during a refresh repair": sum(s["notes"] for s in seen)})
    assert count(data_dir) == c
