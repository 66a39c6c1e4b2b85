"""Start-up speed: every trick vcli plays to start fast, in one place, each with what it buys.

A one-shot ``vcli query`` is mostly process start: importing NumPy (~105 ms), typer (~110 ms),
usearch (~40 ms) and vcli itself (~35 ms) on the 2-core machine of docs/performance.md. vcli owns
none of those libraries, so what it can do is not import what a command does not use, and not
pay for teardown. Each trick below is measured by ``benchmarks/run.py`` and guarded by a test:

1. ``import_usearch``: usearch without tqdm and ``urllib.request``, which it imports for progress
   bars and binary downloads vcli never uses (~50 ms and ~30 ms with ``http``, ``email`` and
   ``ssl``). Test: ``tests/test_imports.py::test_usearch_is_imported_without_tqdm_and_urllib_request``.
2. ``install_fast_params``: typer 0.29 converts every option value through a pydantic
   ``TypeAdapter``; importing pydantic and building adapters cost 0.17-0.30 s of CPU here, as
   much as NumPy and usearch together. vcli's options are plain ``str``, ``int``, ``bool``,
   ``list[str]`` and ``Path``; those are converted here exactly as the adapters would (same
   results, same messages, exit code 2), and anything else goes to typer's own conversion.
   Tests: ``test_imports.py::test_a_query_imports_what_it_needs_and_not_pydantic`` and
   ``test_plain_int_options_convert_as_typer_would``.
3. ``only_the_command``: typer builds the Click command of every registered command on each run
   (~30 ms of CPU); a run of one known command needs only that one. Help, typos and completion
   still see all. Test: ``test_imports.py::test_only_the_command_run_is_built_and_the_others_stay_reachable``.
4. ``leave``: once the output is flushed, exit without the interpreter's teardown. Freeing NumPy,
   usearch's mapped graph and every module cost a query of a 1M-vector index ~50 ms (A/B medians
   619 -> 553 ms). So the engine must close every file, lock and worker before a command returns
   (it does: each is a context manager). The ordinary exit is kept when another thread still runs
   or coverage measures. Tests: every subprocess test checks exit codes.

5. ``vcli.engine`` loads its public names when first used (a module ``__getattr__``), so the CLI
   modules can import what they need of the engine (limits, checks, records) without importing
   all of it: ``vcli --help`` imports no catalog, index or store (~20 ms). Test:
   ``test_imports.py::test_help_builds_no_engine``.

Besides, NumPy is imported only inside the functions that need it, so ``vcli --help``, ``list``,
``info`` and a small write never load it (``test_imports.py``); such lazy imports are marked
``# lazy:`` where they stand. Records are ``NamedTuple``s rather than dataclasses (~1.5 ms each
at every start), and temporary names come from ``os.urandom`` rather than ``secrets`` (OpenSSL's
hashes, ~10 ms).

Nothing here is imported at start but this module's own small header; typer is imported only by
the functions that patch it.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import types
from pathlib import Path
from typing import Any, NoReturn


# == 1. usearch without its downloads and progress bars ==========================================
def import_usearch():
    """Import ``usearch.index`` with stand-ins for tqdm and ``urllib.request`` in ``sys.modules``
    while it loads; each stand-in loads the real module only if it is ever used, and both leave
    ``sys.modules`` at once, so nobody else sees them."""
    if "usearch" in sys.modules:
        from usearch import index
        return index

    def tqdm(*args, **kwargs):
        from tqdm import tqdm as real

        return real(*args, **kwargs)

    def request_attribute(name):
        import importlib

        return getattr(importlib.import_module("urllib.request"), name)

    stand_ins = {"tqdm": types.ModuleType("tqdm"), "urllib.request": types.ModuleType("urllib.request")}
    vars(stand_ins["tqdm"])["tqdm"] = tqdm
    vars(stand_ins["urllib.request"])["__getattr__"] = request_attribute
    placed = [name for name in stand_ins if name not in sys.modules]
    sys.modules.update({name: stand_ins[name] for name in placed})
    try:
        from usearch import index
    except ImportError:  # a usearch that wants more of them: import it the ordinary way
        for name in placed:
            sys.modules.pop(name, None)
        from usearch import index
    finally:
        for name in placed:
            if sys.modules.get(name) is stand_ins[name]:
                del sys.modules[name]
    return index


# == 2. option values without pydantic ============================================================
_INT = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0*)?")  # what pydantic's lax int accepts from text
INT_ERROR = "Input should be a valid integer, unable to parse string as an integer"
_NOT_PLAIN = object()
_INVALID_INT = object()


def install_fast_params() -> None:
    """Replace ``typer.core.build_runtime_param`` (typer >=0.29,<0.30, as pyproject.toml allows);
    with any other typer, do nothing."""
    try:
        from typer import _coercion, core
        from typer._click.exceptions import BadParameter
        from typer._param_types import coerce_cli_path
    except ImportError:  # pragma: no cover - another typer
        return
    if not hasattr(core, "build_runtime_param") or not hasattr(_coercion, "RuntimeParam"):
        return  # pragma: no cover
    if getattr(core.build_runtime_param, "_vcli", False):
        return
    typer_build = _coercion.build_runtime_param

    class PlainRuntimeParam(_coercion.RuntimeParam):
        """``RuntimeParam.coerce`` (None and multi-value handling) with a pydantic-free
        ``_coerce_value`` for plain types. (Not a dataclass itself: making one costs ~1.5 ms.)"""

        descriptor: Any  # set in __init__ (the base class does not declare it)

        def __init__(self, parameter_info: Any, annotation: Any, descriptor: Any):
            object.__setattr__(self, "parameter_info", parameter_info)  # the base is frozen
            object.__setattr__(self, "annotation", annotation)
            object.__setattr__(self, "descriptor", descriptor)

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            info = self.parameter_info
            if (self.annotation is Path and isinstance(value, str) and info.parser is None
                    and info.path_type is None):
                # typer's adapter turns the text into a Path with pydantic, then checks it here
                return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
            converted = convert(self.annotation, info, self.descriptor, value)
            if converted is _INVALID_INT:
                raise BadParameter(INT_ERROR, ctx=ctx, param=param)
            if converted is _NOT_PLAIN:
                return typer_build(self.descriptor)._coerce_value(value, param=param, ctx=ctx)
            return converted

    def build(descriptor: Any) -> Any:
        if descriptor.file_annotation is not None:
            return typer_build(descriptor)
        return PlainRuntimeParam(descriptor.parameter_info, descriptor.annotation, descriptor)

    build._vcli = True  # type: ignore[attr-defined]
    core.build_runtime_param = build


def convert(annotation: Any, info: Any, descriptor: Any, value: Any) -> Any:
    """``value`` converted as typer's adapter would, ``_INVALID_INT``, or ``_NOT_PLAIN`` (let typer
    do it)."""
    if annotation is str and isinstance(value, str):
        return value
    if annotation is bool and isinstance(value, bool):
        return value
    if annotation is int and info.min is None and info.max is None and not descriptor.is_choice:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            text = value.strip()
            if not _INT.fullmatch(text):
                return _INVALID_INT
            return int(text.split(".")[0])
    if annotation == list[str] and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return _NOT_PLAIN


# == 3. build only the command that runs ==========================================================
def only_the_command(commands: list, argv: list[str]) -> list:
    """The registered typer commands to build for a run with ``argv``: the one it names, or all
    (for ``--help``, a mistyped name, or shell completion)."""
    name = argv[1] if len(argv) > 1 else ""
    if os.environ.get("_VCLI_COMPLETE"):
        return commands
    only = [c for c in commands if (c.name or c.callback.__name__.replace("_", "-")) == name]
    return only or commands


# == 4. no teardown ===============================================================================
def leave(code: object) -> NoReturn:
    """Exit with ``code`` once stdout and stderr are flushed, skipping the interpreter's teardown
    when nothing can need it."""
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # e.g. the reader of stdout went away: what was written may be lost
        code = code or 1
    if threading.active_count() > 1 or "coverage" in sys.modules:
        sys.exit(code)
    os._exit(code)
