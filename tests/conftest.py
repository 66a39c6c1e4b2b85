"""Fixtures: every test gets its own data dir and config dir; nothing touches the real home.

``vcli(...)`` runs the CLI in-process (Typer's CliRunner; ``tuning=Tuning(...)`` gives the engine
other thresholds, as a program running the CLI may); ``vcli_proc(...)`` runs the installed ``vcli``
executable in a subprocess. Both return a ``helpers.Run`` with ``code``, ``out``, ``err`` and
``json`` (stdout parsed as JSON). What tests share besides fixtures is in ``helpers.py``.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from helpers import GOLDEN, NODE_PROJECT, Run, ndjson, npm_ci, vcli_executable
from typer.testing import CliRunner

from vcli.cli import app

# Markers (registered in pyproject.toml), set here from what each test uses, so that a new test file
# gets them without naming them (tests/README.md):
#   node        it runs the pinned npm toolchain (Node, wrangler, Miniflare, workerd, vitest);
#   subprocess  it runs the installed vcli, or another program, in a process of its own;
#   slow        every node test; every test that starts a process itself (the test or a
#               function-scoped fixture: a server shared by a module costs its tests nothing); and
#               the files and tests below, a second or more each (``pytest --durations=0``).
# ``pytest -m "not slow"`` is the quick loop.
NODE_NAMES = {"npm_ci", "node_packages", "NODE_PROJECT", "NODE_PROJECT_NEXT", "NODE_PROJECT_NEXT_PLUGIN"}
PROCESS_NAMES = {"subprocess", "vcli_executable", "program"}
SLOW_FILES = {
    "test_plans.py",  # every query plan on graphs of every metric
    "test_filters_property.py", "test_hostile.py",  # generated inputs by the hundred (hypothesis)
    "test_apply_delay.py",  # writes that wait out a delay
}
SLOW_TESTS = {  # (without parameters)
    "tests/test_check.py::test_damaged_graph_is_rebuilt",
    "tests/test_filters.py::test_broad_and_narrow_filters_on_a_bigger_index",
    "tests/test_embeddings.py::test_batches_split_by_texts_and_tokens_keep_the_order",
    "tests/test_fold.py::test_answers_stay_exact_over_many_folds_with_deletes_and_upserts",
}
TESTS = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        own, shared = _names_used(item)
        names = own | shared
        node = bool(names & NODE_NAMES)
        if node:
            item.add_marker("node")
        if names & PROCESS_NAMES:
            item.add_marker("subprocess")
        if node or own & PROCESS_NAMES or item.path.name in SLOW_FILES or item.nodeid.split("[")[0] in SLOW_TESTS:
            item.add_marker("slow")


def _names_used(item) -> tuple[set[str], set[str]]:
    """The names that the test and its function-scoped fixtures use, and those that its wider
    fixtures use (``_global_names``)."""
    own = set(item.fixturenames) | _global_names(getattr(item, "function", None))
    shared: set[str] = set()
    for defs in getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {}).values():
        for d in defs:
            (own if d.scope == "function" else shared).update(_global_names(d.func))
    return own, shared


def _global_names(func) -> set[str]:
    """The global (and attribute) names that ``func`` refers to, with those of its nested functions
    and of the functions and classes of tests/ that it uses, however deep."""
    names: set[str] = set()
    todo, seen = [func], set()
    while todo:
        func = inspect.unwrap(todo.pop())  # (a @contextmanager's own function)
        code = getattr(func, "__code__", None)
        if code is None or code in seen:
            continue
        seen.add(code)
        codes = [code]
        while codes:
            code = codes.pop()
            names.update(code.co_names)
            codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
            for name in code.co_names:
                value = func.__globals__.get(name)
                if not _in_tests(value):
                    continue
                if isinstance(value, type):  # its methods
                    todo += [f for f in vars(value).values() if isinstance(f, types.FunctionType)]
                elif callable(value):
                    todo.append(value)
    return names


def _in_tests(value) -> bool:
    module = sys.modules.get(getattr(value, "__module__", None) or "")
    return Path(getattr(module, "__file__", None) or "/").parent == TESTS


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
