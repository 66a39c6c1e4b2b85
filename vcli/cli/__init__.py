"""The ``vcli`` command line: a thin skin over ``vcli.engine``.

Each command parses its options, makes one call into the engine and hands the result to
``vcli.render``. Commands are listed in wrangler's order.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import NoReturn

import typer
from typer.core import TyperGroup

from . import _fastparams, check, config_cmd, export, indexes, metadata, serve, vectors

_fastparams.install()  # plain option values without pydantic: see _fastparams.py


class OrderedGroup(TyperGroup):
    ORDER = (
        "create", "delete", "get", "list", "list-vectors", "query", "insert", "upsert",
        "get-vectors", "delete-vectors", "info", "create-metadata-index", "list-metadata-index",
        "delete-metadata-index",
    )

    def list_commands(self, ctx):
        names = list(self.commands)
        rank = {n: i for i, n in enumerate(self.ORDER)}
        return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


app = typer.Typer(
    name="vcli",
    cls=OrderedGroup,
    help="Cloudflare Vectorize on your own disk: the `wrangler vectorize` commands, locally.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for sub in (indexes.app, vectors.app, metadata.app, serve.app, config_cmd.app, check.app, export.app):
    for info in sub.registered_commands:
        app.registered_commands.append(info)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"vcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-v", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """Cloudflare Vectorize on your own disk: the `wrangler vectorize` commands, locally."""


def main() -> NoReturn:
    # Typer builds the Click command of every registered command (signatures, type hints) on each
    # run, ~30 ms of CPU at start. A run of one known command needs only that one. (Shell
    # completion and `vcli --help` or a mistyped name still see them all.)
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    every = app.registered_commands
    if not os.environ.get("_VCLI_COMPLETE"):
        only = [c for c in every if (c.name or c.callback.__name__.replace("_", "-")) == name]
        app.registered_commands = only or every
    try:
        app(prog_name="vcli")
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        app.registered_commands = every
    _leave(code)


def _leave(code: object) -> NoReturn:
    """Exit once the output is out, without the interpreter's teardown: every file and lock is
    closed by then, and freeing NumPy, usearch's mapped graph and every module cost a query of a
    1M-vector index ~50 ms. The ordinary exit is kept when something may still need it: another
    thread still running, or coverage measuring."""
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
