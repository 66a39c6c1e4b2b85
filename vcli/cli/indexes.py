"""Commands on whole indexes: create, list, get, info, delete."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from .. import render
from ._common import DataDir, IndexName, JsonFlag, VectorizeCommand, catalog, run

app = typer.Typer()
PRESET_HELP = (
    "An embedding model's preset: @cf/baai/bge-small-en-v1.5, @cf/baai/bge-base-en-v1.5, "
    "@cf/baai/bge-large-en-v1.5, openai/text-embedding-ada-002, cohere/embed-multilingual-v2.0."
)


def _index_rows(configs):
    return [
        (c.name, c.dimensions, c.metric, c.description or "", c.created_on, c.modified_on)
        for c in configs
    ]


INDEX_COLUMNS = ("name", "dimensions", "metric", "description", "created", "modified")


@app.command("create", cls=VectorizeCommand)
@run
def create(
    name: IndexName,
    dimensions: Annotated[
        Optional[int], typer.Option(help="Dimensions of the vectors (1-1536).", show_default=False)
    ] = None,
    metric: Annotated[
        Optional[str],
        typer.Option(help="Distance metric: euclidean, cosine or dot-product.", show_default=False),
    ] = None,
    preset: Annotated[Optional[str], typer.Option(help=PRESET_HELP, show_default=False)] = None,
    description: Annotated[
        Optional[str], typer.Option(help="A description of the index.", show_default=False)
    ] = None,
    json: JsonFlag = False,
    data_dir: DataDir = None,
) -> None:
    """Create a Vectorize index."""
    cfg = catalog(data_dir).create(name, dimensions, metric, preset=preset, description=description)
    if json:
        render.emit_json(cfg.to_json())
        return
    if preset:
        render.line(f"Configuring index based on the embedding model {preset}.")
    render.line(
        f"Successfully created a new Vectorize index: '{cfg.name}' "
        f"({cfg.dimensions} dimensions, {cfg.metric})."
    )


@app.command("list", cls=VectorizeCommand)
@run
def list_(json: JsonFlag = False, data_dir: DataDir = None) -> None:
    """List your Vectorize indexes."""
    configs = catalog(data_dir).list()
    if json:
        render.emit_json([c.to_json() for c in configs])
    elif not configs:
        render.note(
            "You haven't created any indexes yet.\n"
            "Use 'vcli create <name> --dimensions N --metric cosine' to create one."
        )
    else:
        render.table(INDEX_COLUMNS, _index_rows(configs))


@app.command("get", cls=VectorizeCommand)
@run
def get(name: IndexName, json: JsonFlag = False, data_dir: DataDir = None) -> None:
    """Get a Vectorize index by name."""
    cfg = catalog(data_dir).config(name)
    if json:
        render.emit_json(cfg.to_json())
    else:
        render.table(INDEX_COLUMNS, _index_rows([cfg]))


@app.command("info", cls=VectorizeCommand)
@run
def info(name: IndexName, json: JsonFlag = False, data_dir: DataDir = None) -> None:
    """Get additional details about the index."""
    with catalog(data_dir).open(name) as index:
        result = index.info()
    if json:
        render.emit_json(result.to_json())
    else:
        render.table(
            ("dimensions", "vectorCount", "processedUpToMutation", "processedUpToDatetime"),
            [(result.dimensions, result.vector_count, result.processed_up_to_mutation,
              result.processed_up_to_datetime)],
        )


@app.command("delete", cls=VectorizeCommand)
@run
def delete(
    name: IndexName,
    force: Annotated[bool, typer.Option("--force", "-y", help="Skip confirmation.")] = False,
    json: JsonFlag = False,
    data_dir: DataDir = None,
) -> None:
    """Delete a Vectorize index."""
    cat = catalog(data_dir)
    cat.config(name)  # fail early, before asking, when it does not exist
    if not force and sys.stdin.isatty():
        if not typer.confirm(f"OK to delete the index '{name}'?", err=True):
            render.note("Deletion cancelled.")
            return
    cat.delete(name)
    if json:
        render.emit_json({"deleted": name})
    else:
        render.line(f"Deleted index {name}")
