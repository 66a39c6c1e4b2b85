"""Commands on the vectors of an index: insert, upsert, query, get-vectors, delete-vectors,
list-vectors."""

from __future__ import annotations

import math
from contextlib import closing
from typing import Annotated, Optional

import orjson
import typer

from .. import embeddings, render
from ..engine.records import Query
from ..errors import BadFilter, BadQuery
from ..ndjson import lines_with_pauses, open_input, read_queries
from ..render import Reply, Table, Text
from ._common import (
    DataDir,
    IndexName,
    JsonFlag,
    RemoteFlag,
    VectorizeCommand,
    WaitFlag,
    WaitTimeout,
    catalog,
    run,
    wait_for,
)
from .models import ModelOpt, PoolingOpt, text_model

app = typer.Typer()

FileArg = Annotated[
    str,
    typer.Option("--file", help="NDJSON file of vectors, one JSON object a line, with \"values\" or "
                 "\"text\" (embedded with the index's model); - reads stdin.", show_default=False),
]
IdsArg = Annotated[
    list[str],
    typer.Option("--ids", help="Vector ids (several may follow one --ids).", show_default=False),
]


def _write(mode: str, name: str, file: str, batch_size: int, json: bool, remote: bool, wait: bool,
           wait_timeout: float, data_dir, model: str | None, pooling: str) -> None:
    with catalog(data_dir, remote).open(name, write=True) as index, open_input(file) as stream:
        vectors = embeddings.vector_lines(stream, index.dimensions, text_model(index, model), pooling)
        write = index.insert if mode == "insert" else index.upsert
        with render.progress(f"{mode.capitalize()}ing") as progress:
            result = write(vectors, batch_size=batch_size, progress=progress)
        wait_for(index, result.mutation_id, wait, wait_timeout)
    done = "inserted" if mode == "insert" else "upserted"
    kept = result.count - result.written
    extra = f" ({kept} already existed and were kept as they were)" if mode == "insert" and kept else ""
    render.show(Reply(result, [Text(
        f"Successfully {done} {result.count} vectors into index '{name}'{extra}. "
        f"Mutation changeset identifier: {result.mutation_id}"
    )]), json)


@app.command("insert", cls=VectorizeCommand, short_help="Insert vectors into a Vectorize index.")
@run
def insert(
    name: IndexName,
    file: FileArg,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "--batchSize", help="Vectors per batch (1-5000): per request with --remote; a local write lands whole however it is cut.")
    ] = 1000,
    model: ModelOpt = None,
    pooling: PoolingOpt = "mean",
    json: JsonFlag = False,
    remote: RemoteFlag = False,
    wait: WaitFlag = False,
    wait_timeout: WaitTimeout = 300,
    data_dir: DataDir = None,
) -> None:
    """Insert vectors into a Vectorize index (ids that exist are kept as they are)."""
    _write("insert", name, file, batch_size, json, remote, wait, wait_timeout, data_dir, model, pooling)


@app.command("upsert", cls=VectorizeCommand, short_help="Upsert vectors into a Vectorize index.")
@run
def upsert(
    name: IndexName,
    file: FileArg,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "--batchSize", help="Vectors per batch (1-5000): per request with --remote; a local write lands whole however it is cut.")
    ] = 5000,
    model: ModelOpt = None,
    pooling: PoolingOpt = "mean",
    json: JsonFlag = False,
    remote: RemoteFlag = False,
    wait: WaitFlag = False,
    wait_timeout: WaitTimeout = 300,
    data_dir: DataDir = None,
) -> None:
    """Upsert vectors into a Vectorize index (ids that exist are replaced whole)."""
    _write("upsert", name, file, batch_size, json, remote, wait, wait_timeout, data_dir, model, pooling)


def parse_vector(tokens: list[str]) -> list[float]:
    """``--vector`` values: numbers, or one JSON array; anything else is an error naming it."""
    if len(tokens) == 1 and tokens[0].lstrip().startswith("["):
        try:
            values = orjson.loads(tokens[0])
        except orjson.JSONDecodeError as exc:
            raise BadQuery(f"--vector is not a valid JSON array ({exc})") from None
        return values
    out = []
    for tok in tokens:
        try:
            value = float(tok)
        except ValueError:
            raise BadQuery(f'--vector: "{tok}" is not a number') from None
        if not math.isfinite(value):
            raise BadQuery(f'--vector: "{tok}" is not a finite number')
        out.append(value)
    return out


def parse_filter(text: str) -> dict:
    """``--filter`` JSON; its content is the engine's to check (``filters.parse``)."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadFilter(f"--filter is not valid JSON ({exc})") from None
    if parsed is None:  # JSON null: never a silent unfiltered query
        raise BadFilter('the filter must be a JSON object such as {"genre": "drama"}, not null')
    return parsed


def _match_table(result, return_values: bool, return_metadata: str) -> Table:
    columns = ["rank", "id", "score", "namespace"]
    if return_metadata != "none":
        columns.append("metadata")
    if return_values:
        columns.append("values")
    rows = []
    for rank, m in enumerate(result.matches, 1):
        row = [rank, m.id, render.score_text(m.score), m.namespace]
        if return_metadata != "none":
            row.append(render.compact(m.metadata))
        if return_values:
            row.append(render.values_text(m.values))
        rows.append(row)
    return Table(columns, rows)


@app.command("query", cls=VectorizeCommand, short_help="Query a Vectorize index.")
@run
def query(
    name: IndexName,
    vector: Annotated[
        Optional[list[str]],
        typer.Option("--vector", help="The query vector: numbers after one --vector, or a JSON array.",
                     show_default=False),
    ] = None,
    vector_id: Annotated[
        Optional[str],
        typer.Option("--vector-id", "--vectorId", help="Query with the stored vector of this id.",
                     show_default=False),
    ] = None,
    text: Annotated[
        Optional[str],
        typer.Option("--text", help="Query with this text, embedded with the index's model (or --model).",
                     show_default=False),
    ] = None,
    top_k: Annotated[
        int, typer.Option("--top-k", "--topK", help="Number of matches (1-100; 50 with values or all metadata).")
    ] = 5,
    return_values: Annotated[
        bool, typer.Option("--return-values", "--returnValues", help="Include each match's values.")
    ] = False,
    return_metadata: Annotated[
        str,
        typer.Option("--return-metadata", "--returnMetadata", help="Metadata to include: none, indexed or all."),
    ] = "none",
    namespace: Annotated[
        Optional[str], typer.Option(help="Search only this namespace.", show_default=False)
    ] = None,
    filter: Annotated[
        Optional[str], typer.Option(help="Metadata filter as JSON, e.g. '{\"genre\": \"drama\"}'.",
                                    show_default=False)
    ] = None,
    file: Annotated[
        Optional[str],
        typer.Option("--file", show_default=False, help=(
            "Answer many queries: NDJSON, one query a line ({\"vector\": [...]}, "
            "{\"vectorId\": \"...\"} or {\"text\": \"...\"}, optional topK, filter, namespace, returnValues, "
            "returnMetadata); - reads stdin. Prints one JSON result a line, in order; the other "
            "options are defaults for lines that leave them out.")),
    ] = None,
    model: ModelOpt = None,
    pooling: PoolingOpt = "mean",
    json: JsonFlag = False,
    remote: RemoteFlag = False,
    data_dir: DataDir = None,
) -> None:
    """Query a Vectorize index."""
    given = sum(x is not None for x in (vector, vector_id, text))
    if file is not None and given:
        raise BadQuery("give either --file or --vector/--vector-id/--text, not both")
    if file is None and given != 1:
        raise BadQuery("give one of --vector, --vector-id or --text"
                       + ("" if not given else ", not both" if given == 2 else ", not all three"))
    if text == "":
        raise BadQuery("--text is empty; give at least 1 character")
    values = parse_vector(vector) if vector is not None else None
    parsed_filter = parse_filter(filter) if filter is not None else None
    if file is not None:  # --json or not: the answers are JSON lines
        defaults = Query(None, None, top_k, return_values, return_metadata, namespace or None, parsed_filter)
        with catalog(data_dir, remote).open(name) as index, open_input(file) as stream:
            lines = embeddings.text_queries(lines_with_pauses(stream), text_model(index, model), pooling)
            with closing(index.query_many(read_queries(lines, defaults))) as results:
                render.show_lines(results)
        return
    with catalog(data_dir, remote).open(name) as index:
        if text is not None:
            values = embeddings.embed(text_model(index, model)(), [text], pooling)[0]
        result = index.query(
            values, vector_id=vector_id, top_k=top_k, return_values=return_values,
            return_metadata=return_metadata, namespace=namespace or None, filter=parsed_filter,
        )
    human = [_match_table(result, return_values, return_metadata) if result.matches
             else Text("Could not find any relevant vectors", err=True)]
    render.show(Reply(result, human), json)


@app.command("get-vectors", cls=VectorizeCommand, short_help="Get vectors from a Vectorize index.")
@run
def get_vectors(name: IndexName, ids: IdsArg, json: JsonFlag = False, remote: RemoteFlag = False,
                data_dir: DataDir = None) -> None:
    """Get vectors from a Vectorize index."""
    with catalog(data_dir, remote).open(name) as index:
        vectors = index.get(ids)
    rows = [(v.id, v.namespace, render.compact(v.metadata), render.values_text(v.values)) for v in vectors]
    human = [Table(("id", "namespace", "metadata", "values"), rows) if vectors
             else Text("The index does not contain vectors with the given ids", err=True)]
    render.show(Reply(vectors, human), json)


@app.command("delete-vectors", cls=VectorizeCommand, short_help="Delete vectors in a Vectorize index.")
@run
def delete_vectors(name: IndexName, ids: IdsArg, json: JsonFlag = False, remote: RemoteFlag = False,
                   wait: WaitFlag = False, wait_timeout: WaitTimeout = 300, data_dir: DataDir = None) -> None:
    """Delete vectors in a Vectorize index."""
    with catalog(data_dir, remote).open(name, write=True) as index:
        result = index.delete(ids)
        wait_for(index, result.mutation_id, wait, wait_timeout)
    done = (f"deleted {result.deleted} of the {result.count} given vectors" if result.deleted is not None
            else f"asked to delete the {result.count} given vectors")
    render.show(Reply(result, [Text(
        f"Successfully {done} from index '{name}'. Mutation changeset identifier: {result.mutation_id}."
    )]), json)


@app.command("list-vectors", cls=VectorizeCommand, short_help="List vector identifiers in a Vectorize index.")
@run
def list_vectors(
    name: IndexName,
    count: Annotated[int, typer.Option(help="Ids per page (1-1000).")] = 100,
    cursor: Annotated[
        Optional[str], typer.Option(help="Continue from this cursor (from the last page).", show_default=False)
    ] = None,
    json: JsonFlag = False,
    remote: RemoteFlag = False,
    data_dir: DataDir = None,
) -> None:
    """List vector identifiers in a Vectorize index."""
    with catalog(data_dir, remote).open(name) as index:
        page = index.list_ids(count, cursor or None)
    human: list[Table | Text]
    if not page.ids:
        human = [Text("No vectors found in this index.", err=True)]
    else:
        human = [Table(("#", "Vector ID"), [(i, vid) for i, vid in enumerate(page.ids, 1)]),
                 Text(f"\nShowing {len(page.ids)} of {page.total_count} total vectors")]
        if page.next_cursor:
            human.append(Text(f"\nTo get the next page, run:\n   vcli list-vectors {name} --cursor {page.next_cursor}"))
    render.show(Reply(page, human), json)
