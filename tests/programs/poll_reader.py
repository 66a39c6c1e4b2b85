"""A reader that polls an index through the engine until told to stop (tests/test_concurrency.py).

    python tests/programs/poll_reader.py DATA_DIR NAME PLAN_FILE STOP_FILE

Each round opens the index afresh, reads ``info``, queries one of the plan's probe directions and
gets its batch of ids, then prints one JSON line: the count seen, the batch, how many probe vectors
the query found, how many of the batch's ids exist, and how many notes (repairs) the query made.
It stops once STOP_FILE exists.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import orjson

from vcli.engine import Catalog


def main(data_dir: str, name: str, plan_file: str, stop_file: str) -> None:
    with open(plan_file, "rb") as f:
        plan = orjson.loads(f.read())
    rng = np.random.default_rng(0)
    cat = Catalog(data_dir)
    while not os.path.exists(stop_file):
        j = int(rng.integers(len(plan["probes"])))
        with cat.open(name) as ix:
            info = ix.info()
            res = ix.query(plan["probes"][j], top_k=40)
            hits = sum(1 for m in res.matches if m.score > 0.9999)
            present = len(ix.get(plan["ids"][j]))
        print(orjson.dumps({"count": info.vector_count, "batch": j, "hits": hits, "present": present,
                            "notes": len(res.notes)}).decode(), flush=True)
        time.sleep(0.05)


if __name__ == "__main__":
    main(*sys.argv[1:5])
