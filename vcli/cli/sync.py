"""Whole indexes between this machine and the live service: push, pull, diff (``vcli.remote.sync``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .. import render
from ..errors import ExitCode
from ..render import Reply, Table, Text
from ._common import DataDir, JsonFlag, VectorizeCommand, WaitTimeout, catalog, remote_catalog, run

app = typer.Typer()
REMOTE_PREFIX = "remote:"
SHOWN = 20  # ids of each kind a human diff lists

PUSH_HELP = """Copy a local index to the live service: create the remote index when it is missing
(same dimensions, metric, description, then the metadata indexes, before any vector), refuse one
with another configuration, upsert every vector, wait until the service has applied them, and check
counts and a sample. Stopped part-way (Ctrl-C, a lost network), run it again: it sends only what is
left."""

PULL_HELP = """Copy an index from the live service to this machine (a new local index, created
like the remote one), via list-vectors pages and get_by_ids in the service's chunk sizes; then check
counts and a sample. Stopped part-way, run it again: it fetches only what is left."""

DIFF_HELP = """Compare two indexes, each a local name or remote:NAME: ids only in A, only in B,
and ids whose values, metadata or namespace differ. Exit 0 when they are equal, 1 when not."""


def _moved(result, verb: str) -> Reply:
    resumed = f" ({result.skipped} had been {verb} by an earlier run)" if result.skipped else ""
    return Reply(result, [Text(
        f"{verb.capitalize()} {result.sent} vectors from {result.source} to {result.destination}{resumed}; "
        f"{result.destination} {'was created and ' if result.created else ''}holds {result.count}. "
        f"Counts and a sample of vectors checked. ({result.requests} requests)"
    )], list(result.notes))


@app.command("push", cls=VectorizeCommand, short_help="Copy a local index to the live service.", help=PUSH_HELP)
@run
def push(
    local: Annotated[str, typer.Argument(help="The local index.", show_default=False)],
    remote: Annotated[Optional[str], typer.Argument(
        help="The remote index (default: the same name).", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Vectors per upload (1-5000).")] = 5000,
    wait_timeout: WaitTimeout = 300,
    json: JsonFlag = False,
    data_dir: DataDir = None,
) -> None:
    from ..engine.validate import check_batch_size
    from ..remote.sync import push as push_index

    check_batch_size(batch_size)
    target = remote_catalog(data_dir)
    with catalog(data_dir).open(local) as index, render.progress("Pushing") as bar:
        result = push_index(index, target, remote or local, batch_size=batch_size, progress=bar,
                            wait_timeout=wait_timeout)
    render.show(_moved(result, "pushed"), json)


@app.command("pull", cls=VectorizeCommand, short_help="Copy an index from the live service here.", help=PULL_HELP)
@run
def pull(
    remote: Annotated[str, typer.Argument(help="The remote index.", show_default=False)],
    local: Annotated[Optional[str], typer.Argument(
        help="The local index (default: the same name).", show_default=False)] = None,
    json: JsonFlag = False,
    data_dir: DataDir = None,
) -> None:
    from ..remote.sync import pull as pull_index

    with render.progress("Pulling") as bar:
        result = pull_index(remote_catalog(data_dir), remote, catalog(data_dir), local or remote, progress=bar)
    render.show(_moved(result, "pulled"), json)


@app.command("diff", cls=VectorizeCommand, short_help="Compare two indexes, local or remote.", help=DIFF_HELP)
@run
def diff(
    a: Annotated[str, typer.Argument(help="An index: a local name, or remote:NAME.", show_default=False)],
    b: Annotated[str, typer.Argument(help="The other index, the same way.", show_default=False)],
    json: JsonFlag = False,
    data_dir: DataDir = None,
) -> None:
    from ..remote.sync import diff as diff_indexes

    with _open(a, data_dir) as index_a, _open(b, data_dir) as index_b, render.progress("Comparing") as bar:
        result = diff_indexes(index_a, index_b, a, b, progress=bar)
    human: list = [Text(
        f"{a} and {b} are equal ({result.count_a} vectors)." if result.equal else
        f"{a} ({result.count_a} vectors) and {b} ({result.count_b}) differ: {len(result.only_a)} only in {a}, "
        f"{len(result.only_b)} only in {b}, {len(result.different)} in both but different.")]
    rows = [(i, f"only in {a}") for i in result.only_a[:SHOWN]] + \
           [(i, f"only in {b}") for i in result.only_b[:SHOWN]] + \
           [(i, ", ".join(fields) + " differ") for i, fields in result.different[:SHOWN]]
    if rows:
        human.append(Table(("id", "difference"), rows))
    render.show(Reply(result, human), json)
    if not result.equal:
        raise typer.Exit(ExitCode.DIFFERENT)


def _open(spec: str, data_dir):
    if spec.startswith(REMOTE_PREFIX):
        return remote_catalog(data_dir).open(spec[len(REMOTE_PREFIX):])
    return catalog(data_dir).open(spec)
