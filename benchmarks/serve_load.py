"""Load test of ``vcli serve`` on loopback: concurrent queries and writes, bounded in count and time.

    python benchmarks/serve_load.py [--requests 3000] [--concurrency 16] [--writes 0.1]
                                    [--vectors 20000] [--dims 384] [--max-seconds 120] [--json]

Starts ``vcli serve --port 0`` on 127.0.0.1 over a temporary data dir, creates a cosine index and
loads ``--vectors`` random vectors (timed apart), then sends ``--requests`` requests from
``--concurrency`` concurrent clients: a share ``--writes`` of them upserts of 10 vectors (half new
ids, half replacing), the rest top-10 queries by vector. It stops after the last request or after
``--max-seconds``, whichever comes first, stops the server with SIGTERM, and reports requests/s and
p50/p99 latency per kind. Any failed request (a transport error, a status other than 200 or an
envelope without ``success``) is counted and makes the exit status 1.

Only loopback traffic: the server binds 127.0.0.1 and the client talks to nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

ACCOUNT = "load"


def start_server(data_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    out = open(log, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vcli", "serve", "--port", "0", "--data-dir", str(data_dir)],
        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = re.search(r"Listening on (http://\S+)", log.read_text(errors="replace"))
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"vcli serve did not start:\n{log.read_text(errors='replace')}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), or NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ndjson_rows(ids: list[str], vecs: np.ndarray) -> bytes:
    return b"".join(
        orjson.dumps({"id": i, "values": v}, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        for i, v in zip(ids, vecs, strict=True)
    )


def random_unit(rng: np.random.Generator, n: int, dims: int) -> np.ndarray:
    v = rng.standard_normal((n, dims)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def run_load(api: str, args, rng: np.random.Generator) -> dict:
    kinds = np.where(rng.random(args.requests) < args.writes, "write", "query")
    queries = random_unit(rng, 256, args.dims).round(5).tolist()
    latencies: dict[str, list[float]] = {"query": [], "write": []}
    failures: list[str] = []
    next_job = 0
    new_ids = 0
    deadline = time.monotonic() + args.max_seconds

    async def one(client: httpx.AsyncClient, kind: str, n: int) -> None:
        nonlocal new_ids
        if kind == "query":
            req = client.post(f"{api}/indexes/load/query",
                              json={"vector": queries[n % len(queries)], "topK": 10})
        else:
            ids = [f"w{new_ids + i}" for i in range(5)] + [f"v{int(x)}" for x in rng.integers(0, args.vectors, 5)]
            new_ids += 5
            req = client.post(f"{api}/indexes/load/upsert", content=ndjson_rows(ids, random_unit(rng, 10, args.dims)),
                              headers={"content-type": "application/x-ndjson"})
        t0 = time.perf_counter()
        try:
            resp = await req
            ok = resp.status_code == 200 and resp.json().get("success") is True
            if not ok:
                failures.append(f"{kind}: HTTP {resp.status_code} {resp.text[:200]}")
        except httpx.HTTPError as exc:
            failures.append(f"{kind}: {type(exc).__name__}: {exc}")
            return
        latencies[kind].append(time.perf_counter() - t0)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_job
        while next_job < args.requests and time.monotonic() < deadline:
            n = next_job
            next_job += 1
            await one(client, str(kinds[n]), n)

    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - t0
    return {"elapsed": elapsed, "latencies": latencies, "failures": failures, "sent": next_job}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--writes", type=float, default=0.1, help="share of requests that are upserts")
    parser.add_argument("--vectors", type=int, default=20000, help="vectors loaded before the test")
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--max-seconds", type=float, default=120)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args()
    rng = np.random.default_rng(7)

    with tempfile.TemporaryDirectory(prefix="vcli-load-") as tmp:
        proc, url = start_server(Path(tmp) / "data", Path(tmp) / "serve.log")
        api = f"{url}/client/v4/accounts/{ACCOUNT}/vectorize/v2"
        try:
            with httpx.Client(timeout=300) as c:
                r = c.post(f"{api}/indexes", json={"name": "load", "config": {"dimensions": args.dims,
                                                                              "metric": "cosine"}})
                r.raise_for_status()
                t0 = time.perf_counter()
                for start in range(0, args.vectors, 5000):
                    n = min(5000, args.vectors - start)
                    body = ndjson_rows([f"v{i}" for i in range(start, start + n)], random_unit(rng, n, args.dims))
                    c.post(f"{api}/indexes/load/insert", content=body,
                           headers={"content-type": "application/x-ndjson"}).raise_for_status()
                load_s = time.perf_counter() - t0
            load_before, cpu_before = os.getloadavg()[0], cpu_seconds(proc.pid)
            result = asyncio.run(run_load(api, args, rng))
            server_cpu = cpu_seconds(proc.pid) - cpu_before
            with httpx.Client(timeout=60) as c:
                count = c.get(f"{api}/indexes/load/info").json()["result"]["vectorCount"]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = "killed"
            log = (Path(tmp) / "serve.log").read_text(errors="replace")

    lat = result["latencies"]
    every = lat["query"] + lat["write"]
    summary = {
        "cores": os.cpu_count(),
        "vectors_loaded": args.vectors, "dims": args.dims,
        "load_seconds": round(load_s, 2), "load_vectors_per_s": round(args.vectors / load_s),
        "concurrency": args.concurrency, "requests_sent": result["sent"], "requests_ok": len(every),
        "failed": len(result["failures"]), "seconds": round(result["elapsed"], 2),
        "requests_per_s": round(len(every) / result["elapsed"], 1),
        "server_cpu_ms_per_request": round(server_cpu * 1000 / max(len(every), 1), 2),
        "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2),
        "final_vector_count": count, "server_exit": code,
        **{f"{k}_{name}": round(v, 1) for k in ("query", "write", "all")
           for name, v in (("count", len(every if k == "all" else lat[k])),
                           ("p50_ms", pct(every if k == "all" else lat[k], 50)),
                           ("p99_ms", pct(every if k == "all" else lat[k], 99)))},
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"loaded {args.vectors} x {args.dims} vectors in {summary['load_seconds']} s "
              f"({summary['load_vectors_per_s']} vectors/s)")
        print(f"{summary['requests_ok']} of {summary['requests_sent']} requests ok in {summary['seconds']} s "
              f"with {args.concurrency} clients: {summary['requests_per_s']} requests/s")
        for k in ("query", "write", "all"):
            print(f"  {k:5}  n={summary[k + '_count']:<6g} p50 {summary[k + '_p50_ms']:.1f} ms   "
                  f"p99 {summary[k + '_p99_ms']:.1f} ms")
        print(f"server CPU per request: {summary['server_cpu_ms_per_request']} ms; load average "
              f"{summary['load_average_before']} before, {summary['load_average_after']} after "
              f"({summary['cores']} cores)")
        print(f"failed requests: {summary['failed']}; vectors at the end: {count}; server exit: {code}")
    for text in result["failures"][:10]:
        print("  failure:", text, file=sys.stderr)
    if "Traceback" in log:
        print(log, file=sys.stderr)
    return 1 if result["failures"] or code != 0 or "Traceback" in log else 0


if __name__ == "__main__":
    sys.exit(main())
