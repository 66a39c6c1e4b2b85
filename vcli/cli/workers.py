"""``vcli workers-config``: point a Worker's Vectorize and AI bindings at ``vcli serve``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import render
from ..render import Reply, Text
from ..workers import config as workers
from ._common import JsonFlag, VectorizeCommand, run

app = typer.Typer()

PIECES = ("wrangler", "miniflare", "vitest")


@app.command("workers-config", cls=VectorizeCommand, short_help="Point a Worker's bindings at vcli serve.")
@run
def workers_config(
    config: Annotated[
        Optional[Path],
        typer.Option("--config", "-c", show_default=False,
                     help="The Worker's wrangler config (default: wrangler.json, wrangler.jsonc or wrangler.toml here)."),
    ] = None,
    url: Annotated[str, typer.Option(help="Where vcli serve listens.")] = workers.DEFAULT_URL,
    env: Annotated[str, typer.Option(
        "--env", "-e", help="The wrangler environment to write (wrangler dev --env NAME).")] = workers.DEFAULT_ENV,
    only: Annotated[
        Optional[str],
        typer.Option(show_default=False, metavar="|".join(PIECES),
                     help="Print one piece alone, ready to save: the wrangler environment, a Miniflare "
                          "module or a vitest.config.mjs (written for the Miniflare and vitest package "
                          "found in the project, said on stderr)."),
    ] = None,
    write: Annotated[bool, typer.Option("--write", help="Add the wrangler environment to the config file.")] = False,
    json: JsonFlag = False,
) -> None:
    """Write the configuration that points a Worker's Vectorize and AI bindings at vcli serve: for
    wrangler dev and getPlatformProxy (an environment using vcli's plugin), plain Miniflare and
    vitest, from the bindings in your wrangler config."""
    if only is not None and only not in PIECES:
        raise typer.BadParameter(f"expected one of {', '.join(PIECES)}, got {only!r}", param_hint="--only")
    result = workers.build(workers.read_config(workers.find_config(config, Path.cwd())), url=url, env=env)
    if write:
        workers.write(result)
    if only is not None:
        render.show(Reply(None, [Text(getattr(result, only).rstrip("\n"))], result.remarks(write)), json=False)
        return
    path = result.config.path
    names = [f"{b.name} → {b.url}" for b in result.bindings]
    names += [f"{result.ai.name} (AI) → {result.ai.url}"] if result.ai else []
    render.show(Reply(result, [
        Text(f"Bindings in {path}: {', '.join(names)} (`vcli serve` answers them there)"),
        Text(""),
        Text(f"wrangler dev --env {env} / getPlatformProxy({{ environment: \"{env}\" }}): "
             + (f"written to {path}" if write else f"add to {path} (or run again with --write)")),
        Text(result.wrangler.rstrip("\n")),
        Text(""),
        Text("Miniflare: save as vectorize.local.mjs, then use it as its first lines say"),
        Text(result.miniflare.rstrip("\n")),
        Text(""),
        Text(f"vitest ({result.toolchain.vitest.name}): save as vitest.config.mjs beside {path.name}"),
        Text(result.vitest.rstrip("\n")),
    ], result.remarks(write)), json)
