"""``vcli export``: stream an index's vectors out as NDJSON in exactly the insert format."""

from __future__ import annotations

import os
import sys
from contextlib import closing
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import render
from ..errors import BadInput, VcliError
from ..ndjson import write_blocks
from ..render import Reply, Text
from ._common import DataDir, IndexName, JsonFlag, RemoteFlag, VectorizeCommand, catalog, run

app = typer.Typer()

HELP = """Export the vectors of an index as NDJSON, one vector a line, in exactly the format that
`vcli insert` and `wrangler vectorize insert` read (id, values, metadata, namespace), in the order
they were written. `vcli export a | vcli insert b --file -` copies an index.

With --remote, a backup of a live index: its ids page by page, then their vectors (in id order).

Writes to stdout, or with --output to a file that appears whole or not at all.
"""


@app.command("export", cls=VectorizeCommand, short_help="Export an index's vectors as NDJSON.", help=HELP)
@run
def export(
    name: IndexName,
    namespace: Annotated[
        Optional[str], typer.Option(help="Export only this namespace.", show_default=False)
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="Write to this file (atomically) instead of stdout.",
                     show_default=False, dir_okay=True),
    ] = None,
    json: JsonFlag = False,
    remote: RemoteFlag = False,
    data_dir: DataDir = None,
) -> None:
    if output is not None and output.is_dir():
        raise BadInput(f"cannot write {output}: it is a directory")
    with catalog(data_dir, remote).open(name) as index, render.progress("Exporting") as bar, \
            closing(index.export(namespace, progress=bar)) as chunks:
        try:
            count = write_blocks(chunks, output)
        except BrokenPipeError:
            # The reader went away (`vcli export a | head`): say so once, without a traceback.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise VcliError("the output pipe was closed before the export finished") from None
    if output is not None:  # (on stdout, the vectors are all there is)
        render.show(Reply({"index": name, "count": count, "output": str(output)},
                          [Text(f"Exported {count} vectors from index '{name}' to {output}.")]), json)
