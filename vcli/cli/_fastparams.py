"""Start-up speed: convert vcli's plain option values without importing pydantic.

Typer 0.29 converts every option value through a pydantic ``TypeAdapter``, so any command that
receives an option or argument (all but ``--help``) imports pydantic and builds adapters: measured
at 0.17-0.30 s of CPU here, as much as importing NumPy and usearch together, and more than the
whole budget a one-shot ``vcli query`` has over them (benchmarks/run.py). vcli's options are plain
``str``, ``int``, ``bool``, ``list[str]`` and ``Path``; this converts exactly those the way the
adapters do (same results, same error messages, exit code 2; paths are checked by typer's own
``coerce_cli_path``) and hands everything else (bounded numbers, choices, files) to typer's own
conversion, built only when such a value is given.

Installed by ``vcli.cli`` on import; it replaces ``typer.core.build_runtime_param``, which exists in
the typer versions pyproject.toml allows (>=0.29,<0.30). With any other typer it does nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_INT = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0*)?")  # what pydantic's lax int accepts from text
INT_ERROR = "Input should be a valid integer, unable to parse string as an integer"


def install() -> None:
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


_NOT_PLAIN = object()
_INVALID_INT = object()


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
