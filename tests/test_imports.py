"""What each command imports decides how fast it starts: NumPy and usearch take longer to import
than the rest of vcli together. ``list``, ``info``, ``get``, ``--help`` and a small write into an
index that needs no refresh must import neither (checked with ``python -X importtime`` on the
installed ``vcli``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import ndjson, vcli_executable

HEAVY = ("numpy", "usearch", "onnxruntime", "tokenizers", "huggingface_hub")
# typer 0.29 converts option values with pydantic, which costs as much to import as NumPy and
# usearch together; vcli converts its plain options itself (vcli/startup.py), through typer's public classes.
SLOW = ("pydantic",)


def imported(*args: str, input: str | None = None) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", vcli_executable(), *args], input=input, text=True,
        capture_output=True, env=dict(os.environ), timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


def heavy(modules: set[str], names: tuple[str, ...] = HEAVY + SLOW) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in names)


@pytest.fixture
def index(vcli):
    assert vcli("create", "imp", "--dimensions", "3", "--metric", "cosine").code == 0
    rows = [{"id": str(i), "values": [i, 1.0, 2.0]} for i in range(50)]
    assert vcli("insert", "imp", "--file", "-", input=ndjson(rows)).code == 0
    return "imp"


def test_reading_commands_import_neither_numpy_nor_usearch(index):
    for args in (["list"], ["info", index], ["get", index], ["--help"], ["list-vectors", index]):
        modules = imported(*args)
        assert "vcli.cli" in modules  # the check sees vcli's own imports
        assert heavy(modules) == [], args


def test_help_builds_no_engine():
    """The CLI's modules import parts of the engine; ``vcli --help`` must not import the rest."""
    modules = imported("--help")
    assert "vcli.engine.validate" in modules  # the check sees the engine's imports
    assert not {"vcli.engine.catalog", "vcli.engine.index", "vcli.engine.store"} & modules


def test_a_small_write_imports_neither(index):
    """A one-vector upsert decides from SQLite alone that the matrix need not change."""
    modules = imported("upsert", index, "--file", "-", input=ndjson([{"id": "x", "values": [1, 2, 3]}]))
    assert heavy(modules) == []


def test_a_first_load_of_up_to_fold_rows_vectors_imports_neither(vcli, tmp_path):
    """A new index of up to ``Tuning.fold_rows`` vectors needs no matrix: a query scans its rows
    from the store, so loading 1,000 vectors costs the process start and SQLite, not NumPy (and
    the index answers at once, exactly)."""
    assert vcli("create", "first", "--dimensions", "3", "--metric", "euclidean").code == 0
    rows = [{"id": f"v{i}", "values": [i, i % 7, 1.0]} for i in range(1000)]
    assert heavy(imported("insert", "first", "--file", "-", input=ndjson(rows))) == []
    assert not list((tmp_path / "data" / "first").glob("matrix-*"))
    got = vcli("query", "first", "--vector", "500.2", "3", "1", "--top-k", "2", "--json")
    assert got.code == 0 and [m["id"] for m in got.json["matches"]] == ["v500", "v501"]


def test_the_engine_library_imports_neither():
    code = f"import sys, vcli.engine; print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_query_imports_what_it_needs_and_not_pydantic(index):
    modules = imported("query", index, "--vector", "1", "2", "3", "--top-k", "2", "--json")
    assert heavy(modules, SLOW) == []
    assert "numpy" in modules  # the check sees the search's imports


@pytest.mark.parametrize(
    "text", ["2", " 2 ", "+2", "-3", "1_0", "2.0", "00012", "2.5", "1e3", "", "0x10", "\uff10", "\u0663", "abc"]
)
def test_plain_int_options_convert_as_typer_would(text):
    from pydantic import TypeAdapter, ValidationError

    from vcli import startup

    class Info:
        min = max = None

    class Descriptor:
        is_choice = False

    got = startup.convert(int, Info, Descriptor, text)
    try:
        want = TypeAdapter(int).validate_python(text)
    except ValidationError as exc:
        assert exc.errors()[0]["msg"] == startup.INT_ERROR
        want = startup._INVALID_INT
    assert got == want


def test_bad_numbers_and_paths_are_still_usage_errors(vcli, index, tmp_path):
    bad = vcli("query", index, "--vector", "1", "2", "3", "--top-k", "abc")
    assert bad.code == 2 and "Input should be a valid integer" in bad.err
    (tmp_path / "a-file").write_text("")
    not_a_dir = vcli("list", "--data-dir", tmp_path / "a-file")  # a path check: typer's own
    assert not_a_dir.code == 2
    assert vcli("query", index, "--vector-id", "1", "--top-k", "2.0", "--json").json["count"] == 2


def test_only_the_command_run_is_built_and_the_others_stay_reachable(vcli_proc, index):
    """``main`` builds only the command it runs; help, typos and completion still see all."""
    assert "Usage: vcli query [OPTIONS]" in vcli_proc("query", "--help").out
    typo = vcli_proc("qeury", index)
    assert typo.code == 2 and "Did you mean 'query'?" in typo.err
    listing = vcli_proc("--help").out
    assert "export" in listing and "create-metadata-index" in listing
    assert vcli_proc("info", index, "--json").json["vectorCount"] == 50


def test_usearch_is_imported_without_tqdm_and_urllib_request():
    """Those cost a one-shot query ~80 ms; stand-ins replace them while usearch is imported, and
    the real modules still load for whoever asks for them afterwards."""
    code = (
        "import sys; from vcli.engine import graph\n"
        "print(sorted(m for m in ('tqdm', 'urllib.request', 'http.client', 'ssl') if m in sys.modules))\n"
        "v = graph.np.float32([1, 2, 3]); index = graph.new_index(3, 'cosine'); index.add(7, v)\n"
        "print(int(index.search(v, 1).keys[0]))\n"
        "import urllib.request, usearch; print(usearch.urllib.request.urlopen is urllib.request.urlopen)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:3] == ["[]", "7", "True"]


def test_queries_of_an_index_with_a_matrix_do_not_import_numpy_ma(vcli):
    """numpy.ma costs ~20 ms to import: neither a query over deletes nor one whose filter matches
    too many rows to list (checked as the nearest rows are found) needs it (np.unique and np.isin
    import it; the query paths use sets and binary search instead)."""
    assert vcli("create", "big", "--dimensions", "3", "--metric", "cosine").code == 0
    assert vcli("create-metadata-index", "big", "--property-name", "c", "--type", "string").code == 0
    rows = [{"id": f"v{i}", "values": [1.0, i % 13, i % 7], "metadata": {"c": f"c{i % 10}"}} for i in range(3000)]
    assert vcli("insert", "big", "--file", "-", input=ndjson(rows)).code == 0
    assert vcli("delete-vectors", "big", "--ids", "v1", "v2", "v3").code == 0
    for extra in ([], ["--filter", '{"c": {"$ne": "c3"}}']):
        modules = imported("query", "big", "--vector", "1", "2", "3", "--top-k", "3", "--json", *extra)
        assert "numpy" in modules and "numpy.ma" not in modules, extra


def test_every_command_converts_its_plain_options_itself():
    """vcli/startup.py's plain conversion reaches every parameter of every command (through the
    command classes' ``get_params``) and handles each one's default itself: on a Typer where it
    no longer could, this fails instead of pydantic coming back unnoticed."""
    import typer.main

    from vcli import startup
    from vcli.cli import app

    commands = [typer.main.get_command(app)]
    for group in commands:  # and the groups' commands, as they are found
        commands += getattr(group, "commands", {}).values()
    assert len(commands) > 20
    for command in commands:
        ctx = command.make_context("vcli", ["--help"], resilient_parsing=True)
        for p in command.get_params(ctx):
            if p.name == "help":
                continue
            assert type(p) in (startup.PlainOption, startup.PlainArgument), (command.name, p.name)
            got = startup.plain_value(p, p.get_default(ctx))
            info = p.type_descriptor.parameter_info
            ranged_or_choice = info.min is not None or info.max is not None or p.type_descriptor.is_choice
            assert (got is startup._NOT_PLAIN) == ranged_or_choice, (command.name, p.name)  # those: typer's


def test_paths_are_checked_as_typer_checks_them_without_pydantic(tmp_path):
    (tmp_path / "a-file").write_text("")
    assert heavy(imported("list", "--data-dir", str(tmp_path / "d"))) == []
    proc = subprocess.run([vcli_executable(), "list", "--data-dir", "a-file"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Invalid value for '--data-dir': dir 'a-file' is a file." in proc.stderr
