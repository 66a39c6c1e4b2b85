"""``vcli config``: the effective settings and where each one came from."""

from __future__ import annotations

import typer

from .. import render
from ..engine.settings import load_settings
from ..render import Reply, Table, Text
from ._common import DataDir, JsonFlag, VectorizeCommand, run

app = typer.Typer()


@app.command("config", cls=VectorizeCommand, short_help="Show the settings and where each came from.")
@run
def config(json: JsonFlag = False, data_dir: DataDir = None) -> None:
    """Show the effective settings and where each came from (default, user config.toml, project
    vcli.toml, VCLI_* variable or flag)."""
    settings = load_settings({"data_dir": data_dir})
    user, project = settings.user_file, settings.project_file
    render.show(Reply(settings, [
        Table(("setting", "value", "from"), [(name, settings.shown(name), s.describe()) for name, s in settings.settings.items()]),
        Text(f"user config file: {user}{'' if user.is_file() else ' (none)'}"),
        Text(f"project config file: {project if project else 'none (no vcli.toml here or above)'}"),
    ]), json)
