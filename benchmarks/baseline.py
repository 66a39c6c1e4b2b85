"""The baselines that ``run.py`` runs beside vcli, each as its own process (so its wall time and
peak memory are measured the same way as vcli's).

    python benchmarks/baseline.py load FILE GRAPH [--metric cos] [--connectivity 16] [--expansion-add 128]

parses an NDJSON file of vectors with orjson into one float32 array and builds a usearch f32 HNSW
graph from it with all cores (usearch's default connectivity 16 and expansion_add 128), then saves
it to GRAPH. That is the "raw" way to load embeddings into a searchable graph.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import orjson
from usearch.index import Index


def count_lines(path: str) -> int:
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            n += block.count(b"\n")
    return n


def load(path: str, graph: str, metric: str, connectivity: int, expansion_add: int) -> None:
    n = count_lines(path)
    values = None
    i = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            row = orjson.loads(line)["values"]
            if values is None:
                values = np.empty((n, len(row)), np.float32)
            values[i] = row
            i += 1
    values = values[:i]
    index = Index(ndim=values.shape[1], metric=metric, dtype="f32", connectivity=connectivity,
                  expansion_add=expansion_add)
    index.add(np.arange(i, dtype=np.uint64), values, threads=os.cpu_count() or 1)
    index.save(graph)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("load")
    p.add_argument("file")
    p.add_argument("graph")
    p.add_argument("--metric", default="cos")
    p.add_argument("--connectivity", type=int, default=16)
    p.add_argument("--expansion-add", type=int, default=128)
    args = parser.parse_args()
    if args.cmd == "load":
        load(args.file, args.graph, args.metric, args.connectivity, args.expansion_add)


if __name__ == "__main__":
    main()
