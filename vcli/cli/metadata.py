"""Commands on the metadata indexes of an index: create-metadata-index, list-metadata-index,
delete-metadata-index."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import render
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

app = typer.Typer()

PropertyName = Annotated[
    str,
    typer.Option("--property-name", "--propertyName", show_default=False,
                 help='The metadata property to index; dotted for nested properties ("a.b").'),
]


@app.command("create-metadata-index", cls=VectorizeCommand, short_help="Enable metadata filtering on a property.")
@run
def create_metadata_index(
    name: IndexName,
    property_name: PropertyName,
    index_type: Annotated[
        str, typer.Option("--type", show_default=False,
                          help="The type of the values to index: string, number or boolean."),
    ],
    json: JsonFlag = False,
    remote: RemoteFlag = False,
    wait: WaitFlag = False,
    wait_timeout: WaitTimeout = 300,
    data_dir: DataDir = None,
) -> None:
    """Enable metadata filtering on the specified property."""
    with catalog(data_dir, remote).open(name, write=True) as index:
        result = index.create_metadata_index(property_name, index_type)
        wait_for(index, result.mutation_id, wait, wait_timeout)
    n = result.not_covered
    notes = [
        f"vectors written before a metadata index are not indexed for it: the {n} "
        f"vector{'s' if n != 1 else ''} already in '{name}' will not match a filter on "
        f"'{property_name}' ({result.with_value} of them hold a {result.index_type} there) "
        f"until they are upserted again."
    ] if n else []
    render.show(Reply(result, [Text(
        f"Successfully created a {result.index_type} metadata index on '{property_name}' in "
        f"index '{name}'. Mutation changeset identifier: {result.mutation_id}."
    )], notes), json)


@app.command("list-metadata-index", cls=VectorizeCommand, short_help="List the properties enabled for filtering.")
@run
def list_metadata_index(name: IndexName, json: JsonFlag = False, remote: RemoteFlag = False,
                        data_dir: DataDir = None) -> None:
    """List metadata properties on which metadata filtering is enabled."""
    with catalog(data_dir, remote).open(name) as index:
        found = index.list_metadata_indexes()
    human = [Table(("propertyName", "type"), [(m.property_name, m.index_type) for m in found]) if found else Text(
        f"You haven't created any metadata indexes on index '{name}'.\n\n"
        f"Use 'vcli create-metadata-index {name} --property-name P --type string|number|boolean' "
        f"to create one.", err=True)]
    render.show(Reply(found, human), json)


@app.command("delete-metadata-index", cls=VectorizeCommand, short_help="Delete metadata indexes.")
@run
def delete_metadata_index(
    name: IndexName, property_name: PropertyName, json: JsonFlag = False, remote: RemoteFlag = False,
    wait: WaitFlag = False, wait_timeout: WaitTimeout = 300, data_dir: DataDir = None,
) -> None:
    """Delete metadata indexes."""
    with catalog(data_dir, remote).open(name, write=True) as index:
        result = index.delete_metadata_index(property_name)
        wait_for(index, result.mutation_id, wait, wait_timeout)
    render.show(Reply(result, [Text(
        f"Successfully deleted the metadata index on '{property_name}' from index '{name}'. "
        f"Mutation changeset identifier: {result.mutation_id}."
    )]), json)
