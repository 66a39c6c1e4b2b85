"""The bfloat16 pre-score against float32 BLAS, by the number of queries in one product.

    python benchmarks/prescore.py                 # 50,000 x 384 rows
    python benchmarks/prescore.py -n 20000 -d 768

A filtered batch scores a group's gathered rows against its queries in products of at most
``Tuning.group_floats`` numbers: from a bfloat16 copy with NumKong's kernel on one thread
(``scoring.prescore_distances``), or from a float32 copy with NumPy's BLAS on all its threads
(``scoring.batch_distances``). This prints both per product (best of ``--repeat`` runs, wall and
process CPU time) for growing query counts, to place ``Tuning.prescore_queries``, where the bfloat16
kernel stops paying. Random Gaussian vectors; euclidean (the two others cost the same within a
few percent). A script, not a timed test: figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from vcli.engine import scoring


def best(repeat: int, fn, *args) -> tuple[float, float]:
    """The least wall and process-CPU (all threads) milliseconds of ``repeat`` calls of ``fn(*args)``."""
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn(*args)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls) * 1e3, min(cpus) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50_000, help="gathered rows")
    parser.add_argument("-d", type=int, default=384, help="dimensions")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each product: the best is shown")
    parser.add_argument("--queries", default="8,32,64,92,128,192,256,320", help="query counts, comma-separated")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((args.n, args.d)).astype(np.float32)
    norms = scoring.row_norms(rows)
    wall, cpu = best(1, scoring.to_bf16, rows)
    rows16 = scoring.to_bf16(rows)
    print(f"{args.n:,} x {args.d} rows; load {os.getloadavg()[0]:.1f}; gathering them into bfloat16: "
          f"{wall:.1f} ms ({cpu:.1f} CPU)")
    print(f"{'queries':>8} {'bfloat16 ms':>12} {'(CPU)':>8} {'float32 ms':>11} {'(CPU)':>8} {'ratio':>6}")
    for count in map(int, args.queries.split(",")):
        queries = rng.standard_normal((count, args.d)).astype(np.float32)
        b_wall, b_cpu = best(args.repeat, scoring.prescore_distances, "euclidean", queries, rows16, norms)
        f_wall, f_cpu = best(args.repeat, scoring.batch_distances, "euclidean", queries, rows, norms)
        print(f"{count:>8} {b_wall:>12.1f} {b_cpu:>8.1f} {f_wall:>11.1f} {f_cpu:>8.1f} {b_wall / f_wall:>6.2f}")


if __name__ == "__main__":
    main()
