"""The ``vcli`` command line: a thin skin over ``vcli.engine``.

Each command parses its options, makes one call into the engine and hands the result to
``vcli.render.show``. Commands are listed in wrangler's order. How it starts fast: ``vcli.startup``.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from .. import startup
from ..errors import ExitCode
from . import _common, check, config_cmd, export, indexes, metadata, models, serve, sync, vectors, workers


class OrderedGroup(_common.FlagGroup):
    """vcli's commands in wrangler's order, each listed with its one-line ``short_help``."""

    ORDER = (
        "create", "delete", "get", "list", "list-vectors", "query", "insert", "upsert",
        "get-vectors", "delete-vectors", "info", "create-metadata-index", "list-metadata-index",
        "delete-metadata-index",
    )

    def parse_args(self, ctx, args):
        args = _common.globals_after_command(list(args))
        return super().parse_args(ctx, _common.boolean_forms(args, _common.false_flags(self.params)))

    def list_commands(self, ctx):
        names = list(self.commands)
        rank = {n: i for i, n in enumerate(self.ORDER)}
        return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


app = typer.Typer(
    name="vcli",
    cls=OrderedGroup,
    help="Cloudflare Vectorize on your own disk: `wrangler vectorize`, locally.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for sub in (indexes.app, vectors.app, metadata.app, serve.app, workers.app, config_cmd.app, check.app, export.app,
            sync.app, models.app):
    for info in sub.registered_commands:
        app.registered_commands.append(info)
app.add_typer(models.models_app, name="models")


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"vcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", "-v", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """Cloudflare Vectorize on your own disk: `wrangler vectorize`, locally."""
    _common.TUNING.set(ctx.obj)  # a program running the CLI in-process may give the engine's tuning


def main() -> NoReturn:
    every = app.registered_commands
    app.registered_commands = startup.only_the_command(every, sys.argv)
    try:
        app(prog_name="vcli")
        code: object = ExitCode.OK
    except SystemExit as exc:
        code = exc.code
    finally:
        app.registered_commands = every
    startup.leave(code)
