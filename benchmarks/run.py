"""vcli's speed and scale benchmark: every figure of issues 4 and 15 beside its baseline, in one run.

    python benchmarks/run.py --quick      # about 2 minutes: every figure, at smaller sizes
    python benchmarks/run.py              # the full run: loads of 20k, 60k and 200k vectors
    python benchmarks/run.py --scale      # also 1,000,000 x 384 (many minutes, GBs of disk)
    python benchmarks/run.py --scale-only [--scale-baseline] [--scale-size N] [--scale-pipe]
    python benchmarks/run.py --scale-only --scale-no-graph --scale-size 20000000
    python benchmarks/run.py --start-up   # only the one-shot and imports figures (on 60k x 384)

Data comes from ``datagen.py`` (deterministic clustered vectors that behave roughly like 384-dim
text embeddings). vcli runs as the installed ``vcli`` executable in fresh processes, as a user
would run it; each baseline runs beside it in the same run, measured the same way (wall time of
the process, peak memory from ``wait4``'s ``ru_maxrss``). The figures:

* load      ``vcli insert`` of an NDJSON file (durable and queryable when it returns) vs orjson
            parse + usearch f32 graph build (target: >= 4x faster under 100k vectors, <= 1.2x
            the baseline's time above, >= 5x faster at 1M with ``--scale-baseline``; >= 5,000
            vectors/s at every size; peak memory < 2 x float32 size + the peak of a query of a
            one-vector index, and at scale <= 1.5 x float32 size + 100 MB)
* no cliff  (``--scale-only``) loads of 1k, 10k, 100k and just under and over the size where an
            index gets a graph: the rate over it within 2x of the rate under it
* recall    recall@10 of ``vcli query`` against exact search, at every size (>= 0.99)
* one-shot  ``vcli query`` in a fresh process on 60k x 384 vs ``python -c "import numpy, usearch"``,
            median of several runs (target: at most 150 ms more)
* imports   ``vcli list``, ``info``, ``get`` and ``--help`` import neither numpy nor usearch
* batch     ``vcli query --file`` on 60k x 384 (>= 1,000 queries/s) vs NumPy exact search in-process
* writes    upserting one vector into the 60k index vs ``vcli info`` (<= 1.2x)
* export    ``vcli export`` (>= 50,000 vectors/s) vs orjson writing the same vectors from NumPy, and
            ``vcli export a | vcli insert b --file -`` gives the same index
* scale     (``--scale``) 1,000,000 x 384: load, the graph's build after it, one-shot query before
            and after the graph (<= 400 ms, beside the imports), recall@10 (>= 0.99), batch of 2,000
            (>= 1,000 queries/s, beside NumPy exact), a one-vector upsert (<= 1.2x ``vcli info``);
            ``--scale-pipe`` loads it through a pipe from ``datagen.py`` (no file on disk);
            ``--scale-no-graph`` loads it so, holds its graph off, and times exact queries,
            growth (10,000 more beside the same into 20k, <= 2x) and a one-vector upsert

Exit status 0 when every target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datagen  # noqa: E402

DIMS = 384
HERE = Path(__file__).resolve().parent
PY = sys.executable
VCLI = str(Path(PY).with_name("vcli")) if Path(PY).with_name("vcli").exists() else shutil.which("vcli")
MB = 1024 * 1024


# == running children =========================================================================
@dataclass
class Child:
    seconds: float
    peak: int  # bytes (ru_maxrss)
    cpu: float  # user + system seconds (less sensitive than wall time to other load on the machine)
    code: int
    out: bytes
    err: bytes


# Runs a command and reports its wall time, peak RSS and CPU on the file descriptor given first.
# Measuring from this small process matters: Linux counts in a child's peak RSS the memory of the
# process it was forked from (the benchmark's own hundreds of MB, when Popen forks it directly).
_MEASURE = """import os, sys, time
fd = int(sys.argv[1])
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.close(fd)
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, use = os.wait4(pid, 0)
os.write(fd, f"{time.perf_counter() - start} {use.ru_maxrss} {use.ru_utime + use.ru_stime}".encode())
sys.exit(os.waitstatus_to_exitcode(status))
"""


def child(argv: list[str], *, stdin: str | bytes | Path | None = None, env: dict | None = None,
          check: bool = True) -> Child:
    """Run ``argv``; its wall time, peak resident memory and CPU (from ``wait4``, in a small
    process of its own: see ``_MEASURE``) and its output."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        inp = subprocess.DEVNULL
        if isinstance(stdin, Path):
            inp = open(stdin, "rb")
        elif stdin is not None:
            inp = subprocess.PIPE
        r, w = os.pipe()
        proc = subprocess.Popen([PY, "-S", "-c", _MEASURE, str(w), *argv], stdin=inp, stdout=out,
                                stderr=err, env=env, pass_fds=(w,))
        os.close(w)
        if inp is subprocess.PIPE:
            proc.stdin.write(stdin.encode() if isinstance(stdin, str) else stdin)
            proc.stdin.close()
        proc.wait()
        with os.fdopen(r, "rb") as f:
            seconds, peak_kb, cpu = f.read().split()
        if isinstance(stdin, Path):
            inp.close()
        out.seek(0)
        err.seek(0)
        result = Child(float(seconds), int(peak_kb) * 1024, float(cpu), proc.returncode, out.read(), err.read())
    if check and result.code != 0:
        raise SystemExit(f"failed ({result.code}): {' '.join(argv[:4])} ...\n{result.err.decode()[-2000:]}")
    return result


def compile_vcli() -> None:
    """pip compiles a package's bytecode when it installs it; an editable install in an
    environment with PYTHONDONTWRITEBYTECODE set would compile vcli in every process (~80 ms)."""
    subprocess.run([PY, "-m", "compileall", "-q", str(Path(__import__("vcli").__file__).parent)],
                   check=True)


class Bench:
    def __init__(self, work: Path, quick: bool):
        self.work = work
        self.quick = quick
        self.data = work / "data"
        self.env = {
            **os.environ,
            "VCLI_DATA_DIR": str(self.data),
            "XDG_CONFIG_HOME": str(work / "config"),  # no user config.toml
            "NO_COLOR": "1",
        }
        self.gen = datagen.Generator(DIMS)
        self.loads: dict[int, Child] = {}  # each load of vcli, by size
        self.results: list[Row] = []

    def vcli(self, *args: str, stdin=None, check: bool = True) -> Child:
        return child([VCLI, *args], stdin=stdin, env=self.env, check=check)

    def py(self, *args: str, check: bool = True) -> Child:
        return child([PY, *args], env=self.env, check=check)

    # -- data ---------------------------------------------------------------------------------
    def ndjson(self, n: int) -> Path:
        path = self.work / f"vectors-{n}.ndjson"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                datagen.write_ndjson(f, n, DIMS)
            tmp.rename(path)
        return path

    def queries(self, count: int) -> np.ndarray:
        return self.gen.queries(count)

    def exact_top(self, n: int, queries: np.ndarray, k: int = 10) -> list[list[int]]:
        """Exact top-k row numbers (cosine rescored in float64, ties by id) of each query: a
        float32 pass keeps the 4k best of each query, then those are rescored."""
        wide = 4 * k
        nq = len(queries)
        best_s = np.full((nq, 0), -np.inf, np.float32)
        best_i = np.zeros((nq, 0), np.int64)
        best_v = np.zeros((nq, 0, DIMS), np.float32)
        qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        for start, block in self.gen.chunks(n, 50_000):
            s = qn @ (block / np.linalg.norm(block, axis=1, keepdims=True)).T
            take = np.argpartition(-s, wide, axis=1)[:, :wide] if s.shape[1] > wide else np.argsort(-s, axis=1)
            best_s = np.concatenate([best_s, np.take_along_axis(s, take, 1)], axis=1)
            best_i = np.concatenate([best_i, take + start], axis=1)
            best_v = np.concatenate([best_v, block[take]], axis=1)
            keep = np.argsort(-best_s, axis=1)[:, :wide]
            best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
            best_v = np.take_along_axis(best_v, keep[:, :, None], 1)
        out = []
        for qi in range(nq):
            vecs = best_v[qi].astype(np.float64)
            q = queries[qi].astype(np.float64)
            score = vecs @ q / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(q))
            rows = best_i[qi]
            order = sorted(range(len(rows)), key=lambda j: (-score[j], int(rows[j])))
            out.append([int(rows[j]) for j in order[:k]])
        return out

    # -- reporting ----------------------------------------------------------------------------
    def report(self, section: str, what: str, vcli: str, baseline: str, target: str, ok: bool | None) -> None:
        ok = None if ok is None else bool(ok)  # a NumPy bool is not ``False``: report_end missed it
        row = Row(section, what, vcli, baseline, target, ok)
        self.results.append(row)
        mark = {True: "ok", False: "MISSED", None: "-"}[ok]
        print(f"{section:<9} {what:<34} {vcli:>18}   {baseline:>22}   {target:<24} {mark}", flush=True)


@dataclass
class Row:
    section: str
    what: str
    vcli: str
    baseline: str
    target: str
    ok: bool | None
    extra: dict = field(default_factory=dict)


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def median_time(run, times: int) -> float:
    return statistics.median(run().seconds for _ in range(times))


# == the benchmarks ==========================================================================
def bench_imports_constant(b: Bench) -> int:
    """The 'constant' of the memory target: the peak memory of a vcli process with its libraries
    loaded and next to no vectors, a query of a one-vector index. (It was the peak of a
    one-vector insert, until such an insert stopped loading NumPy: a load of 10,000 vectors does,
    and has to.)"""
    b.vcli("create", "tiny", "--dimensions", str(DIMS), "--metric", "cosine")
    q = b.queries(1)[0].tolist()
    b.vcli("insert", "tiny", "--file", "-", stdin=orjson.dumps({"id": "x", "values": q}) + b"\n")
    return b.vcli("query", "tiny", "--vector", orjson.dumps(q).decode(), "--json").peak


def bench_load(b: Bench, n: int, constant: int, baseline: bool = True) -> str:
    name = f"load-{n}"
    path = b.ndjson(n)
    b.vcli("create", name, "--dimensions", str(DIMS), "--metric", "cosine")
    v = b.vcli("insert", name, "--file", str(path), "--json")
    f32 = n * DIMS * 4
    limit, rule = (1.5 * f32 + 100 * MB, "1.5xf32+100MB") if n >= 1_000_000 else (2 * f32 + constant, "2xf32+c")
    plan = "/".join(sorted(k for k in file_kinds(b, name) if k in ("graph", "matrix"))) or "store"
    b.report("load", f"{n:,} x {DIMS} ({plan})", fmt_s(v.seconds), "", f"{n / v.seconds:,.0f} vectors/s", None)
    b.report("load", f"{n:,}: vectors/s", f"{n / v.seconds:,.0f}/s", "", ">= 5,000/s", n / v.seconds >= 5000)
    b.report("memory", f"{n:,}: peak RSS", f"{v.peak / MB:,.0f} MB", "", f"< {limit / MB:,.0f} MB ({rule})",
             v.peak < limit)
    b.report("scale", f"{n:,}: bytes a vector after the load", "", "", disk_by_kind(b, name, n), None)
    b.loads[n] = v
    if baseline:
        bench_load_baseline(b, n)
    return name


def disk_by_kind(b: Bench, name: str, n: int) -> str:
    """Bytes a vector of each kind of file of an index over 1 MB (``kind_of``), their total, and
    that over the float32 size."""
    disk: dict[str, int] = {}
    for p in (b.data / name).iterdir():
        disk[kind_of(p)] = disk.get(kind_of(p), 0) + p.stat().st_size
    total = sum(disk.values())
    return (", ".join(f"{k} {v / n:,.0f}" for k, v in sorted(disk.items()) if v > MB)
            + f"; all {total / n:,.0f} ({total / (n * DIMS * 4):.2f}x f32)")


def bench_load_baseline(b: Bench, n: int) -> None:
    """The baseline of the load of ``n`` vectors (``bench_load``), run on its own: orjson parse +
    usearch f32 graph build, in one process."""
    v, path = b.loads[n], b.ndjson(n)
    graph = b.work / f"baseline-{n}.usearch"
    base = b.py(str(HERE / "baseline.py"), "load", str(path), str(graph))
    if n < 100_000:
        target, ok = ">= 4x faster", base.seconds / v.seconds >= 4
    elif n >= 1_000_000:
        target, ok = ">= 5x faster", base.seconds / v.seconds >= 5
    else:
        target, ok = "<= 1.2x baseline", v.seconds / base.seconds <= 1.2
    b.report("load", f"{n:,}: vcli against the baseline", fmt_s(v.seconds),
             f"{fmt_s(base.seconds)} ({base.seconds / v.seconds:.1f}x)", target, ok)
    b.report("load", f"{n:,}: baseline vectors/s; peak RSS", f"{n / v.seconds:,.0f}/s",
             f"{n / base.seconds:,.0f}/s; {base.peak / MB:,.0f} MB", "", None)
    calibrate(b, n, graph)
    graph.unlink(missing_ok=True)


def calibrate(b: Bench, n: int, graph: Path) -> None:
    """Raw usearch recall of the baseline graph at ef 64 / 128: how hard the data is (real text
    embeddings, 59k x 384: 0.978 / 0.991)."""
    from usearch.index import Index

    index = Index.restore(str(graph), view=True)
    queries = b.queries(200)
    exact = b.exact_top(n, queries)
    found = []
    for ef in (64, 128):
        index.expansion_search = ef
        keys = index.search(queries, 10, threads=os.cpu_count() or 1).keys
        found.append(np.mean([len(set(map(int, keys[i])) & set(exact[i])) / 10 for i in range(len(queries))]))
    b.report("data", f"{n:,}: raw usearch recall@10 ef64/128", "", f"{found[0]:.3f} / {found[1]:.3f}",
             "real text: 0.978 / 0.991", None)


def query_file(queries: np.ndarray, k: int = 10) -> bytes:
    return b"".join(orjson.dumps({"vector": q, "topK": k}, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
                    for q in queries)


def batch_answers(b: Bench, name: str, queries: np.ndarray, k: int = 10) -> tuple[Child, list[list[int]]]:
    path = b.work / f"queries-{len(queries)}.ndjson"
    path.write_bytes(query_file(queries, k))
    run = b.vcli("query", name, "--file", str(path))
    lines = run.out.splitlines()
    if len(lines) != len(queries):
        raise SystemExit(f"vcli query --file gave {len(lines)} lines for {len(queries)} queries")
    found = [[int(m["id"][4:]) for m in orjson.loads(line)["matches"]] for line in lines]
    return run, found


def kind_of(path: Path) -> str:
    """The kind of an index's file: store, values (the columns that hold them: keys and f32),
    norms (the matrix's norms and tombstones), matrix (its manifest), graph (one file a part),
    index, lock..."""
    kind = path.name.split("-")[0].split(".")[0]
    if kind == "vectors":  # (values-<gen>.keys|f32 are the values)
        return "norms"
    return kind


def file_kinds(b: Bench, name: str) -> list[str]:
    return [kind_of(p) for p in (b.data / name).iterdir()]


def bench_recall(b: Bench, name: str, n: int, count: int, target: float = 0.99) -> None:
    queries = b.queries(count)
    exact = b.exact_top(n, queries)
    _run, found = batch_answers(b, name, queries)
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)])
    same = np.mean([f == e for f, e in zip(found, exact, strict=True)])
    files = file_kinds(b, name)
    plan = " + ".join(f"{files.count(k)} {k}" if files.count(k) > 1 else k
                      for k in ("graph", "matrix") if k in files) or "store"
    b.report("recall", f"{n:,} ({plan}) recall@10", f"{recall:.4f}", f"exact 1.0000 ({same:.0%} same)",
             f">= {target}", recall >= target)


def bench_one_shot(b: Bench, name: str, runs: int, limit_ms: float = 150) -> None:
    q = orjson.dumps(b.queries(1)[0].tolist()).decode()
    b.vcli("query", name, "--vector", q, "--json")  # warm the page cache, as a second query would
    commands = {
        "query": [VCLI, "query", name, "--vector", q, "--top-k", "10", "--json"],
        "base": [PY, "-c", "import numpy, usearch"],
        "info": [VCLI, "info", name, "--json"],
    }
    done: dict[str, list[Child]] = {k: [] for k in commands}
    for _ in range(runs):  # interleaved, so that other load on the machine hits all alike
        for key, argv in commands.items():
            done[key].append(child(argv, env=b.env))
    wall = {k: statistics.median(r.seconds for r in v) for k, v in done.items()}
    cpu = {k: statistics.median(r.cpu for r in v) for k, v in done.items()}
    extra = (wall["query"] - wall["base"]) * 1000
    b.report("one-shot", f"query {name} (median of {runs})", fmt_s(wall["query"]),
             f"{fmt_s(wall['base'])} numpy+usearch", f"<= +{limit_ms:.0f} ms", extra <= limit_ms)
    b.report("one-shot", "  difference (wall)", f"{extra:+.0f} ms", f"vcli info {fmt_s(wall['info'])}", "", None)
    b.report("one-shot", "  difference (cpu time)", f"{(cpu['query'] - cpu['base']) * 1000:+.0f} ms",
             f"cpu {fmt_s(cpu['query'])} / {fmt_s(cpu['base'])}", "", None)


def bench_imports(b: Bench, name: str) -> None:
    for args in (("list",), ("info", name), ("get", name), ("--help",)):
        run = child([PY, "-X", "importtime", VCLI, *args], env=b.env)
        mods = {line.rsplit("|", 1)[-1].strip() for line in run.err.decode().splitlines()
                if line.startswith("import time:")}
        heavy = sorted(m for m in mods if m.split(".")[0] in ("numpy", "usearch"))
        b.report("imports", f"vcli {' '.join(a for a in args if a != name)}", "none" if not heavy else ",".join(heavy[:2]),
                 "", "no numpy, no usearch", not heavy)


def bench_batch(b: Bench, name: str, n: int, count: int, target: float | None = 1000) -> None:
    queries = b.queries(count)
    run, _found = batch_answers(b, name, queries)
    # Baseline: NumPy exact search of the same queries, in-process (matrix already in memory).
    # Normalised in place and scored a few queries at a time: 5M x 384 is 7.7 GB already.
    xn = b.gen.rows(0, n)
    xn /= np.linalg.norm(xn, axis=1, keepdims=True)
    step = max(16, min(256, 250_000_000 // n))
    start = time.perf_counter()
    for i in range(0, count, step):
        s = queries[i : i + step] @ xn.T
        np.argpartition(-s, 10, axis=1)[:, :10]
    del xn, s
    base = time.perf_counter() - start
    rate = count / run.seconds
    b.report("batch", f"query --file, {count:,} on {n // 1000}k", f"{rate:,.0f} q/s",
             f"{count / base:,.0f} q/s numpy exact", f">= {target:,.0f} q/s" if target else "",
             rate >= target if target else None)


def bench_writes(b: Bench, name: str, runs: int) -> None:
    line = orjson.dumps({"id": "upserted", "values": b.queries(2)[1].tolist()}) + b"\n"
    path = b.work / "one.ndjson"
    path.write_bytes(line)
    ups, infos = [], []
    for _ in range(runs):  # interleaved, so that other load on the machine hits both alike
        ups.append(b.vcli("upsert", name, "--file", str(path)))
        infos.append(b.vcli("info", name))
    up, info = statistics.median(r.seconds for r in ups), statistics.median(r.seconds for r in infos)
    b.report("writes", f"upsert 1 vector (median of {runs})", fmt_s(up), f"info {fmt_s(info)}",
             "<= 1.2x info", up <= 1.2 * info)
    b.report("writes", "  cpu time; slowest upsert", fmt_s(statistics.median(r.cpu for r in ups)),
             f"info {fmt_s(statistics.median(r.cpu for r in infos))}; slowest {fmt_s(max(r.seconds for r in ups))}",
             "", None)


def stream_export(b: Bench, name: str) -> tuple[float, float, int]:
    """``vcli export NAME`` read from a pipe: (seconds in all, seconds from the first byte to the
    last, bytes). The second is the streaming rate, without the process's start. The reader does
    nothing but read (like ``cat > /dev/null``): counting newlines in Python costs ~4 us a
    384-dim line, CPU the export itself would want on a 2-core machine."""
    start = time.perf_counter()
    proc = subprocess.Popen([VCLI, "export", name], stdout=subprocess.PIPE, env=b.env)
    first = None
    size = 0
    while chunk := proc.stdout.read1(1 << 20):
        if first is None:
            first = time.perf_counter()
        size += len(chunk)
    proc.wait()
    end = time.perf_counter()
    return end - start, end - (first or end), size


def bench_export(b: Bench, name: str, n: int) -> None:
    out = b.work / "export.ndjson"
    v = b.vcli("export", name, "--output", str(out))
    lines = out.read_bytes().count(b"\n")
    total, streaming, size = stream_export(b, name)
    same = size == out.stat().st_size  # the same text as --output wrote: the same lines
    b.report("export", f"export {lines:,} vectors to a pipe", f"{lines / streaming:,.0f}/s", "streaming",
             ">= 50,000 vectors/s", same and lines / streaming >= 50_000)
    b.report("export", "  the same, with process start", f"{lines / total:,.0f}/s", f"{fmt_s(total)} in all", "", None)
    x = b.gen.rows(0, n)
    opt = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
    start = time.perf_counter()
    with open(b.work / "export-baseline.ndjson", "wb") as f:
        for i in range(n):
            f.write(orjson.dumps({"id": datagen.vector_id(i), "values": x[i]}, option=opt))
    base = time.perf_counter() - start
    (b.work / "export-baseline.ndjson").unlink()
    b.report("export", f"export {lines:,} vectors --output", f"{lines / v.seconds:,.0f}/s",
             f"{n / base:,.0f}/s orjson, 1 core", "", None)
    # The copy: export | insert, then both exports must be the same bytes.
    b.vcli("create", "copy", "--dimensions", str(DIMS), "--metric", "cosine")
    pipe = subprocess.run(f'"{VCLI}" export {name} | "{VCLI}" insert copy --file - --json', shell=True,
                          env=b.env, capture_output=True)
    again = b.vcli("export", "copy").out
    ids = [datagen.vector_id(i) for i in (0, n // 2, n - 1)]
    same_get = (b.vcli("get-vectors", name, "--ids", *ids, "--json").out
                == b.vcli("get-vectors", "copy", "--ids", *ids, "--json").out)
    ok = pipe.returncode == 0 and again == out.read_bytes() and same_get
    b.report("export", "export a | insert b: same vectors", "yes" if ok else "NO", "", "get-vectors equal", ok)
    out.unlink()


def bench_graph_forced(b: Bench, n: int) -> None:
    """The graph plan on a small index (the threshold lowered in-process), for --quick."""
    from vcli.engine import Catalog, Tuning

    cat = Catalog(b.data, tuning=Tuning(graph_min_floats=1, graph_in_background=False))
    cat.create("graph-forced", dimensions=DIMS, metric="cosine")
    ids = [datagen.vector_id(i) for i in range(n)]
    start = time.perf_counter()
    with cat.open("graph-forced", write=True) as ix:
        ix.insert_arrays(ids, b.gen.rows(0, n), batch_size=5000)
    build = time.perf_counter() - start
    assert any(p.name.startswith("graph-") for p in (b.data / "graph-forced").iterdir())
    b.report("load", f"{n:,} in-process, graph forced", fmt_s(build), "", "", None)
    queries = b.queries(200)
    exact = b.exact_top(n, queries)
    with cat.open("graph-forced") as ix:
        found = [[int(m.id[4:]) for m in r.matches]
                 for r in ix.query_many({"vector": q.tolist(), "topK": 10} for q in queries)]
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)])
    b.report("recall", f"{n:,} (graph, forced) recall@10", f"{recall:.4f}", "exact 1.0000", ">= 0.99", recall >= 0.99)


def wait_for_graph(b: Bench, name: str, deadline: float = 3600) -> float:
    """Seconds until the builder has made the graph of the newest matrix (the load has returned:
    until then queries are exact from the matrix)."""
    from vcli.engine import Tuning
    from vcli.engine.builder import needs_graph, running
    from vcli.engine.layout import Folder

    folder = Folder(b.data / name)
    start = time.perf_counter()
    while needs_graph(folder, DIMS, Tuning().graph_part_rows) or running(folder):
        if time.perf_counter() - start > deadline:
            raise SystemExit(f"no graph for {name} after {deadline:.0f} s")
        time.sleep(0.5)
    return time.perf_counter() - start


def builders_of(folder: Path) -> list[int]:
    """Process ids of vcli graph builders working on the index ``folder`` (``python -m
    vcli.graph_builder FOLDER ...``): only the one our own write started can name this folder."""
    pids = []
    target = os.path.realpath(os.fsencode(folder))
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"vcli.graph_builder" in argv and any(os.path.realpath(a) == target for a in argv if a):
            pids.append(int(proc.name))
    return pids


def stop_builders(folder: Path) -> None:
    """Stop the graph builders of the index ``folder`` (SIGTERM, then SIGKILL after 30 s): a
    killed builder leaves at most a temporary file, which the next one removes."""
    for pid in builders_of(folder):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)


@contextmanager
def graph_held_off(folder: Path):
    """Keep the index ``folder`` from getting its graph while inside: stop the builder its load
    started and hold its build lock, as a builder at work does. Every command then sees a builder
    at work and starts none (a query of a matrix without parts would, and so would a fold), and
    none waits for the lock."""
    import fcntl

    from vcli.engine.layout import Folder

    fd = os.open(Folder(folder).build_lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            stop_builders(folder)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def bench_cliff(b: Bench, constant: int) -> None:
    """Loads from 1,000 vectors to just past the size at which an index gets a graph: each at
    least 5,000 vectors/s, and the one just past the threshold within 2x of the one just under
    (the old design built the graph during the load there: 15,000 -> 800 vectors/s)."""
    from vcli.engine import Tuning

    edge = Tuning().graph_min_floats // DIMS
    below, above = int(edge * 0.95), int(edge * 1.05)
    for n in (1_000, 10_000, 100_000, below, above):
        name = bench_load(b, n, constant, baseline=False)
    wait_for_graph(b, name)  # its builder would otherwise run beside what comes next
    rate = {m: m / b.loads[m].seconds for m in (below, above)}
    b.report("load", f"no cliff: {above:,} against {below:,}", f"{rate[above]:,.0f}/s",
             f"{rate[below]:,.0f}/s ({rate[below] / rate[above]:.2f}x)", "within 2x", rate[below] / rate[above] <= 2)


def bench_pipe_load(b: Bench, n: int, judge: bool = True) -> str:
    """``datagen.py N | vcli insert NAME --file -``: no file on disk. Peak RSS is the larger of
    the two processes' (datagen's ~200 MB at small sizes: not judged with ``judge`` false)."""
    name = f"pipe-{n}"
    b.vcli("create", name, "--dimensions", str(DIMS), "--metric", "cosine")
    cmd = f"{shlex.quote(PY)} {shlex.quote(str(HERE / 'datagen.py'))} {n} {DIMS} | " \
          f"{shlex.quote(VCLI)} insert {name} --file - --json"
    v = child(["bash", "-c", f"set -o pipefail; {cmd}"], env=b.env)
    for line in v.err.decode().splitlines():  # what vcli told the user (a size warning)
        print(f"          vcli said: {line}", flush=True)
    disk = sum(p.stat().st_size for p in (b.data / name).iterdir())
    limit = 1.5 * n * DIMS * 4 + 100 * MB
    b.report("load", f"{n:,} x {DIMS} through a pipe", fmt_s(v.seconds), "", f"{n / v.seconds:,.0f} vectors/s",
             n / v.seconds >= 5000 if judge else None)
    b.report("memory", f"{n:,}: peak RSS (pipe)", f"{v.peak / MB:,.0f} MB", "",
             f"< {limit / MB:,.0f} MB (1.5xf32+100MB)", v.peak < limit if judge else None)
    b.report("scale", f"{n:,}: disk used", f"{disk / MB:,.0f} MB", "", f"{disk / n:,.0f} bytes a vector", None)
    return name


def warm(b: Bench, name: str) -> float:
    """Read every file of an index once, so that what is timed next is vcli and not this VM's
    disk: it pages out files left alone for about a minute (a DAMON pageout scheme), so a large
    index's files are mostly not in memory after a long step (a build, a baseline). A file larger
    than half the machine's memory is left alone: it would not stay in the page cache anyway."""
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    start = time.perf_counter()
    for path in (b.data / name).iterdir():
        if path.stat().st_size > memory // 2:
            continue
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass
    return time.perf_counter() - start


def bench_scale(b: Bench, n: int, constant: int, baseline: bool, pipe: bool = False) -> None:
    name = bench_pipe_load(b, n) if pipe else bench_load(b, n, constant, baseline=False)
    # the load has returned: durable, and queryable exactly from the matrix; the graph follows
    q = orjson.dumps(b.queries(1)[0].tolist()).decode()
    exact = median_time(lambda: b.vcli("query", name, "--vector", q, "--top-k", "10", "--json"), 3)
    b.report("scale", f"one-shot on {n:,} before its graph", fmt_s(exact), "", "exact, from the matrix", None)
    built = wait_for_graph(b, name)
    b.report("scale", f"{n:,}: graph built after the load", fmt_s(built), "",
             f"in the background, {n / built:,.0f} vectors/s", None)
    if baseline and not pipe:
        bench_load_baseline(b, n)  # alone, after the build: neither slows the other
    b.report("scale", f"{n:,}: files read before timing", fmt_s(warm(b, name)), "", "(this VM pages idle files out)", None)
    b.vcli("query", name, "--vector", q, "--json")
    v = median_time(lambda: b.vcli("query", name, "--vector", q, "--top-k", "10", "--json"), 5)
    base = median_time(lambda: b.py("-c", "import numpy, usearch"), 5)
    judged = n <= 2_000_000  # the query targets are set at 1M; past 2M the figures are reported
    b.report("scale", f"one-shot query on {n:,} (median of 5)", fmt_s(v), f"{fmt_s(base)} numpy+usearch",
             "<= 400 ms" if judged else "", v <= 0.4 if judged else None)
    b.report("scale", f"{n:,}: bytes a vector with its graph", "", "", disk_by_kind(b, name, n), None)
    bench_recall(b, name, n, 1000 if pipe else 300, target=0.99)
    warm(b, name)
    bench_batch(b, name, n, 2000, target=1000 if judged else None)
    bench_writes(b, name, 5)
    bench_grow(b, name, n, 10_000)


def bench_growth(b: Bench, names: dict[int, str], more: int, rounds: int, settle=None) -> None:
    """Insert ``more`` new vectors into each index of ``names`` (by size, smallest first),
    ``rounds`` times, one index after the other each round so that other load on the machine hits
    all alike: every index's files read once before (``warm``) and ``settle(name, n)``, if given,
    called after (to wait for its builder), so that neither a cold page cache nor a builder running
    beside it is what is timed. The medians, and the largest against the smallest (<= 2x)."""
    times: dict[int, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        path = b.work / f"more-{r}.ndjson"
        with open(path, "wb") as f:
            datagen.write_ndjson(f, more, DIMS, seed=100 + r, id_of=lambda i, r=r: f"more{r}-{i}")
        for n, name in names.items():
            warm(b, name)
            times[n].append(b.vcli("insert", name, "--file", str(path)).seconds)
            if settle:
                settle(name, n)
        path.unlink()
    for n in names:
        b.report("growth", f"{more:,} more into {n:,} (median of {rounds})", fmt_s(statistics.median(times[n])),
                 "", ", ".join(fmt_s(t) for t in times[n]), None)
    small, large = min(names), max(names)
    ratio = statistics.median(times[large]) / statistics.median(times[small])
    b.report("growth", f"into {large:,} against {small:,}", f"{ratio:.2f}x", "", "<= 2x", ratio <= 2)


def bench_scale_no_graph(b: Bench, n: int, small: int = 20_000, more: int = 10_000, rounds: int = 3) -> None:
    """``--scale-no-graph``: ``n`` vectors through a pipe with their graph left unbuilt
    (``graph_held_off``: at 20M the parts would take ~18 GB and hours of both cores), so every
    query scans the matrix exactly. The figures: the load (time, peak RSS, disk by kind), the
    count ``vcli info`` gives, a one-shot exact query (the first after the load, then the median
    of 3), ``more`` vectors into it beside into a ``small`` index (``bench_growth``), and a
    one-vector upsert beside ``vcli info`` (median of 5)."""
    name = bench_pipe_load(b, n)
    with graph_held_off(b.data / name):
        b.report("scale", f"{n:,}: bytes a vector after the load", "", "", disk_by_kind(b, name, n), None)
        count = orjson.loads(b.vcli("info", name, "--json").out)["vectorCount"]
        b.report("scale", f"{n:,}: vectorCount after the load", f"{count:,}", "", f"{n:,}", count == n)
        q = orjson.dumps(b.queries(1)[0].tolist()).decode()
        queries = [b.vcli("query", name, "--vector", q, "--top-k", "10", "--json") for _ in range(4)]
        matches = len(orjson.loads(queries[0].out)["matches"])
        b.report("scale", f"one-shot exact on {n:,}: first", fmt_s(queries[0].seconds),
                 f"peak RSS {queries[0].peak / MB:,.0f} MB", f"{matches} matches of 10", matches == 10)
        b.report("scale", f"one-shot exact on {n:,}: median of 3",
                 fmt_s(statistics.median(r.seconds for r in queries[1:])),
                 f"cpu {fmt_s(statistics.median(r.cpu for r in queries[1:]))}", "", None)
        bench_growth(b, {small: bench_pipe_load(b, small, judge=False), n: name}, more, rounds)
        bench_writes(b, name, 5)


def bench_grow(b: Bench, name: str, n: int, more: int) -> None:
    """Insert ``more`` new vectors into the loaded index: the write appends them to the matrix
    (``growth.py`` times this beside the same into a small index), and the builder then adds them
    to the last graph part while queries scan them exactly (a write never takes the graph away)."""
    path = b.work / f"more-{more}.ndjson"
    with open(path, "wb") as f:
        datagen.write_ndjson(f, more, DIMS, seed=1, id_of=lambda i: f"more-{i}")
    v = b.vcli("insert", name, "--file", str(path), "--json")
    b.report("load", f"{more:,} more into {n:,}", fmt_s(v.seconds), "", f"{more / v.seconds:,.0f} vectors/s", None)
    q = orjson.dumps(b.queries(1)[0].tolist()).decode()
    during = median_time(lambda: b.vcli("query", name, "--vector", q, "--top-k", "10", "--json"), 3)
    b.report("scale", "one-shot while the builder adds them", fmt_s(during), "", "parts + the new rows exactly", None)
    b.report("scale", f"{more:,} more: in the graph after", fmt_s(wait_for_graph(b, name)), "", "in the background", None)
    path.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 2 minutes: smaller sizes, fewer runs")
    parser.add_argument("--scale", action="store_true", help="also load and query 1,000,000 x 384 (about 10 minutes)")
    parser.add_argument("--scale-size", type=int, default=1_000_000)
    parser.add_argument("--scale-baseline", action="store_true", help="also time the baseline at scale")
    parser.add_argument("--scale-only", action="store_true", help="run only the scale figures")
    parser.add_argument("--scale-pipe", action="store_true",
                        help="load the scale index through a pipe from datagen.py (no file on disk)")
    parser.add_argument("--scale-no-graph", action="store_true",
                        help="only the scale figures, loaded through a pipe with the graph held off (the index's "
                             "build lock held): exact queries and growth (sizes whose graph would take hours)")
    parser.add_argument("--start-up", action="store_true",
                        help="run only the start-up figures: one-shot (--runs, default 9) and imports")
    parser.add_argument("--runs", type=int, help="one-shot runs (default 9, 5 with --quick)")
    parser.add_argument("--sizes", help="load sizes, comma-separated (default 20000,60000,200000)")
    parser.add_argument("--work", type=Path, help="work folder (kept; data files are reused)")
    args = parser.parse_args()
    if VCLI is None:
        raise SystemExit("vcli is not installed next to this Python")
    work = args.work or Path(tempfile.mkdtemp(prefix="vcli-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if (work / "data").exists():
        shutil.rmtree(work / "data")
    compile_vcli()
    b = Bench(work, args.quick)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([20_000] if args.quick else [20_000, 60_000, 200_000])
    print(f"vcli benchmark: {os.cpu_count()} cores, {'quick' if args.quick else 'full'} run, work {work}")
    print(f"{'':<9} {'':<34} {'vcli':>18}   {'baseline':>22}   {'target':<24}")
    started = time.perf_counter()
    try:
        constant = bench_imports_constant(b)
        b.report("memory", "constant: query of 1 vector", f"{constant / MB:,.0f} MB", "", "", None)
        if args.scale_only or args.scale_no_graph or args.start_up:
            sizes = []
        loaded = {n: bench_load(b, n, constant) for n in sizes}
        main_n = 60_000
        if args.scale_no_graph:
            bench_scale_no_graph(b, args.scale_size)
            return report_end(b, started)
        if args.scale_only:
            bench_cliff(b, constant)
            bench_scale(b, args.scale_size, constant, args.scale_baseline, args.scale_pipe)
            return report_end(b, started)
        main_name = loaded.get(main_n) or bench_load(b, main_n, constant, baseline=False)
        runs = args.runs or (5 if args.quick else 9)
        if args.start_up:
            bench_one_shot(b, main_name, runs)
            bench_imports(b, main_name)
            return report_end(b, started)
        for n, name in loaded.items():
            bench_recall(b, name, n, 200 if args.quick else 500)
        if main_n not in loaded:
            bench_recall(b, main_name, main_n, 200 if args.quick else 500)
        if args.quick:
            bench_graph_forced(b, 20_000)
        bench_one_shot(b, main_name, runs)
        bench_imports(b, main_name)
        # The rate includes the process's start (~0.3 s): 1,000 queries (--quick) are too few to
        # judge it by.
        bench_batch(b, main_name, main_n, 1000 if args.quick else 5000, target=None if args.quick else 1000)
        bench_writes(b, main_name, 5 if args.quick else 11)
        bench_export(b, main_name, main_n)
        if args.scale:
            bench_scale(b, args.scale_size, constant, args.scale_baseline, args.scale_pipe)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return report_end(b, started)


def report_end(b: Bench, started: float) -> int:
    missed = [r for r in b.results if r.ok is False]
    print(f"\n{len(b.results)} figures in {time.perf_counter() - started:.0f} s; "
          f"{'all targets met' if not missed else f'{len(missed)} targets missed'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
