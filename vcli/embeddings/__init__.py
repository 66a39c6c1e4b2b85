"""Workers AI's text-embedding models on this computer: ``@cf/baai/bge-{small,base,large}-en-v1.5``.

    MODELS / ModelSpec          the models vcli computes, their dimensions and Hugging Face repository
    models_dir()                where pulled models live ($VCLI_MODELS_DIR, else the user cache dir)
    embed(model, texts)         float32 vectors, as ``env.AI.run(model, {text, pooling})`` gives
    Batching                    how many texts and padded tokens run through the model together
    list_models()               each model, whether it is on disk and where
    pull(model) / pull_from()   download the official ONNX weights, or take a folder already on disk
    vector_lines / text_lines / text_queries   NDJSON lines with ``"text"``: vectors to write,
                                lines with ``"values"`` (vcli embed), queries with ``"vector"``

Engine-level: it never prints or exits. This module imports nothing heavy; NumPy, ONNX Runtime,
tokenizers and huggingface_hub are imported only when a model is loaded or pulled (the optional
``vcli[ai]`` extra), so ``vcli --help`` and a vcli without the extra are unchanged. What is computed
and why (truncation, padding, pooling, normalisation): docs/embeddings.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import BadEmbedInput, NoModel, UnknownModel

if TYPE_CHECKING:
    import numpy

    from ..engine.records import VectorLine


@dataclass(frozen=True)
class ModelSpec:
    name: str  # Workers AI's name
    dimensions: int
    hf_repo: str  # where the official weights are
    onnx_file: str = "onnx/model.onnx"  # the ONNX export of the original fp32 weights in that repository

    @property
    def folder_name(self) -> str:
        """Its folder under ``models_dir()``: ``baai--bge-base-en-v1.5``."""
        return self.name.removeprefix("@cf/").replace("/", "--")


MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("@cf/baai/bge-small-en-v1.5", 384, "BAAI/bge-small-en-v1.5"),
    ModelSpec("@cf/baai/bge-base-en-v1.5", 768, "BAAI/bge-base-en-v1.5"),
    ModelSpec("@cf/baai/bge-large-en-v1.5", 1024, "BAAI/bge-large-en-v1.5"),
)}
POOLINGS = ("mean", "cls")
MAX_TEXTS = 100  # texts per call, as Workers AI takes
MAX_TOKENS = 512  # longer texts are truncated to their first 512 tokens ([CLS] and [SEP] included)


@dataclass(frozen=True)
class Batching:
    """How many texts run through the model together: at most ``texts`` texts and ``tokens`` padded
    tokens a run, which bounds memory whatever the texts."""

    # 32 texts and 1,024 padded tokens (32 texts of up to 32 tokens, 16 of 64, 2 of 512). Short texts
    # gain most from running together; for passages, larger runs were slower (their activations
    # outgrow the CPU's caches): benchmarks/embed.py, docs/embeddings.md.
    texts: int = 32
    tokens: int = 1024


class ModelStatus(NamedTuple):
    name: str
    dimensions: int
    pulled: bool
    path: Path
    size: int | None  # bytes on disk when pulled
    source: str | None  # where it was pulled from

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dimensions": self.dimensions, "pulled": self.pulled,
                "path": str(self.path), "size": self.size, "source": self.source}


def spec(model: str) -> ModelSpec:
    """The model's spec; ``UnknownModel`` naming the models vcli computes for any other name."""
    try:
        return MODELS[model]
    except (KeyError, TypeError):
        raise UnknownModel(str(model), tuple(MODELS)) from None


def models_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$VCLI_MODELS_DIR`` if set, else the user cache dir's ``vcli/models``."""
    env = os.environ if env is None else env
    if env.get("VCLI_MODELS_DIR"):
        return Path(env["VCLI_MODELS_DIR"]).expanduser()
    import platformdirs  # lazy: only a command that looks for models needs it

    return Path(platformdirs.user_cache_dir("vcli", appauthor=False)) / "models"


def model_path(model: str, env: Mapping[str, str] | None = None) -> Path:
    return models_dir(env) / spec(model).folder_name


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise BadEmbedInput(f'pooling must be "mean" or "cls", not {pooling!r}')
    return pooling


def check_texts(texts: Sequence[str], pooling: str) -> list[str]:
    """The texts as a list, or ``BadEmbedInput`` saying what Workers AI would refuse."""
    check_pooling(pooling)
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise BadEmbedInput("the texts must be a list of strings")
    if not texts:
        raise BadEmbedInput("no texts to embed (the list is empty)")
    if len(texts) > MAX_TEXTS:
        raise BadEmbedInput(f"{len(texts)} texts in one call; at most {MAX_TEXTS}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise BadEmbedInput(f"text {i} is not a string")
        if not text:
            raise BadEmbedInput(f"text {i} is empty; a text has at least 1 character")
    return list(texts)


def embed(model: str, texts: Sequence[str], pooling: str = "mean", *,
          env: Mapping[str, str] | None = None, batching: Batching = Batching()) -> numpy.ndarray:
    """The embeddings of ``texts`` (1-100 non-empty strings) with ``model``: float32, shape
    ``(len(texts), dimensions)``, L2-normalised. ``pooling`` is ``"mean"`` (over the tokens,
    Workers AI's default) or ``"cls"``. Texts longer than 512 tokens are truncated. ``batching``
    bounds the texts run through the model together (the vectors do not depend on it)."""
    spec(model)
    texts = check_texts(texts, pooling)
    from .runtime import load  # lazy: NumPy, ONNX Runtime and tokenizers

    return load(model, env).embed(texts, pooling, batching)


def list_models(env: Mapping[str, str] | None = None) -> list[ModelStatus]:
    """Every model vcli computes, whether it is on disk, where, and its size (a folder whose
    manifest cannot be read counts as not pulled: pulling again mends it)."""
    from ..errors import ModelDamaged
    from .store import read_manifest

    out = []
    for name, s in MODELS.items():
        path = model_path(name, env)
        try:
            manifest = read_manifest(path)
        except ModelDamaged:
            manifest = None
        out.append(ModelStatus(
            name, s.dimensions, manifest is not None, path,
            sum(f["size"] for f in manifest["files"].values()) if manifest else None,
            manifest.get("source") if manifest else None,
        ))
    return out


def pull_from(model: str, folder: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> ModelStatus:
    """Install ``model`` from a folder in the Hugging Face layout (``tokenizer.json``,
    ``config.json``, ``onnx/model.onnx`` or ``model.onnx``), after checking that its graph takes
    ``input_ids`` and ``attention_mask`` and gives ``last_hidden_state`` of the model's dimensions."""
    from .download import install_from_folder

    install_from_folder(spec(model), Path(folder), models_dir(env))
    return _status(model, env)


def pull(model: str, *, env: Mapping[str, str] | None = None,
         progress: Callable[[int, int], None] | None = None) -> tuple[ModelStatus, bool]:
    """Download ``model``'s official ONNX weights and tokenizer from its Hugging Face repository,
    check each file's checksum against the hub's, and install them. ``progress(done, total)`` is
    called with bytes as they arrive. The hub is ``HF_ENDPOINT`` of ``env`` (default: the process's
    environment), else https://huggingface.co. Also says whether anything was downloaded: not when
    the hub's current commit is on disk already, whole."""
    from .download import download

    fetched = download(spec(model), models_dir(env), progress, (os.environ if env is None else env).get("HF_ENDPOINT"))
    return _status(model, env), fetched


def _status(model: str, env: Mapping[str, str] | None) -> ModelStatus:
    return next(s for s in list_models(env) if s.name == model)


def model_for(index_name: str, index_model: str | None, given: str | None, dimensions: int) -> str:
    """The model that embeds text for an index: ``given`` (``--model``), else the one the index was
    created with (``--preset``); ``NoModel`` when neither, or when its dimensions are not the index's."""
    model = given or index_model
    if model is None:
        raise NoModel(f'index "{index_name}" has no embedding model, so it cannot take text: give one '
                      f"with --model (one of {', '.join(MODELS)}), or create the index with --preset")
    if model not in MODELS:
        what = model if given else f'index "{index_name}" was created with the preset {model}, which'
        raise NoModel(f"{what} is not a model vcli computes; give one with --model ({', '.join(MODELS)})")
    if MODELS[model].dimensions != dimensions:
        raise NoModel(f"{model} gives {MODELS[model].dimensions} dimensions but index \"{index_name}\" has "
                      f"{dimensions}; give a model of {dimensions} dimensions with --model")
    return model


def vector_lines(lines: Iterable[bytes], dimensions: int, model: str | Callable[[], str], pooling: str = "mean",
                 *, env: Mapping[str, str] | None = None) -> Iterator[VectorLine]:
    """Checked vectors from NDJSON lines (``vcli.ndjson.read_vectors``), where a line may give
    ``"text"`` instead of ``"values"``: texts are embedded up to 100 at a time, lines kept in order.
    ``model`` may be a function giving the name, called at the first text (a file without text
    needs no model)."""
    from .lines import vector_lines as run

    check_pooling(pooling)  # before the first line is read
    return run(lines, dimensions, model, pooling, env=env)


def text_lines(lines: Iterable[bytes], model: str, pooling: str = "mean", *,
               env: Mapping[str, str] | None = None) -> Iterator[bytes]:
    """``vcli embed``: NDJSON lines where each ``{"text": …}`` becomes ``{"values": […]}`` (the rest
    of the line kept), in order; a line without ``"text"`` is an error."""
    from .lines import text_lines as run

    check_pooling(pooling)
    return run(lines, model, pooling, env=env)


def text_queries(lines: Iterable[bytes | None], model: str | Callable[[], str], pooling: str = "mean", *,
                 env: Mapping[str, str] | None = None) -> Iterator[bytes | None]:
    """Query lines (``vcli query --file``) where ``{"text": …}`` becomes ``{"vector": […]}``, one
    at a time (a query is answered as soon as its line arrives); other lines and pauses pass."""
    from .lines import text_queries as run

    check_pooling(pooling)
    return run(lines, model, pooling, env=env)
