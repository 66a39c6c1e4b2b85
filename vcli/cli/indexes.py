"""Commands on whole indexes: create, list, get, info, delete."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import render
from ..render import Reply, Table, Text
from ._common import WRANGLER, DataDir, IndexName, JsonFlag, RemoteFlag, VectorizeCommand, catalog, run

app = typer.Typer()
PRESET_HELP = (
    "An embedding model's preset: @cf/baai/bge-small-en-v1.5, @cf/baai/bge-base-en-v1.5, "
    "@cf/baai/bge-large-en-v1.5, openai/text-embedding-ada-002, cohere/embed-multilingual-v2.0."
)


def _index_table(configs) -> Table:
    return Table(("name", "dimensions", "metric", "description", "created", "modified"), [
        (c.name, c.dimensions, c.metric, c.description or "", c.created_on, c.modified_on) for c in configs
    ])


@app.command("create", cls=VectorizeCommand, short_help="Create a Vectorize index.")
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
    binding: Annotated[Optional[str], typer.Option(
        show_default=False, help="Add a binding of this name for the new index to your wrangler config "
        "(implies --update-config).")] = None,
    update_config: Annotated[bool, typer.Option(
        "--update-config", help="Add the index's binding (VECTORIZE unless --binding) to your wrangler "
        "config (-c, else wrangler.json, wrangler.jsonc or wrangler.toml here), under -e ENV when given.")] = False,
    use_remote: Annotated[bool, typer.Option(
        "--use-remote", help='With --update-config: the binding gets "remote": true.')] = False,
    json: JsonFlag = False,
    remote: RemoteFlag = False,
    data_dir: DataDir = None,
) -> None:
    """Create a Vectorize index."""
    edited = None
    if binding is not None or update_config:  # the config is edited first: a bad one changes nothing
        from ..workers import config as workers

        config, env = WRANGLER.get()
        project = workers.read_config(workers.find_config(config, Path.cwd()))
        entry = {"binding": workers.binding_name(binding), "index_name": name, **({"remote": True} if use_remote else {})}
        edited = workers.add_binding(project, entry, env)
    cfg = catalog(data_dir, remote).create(name, dimensions, metric, preset=preset, description=description)
    human = [Text(f"Configuring index based on the embedding model {preset}.")] if preset else []
    human.append(Text(f"Successfully created a new Vectorize index: '{cfg.name}' "
                      f"({cfg.dimensions} dimensions, {cfg.metric})."))
    notes = [] if len(cfg.name) > 1 else [
        f"Vectorize itself needs index names of at least 2 characters: '{cfg.name}' works here, "
        f"but `vcli push` or wrangler cannot create it on the live service"]
    if edited is not None:
        workers.save(project.path, edited)
        where = f' in its "{env}" environment' if env else ""
        notes.append(f"added the binding {entry['binding']} for '{cfg.name}' to {project.path}{where}")
    render.show(Reply(cfg, human, notes), json)


@app.command("list", cls=VectorizeCommand, short_help="List your Vectorize indexes.")
@run
def list_(json: JsonFlag = False, remote: RemoteFlag = False, data_dir: DataDir = None) -> None:
    """List your Vectorize indexes."""
    configs = catalog(data_dir, remote).list()
    human = [_index_table(configs) if configs else Text(
        "You haven't created any indexes yet.\n"
        "Use 'vcli create <name> --dimensions N --metric cosine' to create one.", err=True)]
    render.show(Reply(configs, human), json)


@app.command("get", cls=VectorizeCommand, short_help="Get a Vectorize index by name.")
@run
def get(name: IndexName, json: JsonFlag = False, remote: RemoteFlag = False, data_dir: DataDir = None) -> None:
    """Get a Vectorize index by name."""
    cfg = catalog(data_dir, remote).config(name)
    render.show(Reply(cfg, [_index_table([cfg])]), json)


@app.command("info", cls=VectorizeCommand, short_help="Get additional details about the index.")
@run
def info(name: IndexName, json: JsonFlag = False, remote: RemoteFlag = False, data_dir: DataDir = None) -> None:
    """Get additional details about the index."""
    with catalog(data_dir, remote).open(name) as index:
        result = index.info()
    render.show(Reply(result, [Table(
        ("dimensions", "vectorCount", "processedUpToMutation", "processedUpToDatetime"),
        [(result.dimensions, result.vector_count, result.processed_up_to_mutation,
          result.processed_up_to_datetime)],
    )]), json)


@app.command("delete", cls=VectorizeCommand, short_help="Delete a Vectorize index.")
@run
def delete(
    name: IndexName,
    force: Annotated[bool, typer.Option("--force", "-y", help="Skip confirmation.")] = False,
    json: JsonFlag = False,
    remote: RemoteFlag = False,
    data_dir: DataDir = None,
) -> None:
    """Delete a Vectorize index."""
    cat = catalog(data_dir, remote)
    cat.config(name)  # fail early, before asking, when it does not exist
    if not force and sys.stdin.isatty():
        if not typer.confirm(f"OK to delete the index '{name}'?", err=True):
            render.note("Deletion cancelled.")
            return
    cat.delete(name)
    render.show(Reply({"deleted": name}, [Text(f"Deleted index {name}")]), json)
