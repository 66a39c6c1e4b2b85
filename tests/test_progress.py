"""Progress on stderr: a count and a rate while insert/upsert run on a terminal; nothing at all in
a pipe or a CI log."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from helpers import ndjson, vcli_executable

from vcli import render

ROWS = ndjson({"id": f"v{i}", "values": [i, 1.0]} for i in range(1200))


@pytest.fixture
def index(vcli):
    assert vcli("create", "p", "--dimensions", "2", "--metric", "euclidean").code == 0
    return "p"


def test_nothing_extra_when_stderr_is_not_a_terminal(vcli_proc, vcli, index):
    result = vcli_proc("insert", index, "--file", "-", "--batch-size", "500", input=ROWS)
    assert result.code == 0 and result.err == ""
    assert result.out.startswith("Successfully inserted 1200 vectors")
    as_json = vcli("upsert", index, "--file", "-", "--batch-size", "500", "--json", input=ROWS)
    assert as_json.err == "" and as_json.json == {"index": "p", "count": 1200}
    exported = vcli("export", index)
    assert exported.code == 0 and exported.err == "" and exported.out.count("\n") == 1200


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_a_terminal_gets_count_and_rate_and_stdout_stays_clean(index):
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [vcli_executable(), "insert", index, "--file", "-", "--batch-size", "500", "--json"],
            input=ROWS.encode(), stdout=subprocess.PIPE, stderr=follower, timeout=120,
            env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
        )
    finally:
        os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal has no writer left
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    text = shown.decode(errors="replace")
    assert proc.returncode == 0
    assert proc.stdout.decode() == '{\n  "index": "p",\n  "count": 1200\n}\n'
    assert "Inserting" in text and "1,200 vectors" in text and "vectors/s" in text


def test_progress_callback_draws_counts_on_a_terminal(monkeypatch):
    class FakeTerminal(io.StringIO):
        def isatty(self):
            return True

    err = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", err)
    with render.progress("upserting") as advance:
        assert advance is not None
        for count in (500, 1000, 1234):
            advance(count)
    assert "1,234 vectors" in err.getvalue() and "upserting" in err.getvalue()


def test_progress_is_none_off_a_terminal(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with render.progress("inserting") as advance:
        assert advance is None
    assert err.getvalue() == ""


def test_engine_reports_running_counts(tmp_path):
    from vcli.engine import open_catalog

    seen = []
    with open_catalog(tmp_path).open_or_create("c", dimensions=2, metric="cosine") as idx:
        idx.upsert(({"id": str(i), "values": [1, i]} for i in range(25)), batch_size=10, progress=seen.append)
        idx.upsert_arrays(["x", "y", "z"], [[1, 0], [0, 1], [1, 1]], batch_size=2, progress=seen.append)
    assert seen == [10, 20, 25, 2, 3]
