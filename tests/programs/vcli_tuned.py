"""The vcli command line, run with the engine's thresholds and the disk's speed changed, for tests
that kill it at chosen moments (tests/test_crash.py).

    python tests/programs/vcli_tuned.py [--graphs | --background-graphs] [--stall-fsync] -- ARGS...

``--graphs`` gives every index a graph at any size, built before a write returns
(``Tuning(graph_min_floats=1, graph_in_background=False)``; really the threshold is millions of
floats); ``--background-graphs`` the same, built by a builder process as usual; ``--small-parts``
makes graph parts of at most 3,000 vectors (really a million), so that a graph has several. ``--stall-fsync`` makes every fsync take 0.25 s longer, so that a
kill lands in the middle of a refresh (temporary file written, not yet renamed), not only by luck.
"""

from __future__ import annotations

import os
import sys
import time

from vcli.cli import app
from vcli.engine import Tuning
from vcli.startup import leave


def main(argv: list[str]) -> None:
    split = argv.index("--")
    flags, args = set(argv[:split]), argv[split + 1:]
    if "--stall-fsync" in flags:
        fsync = os.fsync

        def slow_fsync(fd: int) -> None:
            time.sleep(0.25)
            fsync(fd)

        os.fsync = slow_fsync
    tuning = None
    parts = {"graph_part_rows": 3000} if "--small-parts" in flags else {}
    if "--graphs" in flags:
        tuning = Tuning(graph_min_floats=1, graph_in_background=False, **parts)
    elif "--background-graphs" in flags:
        tuning = Tuning(graph_min_floats=1, **parts)
    try:
        app(args=args, prog_name="vcli", obj=tuning)
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    leave(code)


if __name__ == "__main__":
    main(sys.argv[1:])
