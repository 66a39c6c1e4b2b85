"""``vcli check``: verify an index and optionally repair it."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import render
from ..errors import ExitCode, IndexDamaged
from ..render import Reply, Table, Text
from ._common import DataDir, IndexName, JsonFlag, VectorizeCommand, catalog, run

app = typer.Typer()

HELP = """Check an index and, with --repair, repair what can be rebuilt from its store.

Checks the store (SQLite integrity, vector sizes and values, mutation records) and its search file
(keys, values and mutation against the store). Repair rebuilds the search file and the store's
bookkeeping; vectors themselves are never changed.

Exit codes: 0 healthy. 1 problems found and not all repaired (or any other error).
3 problems found and all repaired.
"""


@app.command("check", cls=VectorizeCommand, short_help="Check an index; repair it with --repair.", help=HELP)
@run
def check(
    name: IndexName,
    repair: Annotated[bool, typer.Option("--repair", help="Repair what can be repaired.")] = False,
    json: JsonFlag = False,
    data_dir: DataDir = None,
) -> None:
    from ..engine.check import check_index  # lazy: NumPy, for this command only

    with catalog(data_dir).open(name) as index:
        report = check_index(index, repair=repair)
    render.show(Reply(report, _human(report)), json)
    if report.remaining:
        n = len(report.remaining)
        if repair:
            raise IndexDamaged(f"{n} problem{'s' * (n != 1)} in index '{name}' could not be repaired")
        fixable = " (run 'vcli check " + name + " --repair')" if any(p.repairable for p in report.problems) else ""
        raise IndexDamaged(f"{n} problem{'s' * (n != 1)} found in index '{name}'{fixable}")
    if report.problems:
        raise typer.Exit(ExitCode.REPAIRED)


def _human(report) -> list:
    what = f"{report.vector_count} vectors" if report.vector_count is not None else "store unreadable"
    where = f", search file {report.search_file}" if report.search_file else ""
    if report.healthy:
        return [Text(f"Index '{report.name}' is healthy: {what}{where}.")]

    def status(p) -> str:
        if p.repaired:
            return "repaired"
        if p.repairable:
            return "not repaired" if report.repair else "repairable with --repair"
        return "cannot be repaired"

    human = [Text(f"Index '{report.name}': {what}{where}."),
             Table(("area", "problem", "status"), [(p.area, p.text, status(p)) for p in report.problems])]
    if not report.remaining:
        n = len(report.problems)
        human.append(Text(f"Repaired {n} problem{'s' * (n != 1)}; the index is healthy now."))
    return human
