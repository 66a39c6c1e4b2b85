"""Start-up speed: every trick the CLI plays to start fast, in one place, each with what it buys.

A one-shot ``vcli query`` is mostly process start: importing NumPy (~105 ms), typer (~110 ms),
usearch (~40 ms) and vcli itself (~35 ms) on the 2-core machine of docs/performance.md. vcli owns
none of those libraries, so what it can do is not import what a command does not use, and not
pay for teardown. Each trick below is measured by ``benchmarks/run.py`` and guarded by a test; all
use Typer and Click only through their public classes (no private module of typer is imported), so
a new Typer either keeps them working or fails those tests. The engine's own trick (usearch
without its downloads and progress bars) is ``vcli/engine/_usearch.py``.

1. ``PlainOption``/``PlainArgument``: typer 0.29 converts every option value through a pydantic
   ``TypeAdapter``; importing pydantic and building adapters cost 0.17-0.30 s of CPU here, as
   much as NumPy and usearch together. vcli's options are plain ``str``, ``int``, ``bool``,
   ``list[str]`` and ``Path``. The command and group classes given with ``cls=``
   (``VectorizeCommand``, ``FlagGroup``) make the parameters their ``get_params`` gives these
   subclasses of typer's ``TyperOption``/``TyperArgument``, whose ``process_value`` (Click's
   extension point) converts those exactly as the adapters would (same results, same messages,
   exit code 2); anything else goes to typer's own conversion. Tests:
   ``test_imports.py::test_a_query_imports_what_it_needs_and_not_pydantic``,
   ``test_plain_int_options_convert_as_typer_would`` and
   ``test_every_command_converts_its_plain_options_itself``.
2. ``only_the_command``: typer builds the Click command of every registered command on each run
   (~30 ms of CPU); a run of one known command needs only that one. Help, typos and completion
   still see all. Test: ``test_imports.py::test_only_the_command_run_is_built_and_the_others_stay_reachable``.
3. ``leave``: once the output is flushed, exit without the interpreter's teardown. Freeing NumPy,
   usearch's mapped graph and every module cost a query of a 1M-vector index ~50 ms (A/B medians
   619 -> 553 ms). So the engine must close every file, lock and worker before a command returns
   (it does: each is a context manager). The ordinary exit is kept when another thread still runs
   or coverage measures. Tests: every subprocess test checks exit codes.
4. ``vcli.engine`` loads its public names when first used (a module ``__getattr__``), so the CLI
   modules can import what they need of the engine (limits, checks, records) without importing
   all of it: ``vcli --help`` imports no catalog, index or store (~20 ms). Test:
   ``test_imports.py::test_help_builds_no_engine``.

Besides, NumPy is imported only inside the functions that need it, so ``vcli --help``, ``list``,
``info`` and a small write never load it (``test_imports.py``); such lazy imports are marked
``# lazy:`` where they stand. Records are ``NamedTuple``s rather than dataclasses (~1.5 ms each
at every start), and temporary names come from ``os.urandom`` rather than ``secrets`` (OpenSSL's
hashes, ~10 ms).
"""

from __future__ import annotations

import os
import re
import stat
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer.core import TyperArgument, TyperOption

from .errors import ExitCode

# == 1. option values without pydantic ============================================================
_INT = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0*)?")  # what pydantic's lax int accepts from text
INT_ERROR = "Input should be a valid integer, unable to parse string as an integer"
_NOT_PLAIN = object()
_INVALID_INT = object()


class PlainOption(TyperOption):
    """A typer option that converts plain values without pydantic, the rest as typer does."""

    def process_value(self, ctx: Any, value: Any) -> Any:
        return process_plain(self, super().process_value, ctx, value)


class PlainArgument(TyperArgument):
    """A typer argument that converts plain values without pydantic, the rest as typer does."""

    def process_value(self, ctx: Any, value: Any) -> Any:
        return process_plain(self, super().process_value, ctx, value)


def process_plain(param: Any, typer_process: Any, ctx: Any, value: Any) -> Any:
    """Click's ``process_value`` for ``param``: the value converted (plain values here, the rest by
    ``typer_process``), checked as present if required, and given to the callback."""
    got = plain_value(param, value)
    if got is _INVALID_INT:
        raise typer.BadParameter(INT_ERROR, ctx=ctx, param=param)
    if got is _NOT_PLAIN or (param.required and param.value_is_missing(got)):
        return typer_process(ctx, value)
    return got if param.callback is None else param.callback(ctx, param, got)


PLAIN = {TyperOption: PlainOption, TyperArgument: PlainArgument}


def plain_params(params: list) -> list:
    """``params``, typer's parameters among them made plain-value converting ones (in place: they
    keep every attribute typer gave them). Commands call it from Click's ``get_params``, which
    gives the parameters a run parses, typer's own completion options included."""
    for p in params:
        if type(p) in PLAIN:
            p.__class__ = PLAIN[type(p)]
    return params


def plain_value(param: Any, value: Any) -> Any:
    """``value`` of ``param`` converted as typer would, ``_INVALID_INT``, or ``_NOT_PLAIN``."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None:  # pragma: no cover - another typer: its own conversion
        return _NOT_PLAIN
    multiple = param.multiple or param.nargs == -1
    if value is None:
        return () if multiple else None
    if multiple and isinstance(value, str):
        return _NOT_PLAIN  # typer's "Value must be an iterable."
    info = descriptor.parameter_info
    if descriptor.annotation is Path and isinstance(value, str) and info.parser is None and info.path_type is None:
        return checked_path(value, info)
    return convert(descriptor.annotation, info, descriptor, value)


def checked_path(value: str, info: Any) -> Any:
    """``Path(value)``, checked as typer checks a ``Path`` option (``exists``, ``file_okay``,
    ``dir_okay``, ``readable``, ``writable``), or ``_NOT_PLAIN`` when it would resolve the path or
    accept ``-``."""
    if info.resolve_path or (info.file_okay and info.allow_dash and value == "-"):
        return _NOT_PLAIN
    label = "file" if info.file_okay and not info.dir_okay else "dir" if info.dir_okay and not info.file_okay else "path"
    shown = repr(typer.format_filename(value))
    try:
        st = os.stat(value)
    except OSError:
        if info.exists:
            raise typer.BadParameter(f"{label} {shown} does not exist.") from None
        return Path(value)
    for wrong, why in ((not info.file_okay and stat.S_ISREG(st.st_mode), "is a file"),
                       (not info.dir_okay and stat.S_ISDIR(st.st_mode), "is a directory"),
                       (info.readable and not os.access(value, os.R_OK), "is not readable"),
                       (info.writable and not os.access(value, os.W_OK), "is not writable")):
        if wrong:
            raise typer.BadParameter(f"{label} {shown} {why}.")
    return Path(value)


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


# == 2. build only the command that runs ==========================================================
def only_the_command(commands: list, argv: list[str]) -> list:
    """The registered typer commands to build for a run with ``argv``: the one it names, or all
    (for ``--help``, a mistyped name, or shell completion)."""
    name = argv[1] if len(argv) > 1 else ""
    if os.environ.get("_VCLI_COMPLETE"):
        return commands
    only = [c for c in commands if (c.name or c.callback.__name__.replace("_", "-")) == name]
    return only or commands


# == 3. no teardown ===============================================================================
def leave(code: object) -> NoReturn:
    """Exit with ``code`` once stdout and stderr are flushed, skipping the interpreter's teardown
    when nothing can need it."""
    if code is None:
        code = ExitCode.OK
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = ExitCode.FAILURE
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # e.g. the reader of stdout went away: what was written may be lost
        code = code or ExitCode.FAILURE
    if threading.active_count() > 1 or "coverage" in sys.modules:
        sys.exit(code)
    os._exit(code)
