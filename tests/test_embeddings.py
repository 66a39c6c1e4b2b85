"""vcli.embeddings against a reference computed here with ONNX Runtime, tokenizers and NumPy directly,
on the tiny BERT-shaped model tests/aimodel.py builds (installed through ``pull --from``'s code)."""

from __future__ import annotations

import os
import sys

import orjson
import pytest

np = pytest.importorskip("numpy")
ort = pytest.importorskip("onnxruntime")
tokenizers = pytest.importorskip("tokenizers")
pytest.importorskip("onnx")

from aimodel import SMALL_MODEL, build_tiny_bert, pulled_models_dir, vocabulary  # noqa: E402

from vcli import embeddings  # noqa: E402
from vcli.embeddings import runtime  # noqa: E402
from vcli.errors import (  # noqa: E402
    AiExtraMissing,
    BadEmbedInput,
    BadInput,
    BadModelFolder,
    DimensionMismatch,
    ModelDamaged,
    ModelNotPulled,
    NoModel,
    UnknownModel,
)

TEXTS = ["the cat sat on the mat", "a dog", "Vector search in a Worker, with text!", "x",
         "query the index and embed the text of the model " * 5]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return pulled_models_dir(tmp_path_factory.mktemp("ai"))


@pytest.fixture(scope="module")
def env(models):
    return {"VCLI_MODELS_DIR": str(models)}


def reference(onnx_path, tokenizer_path):
    """Each text alone, no padding, straight through the libraries."""
    tok = tokenizers.Tokenizer.from_file(str(tokenizer_path))
    tok.no_truncation()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    token_types = "token_type_ids" in [i.name for i in sess.get_inputs()]

    def compute(text: str, pooling: str = "mean") -> np.ndarray:
        ids = tok.encode(text).ids
        if len(ids) > 512:  # the first 511 tokens, then [SEP]
            ids = ids[:511] + [ids[-1]]
        feed = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}
        if token_types:
            feed["token_type_ids"] = np.zeros((1, len(ids)), np.int64)
        state = sess.run(["last_hidden_state"], feed)[0][0].astype(np.float64)
        v = state.mean(axis=0) if pooling == "mean" else state[0]
        return v / np.linalg.norm(v)

    return compute


@pytest.fixture(scope="module")
def ref(models):
    folder = models / "baai--bge-small-en-v1.5"
    return reference(folder / "model.onnx", folder / "tokenizer.json")


def close(a, b) -> bool:
    return np.allclose(a, b, atol=2e-5, rtol=0)


def test_the_three_models_and_where_they_live(tmp_path):
    assert {n: s.dimensions for n, s in embeddings.MODELS.items()} == {
        "@cf/baai/bge-small-en-v1.5": 384, "@cf/baai/bge-base-en-v1.5": 768, "@cf/baai/bge-large-en-v1.5": 1024}
    assert embeddings.models_dir({"VCLI_MODELS_DIR": str(tmp_path)}) == tmp_path
    assert embeddings.models_dir({}).parts[-2:] == ("vcli", "models")


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_vectors_equal_the_reference_for_both_poolings(env, ref, pooling):
    got = embeddings.embed(SMALL_MODEL, TEXTS, pooling, env=env)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 384)
    for text, vector in zip(TEXTS, got, strict=True):
        assert close(vector, ref(text, pooling)), text
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_mean_and_cls_differ(env):
    mean = embeddings.embed(SMALL_MODEL, TEXTS[:1], "mean", env=env)[0]
    cls = embeddings.embed(SMALL_MODEL, TEXTS[:1], "cls", env=env)[0]
    assert not close(mean, cls)


def test_tokenisation_is_the_models_own(env):
    model = runtime.load(SMALL_MODEL, env)
    vocab = {t: i for i, t in enumerate(vocabulary())}
    assert model.tokens(["The cat SAT, on dogs."]) == [[
        vocab["[CLS]"], vocab["the"], vocab["cat"], vocab["sat"], vocab[","], vocab["on"], vocab["dog"],
        vocab["##s"], vocab["."], vocab["[SEP]"]]]  # WordPiece: the longest piece first


def test_a_text_past_512_tokens_is_truncated_to_512(env, ref):
    long = " ".join(["cat"] * 700)
    model = runtime.load(SMALL_MODEL, env)
    (ids,) = model.tokens([long])
    assert len(ids) == 512 and ids[-1] == vocabulary().index("[SEP]")
    got = embeddings.embed(SMALL_MODEL, [long, "a dog"], env=env)
    assert close(got[0], ref(long))
    # the words past the 510th change nothing
    assert close(got[0], embeddings.embed(SMALL_MODEL, [" ".join(["cat"] * 510) + " dog dog"], env=env)[0])


def test_a_padded_batch_gives_each_text_its_vector_alone(env):
    together = embeddings.embed(SMALL_MODEL, TEXTS, env=env)
    for i, text in enumerate(TEXTS):
        assert close(together[i], embeddings.embed(SMALL_MODEL, [text], env=env)[0])


def test_batches_split_by_texts_and_tokens_keep_the_order(env, ref, monkeypatch):
    rng = np.random.default_rng(7)
    words = ["cat", "dog", "index", "vector", "the", "query"]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(1, 300)))) for _ in range(100)]
    whole = embeddings.embed(SMALL_MODEL, texts, env=env)
    runs = []
    model = runtime.load(SMALL_MODEL, env)
    real_hidden = model.hidden
    monkeypatch.setattr(model, "hidden", lambda ids: runs.append(ids) or real_hidden(ids))
    split = embeddings.embed(SMALL_MODEL, texts, env=env, batching=embeddings.Batching(texts=3, tokens=400))
    assert len(runs) > 100 // 3 and all(len(b) <= 3 and len(b) * max(map(len, b)) <= 400 or len(b) == 1
                                        for b in runs)
    assert np.allclose(whole, split, atol=2e-5)
    for i in (0, 41, 99):
        assert close(split[i], ref(texts[i]))


@pytest.mark.parametrize("texts, pooling, says", [
    ([], "mean", "empty"),
    ([""], "mean", "text 0 is empty"),
    (["a"] * 101, "mean", "at most 100"),
    (["a"], "max", 'pooling must be "mean" or "cls"'),
    (["a", 3], "mean", "text 1 is not a string"),
    ("a text", "mean", "list of strings"),
])
def test_inputs_workers_ai_refuses(env, texts, pooling, says):
    with pytest.raises(BadEmbedInput, match=says):
        embeddings.embed(SMALL_MODEL, texts, pooling, env=env)


def test_an_unknown_model_names_the_ones_served(env):
    with pytest.raises(UnknownModel) as err:
        embeddings.embed("@cf/baai/bge-m3", ["a"], env=env)
    assert all(name in err.value.message for name in embeddings.MODELS)


def test_a_model_not_pulled_says_the_pull_command(tmp_path):
    with pytest.raises(ModelNotPulled, match="run `vcli models pull @cf/baai/bge-base-en-v1.5` first"):
        embeddings.embed("@cf/baai/bge-base-en-v1.5", ["a"], env={"VCLI_MODELS_DIR": str(tmp_path)})


def test_without_the_extra_the_error_says_how_to_install_it(env, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # ``import onnxruntime`` raises ImportError
    with pytest.raises(AiExtraMissing, match=r"pip install 'vcli\[ai\]'"):
        runtime.require_extra()
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(AiExtraMissing, match="tokenizers is not installed"):
        runtime.require_extra()


def test_pull_from_records_checksums_and_list_shows_it(models, env):
    status = {s.name: s for s in embeddings.list_models(env)}
    small = status[SMALL_MODEL]
    assert small.pulled and small.path == models / "baai--bge-small-en-v1.5" and small.size > 0
    assert not status["@cf/baai/bge-base-en-v1.5"].pulled
    import json

    manifest = json.loads((small.path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.onnx", "tokenizer.json", "config.json"}
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())


def test_a_damaged_copy_is_refused_with_the_command_that_mends_it(tmp_path):
    models = pulled_models_dir(tmp_path)
    onnx_file = models / "baai--bge-small-en-v1.5" / "model.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(ModelDamaged, match=r"sha256 mismatch.*vcli models pull @cf/baai/bge-small-en-v1.5"):
        embeddings.embed(SMALL_MODEL, ["a"], env={"VCLI_MODELS_DIR": str(models)})
    onnx_file.write_bytes(bytes(data[:1000]))  # cut short
    with pytest.raises(ModelDamaged, match="partial or changed copy"):
        embeddings.embed(SMALL_MODEL, ["a"], env={"VCLI_MODELS_DIR": str(models)})


def test_pull_from_takes_either_layout_and_a_graph_without_token_type_ids(tmp_path):
    source = build_tiny_bert(tmp_path / "flat", token_type_ids=False, onnx_subdir=False)
    env = {"VCLI_MODELS_DIR": str(tmp_path / "models")}
    embeddings.pull_from(SMALL_MODEL, source, env=env)
    want = reference(source / "model.onnx", source / "tokenizer.json")
    got = embeddings.embed(SMALL_MODEL, TEXTS, "cls", env=env)
    for text, vector in zip(TEXTS, got, strict=True):
        assert close(vector, want(text, "cls"))


def test_pull_from_refuses_a_folder_it_cannot_use_and_leaves_the_copy_it_had(tmp_path, env):
    models = tmp_path / "models"
    good = build_tiny_bert(tmp_path / "good")
    embeddings.pull_from(SMALL_MODEL, good, env={"VCLI_MODELS_DIR": str(models)})
    before = sorted(p.name for p in models.iterdir())

    wrong = build_tiny_bert(tmp_path / "wrong", hidden=64)
    with pytest.raises(BadModelFolder, match=r"shape \[1, \d+, 64\]; @cf/baai/bge-small-en-v1.5 gives \[batch, tokens, 384\]"):
        embeddings.pull_from(SMALL_MODEL, wrong, env={"VCLI_MODELS_DIR": str(models)})
    (good / "tokenizer.json").unlink()
    with pytest.raises(BadModelFolder, match="no tokenizer.json"):
        embeddings.pull_from(SMALL_MODEL, good, env={"VCLI_MODELS_DIR": str(models)})
    (good / "onnx" / "model.onnx").write_bytes(b"not a model")
    build_tiny_bert(tmp_path / "other")
    os.replace(tmp_path / "other" / "tokenizer.json", good / "tokenizer.json")
    with pytest.raises(BadModelFolder, match="cannot load the model"):
        embeddings.pull_from(SMALL_MODEL, good, env={"VCLI_MODELS_DIR": str(models)})
    with pytest.raises(BadModelFolder, match="is not a folder"):
        embeddings.pull_from(SMALL_MODEL, tmp_path / "nothing", env={"VCLI_MODELS_DIR": str(models)})
    assert sorted(p.name for p in models.iterdir()) == before  # no temporary folder left
    assert embeddings.embed(SMALL_MODEL, ["a"], env={"VCLI_MODELS_DIR": str(models)}).shape == (1, 384)


def test_the_model_for_an_index():
    assert embeddings.model_for("docs", SMALL_MODEL, None, 384) == SMALL_MODEL
    assert embeddings.model_for("docs", None, SMALL_MODEL, 384) == SMALL_MODEL
    with pytest.raises(NoModel, match='index "docs" has no embedding model.*--model'):
        embeddings.model_for("docs", None, None, 384)
    with pytest.raises(NoModel, match="created with the preset openai/text-embedding-ada-002"):
        embeddings.model_for("docs", "openai/text-embedding-ada-002", None, 1536)
    with pytest.raises(NoModel, match='gives 384 dimensions but index "docs" has 768'):
        embeddings.model_for("docs", None, SMALL_MODEL, 768)


def test_vector_lines_embed_texts_100_at_a_time_in_order_beside_vectors(env, monkeypatch):
    import vcli.embeddings.lines as lines_module

    calls = []
    real = embeddings.embed
    monkeypatch.setattr(lines_module, "embed", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    lines = [orjson.dumps({"id": str(i), "text": f"text {i}", "metadata": {"text": "kept"}}) + b"\n"
             for i in range(250)]
    lines.insert(3, b"\n")
    lines.insert(7, orjson.dumps({"id": "v", "values": [0.5] * 384, "metadata": {"text": "a"}}) + b"\n")
    out = list(embeddings.vector_lines(iter(lines), 384, SMALL_MODEL, env=env))
    assert calls == [100, 100, 50]
    assert [v.id for v in out] == [str(i) for i in range(6)] + ["v"] + [str(i) for i in range(6, 250)]
    assert [v.line for v in out][:8] == [1, 2, 3, 5, 6, 7, 8, 9]  # line numbers count the blank line
    assert all(v.metadata == {"text": "kept"} for v in out if v.id != "v")
    assert out[6].blob == np.full(384, 0.5, np.float32).tobytes()
    assert out[130].blob == real(SMALL_MODEL, ["text 129"], env=env)[0].tobytes()


def test_vector_lines_without_text_stream_through_at_once(env):
    """A file of vectors is not held in memory: each vector comes out before the next line is read."""
    read: list[int] = []

    def source():
        for i in range(3000):
            read.append(i)
            yield b'{"id": "%d", "values": [1, 2], "metadata": {"text": "t"}}\n' % i

    for i, vector in enumerate(embeddings.vector_lines(source(), 2, "no model needed", env=env)):
        assert len(read) == i + 1 and vector.id == str(i)


def test_vector_lines_hold_at_most_1000_lines_while_a_text_waits(env):
    from vcli.embeddings import lines as lines_module

    read: list[int] = []

    def source():
        yield orjson.dumps({"id": "t", "text": "a cat"}) + b"\n"
        for i in range(2500):
            read.append(i)
            yield b'{"id": "%d", "values": [%d]}\n' % (i, i)

    out = embeddings.vector_lines(source(), 1, SMALL_MODEL, env=env)
    with pytest.raises(DimensionMismatch):  # the text's 384 values reach the 1-dimension check...
        next(out)
    assert len(read) == lines_module.HELD_LINES - 1  # ...after 1,000 lines were held, not the file


def test_vector_lines_name_the_first_bad_line_when_a_text_waits(env):
    """A line that is not JSON, read while an earlier text waits to be embedded, is refused in its
    turn: the text's own error (384 values for 1 dimension) comes first, as it is first."""
    lines = [orjson.dumps({"id": "t", "text": "a cat"}) + b"\n", b"{not json\n"]
    with pytest.raises(DimensionMismatch, match="^line 1"):
        list(embeddings.vector_lines(iter(lines), 1, SMALL_MODEL, env=env))
    with pytest.raises(BadInput, match="^line 2: not valid JSON"):
        list(embeddings.vector_lines(iter(lines), 384, SMALL_MODEL, env=env))


def test_vector_lines_of_a_file_read_texts_in_their_turn(env, tmp_path):
    """Texts among vectors, and a line with "text" only in its metadata, read from a file."""
    lines = [orjson.dumps({"id": f"v{i}", "values": [i / 7] * 384, "metadata": {"text": "x"}}) + b"\n"
             for i in range(300)]
    for i in (5, 203, 299):
        lines[i] = orjson.dumps({"id": f"t{i}", "text": f"text {i}"}) + b"\n"
    path = tmp_path / "vectors.ndjson"
    path.write_bytes(b"".join(lines))
    with open(path, "rb") as f:
        got = list(embeddings.vector_lines(f, 384, SMALL_MODEL, env=env))
    assert [v.id for v in got if v.id.startswith("t")] == ["t5", "t203", "t299"] and len(got) == 300
    assert all(v.metadata == {"text": "x"} for v in got if v.id.startswith("v"))
    assert got[-1].blob == embeddings.embed(SMALL_MODEL, ["text 299"], env=env)[0].tobytes()
    assert got[6].blob == np.full(384, 6 / 7, np.float32).tobytes()


def test_text_lines_print_values_in_place_of_text(env):
    lines = [orjson.dumps({"id": "a", "text": "the cat", "namespace": "n"}) + b"\n", b"\n",
             orjson.dumps({"text": "a dog"}) + b"\n"]
    out = [orjson.loads(line) for line in embeddings.text_lines(iter(lines), SMALL_MODEL, env=env)]
    assert out[0]["id"] == "a" and out[0]["namespace"] == "n" and "text" not in out[0] and len(out) == 2
    want = embeddings.embed(SMALL_MODEL, ["the cat", "a dog"], env=env)
    assert np.array_equal(np.array([o["values"] for o in out], np.float32), want)
    with pytest.raises(BadInput, match='line 2: no "text" to embed'):
        list(embeddings.text_lines(iter([lines[0], b'{"id": "x", "values": [1]}\n']), SMALL_MODEL, env=env))


def test_a_new_pull_is_loaded_by_a_process_that_had_the_old_one(tmp_path):
    env = {"VCLI_MODELS_DIR": str(tmp_path / "models")}
    embeddings.pull_from(SMALL_MODEL, build_tiny_bert(tmp_path / "one", seed=1), env=env)
    before = embeddings.embed(SMALL_MODEL, ["a cat"], env=env)
    embeddings.pull_from(SMALL_MODEL, build_tiny_bert(tmp_path / "two", seed=2), env=env)
    after = embeddings.embed(SMALL_MODEL, ["a cat"], env=env)
    want = reference(tmp_path / "two" / "onnx" / "model.onnx", tmp_path / "two" / "tokenizer.json")("a cat")
    assert not close(before[0], after[0]) and close(after[0], want)
