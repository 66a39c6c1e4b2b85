"""Fixtures: every test gets its own data dir and config dir; nothing touches the real home.

``vcli(...)`` runs the CLI in-process (Typer's CliRunner; ``tuning=Tuning(...)`` gives the engine
other thresholds, as a program running the CLI may); ``vcli_proc(...)`` runs the installed ``vcli``
executable in a subprocess. Both return a ``helpers.Run`` with ``code``, ``out``, ``err`` and
``json`` (stdout parsed as JSON). What tests share besides fixtures is in ``helpers.py``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import GOLDEN, NODE_PROJECT, Run, ndjson, npm_ci, vcli_executable
from typer.testing import CliRunner

from vcli.cli import app


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "data"
    monkeypatch.setenv("VCLI_DATA_DIR", str(path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config-home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    monkeypatch.delenv("VCLI_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    return path


@pytest.fixture(scope="session")
def click_app():
    """The Click command tree, built once: Typer would rebuild it on every invocation."""
    import typer.main

    return typer.main.get_command(app)


@pytest.fixture
def vcli(click_app, monkeypatch):
    import typer.testing

    monkeypatch.setattr(typer.testing, "_get_command", lambda _app: click_app)
    runner = CliRunner()

    def run(*args: str, input: str | bytes | None = None, tuning=None) -> Run:
        result = runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=True, obj=tuning)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Run(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def vcli_proc():
    exe = vcli_executable()

    def run(*args: str, input: str | bytes | None = None, env: dict | None = None, timeout: float = 120) -> Run:
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            [exe, *map(str, args)], input=data, capture_output=True, timeout=timeout,
            env={**os.environ, **(env or {})},
        )
        return Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    return run


@pytest.fixture
def golden(vcli, tmp_path):
    """A cosine index "golden" holding the five vectors of the Vectorize launch post."""
    def make(metric: str = "cosine", name: str = "golden") -> str:
        assert vcli("create", name, "--dimensions", "3", "--metric", metric).code == 0
        path = tmp_path / f"{name}.ndjson"
        path.write_text(ndjson({"id": i, "values": v} for i, v in GOLDEN))
        assert vcli("insert", name, "--file", path).code == 0
        return name

    return make


@pytest.fixture(scope="session")
def node_packages() -> Path:
    """``tests/workers/node_modules``: the pinned toolchain (``npm_ci``)."""
    return npm_ci(NODE_PROJECT)
