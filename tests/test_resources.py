"""Interrupts and resources: Ctrl-C, a file-size limit (as a full disk), read-only folders and
missing permissions each end in one clear line, and the index keeps exactly what it had.

Permission tests run the installed ``vcli`` in a subprocess. As root, chmod does not bite, so the
subprocess first drops the capabilities that override file permissions (CAP_DAC_OVERRIDE,
CAP_DAC_READ_SEARCH, CAP_FOWNER) from its bounding set: after exec it is a root that obeys file
modes. When that is not possible the tests are skipped.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import stat
import subprocess
import time

import numpy as np
import orjson
import pytest
from helpers import default_sigint, vcli_executable, writer_lock_held

from vcli.engine import Catalog, Tuning
from vcli.engine.check import check_index

DIMS = 16
NAME = "res"
PR_CAPBSET_DROP = 24
DAC_CAPS = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER


def obey_file_modes() -> None:
    """preexec_fn: make a root child obey file permissions (no-op for other users)."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in DAC_CAPS:
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def file_modes_bite(tmp_path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    probe.chmod(0o500)
    try:
        r = subprocess.run(["sh", "-c", f"touch {probe}/x"], preexec_fn=obey_file_modes, capture_output=True)
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        probe.chmod(0o700)
    return r.returncode != 0


@pytest.fixture
def restricted(tmp_path):
    if not file_modes_bite(tmp_path):
        pytest.skip("file permissions cannot be enforced here")

    def run(*args, input=None, env=None):
        proc = subprocess.run([vcli_executable(), *map(str, args)], input=input, capture_output=True,
                              preexec_fn=obey_file_modes, env={**os.environ, **(env or {})}, timeout=120)
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode()

    return run


def vectors(prefix, n, seed, meta=0):
    rng = np.random.default_rng(seed)
    out = []
    for i, v in enumerate(rng.standard_normal((n, DIMS)).astype(np.float32).tolist()):
        rec = {"id": f"{prefix}{i}", "values": v}
        if meta:
            rec["metadata"] = {"pad": "x" * meta}
        out.append(rec)
    return out


def payload(recs) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in recs)


def make(data_dir, n=500):
    Catalog(data_dir).create(NAME, DIMS, "cosine")
    with Catalog(data_dir).open(NAME, write=True) as ix:
        ix.insert(vectors("s", n, 0))


def state(data_dir):
    """Everything a user can see: count, last mutation and every vector."""
    with Catalog(data_dir).open(NAME) as ix:
        info = ix.info()
        ids = ix.list_ids(1000).ids
        got = {v.id: (v.values.tobytes(), v.namespace, v.metadata) for v in ix.get(ids)}
    return info, got


def one_error_line(err: str) -> bool:
    return err.startswith("Error: ") and err.count("\n") == 1 and "Traceback" not in err


def lock_is_held(data_dir) -> bool:
    return writer_lock_held(data_dir / NAME)


# -- Ctrl-C ----------------------------------------------------------------------------------
def test_ctrl_c_during_a_long_write_exits_130_and_keeps_the_index(data_dir):
    op = "upsert"
    make(data_dir)
    before = state(data_dir)
    proc = subprocess.Popen([vcli_executable(), op, NAME, "--file", "-", "--batch-size", "100"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=default_sigint)
    proc.stdin.write(payload(vectors("s" if op == "upsert" else "n", 3000, 1)))  # 30 batches written
    proc.stdin.flush()
    end = time.monotonic() + 60
    while not lock_is_held(data_dir):  # it is inside its transaction, waiting for more input
        assert time.monotonic() < end
        time.sleep(0.01)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out[-300:], err)
    assert err.decode() == "Error: interrupted; the index is as it was before this command\n"
    assert out == b""
    assert state(data_dir) == before
    with Catalog(data_dir).open(NAME, write=True) as ix:  # and the next write goes ahead
        ix.upsert(vectors("after", 3, 2))
    assert state(data_dir)[0].vector_count == before[0].vector_count + 3


# -- file size limit, as a full disk ---------------------------------------------------------
def limited(limit: int):
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


def test_file_size_limit_during_a_write_loses_nothing(data_dir, tmp_path):
    make(data_dir)
    before = state(data_dir)
    src = tmp_path / "big.ndjson"
    src.write_bytes(payload(vectors("n", 3000, 3, meta=500)))  # ~2 MB into the store's log
    proc = subprocess.run([vcli_executable(), "insert", NAME, "--file", str(src)], capture_output=True,
                          preexec_fn=limited(256 * 1024))
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert one_error_line(err), err
    assert "could not write to the disk" in err or "disk is full" in err
    assert state(data_dir) == before
    with Catalog(data_dir).open(NAME, write=True) as ix:  # with room again, the same write works
        ix.insert(vectors("n", 3000, 3, meta=500))
        assert check_index(ix).healthy


def test_a_failed_refresh_keeps_the_write(data_dir, tmp_path, vcli_proc):
    """The write commits; the search file cannot be written (a directory stands where its manifest
    goes): the command still succeeds, says so, and queries stay exact. (A full disk cannot do
    this any more: the write itself appends the values, and a refresh writes only their norms and
    tombstones, or a compaction no bigger than the columns.)"""
    Catalog(data_dir).create(NAME, 64, "cosine")
    rng = np.random.default_rng(4)
    with Catalog(data_dir).open(NAME, write=True) as ix:
        ix.insert([{"id": f"s{i}", "values": v} for i, v in
                   enumerate(rng.standard_normal((8000, 64)).astype(np.float32).tolist())])
    new = rng.standard_normal((Tuning().fold_rows + 100, 64)).astype(np.float32)
    src = tmp_path / "new.ndjson"
    src.write_bytes(payload({"id": f"n{i}", "values": v} for i, v in enumerate(new.tolist())))
    (data_dir / NAME / "matrix-2.manifest").mkdir()  # where the upsert's refresh writes (mutation 2)
    proc = subprocess.run([vcli_executable(), "upsert", NAME, "--file", str(src), "--json"], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert orjson.loads(proc.stdout) == {"index": NAME, "count": len(new)}
    assert "could not update the search files" in proc.stderr.decode()
    res = vcli_proc("query", NAME, "--vector", *map(repr, new[7].tolist()), "--top-k", "1", "--json")
    assert res.code == 0 and res.json["matches"][0]["id"] == "n7"
    assert vcli_proc("info", NAME, "--json").json["vectorCount"] == 8000 + len(new)


# -- read-only and missing permissions -------------------------------------------------------
WRITES = [("upsert", NAME, "--file", "-"), ("delete-vectors", NAME, "--ids", "s1"),
          ("create-metadata-index", NAME, "--property-name", "k", "--type", "string")]


def test_read_only_index_answers_and_refuses_writes(data_dir, restricted):
    make(data_dir)
    before = state(data_dir)
    folder = data_dir / NAME
    folder.chmod(0o500)
    try:
        code, out, err = restricted("info", NAME, "--json")
        assert code == 0, err
        assert orjson.loads(out)["vectorCount"] == 500
        q = vectors("s", 5, 0)[3]["values"]
        code, out, err = restricted("query", NAME, "--vector", *map(repr, q), "--top-k", "1", "--json")
        assert code == 0, err
        assert orjson.loads(out)["matches"][0]["id"] == "s3"
        for args in (("get-vectors", NAME, "--ids", "s1"), ("check", NAME)):
            code, out, err = restricted(*args)
            assert code == 0, (args, err)
        for args in WRITES:
            code, out, err = restricted(*args, input=payload(vectors("w", 3, 5)))
            assert code == 1, (args, err)
            assert one_error_line(err), (args, err)
            assert "read-only" in err or "ermission" in err, err
    finally:
        folder.chmod(0o700)
    assert state(data_dir) == before


def test_read_only_index_with_a_damaged_search_file_still_answers(data_dir, restricted):
    make(data_dir, n=2500)  # (an index of up to 2,000 vectors needs no matrix)
    folder = data_dir / NAME
    (matrix,) = folder.glob("matrix-*.manifest")
    matrix.write_bytes(matrix.read_bytes()[:100])
    folder.chmod(0o500)
    try:
        q = vectors("s", 5, 0)[4]["values"]
        code, out, err = restricted("query", NAME, "--vector", *map(repr, q), "--top-k", "1", "--json")
        assert code == 0, err
        assert orjson.loads(out)["matches"][0]["id"] == "s4"
        assert "answering from the store" in err
    finally:
        folder.chmod(0o700)
    matrix.unlink()
    folder.chmod(0o500)
    try:  # missing, and cannot be rebuilt here: just answer, quietly
        code, out, err = restricted("query", NAME, "--vector", *map(repr, q), "--top-k", "1", "--json")
        assert code == 0 and err == "", err
        assert orjson.loads(out)["matches"][0]["id"] == "s4"
    finally:
        folder.chmod(0o700)


def test_read_only_data_dir(data_dir, restricted):
    make(data_dir)
    data_dir.chmod(0o500)
    try:
        code, out, err = restricted("create", "new", "--dimensions", "3", "--metric", "cosine")
        assert code == 1 and one_error_line(err) and "cannot create index" in err, err
        code, out, err = restricted("delete", NAME, "-y")
        assert code == 1 and one_error_line(err) and "cannot delete index" in err, err
        code, out, err = restricted("list", "--json")
        assert code == 0 and [i["name"] for i in orjson.loads(out)] == [NAME]
    finally:
        data_dir.chmod(0o700)
    assert sorted(p.name for p in data_dir.iterdir()) == [NAME]


@pytest.mark.parametrize("target,mode,args", [
    ("res/store.sqlite", 0o000, ("info", NAME)),
    ("res/store.sqlite", 0o400, ("insert", NAME, "--file", "-")),
    ("res/lock", 0o400, ("insert", NAME, "--file", "-")),
    ("res", 0o000, ("get-vectors", NAME, "--ids", "s1")),
])
def test_missing_permission_is_one_clear_line(data_dir, restricted, target, mode, args):
    make(data_dir)
    before = state(data_dir)
    path = data_dir / target
    old = stat.S_IMODE(path.stat().st_mode)
    path.chmod(mode)
    try:
        code, out, err = restricted(*args, input=payload(vectors("w", 2, 6)))
    finally:
        path.chmod(old)
    assert code == 1, err
    assert one_error_line(err), err
    assert "unexpected" not in err
    assert state(data_dir) == before


# -- owner-only files ------------------------------------------------------------------------
def all_modes(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = stat.S_IMODE(os.lstat(p).st_mode)
    out["."] = stat.S_IMODE(os.stat(root).st_mode)
    return out


def test_files_and_folders_are_owner_only_even_with_umask_0(data_dir):
    old = os.umask(0)
    try:
        cat = Catalog(data_dir / "deeper")
        cat.create(NAME, DIMS, "cosine")
        with cat.open(NAME, write=True) as ix:
            ix.insert(vectors("s", Tuning().fold_rows + 10, 7))  # a matrix file
            ix.create_metadata_index("k", "string")
            ix.query(vectors("q", 1, 8)[0]["values"])
        graphs = Catalog(data_dir / "deeper", tuning=Tuning(graph_min_floats=1, graph_in_background=False))
        with graphs.open(NAME, write=True) as ix, ix.writing():  # a graph file
            ix.refresh(force=True)
    finally:
        os.umask(old)
    modes = all_modes(data_dir)
    assert {".usearch", ".sqlite", ".toml"} <= {os.path.splitext(k)[1] for k in modes}
    loose = {k: oct(m) for k, m in modes.items()
             if m != (0o700 if (data_dir / k).is_dir() else 0o600)}
    assert loose == {}


def test_an_index_that_outgrows_the_memory_says_so_once(vcli, tmp_path):
    """The write whose new matrix takes the index past the machine's memory (here set to what 40
    vectors of 8 dimensions need) says so, naming the live service; writes before and after it
    do not."""
    small = Tuning(memory_bytes=40 * (6 * 8 + 162), fold_rows=10)
    assert vcli("create", "big", "--dimensions", "8", "--metric", "cosine").code == 0
    rng = np.random.default_rng(0)

    def insert(start: int, count: int):
        path = tmp_path / "in.ndjson"
        path.write_bytes(b"".join(orjson.dumps({"id": f"v{i}", "values": rng.standard_normal(8).tolist()}) + b"\n"
                                  for i in range(start, start + count)))
        run = vcli("insert", "big", "--file", path, tuning=small)
        assert run.code == 0, run.err
        return run.err

    assert "vcli push" not in insert(0, 30)  # 30 vectors: within the memory
    said = insert(30, 20)  # 50: past it
    assert "more than the" in said and "vcli push" in said and said.count("vcli push") == 1
    assert "vcli push" not in insert(50, 20)  # already past it: said once
