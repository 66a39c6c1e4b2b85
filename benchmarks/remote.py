"""Push and pull of a whole index through ``vcli serve`` (the stand-in for the live service), with
wrangler's own insert of the same file against the same server as the baseline.

    python benchmarks/remote.py [-n 100000] [--dims 384] [--rate 100000/1] [--no-wrangler]

Makes a local index of ``-n`` synthetic vectors (benchmarks/datagen.py, a string metadata field with a
metadata index), then times, each as a fresh process of the installed ``vcli``:

- ``vcli push``: create the remote index like the local one, upload everything, check;
- ``vcli pull`` of it into a new local index, then ``vcli diff`` of the copy and the original;
- baseline: ``wrangler vectorize insert`` of the same vectors as NDJSON into a new remote index
  (when wrangler is installed under tests/workers/node_modules).

For each it prints seconds, vectors/s, and for push and pull the requests and bytes sent. The
rate is not limited by default (``--rate`` sets ``VCLI_REMOTE_RATE``); the note after the table
says what the live service's 1,200 requests per 5 minutes would make of the same request counts.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datagen import Generator, vector_id  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WRANGLER = ROOT / "tests" / "workers" / "node_modules" / "wrangler" / "wrangler-dist" / "cli.js"


def vcli(*args, env: dict) -> dict:
    out = subprocess.run([str(Path(sys.executable).with_name("vcli")), *map(str, args), "--json"],
                         env=env, capture_output=True, check=False)
    if out.returncode not in (0, 1) or (out.returncode and "diff" not in args):
        raise SystemExit(f"vcli {' '.join(map(str, args))} failed: {out.stderr.decode()}")
    return orjson.loads(out.stdout) if out.stdout.strip() else {}


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def start_server(data_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    out = open(log, "wb")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("vcli")), "serve", "--port", "0",
                             "--data-dir", str(data_dir)], stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = re.search(r"Listening on (http://\S+)", log.read_text(errors="replace"))
        if m:
            return proc, m.group(1)
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"vcli serve did not start:\n{log.read_text(errors='replace')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--dims", type=int, default=384)
    ap.add_argument("--rate", default="100000/1")
    ap.add_argument("--no-wrangler", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vcli-remote-bench-"))
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, tmp: Path) -> None:
    data = tmp / "vectors.ndjson"
    gen = Generator(args.dims)
    with open(data, "wb") as f:
        for start in range(0, args.n, 10_000):
            block = gen.rows(start, min(start + 10_000, args.n))
            for i, vec in enumerate(block, start):
                f.write(orjson.dumps({"id": vector_id(i), "values": vec, "metadata": {"group": f"g{i % 10}"}},
                                     option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE))
    proc, url = start_server(tmp / "service", tmp / "serve.log")
    env = {**os.environ, "VCLI_DATA_DIR": str(tmp / "local"), "CLOUDFLARE_API_BASE_URL": f"{url}/client/v4",
           "CLOUDFLARE_API_TOKEN": "bench", "VCLI_REMOTE_RATE": args.rate}
    rows = []
    try:
        vcli("create", "src", "--dimensions", args.dims, "--metric", "cosine", env=env)
        vcli("create-metadata-index", "src", "--property-name", "group", "--type", "string", env=env)
        vcli("insert", "src", "--file", data, env=env)
        secs, pushed = timed(lambda: vcli("push", "src", env=env))
        rows.append(("vcli push", secs, pushed["requests"], pushed["bytesSent"]))
        secs, pulled = timed(lambda: vcli("pull", "src", "copy", env=env))
        rows.append(("vcli pull", secs, pulled["requests"], pulled["bytesSent"]))
        secs, same = timed(lambda: vcli("diff", "src", "copy", env=env))
        assert same["equal"], same
        rows.append(("vcli diff (local copies)", secs, 0, 0))
        if not args.no_wrangler and WRANGLER.exists() and shutil.which("node"):
            rows.append(wrangler_insert(url, data, tmp, args))
    finally:
        proc.terminate()
        proc.wait()
    load = os.getloadavg()[0]
    print(f"{args.n:,} x {args.dims} through vcli serve on loopback (rate {args.rate}; load {load:.1f}):")
    for name, secs, requests, sent in rows:
        extra = f"  {requests:>6,} requests, {sent / 1e6:7.1f} MB sent" if requests else ""
        print(f"  {name:<34} {secs:7.1f} s  {args.n / secs:9,.0f} vectors/s{extra}")
    for name, _secs, requests, _sent in rows:
        if requests:
            print(f"  at the API's 1,200 requests / 5 min, {name}'s {requests:,} requests take at least "
                  f"{requests / 4 / 60:.1f} min")


def wrangler_insert(url: str, data: Path, tmp: Path, args) -> tuple:
    home = tmp / "wrangler"
    for sub in ("cwd", "home", "logs", "cache"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "CF_", "WRANGLER_"))}
    env = keep | {"CLOUDFLARE_API_BASE_URL": f"{url}/client/v4", "CLOUDFLARE_API_TOKEN": "bench",
                  "CLOUDFLARE_ACCOUNT_ID": "0" * 32, "WRANGLER_SEND_METRICS": "false",
                  "WRANGLER_HIDE_BANNER": "true", "WRANGLER_SEND_ERROR_REPORTS": "false",
                  "HOME": str(home / "home"), "WRANGLER_LOG_PATH": str(home / "logs"),
                  "WRANGLER_CACHE_DIR": str(home / "cache")}
    cmd = [shutil.which("node"), "--no-warnings", "--experimental-vm-modules", str(WRANGLER), "vectorize"]
    subprocess.run([*cmd, "create", "w", "--dimensions", str(args.dims), "--metric", "cosine"],
                   cwd=home / "cwd", env=env, capture_output=True, check=True)
    secs, out = timed(lambda: subprocess.run([*cmd, "insert", "w", "--file", str(data), "--batch-size", "5000"],
                                             cwd=home / "cwd", env=env, capture_output=True))
    if out.returncode:
        raise SystemExit(f"wrangler insert failed: {out.stderr.decode()[-500:]}")
    return ("baseline: wrangler vectorize insert", secs, 0, 0)


if __name__ == "__main__":
    main()
