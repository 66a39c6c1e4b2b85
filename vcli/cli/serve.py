"""``vcli serve``: the Vectorize v2 REST API on the local indexes, for wrangler and other clients."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from .. import render
from ._common import DataDir, VectorizeCommand, catalog, run

app = typer.Typer()


@app.command("serve", cls=VectorizeCommand, short_help="Serve the REST API and Workers binding.")
@run
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on. Other than loopback, --token is required.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")] = 8787,
    token: Annotated[
        Optional[str],
        typer.Option(envvar="VCLI_SERVE_TOKEN", show_default=False,
                     help="Require Authorization: Bearer TOKEN on every request."),
    ] = None,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request on stderr.")] = False,
    apply_delay: Annotated[Optional[str], typer.Option(
        "--apply-delay", show_default=False,
        help="Acknowledge writes at once and apply them SECONDS later, in order, as the live service "
        "does (median under 30 s, p99 under 2 min: --apply-delay 30 --apply-jitter 90), so a test that "
        "reads its own writes too early fails here as in production; default 0.")] = None,
    apply_jitter: Annotated[Optional[str], typer.Option(
        "--apply-jitter", show_default=False,
        help="With --apply-delay: up to SECONDS more at random per write, so tests cannot rely on an "
        "exact delay.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Serve the Vectorize v2 REST API on your indexes (point wrangler's CLOUDFLARE_API_BASE_URL here)."""
    from ..engine.settings import load_settings
    from ..server.run import serve as serve_api

    token = token or os.environ.get("VCLI_SERVE_TOKEN")  # also from an --env-file (read after the flags)
    settings = load_settings({"data_dir": data_dir, "apply_delay": apply_delay, "apply_jitter": apply_jitter})
    serve_api(catalog(data_dir), host=host, port=port, token=token or None, access_log=access_log,
              apply_delay=settings.value("apply_delay"), apply_jitter=settings.value("apply_jitter"),
              notify=render.note)
