"""A BERT-shaped ONNX model and a real WordPiece tokenizer, built here, for tests and benchmarks.

``build_tiny_bert(folder)`` writes, in the Hugging Face layout a user's ``vcli models pull --from``
takes: ``onnx/model.onnx`` (embeddings + LayerNorm, then encoder layers of multi-head attention
whose mask really masks, GELU feed-forward, residuals and LayerNorms; output ``last_hidden_state``
[batch, tokens, hidden]) with random weights from a fixed seed, ``tokenizer.json`` (a WordPiece
tokenizer made with ``tokenizers``: BERT's normaliser and pre-tokeniser, ``[CLS] … [SEP]``,
truncation at 512) and ``config.json``. ``build_bert_onnx`` is the same graph at any size (the
benchmarks build the real models' shapes with it). ``pulled_models_dir(tmp_path)`` installs the
tiny model as ``@cf/baai/bge-small-en-v1.5`` through vcli's own ``pull --from`` code.

Needs ``onnx``, ``tokenizers`` and NumPy (the ``test`` extra); tests that use it call
``pytest.importorskip`` first.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np

SMALL_MODEL = "@cf/baai/bge-small-en-v1.5"
WORDS = ("the", "a", "cat", "dog", "sat", "on", "mat", "vector", "index", "query", "worker", "cloud",
         "search", "text", "embed", "model", "token", "is", "and", "of", "to", "in")


def vocabulary() -> list[str]:
    """BERT's special tokens first ([PAD] 0 … [MASK] 4), whole words, then every letter, digit and
    punctuation mark alone and as a ``##`` continuation, so any ASCII text tokenises without [UNK]."""
    chars = string.ascii_lowercase + string.digits + string.punctuation
    return (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(WORDS)
            + list(chars) + [f"##{c}" for c in chars])


def build_tokenizer(path: Path, vocab: list[str]) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    ids = {tok: i for i, tok in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(vocab=ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece()
    tok.enable_truncation(512)
    tok.save(str(path))


def build_bert_onnx(path: Path, *, vocab: int, hidden: int, layers: int, heads: int, intermediate: int,
                    positions: int = 512, token_type_ids: bool = True, seed: int = 32) -> None:
    """A BERT encoder as an ONNX graph (opset 17) with random weights from ``seed``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits: list = []
    nodes: list = []

    def weight(name: str, *shape: int, scale: float = 0.05) -> str:
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], out: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def layer_norm(x: str, name: str) -> str:
        inits.append(numpy_helper.from_array(np.ones(hidden, np.float32), f"{name}.g"))
        inits.append(numpy_helper.from_array(np.zeros(hidden, np.float32), f"{name}.b"))
        return node("LayerNormalization", [x, f"{name}.g", f"{name}.b"], f"{name}.out", axis=-1, epsilon=1e-12)

    def dense(x: str, name: str, n_in: int, n_out: int) -> str:
        mm = node("MatMul", [x, weight(f"{name}.w", n_in, n_out)], f"{name}.mm")
        return node("Add", [mm, weight(f"{name}.bias", n_out, scale=0.01)], f"{name}.out")

    head = hidden // heads
    # embeddings: word + position + token type, then LayerNorm
    x = node("Gather", [weight("word", vocab, hidden), "input_ids"], "emb.word")
    shape = node("Shape", ["input_ids"], "shape")
    seq = node("Gather", [shape, const("one", np.int64(1))], "seq")
    pos_ids = node("Range", [const("zero", np.int64(0)), seq, const("step", np.int64(1))], "pos_ids")
    x = node("Add", [x, node("Gather", [weight("pos", positions, hidden), pos_ids], "emb.pos")], "emb.sum")
    if token_type_ids:
        x = node("Add", [x, node("Gather", [weight("type", 2, hidden), "token_type_ids"], "emb.type")], "emb.sum2")
    x = layer_norm(x, "emb.ln")
    # the attention mask as an additive bias [batch, 1, 1, tokens]: 0 where 1, -10000 where 0
    maskf = node("Cast", ["attention_mask"], "maskf", to=TensorProto.FLOAT)
    inv = node("Sub", [const("onef", np.float32(1.0)), maskf], "mask.inv")
    bias = node("Mul", [inv, const("neg", np.float32(-10000.0))], "mask.neg")
    bias = node("Unsqueeze", [bias, const("axes12", np.array([1, 2], np.int64))], "mask.bias")
    split = const("split", np.array([0, 0, heads, head], np.int64))  # [batch, tokens, heads, head]
    merge = const("merge", np.array([0, 0, hidden], np.int64))
    scale = const("scale", np.float32(1.0 / np.sqrt(head)))
    for i in range(layers):
        p = f"l{i}"

        def heads_of(t: str, name: str, perm: list[int]) -> str:
            return node("Transpose", [node("Reshape", [t, split], f"{name}.r")], f"{name}.t", perm=perm)

        q = heads_of(dense(x, f"{p}.q", hidden, hidden), f"{p}.q", [0, 2, 1, 3])
        k = heads_of(dense(x, f"{p}.k", hidden, hidden), f"{p}.k", [0, 2, 3, 1])
        v = heads_of(dense(x, f"{p}.v", hidden, hidden), f"{p}.v", [0, 2, 1, 3])
        scores = node("Mul", [node("MatMul", [q, k], f"{p}.qk"), scale], f"{p}.scaled")
        probs = node("Softmax", [node("Add", [scores, bias], f"{p}.masked")], f"{p}.probs", axis=-1)
        ctx = node("Transpose", [node("MatMul", [probs, v], f"{p}.ctx")], f"{p}.ctx.t", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, merge], f"{p}.ctx.r")
        x = layer_norm(node("Add", [x, dense(ctx, f"{p}.o", hidden, hidden)], f"{p}.res1"), f"{p}.ln1")
        h = dense(x, f"{p}.up", hidden, intermediate)
        erf = node("Erf", [node("Mul", [h, const(f"{p}.isq2", np.float32(1 / np.sqrt(2)))], f"{p}.hs")], f"{p}.erf")
        gelu = node("Mul", [node("Mul", [h, const(f"{p}.half", np.float32(0.5))], f"{p}.hh"),
                            node("Add", [erf, const(f"{p}.onee", np.float32(1.0))], f"{p}.erf1")], f"{p}.gelu")
        x = layer_norm(node("Add", [x, dense(gelu, f"{p}.down", intermediate, hidden)], f"{p}.res2"), f"{p}.ln2")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="last_hidden_state"))
    ints = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"])
            for n in ("input_ids", "attention_mask", "token_type_ids")[: 3 if token_type_ids else 2]]
    out = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "tokens", hidden])
    graph = helper.make_graph(nodes, "bert", ints, [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vcli-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def build_tiny_bert(folder: Path, hidden: int = 384, *, token_type_ids: bool = True, onnx_subdir: bool = True,
                    layers: int = 2, heads: int = 4, intermediate: int = 512, seed: int = 32) -> Path:
    """A tiny BERT in the Hugging Face layout in ``folder``; returns ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary()
    onnx_path = folder / "onnx" / "model.onnx" if onnx_subdir else folder / "model.onnx"
    build_bert_onnx(onnx_path, vocab=len(vocab), hidden=hidden, layers=layers, heads=heads,
                    intermediate=intermediate, token_type_ids=token_type_ids, seed=seed)
    build_tokenizer(folder / "tokenizer.json", vocab)
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["BertModel"], "model_type": "bert", "hidden_size": hidden,
        "num_hidden_layers": layers, "num_attention_heads": heads, "intermediate_size": intermediate,
        "max_position_embeddings": 512, "vocab_size": len(vocab), "type_vocab_size": 2,
    }, indent=2))
    return folder


def pulled_models_dir(tmp_path: Path) -> Path:
    """A fresh models dir holding the tiny model as ``@cf/baai/bge-small-en-v1.5``, installed by
    ``vcli models pull --from``'s code; put it in ``VCLI_MODELS_DIR``."""
    from vcli.embeddings import pull_from

    source = build_tiny_bert(Path(tmp_path) / "tiny-bert")
    models = Path(tmp_path) / "models"
    pull_from(SMALL_MODEL, source, env={"VCLI_MODELS_DIR": str(models)})
    return models
