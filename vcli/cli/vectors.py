"""Commands on the vectors of an index: insert, upsert, query, get-vectors, delete-vectors,
list-vectors."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Annotated, BinaryIO, Optional

import orjson
import typer

from .. import render
from ..errors import BadInput, BadQuery
from ._common import DataDir, IndexName, JsonFlag, VectorizeCommand, catalog, run, show_notes

app = typer.Typer()

FileArg = Annotated[
    str,
    typer.Option("--file", help="NDJSON file of vectors, one JSON object a line; - reads stdin.",
                 show_default=False),
]
IdsArg = Annotated[
    list[str],
    typer.Option("--ids", help="Vector ids (several may follow one --ids).", show_default=False),
]


@contextmanager
def open_input(path: str) -> Iterator[BinaryIO]:
    """The NDJSON source: stdin for ``-``, else the file, with a clear error if it cannot be read."""
    import sys

    if path == "-":
        yield sys.stdin.buffer
        return
    p = Path(path)
    if p.is_dir():
        raise BadInput(f"cannot read {path}: it is a directory")
    try:
        f = open(p, "rb")
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None
    with f:
        yield f


def _write(mode: str, name: str, file: str, batch_size: int, json: bool, data_dir) -> None:
    from ..ndjson import read_vectors

    with catalog(data_dir).open(name, write=True) as index, open_input(file) as stream:
        vectors = read_vectors(stream, index.dimensions)
        write = index.insert if mode == "insert" else index.upsert
        with render.progress(f"{mode.capitalize()}ing") as progress:
            result = write(vectors, batch_size=batch_size, progress=progress)
        show_notes(index)
    if json:
        render.emit_json(result.to_json())
        return
    done = "inserted" if mode == "insert" else "upserted"
    kept = result.count - result.written
    extra = f" ({kept} already existed and were kept as they were)" if mode == "insert" and kept else ""
    render.line(
        f"Successfully {done} {result.count} vectors into index '{name}'{extra}. "
        f"Mutation changeset identifier: {result.mutation_id}"
    )


@app.command("insert", cls=VectorizeCommand)
@run
def insert(
    name: IndexName,
    file: FileArg,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "--batchSize", help="Vectors written per batch (1-5000).")
    ] = 1000,
    json: JsonFlag = False,
    data_dir: DataDir = None,
) -> None:
    """Insert vectors into a Vectorize index (ids that exist are kept as they are)."""
    _write("insert", name, file, batch_size, json, data_dir)


@app.command("upsert", cls=VectorizeCommand)
@run
def upsert(
    name: IndexName,
    file: FileArg,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "--batchSize", help="Vectors written per batch (1-5000).")
    ] = 5000,
    json: JsonFlag = False,
    data_dir: DataDir = None,
) -> None:
    """Upsert vectors into a Vectorize index (ids that exist are replaced whole)."""
    _write("upsert", name, file, batch_size, json, data_dir)


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


def _match_rows(result, return_values: bool, return_metadata: str):
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
    return columns, rows


@app.command("query", cls=VectorizeCommand)
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
            "Answer many queries: NDJSON, one query a line ({\"vector\": [...]} or "
            "{\"vectorId\": \"...\"}, optional topK, filter, namespace, returnValues, "
            "returnMetadata); - reads stdin. Prints one JSON result a line, in order; the other "
            "options are defaults for lines that leave them out.")),
    ] = None,
    json: JsonFlag = False,
    data_dir: DataDir = None,
) -> None:
    """Query a Vectorize index."""
    if file is not None and (vector is not None or vector_id is not None):
        raise BadQuery("give either --file or --vector/--vector-id, not both")
    if file is None and (vector is None) == (vector_id is None):
        raise BadQuery("give either --vector or --vector-id, but not both")
    values = parse_vector(vector) if vector is not None else None
    parsed_filter = None
    if filter is not None:
        try:
            parsed_filter = orjson.loads(filter)
        except orjson.JSONDecodeError as exc:
            from ..errors import BadFilter

            raise BadFilter(f"--filter is not valid JSON ({exc})") from None
        if parsed_filter is None:  # JSON null: never a silent unfiltered query
            from ..errors import BadFilter

            raise BadFilter('the filter must be a JSON object such as {"genre": "drama"}, not null')
    if file is not None:  # --json or not: the answers are JSON lines
        from ..ndjson import QueryLine

        defaults = QueryLine(0, None, None, top_k, return_values, return_metadata, namespace or None,
                             parsed_filter)
        _query_file(name, file, defaults, data_dir)
        return
    with catalog(data_dir).open(name) as index:
        result = index.query(
            values, vector_id=vector_id, top_k=top_k, return_values=return_values,
            return_metadata=return_metadata, namespace=namespace or None, filter=parsed_filter,
        )
        show_notes(index)
    if json:
        render.emit_json(result.to_json())
    elif not result.matches:
        render.note("Could not find any relevant vectors")
    else:
        render.table(*_match_rows(result, return_values, return_metadata))


def _query_file(name: str, file: str, defaults, data_dir) -> None:
    from ..ndjson import lines_with_pauses, read_queries

    with catalog(data_dir).open(name) as index, open_input(file) as stream, \
            closing(index.query_many(read_queries(lines_with_pauses(stream), defaults))) as results:
        try:
            render.emit_json_lines(r.to_json() for r in results)
        finally:
            show_notes(index)


@app.command("get-vectors", cls=VectorizeCommand)
@run
def get_vectors(name: IndexName, ids: IdsArg, json: JsonFlag = False, data_dir: DataDir = None) -> None:
    """Get vectors from a Vectorize index."""
    with catalog(data_dir).open(name) as index:
        vectors = index.get(ids)
    if json:
        render.emit_json([v.to_json() for v in vectors])
    elif not vectors:
        render.note("The index does not contain vectors with the given ids")
    else:
        render.table(
            ("id", "namespace", "metadata", "values"),
            [(v.id, v.namespace, render.compact(v.metadata), render.values_text(v.values)) for v in vectors],
        )


@app.command("delete-vectors", cls=VectorizeCommand)
@run
def delete_vectors(name: IndexName, ids: IdsArg, json: JsonFlag = False, data_dir: DataDir = None) -> None:
    """Delete vectors in a Vectorize index."""
    with catalog(data_dir).open(name, write=True) as index:
        result = index.delete(ids)
        show_notes(index)
    if json:
        render.emit_json(result.to_json())
    else:
        render.line(
            f"Successfully deleted {result.deleted} of the {result.count} given vectors from index "
            f"'{name}'. Mutation changeset identifier: {result.mutation_id}."
        )


@app.command("list-vectors", cls=VectorizeCommand)
@run
def list_vectors(
    name: IndexName,
    count: Annotated[int, typer.Option(help="Ids per page (1-1000).")] = 100,
    cursor: Annotated[
        Optional[str], typer.Option(help="Continue from this cursor (from the last page).", show_default=False)
    ] = None,
    json: JsonFlag = False,
    data_dir: DataDir = None,
) -> None:
    """List vector identifiers in a Vectorize index."""
    with catalog(data_dir).open(name) as index:
        page = index.list_ids(count, cursor or None)
    if json:
        render.emit_json(page.to_json())
        return
    if not page.ids:
        render.note("No vectors found in this index.")
        return
    start = 1
    render.table(("#", "Vector ID"), [(start + i, vid) for i, vid in enumerate(page.ids)])
    render.line(f"\nShowing {len(page.ids)} of {page.total_count} total vectors")
    if page.next_cursor:
        render.line(f"\nTo get the next page, run:\n   vcli list-vectors {name} --cursor {page.next_cursor}")
