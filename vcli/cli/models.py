"""Workers AI's embedding models on this computer: ``vcli models list``, ``vcli models pull`` and
``vcli embed`` (the optional ``vcli[ai]`` extra; ``vcli.embeddings`` does the work)."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from .. import embeddings, render
from ..ndjson import open_input
from ..render import Reply, Table, Text
from ._common import FlagGroup, JsonFlag, VectorizeCommand, run

app = typer.Typer()  # commands of the top level: embed
models_app = typer.Typer(
    cls=FlagGroup,
    short_help="List and pull the Workers AI embedding models.",
    help="Workers AI's embedding models (@cf/baai/bge-*-en-v1.5) on this computer: list and pull them.",
    no_args_is_help=True,
)

ModelArg = Annotated[str, typer.Argument(
    help="The model: @cf/baai/bge-small-en-v1.5, @cf/baai/bge-base-en-v1.5 or @cf/baai/bge-large-en-v1.5.",
    show_default=False)]
PoolingOpt = Annotated[str, typer.Option(
    "--pooling", help="How text's token vectors become one: mean (Workers AI's default) or cls; vectors "
    "made one way do not compare with vectors made the other.")]
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", help="The embedding model for text (default: the index's --preset), e.g. "
    "@cf/baai/bge-base-en-v1.5; see vcli models list.", show_default=False)]


def text_model(index, model: str | None):
    """The model that embeds text for ``index`` (``--model``, else its preset), found when the
    first text needs it: a file without text needs none."""
    return lambda: embeddings.model_for(index.name, index.config.preset, model, index.dimensions)


def _size(size: int | None) -> str:
    return "" if size is None else f"{size / 1e6:,.0f} MB"


@models_app.command("list", cls=VectorizeCommand, short_help="List the embedding models and where they are.")
@run
def list_(json: JsonFlag = False) -> None:
    """List the embedding models vcli computes, whether each is on disk, and where."""
    models = embeddings.list_models()
    rows = [(m.name, m.dimensions, "yes" if m.pulled else "no", _size(m.size), m.path) for m in models]
    human: list = [Table(("model", "dimensions", "pulled", "size", "path"), rows)]
    if not any(m.pulled for m in models):
        human.append(Text("No model pulled yet: `vcli models pull @cf/baai/bge-base-en-v1.5` downloads one.",
                          err=True))
    render.show(Reply(models, human), json)


@models_app.command("pull", cls=VectorizeCommand, short_help="Download a model, or take it from a folder.")
@run
def pull(
    model: ModelArg,
    from_: Annotated[Optional[str], typer.Option(
        "--from", help="Take the model from this folder (Hugging Face layout: tokenizer.json, config.json, "
        "onnx/model.onnx or model.onnx) instead of downloading it.", show_default=False)] = None,
    json: JsonFlag = False,
) -> None:
    """Download a model's official ONNX weights and tokenizer from Hugging Face (checksums checked),
    or take them from a folder; after that nothing needs the network."""
    fetched = True
    if from_ is not None:
        status = embeddings.pull_from(model, from_)
    else:
        with render.progress(f"Downloading {model}", unit="MB") as progress:
            status, fetched = embeddings.pull(
                model, progress=progress and (lambda done, _total: progress(done // 1_000_000)))
    about = f"{status.name} ({status.dimensions} dimensions, {_size(status.size)})"
    said = (f"Pulled {about} into {status.path}" if fetched else
            f"{about} is in {status.path} already, whole and at the hub's latest commit: nothing downloaded")
    render.show(Reply({**status.to_json(), "downloaded": fetched}, [Text(said)]), json)


@app.command("embed", cls=VectorizeCommand, short_help="Turn NDJSON lines of text into vectors.")
@run
def embed(
    model: ModelArg,
    file: Annotated[str, typer.Option(
        "--file", help='NDJSON, one {"text": "..."} a line (id, metadata, namespace kept); - reads stdin.',
        show_default=False)],
    pooling: PoolingOpt = "mean",
) -> None:
    """Embed text: print each line with "values" in place of "text", as `vcli insert` and
    `wrangler vectorize insert` take."""
    embeddings.spec(model)
    with open_input(file) as stream:
        out = sys.stdout.buffer
        for line in embeddings.text_lines(stream, model, pooling):
            out.write(line)
        out.flush()
