"""The builder process: ``python -m vcli.graph_builder <folder> <dimensions> <metric> <part rows>
[<stale share>]`` (``Tuning.graph_part_rows`` and ``graph_stale_share``).

Started detached, at low priority, by ``engine.builder.start`` after a write; it makes the index's
graph parts (``engine.builder.run``) and exits 0, or 1 when another builder is at work or the build
failed. Nothing is printed: no one is watching.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .engine.builder import NICE, run
from .engine.layout import Folder


def main(argv: list[str]) -> int:
    try:
        os.nice(NICE)
    except OSError:
        pass
    return run(Folder(Path(argv[0])), int(argv[1]), argv[2], int(argv[3]), *(float(a) for a in argv[4:5]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
