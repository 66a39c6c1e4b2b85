"""The builder process: ``python -m vcli.graph_builder <folder> <dimensions> <metric> <part rows>
[<stale share> [<tuning>]]``: ``Tuning.graph_part_rows`` and ``graph_stale_share``, then the rest
of the catalog's ``Tuning`` as a JSON object of its fields (absent ones take their defaults).

Started detached, at low priority (``Tuning.builder_nice``), by ``engine.builder.start`` after a
write; it makes the index's graph parts (``engine.builder.run``) and exits 0, or 1 when another
builder is at work or the build failed. Nothing is printed: no one is watching.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .engine.builder import run
from .engine.layout import Folder
from .engine.tuning import Tuning


def main(argv: list[str]) -> int:
    tuning = Tuning(**(json.loads(argv[5]) if len(argv) > 5 else {}))._replace(graph_part_rows=int(argv[3]))
    if len(argv) > 4:
        tuning = tuning._replace(graph_stale_share=float(argv[4]))
    try:
        os.nice(tuning.builder_nice)
    except OSError:
        pass
    return run(Folder(Path(argv[0])), int(argv[1]), argv[2], tuning)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
