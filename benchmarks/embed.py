"""Texts per second of ``vcli.embeddings.embed`` per model size, beside a baseline from the same run.

    python benchmarks/embed.py [small base large] [--texts 96] [--repeat 2]

The real weights are one ``vcli models pull`` away but not reachable from every machine, so this
builds, for each size, an ONNX graph of the real model's shape with random weights (the BERT of
``tests/aimodel.py``: small 12 layers, hidden 384, 12 heads, feed-forward 1536; base 12/768/12/3072;
large 24/1024/16/4096; vocabulary 30522, 512 positions) and installs it through ``pull --from``.
The time of a forward pass depends on those shapes and on the number of tokens, not on the values
of the weights, so texts/s are what the real models give on this machine, to the noise of the run
(the real exports may differ in graph details: fused attention, opset). The texts are made of
whole words of the test vocabulary (one token each), so their token counts are exact:

    short     queries of 8-24 tokens
    passage   document chunks of 64-192 tokens

Each workload runs two ways over the same texts:

    one at a time   ``embed(model, [text])`` per text (what a naive caller does; the baseline)
    batched         ``embed(model, texts[i:i+100])``: vcli sorts by length and runs padded batches

Each figure is the best of ``--repeat`` passes after one warm-up call. ONNX Runtime uses every core.
The machine's load average (``os.getloadavg``) is printed before and after: on a shared machine,
compare figures only within one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from aimodel import WORDS, build_bert_onnx, build_tokenizer, vocabulary  # noqa: E402

from vcli import embeddings  # noqa: E402

SHAPES = {  # layers, hidden, heads, intermediate
    "small": (12, 384, 12, 1536),
    "base": (12, 768, 12, 3072),
    "large": (24, 1024, 16, 4096),
}
WORKLOADS = {"short": (8, 24), "passage": (64, 192)}


def install(size: str, root: Path) -> str:
    layers, hidden, heads, intermediate = SHAPES[size]
    model = f"@cf/baai/bge-{size}-en-v1.5"
    source = root / f"src-{size}"
    build_bert_onnx(source / "onnx" / "model.onnx", vocab=30522, hidden=hidden, layers=layers, heads=heads,
                    intermediate=intermediate)
    build_tokenizer(source / "tokenizer.json", vocabulary())
    (source / "config.json").write_text("{}")
    embeddings.pull_from(model, source, env={"VCLI_MODELS_DIR": str(root / "models")})
    return model


def texts(n: int, low: int, high: int, seed: int = 1) -> list[str]:
    """``n`` texts of ``low``-``high`` words; each word is one token, plus [CLS] and [SEP]."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(low - 2, high - 1)))) for _ in range(n)]


def best_rate(run, count: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="*", default=["small", "base"], choices=sorted(SHAPES))
    parser.add_argument("--texts", type=int, default=96, help="texts per workload")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  cores: {os.cpu_count()}")
    print(f"{'model':<6} {'workload':<8} {'tokens/text':>11} {'one at a time':>15} {'batched':>12} {'speed-up':>9}")
    with tempfile.TemporaryDirectory(prefix="vcli-embed-bench-") as tmp:
        root = Path(tmp)
        env = {"VCLI_MODELS_DIR": str(root / "models")}
        for size in args.sizes:
            model = install(size, root)
            embeddings.embed(model, ["warm up the session"], env=env)
            for workload, (low, high) in WORKLOADS.items():
                batch = texts(args.texts, low, high)
                tokens = np.mean([len(t.split()) + 2 for t in batch])

                def one_at_a_time(batch=batch, model=model):
                    for text in batch:
                        embeddings.embed(model, [text], env=env)

                def batched(batch=batch, model=model):
                    for i in range(0, len(batch), embeddings.MAX_TEXTS):
                        embeddings.embed(model, batch[i:i + embeddings.MAX_TEXTS], env=env)

                alone = best_rate(one_at_a_time, len(batch), args.repeat)
                together = best_rate(batched, len(batch), args.repeat)
                print(f"{size:<6} {workload:<8} {tokens:>11.0f} {alone:>11.1f} t/s {together:>8.1f} t/s "
                      f"{together / alone:>8.2f}x", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
