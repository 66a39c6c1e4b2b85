"""vcli's load beside LanceDB's and sqlite-vec's (and Chroma's): the same NDJSON file, each tool parsing it.

    benchmarks/peers/setup.sh                                  # once: the peers' own virtual environment
    .venv/bin/python benchmarks/peers/bench.py                 # 500,000 x 384, each tool once
    .venv/bin/python benchmarks/peers/bench.py -n 2000000 --repeat 2 --profile --no-fsync
    .venv/bin/python benchmarks/peers/bench.py -n 1000         # a quick check (peers skipped if absent)

Run it with the project's Python (the one next to the installed ``vcli``). It writes (or, in
``--work DIR``, reuses) one file of N vectors in Vectorize's NDJSON format with metadata
(``datagen.write_ndjson``: ids ``doc-0000000``..., a ``cat``, ``bucket`` and ``title`` each), then
times each load as a whole process of its own, measured like ``run.py``'s figures (wall time, CPU
and peak RSS from ``wait4``), each ending durable when the process ends:

* vcli: ``vcli insert NAME --file FILE`` into a fresh index (made with ``vcli create``, untimed);
  the graph builder the load starts afterwards is stopped (by its process id) once the disk is
  measured, so that it does not run beside the next load: none of the peers builds a graph here
  either, except Chroma.
* parse: the file parsed into arrays as the peers parse it, nothing stored: the floor under
  every load (``loaders.py parse``, with the project's Python: it needs no peer).
* vcli-parse: the lines read and checked as ``vcli insert`` reads them
  (``vcli.embeddings.lines.vector_lines``), nothing stored: what vcli's load spends before SQLite.
* lancedb, sqlite-vec, chroma: ``loaders.py`` in the peers' environment (``setup.sh`` makes it
  from the pinned ``requirements.txt``); its docstring says which bulk path each takes and why.

With ``--repeat R`` the tools run R times, in turns whose order alternates. The table gives each
load's seconds, vectors/s and ratio to the fastest peer of its turn, CPU seconds, peak RSS, and
the disk used after it (bytes, bytes a vector, and that over the float32 size, 4 x dims); then
the median of each tool's turns. The machine's load average is printed at the start and the end,
and before each load. ``--profile`` runs vcli's load once more under cProfile and prints where
its time goes; ``--no-fsync`` once more under ``eatmydata`` (fsync and fdatasync do nothing), to
tell what waiting for the disk costs. The data file and every store are deleted at the end unless
``--keep``.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import datagen  # noqa: E402
from run import MB, PY, VCLI, child, compile_vcli, stop_builders  # noqa: E402

PEERS = ("lancedb", "sqlite-vec", "chroma")
OURS = ("parse", "vcli-parse", "vcli")
MODULE = {"lancedb": "lancedb", "sqlite-vec": "sqlite_vec", "chroma": "chromadb"}
DEFAULT_PEERS_PY = HERE / ".venv" / "bin" / "python"


def metadata_of(i: int) -> dict:
    """A vector's metadata: a category, a number and a short text, like a document chunk's."""
    return {"cat": f"c{i % 10}", "bucket": (i * 7919) % 1000, "title": f"document {i}"}


@dataclass
class Load:
    tool: str
    turn: int
    seconds: float
    cpu: float
    peak: int
    disk: int
    load_before: float


def disk_used(folder: Path) -> int:
    """Bytes of every file under ``folder`` (their sizes, as ``ls`` shows them)."""
    if not folder.exists():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def read_through(path: Path) -> None:
    """Read the file once, so each load finds it in the page cache alike (this VM pages idle
    files out)."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


class Runner:
    def __init__(self, work: Path, data: Path, n: int, dims: int, peers_py: Path, lance_parallelism: int | None):
        self.work, self.data, self.n, self.dims = work, data, n, dims
        self.peers_py = peers_py
        self.lance_parallelism = lance_parallelism
        self.made: list[Path] = []  # every store's folder, for the cleaning up

    def vcli_env(self, folder: Path) -> dict:
        return {**os.environ, "VCLI_DATA_DIR": str(folder), "XDG_CONFIG_HOME": str(self.work / "config"),
                "NO_COLOR": "1"}

    def folder(self, tool: str) -> Path:
        self.made.append(self.work / f"{tool}-{len(self.made) + 1}")
        return self.made[-1]

    @staticmethod
    def drop(folder: Path) -> None:
        stop_builders(folder / "bench")
        shutil.rmtree(folder, ignore_errors=True)

    def vcli(self, folder: Path, command: tuple[str, ...] = (VCLI,)):
        """``vcli insert`` of the file into a new index in ``folder`` (the insert run as
        ``command``: the installed vcli, or it under eatmydata or cProfile)."""
        env = self.vcli_env(folder)
        child([VCLI, "create", "bench", "--dimensions", str(self.dims), "--metric", "cosine"], env=env)
        return child([*command, "insert", "bench", "--file", str(self.data), "--json"], env=env)

    def run(self, tool: str, turn: int) -> tuple[Load, Path]:
        read_through(self.data)
        folder = self.folder(tool)
        before = os.getloadavg()[0]
        if tool == "vcli":
            done = self.vcli(folder)
        elif tool == "vcli-parse":
            done = child([PY, "-c", _VCLI_PARSE, str(self.data), str(self.dims)])
        else:
            py = PY if tool == "parse" else str(self.peers_py)
            argv = [py, str(HERE / "loaders.py"), tool, str(self.data), str(folder),
                    "--dims", str(self.dims)]
            if tool == "lancedb" and self.lance_parallelism:
                argv += ["--write-parallelism", str(self.lance_parallelism)]
            done = child(argv)
        if tool != "vcli" and int(done.out.split()[-1]) != self.n:
            raise SystemExit(f"{tool} loaded {done.out.decode().strip()} vectors, not {self.n:,}")
        disk = disk_used(folder)
        if tool == "vcli":
            stop_builders(folder / "bench")
        return Load(tool, turn, done.seconds, done.cpu, done.peak, disk, before), folder


def peers_available(peers_py: Path, wanted: list[str]) -> list[str]:
    """The peers of ``wanted`` that import in the peers' environment; a line for each that does not."""
    if not wanted:
        return []
    if not peers_py.exists():
        print(f"skipping {', '.join(wanted)}: no peers' environment at {peers_py} "
              f"(make it with benchmarks/peers/setup.sh)")
        return []
    found = []
    for tool in wanted:
        ok = subprocess.run([str(peers_py), "-c", f"import {MODULE[tool]}"], capture_output=True).returncode == 0
        if ok:
            found.append(tool)
        else:
            print(f"skipping {tool}: {MODULE[tool]} does not import in {peers_py} "
                  f"(pip install -r benchmarks/peers/requirements.txt there)")
    return found


def table(loads: list[Load], n: int, dims: int) -> str:
    f32 = n * dims * 4
    fastest: dict[int, float] = {}
    for ld in loads:
        if ld.tool in PEERS:
            fastest[ld.turn] = min(fastest.get(ld.turn, ld.seconds), ld.seconds)
    out = io.StringIO()
    head = (f"{'tool':<11} {'turn':>4} {'load avg':>8} {'seconds':>9} {'vectors/s':>10} {'x fastest peer':>14} "
            f"{'cpu s':>8} {'peak RSS':>9} {'disk':>10} {'B/vector':>9} {'x float32':>9}")
    print(head, file=out)
    for ld in loads:
        ratio = f"{ld.seconds / fastest[ld.turn]:.2f}x" if ld.turn in fastest else "-"
        print(f"{ld.tool:<11} {ld.turn:>4} {ld.load_before:>8.2f} {ld.seconds:>9.2f} {n / ld.seconds:>10,.0f} "
              f"{ratio:>14} {ld.cpu:>8.1f} {ld.peak / MB:>6,.0f} MB {ld.disk / MB:>7,.0f} MB "
              f"{ld.disk / n:>9,.0f} {ld.disk / f32:>8.2f}x", file=out)
    turns = {ld.turn for ld in loads}
    if len(turns) > 1:
        tools = list(dict.fromkeys(ld.tool for ld in loads))
        median = {t: statistics.median(ld.seconds for ld in loads if ld.tool == t) for t in tools}
        peers = [median[t] for t in tools if t in PEERS]
        print(f"\nmedian of {len(turns)} turns:", file=out)
        for t in tools:
            ratio = f"{median[t] / min(peers):.2f}x the fastest peer" if peers else ""
            print(f"{t:<11} {median[t]:>9.2f} s {n / median[t]:>10,.0f} vectors/s  {ratio}", file=out)
    return out.getvalue()


# vcli's reading and checking of a file's lines, as ``vcli insert`` does them, and nothing else.
_VCLI_PARSE = """import sys
from vcli.embeddings.lines import vector_lines
with open(sys.argv[1], "rb") as f:
    print(sum(1 for _ in vector_lines(f, int(sys.argv[2]), "")))
"""


# Runs ``vcli`` (argv after the script) under cProfile: vcli's exit skips the interpreter's
# teardown (os._exit), which would lose the profile, so ``startup.leave`` only raises here.
_PROFILE = """import cProfile, pstats, sys
from vcli import startup
from vcli.cli import main
def leave(code):
    raise SystemExit(code)
startup.leave = leave
out = sys.argv[1]
sys.argv = ["vcli", *sys.argv[2:]]
prof = cProfile.Profile()
try:
    prof.runcall(main)
except SystemExit:
    pass
prof.dump_stats(out)
"""


def profile_vcli(r: Runner, top: int, keep: bool) -> str:
    import pstats

    folder = r.folder("vcli-profile")
    stats_file = r.work / "vcli-load.prof"
    read_through(r.data)
    done = r.vcli(folder, (PY, "-c", _PROFILE, str(stats_file)))
    r.drop(folder)
    out = io.StringIO()
    print(f"vcli's load under cProfile: {done.seconds:.1f} s (profiling slows Python code, not C)", file=out)
    stats = pstats.Stats(str(stats_file), stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    stats.print_callers(r"method '(execute|executemany|fetchmany)' of 'sqlite3")
    if keep:
        print(f"kept: {stats_file}", file=out)
    else:
        stats_file.unlink()
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=500_000, help="vectors (default 500,000)")
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--repeat", type=int, default=1, help="turns of every tool, order alternating")
    parser.add_argument("--tools", default="parse,vcli-parse,vcli,lancedb,sqlite-vec",
                        help=f"comma-separated, of {','.join((*OURS, *PEERS))} (default: all but chroma; "
                             "parse, vcli-parse: the file parsed, nothing stored)")
    parser.add_argument("--peers-python", type=Path, default=DEFAULT_PEERS_PY,
                        help="the peers' environment's Python (default: benchmarks/peers/.venv)")
    parser.add_argument("--lance-write-parallelism", type=int, help="LanceDB's, for iterator ingestion (default: cores)")
    parser.add_argument("--work", type=Path, help="work folder; its data file is reused (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the data file, the last turn's stores and the profile")
    parser.add_argument("--profile", action="store_true", help="also run vcli's load once under cProfile")
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument("--no-fsync", action="store_true", help="also run vcli's load once under eatmydata")
    args = parser.parse_args()
    if VCLI is None:
        raise SystemExit("vcli is not installed next to this Python: run this with the project's environment")
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in tools if t not in (*OURS, *PEERS)]
    if unknown:
        raise SystemExit(f"unknown tool {unknown[0]!r}: choose from {', '.join((*OURS, *PEERS))}")
    peers = peers_available(args.peers_python, [t for t in tools if t in PEERS])
    tools = [t for t in tools if t not in PEERS or t in peers]
    if args.no_fsync and shutil.which("eatmydata") is None:
        print("skipping --no-fsync: eatmydata is not installed (apt-get install eatmydata)")
        args.no_fsync = False

    compile_vcli()
    work = args.work or Path(tempfile.mkdtemp(prefix="vcli-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"vectors-{args.n}x{args.dims}-meta.ndjson"
    r = Runner(work, data, args.n, args.dims, args.peers_python, args.lance_write_parallelism)
    folders: list[Path] = []  # kept with --keep
    try:
        if not data.exists():
            started = time.perf_counter()
            tmp = data.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                datagen.write_ndjson(f, args.n, args.dims, metadata_of=metadata_of)
            tmp.rename(data)
            print(f"wrote {data} in {time.perf_counter() - started:.0f} s")
        size = data.stat().st_size
        print(f"{args.n:,} x {args.dims} with metadata: {size / MB:,.0f} MB of NDJSON; {os.cpu_count()} cores; "
              f"tools: {', '.join(tools)}")
        print(f"load average at the start: {load_average()}", flush=True)
        loads: list[Load] = []
        for turn in range(1, args.repeat + 1):
            order = tools if turn % 2 else tools[::-1]
            for tool in order:
                ld, folder = r.run(tool, turn)
                loads.append(ld)
                print(f"  {tool} (turn {turn}): {ld.seconds:.2f} s, {ld.disk / MB:,.0f} MB", flush=True)
                if args.keep and turn == args.repeat:
                    folders.append(folder)
                else:
                    r.drop(folder)  # the next load has the disk to itself
        print(f"load average at the end: {load_average()}\n")
        print(table(loads, args.n, args.dims), flush=True)
        if args.no_fsync:
            folder = r.folder("vcli-nofsync")
            read_through(data)
            done = r.vcli(folder, ("eatmydata", VCLI))
            r.drop(folder)
            print(f"vcli under eatmydata (no fsync): {done.seconds:.2f} s, {args.n / done.seconds:,.0f} vectors/s, "
                  f"cpu {done.cpu:.1f} s (load average {load_average()})\n", flush=True)
        if args.profile:
            print(profile_vcli(r, args.profile_top, args.keep))
        if folders:
            print("kept: " + ", ".join(str(f) for f in [data, *folders]))
    finally:
        for folder in r.made:
            if folder not in folders:
                r.drop(folder)
        shutil.rmtree(work / "config", ignore_errors=True)
        if not args.keep:
            data.unlink(missing_ok=True)
            if not args.work:
                shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
