"""Computing embeddings: the model's own tokenizer (``tokenizers``) and its ONNX graph (ONNX Runtime).

As Workers AI describes the bge models: each text is tokenised with ``[CLS] … [SEP]`` and truncated
to 512 tokens; texts are run in padded batches (attention mask 0 on the padding, so a text gets the
same vector alone or in a batch, to float rounding); the last hidden state is pooled by ``"mean"``
over the real tokens or by ``"cls"`` (the first token's state), then L2-normalised
(docs/embeddings.md says why). Texts are sorted by length before batching so that little padding
is computed, and a batch holds at most ``Batching.tokens`` padded tokens (and ``Batching.texts``
texts), which bounds memory whatever the texts.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AiExtraMissing, BadModelFolder, ModelNotPulled
from . import MAX_TOKENS, Batching, ModelSpec, spec
from .store import MANIFEST, verified_files

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def require_extra() -> tuple[Any, Any]:
    """``onnxruntime`` and ``tokenizers``, or ``AiExtraMissing`` naming the one that is missing."""
    try:
        import onnxruntime
    except ImportError:
        raise AiExtraMissing("onnxruntime") from None
    try:
        import tokenizers
    except ImportError:
        raise AiExtraMissing("tokenizers") from None
    return onnxruntime, tokenizers


class Model:
    """One loaded model: its tokenizer and ONNX Runtime session (both safe to share between threads)."""

    def __init__(self, name: str, onnx_path: Path, tokenizer_path: Path, dimensions: int | None = None):
        ort, tokenizers = require_extra()
        self.name = name
        self.tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()  # padding is done here, per batch
        self.tokenizer.enable_truncation(MAX_TOKENS)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: ONNX Runtime's warnings are not the user's business
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in self.session.get_inputs()]
        missing = [n for n in INPUTS[:2] if n not in names]
        unknown = [n for n in names if n not in INPUTS]
        if missing or unknown:
            raise BadModelFolder(
                f"{onnx_path}: the graph's inputs are {', '.join(names)}; a BERT model takes input_ids, "
                "attention_mask and optionally token_type_ids")
        self.inputs = tuple(names)
        if "last_hidden_state" not in [o.name for o in self.session.get_outputs()]:
            raise BadModelFolder(f"{onnx_path}: the graph has no output named last_hidden_state")
        self.dimensions = dimensions

    def tokens(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=True)]

    def hidden(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """The last hidden state of one padded batch, and its attention mask."""
        width = max(len(t) for t in ids)
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, t in enumerate(ids):
            input_ids[row, :len(t)] = t
            mask[row, :len(t)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        (state,) = self.session.run(["last_hidden_state"], feed)
        return state, mask

    def embed(self, texts: list[str], pooling: str = "mean", batching: Batching = Batching()) -> np.ndarray:
        ids = self.tokens(texts)
        out = np.empty((len(texts), self.dimensions or 0), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        start = 0
        while start < len(order):
            end = start + 1  # the longest in a batch is its last (sorted), so the width grows with it
            while (end < len(order) and end - start < batching.texts
                   and (end - start + 1) * len(ids[order[end]]) <= batching.tokens):
                end += 1
            rows = order[start:end]
            state, mask = self.hidden([ids[i] for i in rows])
            pooled = pool(state, mask, pooling)
            if out.shape[1] != pooled.shape[1]:
                raise BadModelFolder(f"the model of {self.name} gives {pooled.shape[1]} dimensions, "
                                     f"not {out.shape[1]}: pull it again")
            out[rows] = pooled
            start = end
        return out


def pool(state: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    """Mean over the real tokens (``mask`` 1) or the ``[CLS]`` token's state, L2-normalised."""
    if pooling == "cls":
        vectors = state[:, 0, :].astype(np.float64)
    else:
        weights = mask[:, :, None].astype(np.float64)
        vectors = (state * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


_LOADED: dict[Path, tuple[int, Model]] = {}  # folder -> (its manifest's mtime, the model)
_LOCK = threading.Lock()


def load(model: str, env: Mapping[str, str] | None = None) -> Model:
    """The model from ``models_dir(env)``, loaded once per process and checked against its manifest
    when loaded (again after a new pull, which writes a new manifest); ``ModelNotPulled`` when it is
    not there."""
    from . import models_dir

    s = spec(model)
    folder = models_dir(env) / s.folder_name
    try:
        stamp = (folder / MANIFEST).stat().st_mtime_ns
    except OSError:
        stamp = None
    with _LOCK:
        loaded = _LOADED.get(folder)
        if loaded is None or loaded[0] != stamp:
            require_extra()
            files = verified_files(folder)
            if files is None or stamp is None:
                _LOADED.pop(folder, None)
                raise ModelNotPulled(model, str(models_dir(env)))
            loaded = _LOADED[folder] = (stamp, Model(model, files["model.onnx"], files["tokenizer.json"], s.dimensions))
        return loaded[1]


PROBE = "vcli checks that this model gives one vector per token"

def check_model(spec: ModelSpec, onnx_path: Path, tokenizer_path: Path) -> None:
    """``BadModelFolder`` unless the graph and tokenizer load and give ``last_hidden_state`` of
    ``spec.dimensions`` per token."""
    require_extra()
    try:
        model = Model(spec.name, onnx_path, tokenizer_path)
    except BadModelFolder:
        raise
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime and tokenizers raise their own types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadModelFolder(f"cannot load the model in {onnx_path.parent}: {first}") from None
    try:
        state, _ = model.hidden(model.tokens([PROBE]))
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadModelFolder(f"the model in {onnx_path.parent} fails on a test sentence: {first}") from None
    if state.ndim != 3 or state.shape[2] != spec.dimensions:
        raise BadModelFolder(
            f"the model in {onnx_path.parent} gives last_hidden_state of shape {list(state.shape)}; "
            f"{spec.name} gives [batch, tokens, {spec.dimensions}]")
