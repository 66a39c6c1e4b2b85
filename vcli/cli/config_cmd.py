"""``vcli config``: the effective settings and where each one came from."""

from __future__ import annotations

import typer

from .. import render
from ._common import DataDir, JsonFlag, VectorizeCommand, run

app = typer.Typer()


@app.command("config", cls=VectorizeCommand)
@run
def config(json: JsonFlag = False, data_dir: DataDir = None) -> None:
    """Show the effective settings and where each came from (default, user config.toml, project
    vcli.toml, VCLI_* variable or flag)."""
    from ..config import load_settings

    settings = load_settings({"data_dir": data_dir})
    if json:
        render.emit_json(settings.to_json())
        return
    render.table(
        ("setting", "value", "from"),
        [(name, s.value, s.describe()) for name, s in settings.settings.items()],
    )
    user = settings.user_file
    render.line(f"user config file: {user}{'' if user.is_file() else ' (none)'}")
    project = settings.project_file
    render.line(f"project config file: {project if project else 'none (no vcli.toml here or above)'}")
