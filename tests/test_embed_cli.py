"""The CLI of the embedding models: ``vcli models list/pull``, ``vcli embed``, ``query --text``, text
lines in ``insert``/``upsert`` and ``query --file``, on the tiny model of tests/aimodel.py."""

from __future__ import annotations

import orjson
import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytest.importorskip("onnx")

from aimodel import SMALL_MODEL, build_tiny_bert, pulled_models_dir  # noqa: E402
from helpers import ndjson  # noqa: E402

from vcli import embeddings  # noqa: E402

BASE = "@cf/baai/bge-base-en-v1.5"
DOCS = [
    {"id": "cat", "text": "the cat sat on the mat", "metadata": {"kind": "pet"}},
    {"id": "dog", "text": "a dog in the cloud", "metadata": {"kind": "pet"}},
    {"id": "idx", "text": "vector search in an index", "namespace": "tech"},
    {"id": "wrk", "text": "a worker queries the model"},
]


@pytest.fixture(scope="module")
def pulled(tmp_path_factory):
    return pulled_models_dir(tmp_path_factory.mktemp("ai"))


@pytest.fixture
def models(pulled, monkeypatch):
    monkeypatch.setenv("VCLI_MODELS_DIR", str(pulled))
    return pulled


@pytest.fixture
def docs(vcli, models):
    """An index created with the small model's preset, loaded from text."""
    assert vcli("create", "docs", "--preset", SMALL_MODEL).code == 0
    got = vcli("insert", "docs", "--file", "-", input=ndjson(DOCS))
    assert got.code == 0, got.err
    return "docs"


def vectors_of(texts, pooling="mean", models=None):
    return embeddings.embed(SMALL_MODEL, texts, pooling, env={"VCLI_MODELS_DIR": str(models)})


def test_models_list_and_pull_from_a_folder(vcli_proc, tmp_path):
    env = {"VCLI_MODELS_DIR": str(tmp_path / "models")}
    before = vcli_proc("models", "list", "--json", env=env)
    assert before.code == 0 and [(m["name"], m["dimensions"], m["pulled"]) for m in before.json] == [
        (SMALL_MODEL, 384, False), (BASE, 768, False), ("@cf/baai/bge-large-en-v1.5", 1024, False)]
    source = build_tiny_bert(tmp_path / "bert")
    got = vcli_proc("models", "pull", SMALL_MODEL, "--from", source, env=env)
    assert got.code == 0, got.err
    assert f"Pulled {SMALL_MODEL} (384 dimensions" in got.out
    after = {m["name"]: m for m in vcli_proc("models", "list", "--json", env=env).json}
    assert after[SMALL_MODEL]["pulled"] and after[SMALL_MODEL]["size"] > 0
    assert after[SMALL_MODEL]["path"] == str(tmp_path / "models" / "baai--bge-small-en-v1.5")
    assert after[SMALL_MODEL]["source"] == str(source) and not after[BASE]["pulled"]
    table = vcli_proc("models", "list", env=env)
    assert table.code == 0 and "baai--bge-small-en-v1.5" in table.out


@pytest.mark.parametrize("args, says", [
    (["models", "pull", "@cf/baai/bge-m3", "--from", "."], 'no such model "@cf/baai/bge-m3": vcli computes '
                                                           "@cf/baai/bge-small-en-v1.5, "),
    (["models", "pull", BASE, "--from", "nowhere"], "nowhere is not a folder"),
])
def test_pull_errors_are_one_line(vcli, args, says):
    got = vcli(*args)
    assert got.code == 1 and got.err.startswith(f"Error: {says}") and got.err.count("\n") == 1


def test_pull_from_a_model_of_other_dimensions_says_so(vcli, tmp_path):
    source = build_tiny_bert(tmp_path / "bert", hidden=64)
    got = vcli("models", "pull", BASE, "--from", source)
    assert got.code == 1 and "gives [batch, tokens, 768]" in got.err
    assert "shape [1, " in got.err and ", 64];" in got.err


def test_a_download_that_cannot_reach_the_hub_is_one_clear_line(vcli_proc, tmp_path):
    """The download is real code; with the hub unreachable (here: a closed port) it fails at once,
    says why and how to pull from a folder instead, and leaves nothing on disk."""
    env = {"VCLI_MODELS_DIR": str(tmp_path / "models"), "HF_ENDPOINT": "http://127.0.0.1:9",
           "HF_HUB_DISABLE_TELEMETRY": "1"}
    got = vcli_proc("models", "pull", BASE, env=env)
    assert got.code == 1 and got.err.count("\n") == 1, got.err
    assert got.err.startswith("Error: cannot reach http://127.0.0.1:9/BAAI/bge-base-en-v1.5: ")
    assert f"`vcli models pull {BASE} --from DIR`" in got.err and "Traceback" not in got.err
    assert not (tmp_path / "models" / "baai--bge-base-en-v1.5").exists()


def test_embed_turns_text_lines_into_vectorize_lines(vcli, models):
    got = vcli("embed", SMALL_MODEL, "--file", "-", input=ndjson(DOCS))
    assert got.code == 0, got.err
    lines = [orjson.loads(line) for line in got.out.splitlines()]
    assert [line["id"] for line in lines] == [d["id"] for d in DOCS]
    assert all("text" not in line and len(line["values"]) == 384 for line in lines)
    assert lines[0]["metadata"] == {"kind": "pet"} and lines[2]["namespace"] == "tech"
    want = vectors_of([d["text"] for d in DOCS], models=models)
    assert np.array_equal(np.array([line["values"] for line in lines], np.float32), want)
    cls = vcli("embed", SMALL_MODEL, "--file", "-", "--pooling", "cls", input=ndjson(DOCS[:1]))
    assert np.array_equal(np.array(orjson.loads(cls.out)["values"], np.float32),
                          vectors_of([DOCS[0]["text"]], "cls", models)[0])


@pytest.mark.parametrize("model, lines, says", [
    (SMALL_MODEL, [{"text": "a"}, {"id": "x", "values": [1]}], 'line 2: no "text" to embed'),
    (SMALL_MODEL, [{"id": "x", "text": ""}], 'line 1, id "x": "text" must be a string of at least 1 character'),
    (SMALL_MODEL, [{"id": "x", "text": 3}], '"text" must be a string'),
    (BASE, [{"text": "a"}], f"the model {BASE} is not on disk"),
    ("@cf/meta/llama", [{"text": "a"}], 'no such model "@cf/meta/llama"'),
])
def test_embed_errors(vcli, models, model, lines, says):
    got = vcli("embed", model, "--file", "-", input=ndjson(lines))
    assert got.code == 1 and says in got.err and got.err.count("\n") == 1


def test_embed_with_a_bad_pooling(vcli, models):
    got = vcli("embed", SMALL_MODEL, "--file", "-", "--pooling", "max", input=ndjson(DOCS))
    assert got.code == 1 and got.err == "Error: pooling must be \"mean\" or \"cls\", not 'max'\n"


def test_a_model_not_pulled_says_the_pull_command(vcli, tmp_path, monkeypatch):
    monkeypatch.setenv("VCLI_MODELS_DIR", str(tmp_path / "empty"))
    assert vcli("create", "docs", "--preset", SMALL_MODEL).code == 0
    got = vcli("query", "docs", "--text", "a cat")
    assert got.code == 1 and got.err.endswith(f"run `vcli models pull {SMALL_MODEL}` first\n")


def test_query_text_end_to_end(vcli_proc, models, data_dir):
    env = {"VCLI_MODELS_DIR": str(models), "VCLI_DATA_DIR": str(data_dir)}
    assert vcli_proc("create", "docs", "--preset", SMALL_MODEL, env=env).code == 0
    assert vcli_proc("insert", "docs", "--file", "-", input=ndjson(DOCS), env=env).code == 0
    got = vcli_proc("query", "docs", "--text", "the cat sat on the mat", "--top-k", "4", "--json", env=env)
    assert got.code == 0, got.err
    matches = got.json["matches"]
    assert matches[0]["id"] == "cat" and matches[0]["score"] == pytest.approx(1.0, abs=1e-5)
    # the same as querying with the vector embed prints
    vector = orjson.loads(vcli_proc("embed", SMALL_MODEL, "--file", "-", input=ndjson([{"text": "a dog"}]),
                                    env=env).out)["values"]
    by_text = vcli_proc("query", "docs", "--text", "a dog", "--json", env=env).json["matches"]
    by_vector = vcli_proc("query", "docs", "--vector", orjson.dumps(vector).decode(), "--json", env=env).json["matches"]
    assert by_text == by_vector and by_text[0]["id"] == "dog"
    table = vcli_proc("query", "docs", "--text", "vector search in an index", env=env)
    assert table.code == 0 and "idx" in table.out.splitlines()[3]


def test_query_file_lines_with_text(vcli, docs):
    lines = [{"text": "a worker queries the model", "topK": 1}, {"vectorId": "cat", "topK": 1},
             {"text": "vector search in an index", "topK": 1, "namespace": "tech"}]
    got = vcli("query", docs, "--file", "-", input=ndjson(lines))
    assert got.code == 0, got.err
    assert [orjson.loads(line)["matches"][0]["id"] for line in got.out.splitlines()] == ["wrk", "cat", "idx"]
    bad = vcli("query", docs, "--file", "-", input=ndjson([{"vectorId": "cat"}, {"text": "a", "vectorId": "cat"}]))
    assert bad.code == 1 and 'line 2: give "text" or "vector" or "vectorId", not both' in bad.err


def test_text_and_values_lines_in_one_upsert(vcli, docs, models):
    values = vectors_of(["anything at all"], models=models)[0].tolist()
    got = vcli("upsert", docs, "--file", "-", input=ndjson([{"id": "v", "values": values},
                                                              {"id": "cat", "text": "a dog in the cloud"}]))
    assert got.code == 0, got.err
    assert vcli("info", docs, "--json").json["vectorCount"] == 5
    top = vcli("query", docs, "--text", "a dog in the cloud", "--top-k", "2", "--json").json["matches"]
    assert {m["id"] for m in top} == {"cat", "dog"} and top[1]["score"] == pytest.approx(1.0, abs=1e-5)


def test_a_bad_text_line_leaves_the_index_as_it_was(vcli, docs):
    before = vcli("info", docs, "--json").json
    got = vcli("insert", docs, "--file", "-", input=ndjson([{"id": "n1", "text": "new"},
                                                              {"id": "n2", "text": "b", "values": [1]}]))
    assert got.code == 1 and 'line 2, id "n2": give "text" or "values", not both' in got.err
    assert vcli("info", docs, "--json").json == before


def test_an_index_without_a_model_refuses_text_and_says_how_to_give_one(vcli, models):
    assert vcli("create", "plain", "--dimensions", "384", "--metric", "cosine").code == 0
    got = vcli("query", "plain", "--text", "a cat")
    assert got.code == 1 and got.err.startswith('Error: index "plain" has no embedding model')
    assert "--model" in got.err and "--preset" in got.err
    got = vcli("insert", "plain", "--file", "-", input=ndjson(DOCS))
    assert got.code == 1 and "has no embedding model" in got.err
    assert vcli("info", "plain", "--json").json["vectorCount"] == 0
    # --model gives one
    assert vcli("insert", "plain", "--file", "-", "--model", SMALL_MODEL, input=ndjson(DOCS)).code == 0
    top = vcli("query", "plain", "--text", "a dog in the cloud", "--model", SMALL_MODEL, "--json").json
    assert top["matches"][0]["id"] == "dog"
    # vectors-only input needs no model
    assert vcli("upsert", "plain", "--file", "-", input=ndjson([{"id": "z", "values": [0.5] * 384}])).code == 0


def test_a_model_of_other_dimensions_or_one_vcli_does_not_compute(vcli, models):
    assert vcli("create", "ada", "--preset", "openai/text-embedding-ada-002").code == 0
    got = vcli("query", "ada", "--text", "a cat")
    assert got.code == 1
    assert "created with the preset openai/text-embedding-ada-002, which is not a model vcli computes" in got.err
    got = vcli("query", "ada", "--text", "a cat", "--model", SMALL_MODEL)
    assert got.code == 1 and f"{SMALL_MODEL} gives 384 dimensions but index \"ada\" has 1536" in got.err


def test_query_takes_exactly_one_of_vector_vector_id_text(vcli, docs):
    got = vcli("query", docs, "--text", "a", "--vector-id", "cat")
    assert got.code == 1 and got.err == "Error: give one of --vector, --vector-id or --text, not both\n"
    got = vcli("query", docs)
    assert got.code == 1 and got.err == "Error: give one of --vector, --vector-id or --text\n"
    got = vcli("query", docs, "--text", "")
    assert got.code == 1 and got.err == "Error: --text is empty; give at least 1 character\n"


def test_without_the_extra_a_text_command_says_how_to_install_it(vcli_proc, models, data_dir, tmp_path):
    """``onnxruntime`` shadowed by a package that fails to import, as when it is not installed."""
    blocked = tmp_path / "blocked" / "onnxruntime"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {"VCLI_MODELS_DIR": str(models), "VCLI_DATA_DIR": str(data_dir), "PYTHONPATH": str(blocked.parent)}
    assert vcli_proc("create", "docs", "--preset", SMALL_MODEL, env=env).code == 0
    got = vcli_proc("query", "docs", "--text", "a cat", env=env)
    assert got.code == 1 and got.err == ("Error: embedding models need the optional 'ai' extra (onnxruntime is "
                                         "not installed): pip install 'vcli[ai]'\n")
    # everything else works without it
    assert vcli_proc("upsert", "docs", "--file", "-", input=ndjson([{"id": "a", "values": [0.1] * 384}]),
                     env=env).code == 0
    assert vcli_proc("models", "list", "--json", env=env).json[0]["pulled"] is True


def hub_files(tmp_path):
    source = build_tiny_bert(tmp_path / "bert")
    return {"onnx/model.onnx": (source / "onnx" / "model.onnx").read_bytes(),
            "tokenizer.json": (source / "tokenizer.json").read_bytes(),
            "config.json": (source / "config.json").read_bytes(), "README.md": b"# a model\n"}


def hub_env(tmp_path, hub):
    return {"VCLI_MODELS_DIR": str(tmp_path / "models"), "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_DISABLE_TELEMETRY": "1"}


def test_pull_downloads_from_the_hub_checks_checksums_and_installs(vcli_proc, tmp_path):
    """The real download code against a local stand-in of the hub's routes (tests/fakehub.py)."""
    from fakehub import COMMIT, FakeHub

    files = hub_files(tmp_path)
    with FakeHub("BAAI/bge-small-en-v1.5", files) as hub:
        env = hub_env(tmp_path, hub)
        got = vcli_proc("models", "pull", SMALL_MODEL, "--json", env=env)
        assert got.code == 0, got.err
        assert got.json["pulled"] and got.json["source"] == f"{hub.url}/BAAI/bge-small-en-v1.5"
        assert not any("README.md" in r for r in hub.requests)  # only the three files it needs
        folder = tmp_path / "models" / "baai--bge-small-en-v1.5"
        manifest = orjson.loads((folder / "manifest.json").read_bytes())
        assert manifest["revision"] == COMMIT and set(manifest["files"]) == {"model.onnx", "tokenizer.json", "config.json"}
        assert (folder / "model.onnx").read_bytes() == files["onnx/model.onnx"]
        assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["baai--bge-small-en-v1.5"]
        embedded = vcli_proc("embed", SMALL_MODEL, "--file", "-", input=ndjson([{"text": "a cat"}]), env=env)
        assert embedded.code == 0 and len(orjson.loads(embedded.out)["values"]) == 384
        assert got.json["downloaded"] is True
        # the same commit again: nothing downloaded, and it says so; a damaged copy: downloaded again
        asked = len(hub.requests)
        again = vcli_proc("models", "pull", SMALL_MODEL, env=env)
        assert again.code == 0 and again.out.endswith("at the hub's latest commit: nothing downloaded\n")
        assert "Pulled" not in again.out
        assert [r for r in hub.requests[asked:] if "/resolve/" in r] == []
        assert vcli_proc("models", "pull", SMALL_MODEL, "--json", env=env).json["downloaded"] is False
        (folder / "tokenizer.json").write_text("{}")
        mended = vcli_proc("models", "pull", SMALL_MODEL, env=env)
        assert mended.code == 0 and mended.out.startswith(f"Pulled {SMALL_MODEL}")
        assert (folder / "tokenizer.json").read_bytes() == files["tokenizer.json"]


def test_a_pull_removes_what_killed_pulls_left_but_not_a_running_pull(vcli_proc, tmp_path):
    """A pull killed mid-download leaves its temporary folder; the next pull removes it, but not the
    folder of a pull still running (it holds the lock beside its folder)."""
    import fcntl

    from fakehub import FakeHub

    models = tmp_path / "models"
    killed = models / ".pull-baai--bge-small-en-v1.5-0badf00d"
    (killed / ".download" / "onnx").mkdir(parents=True)
    (killed / ".download" / "onnx" / "model.onnx").write_bytes(b"half a model")
    old = models / ".old-baai--bge-small-en-v1.5-0badf00d"
    old.mkdir()
    running = models / ".pull-baai--bge-base-en-v1.5-5ca1ab1e"
    with open(models / (running.name + ".lock"), "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        running.mkdir()
        with FakeHub("BAAI/bge-small-en-v1.5", hub_files(tmp_path)) as hub:
            got = vcli_proc("models", "pull", SMALL_MODEL, env=hub_env(tmp_path, hub))
        assert got.code == 0, got.err
        assert sorted(p.name for p in models.iterdir()) == [
            running.name, running.name + ".lock", "baai--bge-small-en-v1.5"]


@pytest.mark.parametrize("corrupt, says", [
    ("onnx/model.onnx", "onnx/model.onnx from {url}/BAAI/bge-small-en-v1.5 does not match its sha256"),
    ("tokenizer.json", "tokenizer.json from {url}/BAAI/bge-small-en-v1.5 does not match its git blob id"),
])
def test_a_download_that_does_not_match_its_checksum_installs_nothing(vcli_proc, tmp_path, corrupt, says):
    from fakehub import FakeHub

    files = hub_files(tmp_path)
    bad = bytearray(files[corrupt])
    bad[len(bad) // 2] ^= 0x01  # same size, one bit flipped on the way
    with FakeHub("BAAI/bge-small-en-v1.5", files, served={corrupt: bytes(bad)}) as hub:
        got = vcli_proc("models", "pull", SMALL_MODEL, env=hub_env(tmp_path, hub))
    assert got.code == 1 and got.err.count("\n") == 1, got.err
    assert says.format(url=hub.url) in got.err and got.err.endswith("run the pull again\n")
    assert not (tmp_path / "models").exists() or list((tmp_path / "models").iterdir()) == []


def test_a_repository_without_an_onnx_export_says_what_to_do(vcli_proc, tmp_path):
    from fakehub import FakeHub

    files = hub_files(tmp_path)
    del files["onnx/model.onnx"]
    with FakeHub("BAAI/bge-small-en-v1.5", files) as hub:
        got = vcli_proc("models", "pull", SMALL_MODEL, env=hub_env(tmp_path, hub))
    assert got.code == 1 and "has no onnx/model.onnx" in got.err
    assert f"`vcli models pull {SMALL_MODEL} --from DIR`" in got.err


def test_pull_reports_its_progress_in_bytes(tmp_path, monkeypatch):
    from fakehub import FakeHub

    files = hub_files(tmp_path)
    del files["README.md"]
    seen = []
    with FakeHub("BAAI/bge-small-en-v1.5", files) as hub:
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        embeddings.pull(SMALL_MODEL, env={"VCLI_MODELS_DIR": str(tmp_path / "models"), "HF_ENDPOINT": hub.url},
                        progress=lambda done, total: seen.append((done, total)))
    total = sum(map(len, files.values()))
    assert seen and seen[-1] == (total, total)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_text_against_the_live_service_needs_model_and_sends_the_vectors(vcli_proc, models, tmp_path):
    """The service does not say which preset made an index, so text there takes --model; the text
    is embedded here and the vectors sent (``vcli serve`` stands in for the service)."""
    from helpers import serve_process
    from test_remote import TOKEN, _env

    with serve_process(tmp_path, "--data-dir", str(tmp_path / "service")) as service:
        env = {**_env(service.url), "VCLI_MODELS_DIR": str(models)}
        assert vcli_proc("create", "docs", "--preset", SMALL_MODEL, "--remote", env=env).code == 0
        refused = vcli_proc("insert", "docs", "--remote", "--file", "-", input=ndjson(DOCS), env=env)
        assert refused.code == 1 and 'index "docs" has no embedding model' in refused.err
        sent = vcli_proc("insert", "docs", "--remote", "--model", SMALL_MODEL, "--file", "-", input=ndjson(DOCS),
                         env=env)
        assert sent.code == 0, sent.err
        got = vcli_proc("query", "docs", "--remote", "--model", SMALL_MODEL, "--text", "a dog in the cloud",
                        "--json", env=env)
        assert got.code == 0 and got.json["matches"][0]["id"] == "dog" and TOKEN not in got.out + got.err
        # the service holds the vectors vcli computed
        stored = vcli_proc("get-vectors", "docs", "--ids", "cat", "--data-dir", tmp_path / "service", "--json")
        want = vectors_of([DOCS[0]["text"]], models=models)[0]
        assert np.array_equal(np.array(stored.json[0]["values"], np.float32), want)
