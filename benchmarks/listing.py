"""What a list-vectors snapshot costs (docs/contract.md, "Writes, names and listing").

While a listing may be open (the index's ``listing`` file touched in the last hour), a write that
replaces or deletes vectors also keeps their ids in ``listed_gone``. This measures, in one run and
alternately so machine load falls on both alike:

* an upsert replacing ROWS existing vectors, with no listing open (the baseline) and with one open;
* a delete of ROWS ids, the same two ways;
* a page of 1,000 ids read from the current state (the baseline) and from a snapshot taken before
  those writes.

    python benchmarks/listing.py [--vectors 100000] [--rows 5000] [--dims 128] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from datagen import Generator, vector_id  # noqa: E402

from vcli.engine import open_catalog  # noqa: E402


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=100_000)
    ap.add_argument("--rows", type=int, default=5_000)
    ap.add_argument("--dims", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    gen = Generator(args.dims)
    with tempfile.TemporaryDirectory() as tmp:
        cat = open_catalog(Path(tmp))
        with cat.open_or_create("bench", dimensions=args.dims, metric="cosine") as index:
            for start in range(0, args.vectors, 10_000):
                n = min(10_000, args.vectors - start)
                index.upsert_arrays([vector_id(i) for i in range(start, start + n)], gen.rows(start, start + n))
            listing = index.folder.listing
            times: dict[str, list[float]] = {k: [] for k in (
                "upsert, no listing", "upsert, listing open", "delete, no listing", "delete, listing open",
                "page, current", "page, snapshot")}
            rng = np.random.default_rng(0)
            for _ in range(args.repeat):
                for open_ in (False, True):
                    if open_:
                        listing.touch()
                    elif listing.exists():
                        os.utime(listing, (0, 0))  # an old listing: none open
                    label = "listing open" if open_ else "no listing"
                    first = index.list_ids(1000)  # the snapshot (touches the file: set it again below)
                    if not open_:
                        os.utime(listing, (0, 0))
                    picks = sorted(rng.choice(args.vectors, args.rows, replace=False).tolist())
                    ids = [vector_id(i) for i in picks]
                    times[f"upsert, {label}"].append(timed(index.upsert_arrays, ids, gen.rows(0, len(ids))))
                    times[f"delete, {label}"].append(timed(index.delete, ids))
                    index.upsert_arrays(ids, gen.rows(0, len(ids)))  # back to ROWS vectors
                    if open_:
                        times["page, current"].append(timed(index.list_ids, 1000))
                        times["page, snapshot"].append(timed(index.list_ids, 1000, first.next_cursor))
    print(f"{args.vectors:,} vectors x {args.dims}, {args.rows:,} rows a write, median of {args.repeat}")
    for name, values in times.items():
        print(f"  {name:<22} {statistics.median(values) * 1000:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
