"""What every command shares: option types, the error boundary, wrangler-style array options, and
the catalog a command works on.

Options are defined once as ``Annotated`` aliases. ``VectorizeCommand`` lets ``--vector`` and
``--ids`` take several values after one flag, as wrangler does (``--vector -0.12 0.5 -3e-4``), which
Click options cannot by themselves. ``run`` is the one place where engine errors become an
``Error: …`` line and an exit code.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar

import typer
from typer.core import TyperCommand

from .. import render
from ..errors import VcliError

if TYPE_CHECKING:
    from ..engine.tuning import Tuning

F = TypeVar("F", bound=Callable[..., Any])

# Options whose values may follow one flag; True means the values are numbers (so "-0.5" is a
# value, not an option).
ARRAY_OPTIONS = {"--vector": True, "--ids": False}
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(inf|infinity|nan)", re.I)


def expand_array_options(args: list[str]) -> list[str]:
    """Rewrite ``--vector 1 -2 3`` as ``--vector=1 --vector=-2 --vector=3``."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            out.append(arg)
            out.extend(args[i:])
            break
        if arg not in ARRAY_OPTIONS:
            out.append(arg)
            continue
        numeric = ARRAY_OPTIONS[arg]
        values = []
        while i < len(args):
            nxt = args[i]
            if nxt.startswith("-") and nxt != "-" and not (numeric and _NUMBER.fullmatch(nxt)):
                break
            values.append(nxt)
            i += 1
        out.extend(f"{arg}={v}" for v in values) if values else out.append(arg)
    return out


class VectorizeCommand(TyperCommand):
    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_array_options(list(args)))


def run(fn: F) -> F:
    """The error boundary: VcliError → ``Error: …`` and its exit code; Ctrl-C → 130; anything
    unexpected → one line (a traceback only with ``VCLI_DEBUG=1``)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VcliError as exc:
            render.show_notes(exc.notes)
            render.error(exc.message)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            # ``errors.Interrupted`` says so when the write had already been saved.
            render.error(getattr(exc, "message", None)
                         or "interrupted; the index is as it was before this command")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except OSError as exc:
            if os.environ.get("VCLI_DEBUG"):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            render.error(f"{where}{exc.strerror or exc}")
            raise typer.Exit(1) from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if os.environ.get("VCLI_DEBUG"):
                raise
            if type(exc).__module__ == "sqlite3":  # the store said no outside a write
                render.error(f"the index store could not be read: {exc} (run `vcli check` on it)")
                raise typer.Exit(1) from None
            render.error(f"unexpected {type(exc).__name__}: {exc} (run with VCLI_DEBUG=1 for details)")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


# The engine's tuning for this run: the Click context object when a program that runs the CLI
# in-process gives one (``app(obj=Tuning(...))``, as tests do), else the defaults.
TUNING: ContextVar[Tuning | None] = ContextVar("vcli_tuning", default=None)  # set by the root callback


def catalog(data_dir: Optional[Path], remote: bool = False):
    """The configured catalog (``--data-dir`` > ``VCLI_*`` > vcli.toml > config.toml > defaults);
    with ``remote``, the account's indexes on the live service instead (``vcli.remote``)."""
    if remote:
        return remote_catalog(data_dir)
    from ..engine.catalog import open_catalog  # lazy: ``vcli --help`` opens no catalog

    return open_catalog(data_dir, tuning=TUNING.get())


def remote_catalog(data_dir: Optional[Path] = None):
    from ..engine.settings import load_settings
    from ..remote import RemoteCatalog, Target

    return RemoteCatalog(Target.from_settings(load_settings({"data_dir": data_dir})))


def wait_for(index, mutation_id: str, wait: bool, timeout: int) -> None:
    """``--wait``: return once the index shows the write applied (at once for a local index)."""
    if wait and mutation_id:
        index.wait(mutation_id, timeout)


IndexName = Annotated[str, typer.Argument(help="The name of the index.", show_default=False)]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout, nothing else.")]
RemoteFlag = Annotated[bool, typer.Option(
    "--remote", help="Run against the live Vectorize service (CLOUDFLARE_API_TOKEN, CLOUDFLARE_ACCOUNT_ID; "
    "see vcli config).")]
WaitFlag = Annotated[bool, typer.Option(
    "--wait", help="Return only once the index shows the write applied (on the service it is "
    "applied a few seconds later; a local write at once).")]
WaitTimeout = Annotated[int, typer.Option(
    "--wait-timeout", help="Seconds --wait waits at most before giving up (the write still happens).")]
DataDir = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        help="Folder holding the indexes (default: $VCLI_DATA_DIR, else data_dir in vcli.toml "
        "or config.toml, else the user data dir; see vcli config).",
        show_default=False,
        file_okay=False,
    ),
]
