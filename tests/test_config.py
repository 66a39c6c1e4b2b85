"""Configuration (docs/contract.md, "Configuration"): defaults < user config.toml < project vcli.toml < VCLI_* < flags,
tested layer by layer through what `vcli config --json` and the other commands show."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from vcli.engine.settings import load_settings
from vcli.errors import ConfigError


@pytest.fixture
def layers(tmp_path, monkeypatch):
    """No VCLI_* variables; a project folder with a subfolder; ``user(text)`` and ``project(text)``
    write the user config.toml and the project's vcli.toml and return their paths."""
    for var in ("VCLI_DATA_DIR", "VCLI_LOCK_TIMEOUT", "VCLI_MAX_TOP_K_WITH_VALUES"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "project"
    (root / "tests" / "unit").mkdir(parents=True)
    user_file = tmp_path / "config-home" / "vcli" / "config.toml"

    def write(path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return SimpleNamespace(
        root=root,
        user=lambda text: write(user_file, text),
        project=lambda text: write(root / "vcli.toml", text),
    )


def settings_of(vcli, *args):
    result = vcli("config", "--json", *args)
    assert result.code == 0, result.err
    return result.json["settings"]


def test_defaults(vcli, layers, tmp_path):
    s = settings_of(vcli)
    assert s["data_dir"] == {"value": str(tmp_path / "data-home" / "vcli"), "source": "default", "origin": None}
    assert s["lock_timeout"]["value"] == 60 and s["lock_timeout"]["source"] == "default"
    assert s["max_top_k_with_values"] == {"value": 50, "source": "default", "origin": None}


def test_user_file_beats_defaults(vcli, layers, tmp_path):
    user = layers.user('data_dir = "~/indexes"\nlock_timeout = 2.5\n')
    s = settings_of(vcli)
    assert s["data_dir"] == {"value": os.path.expanduser("~/indexes"), "source": "user", "origin": str(user)}
    assert s["lock_timeout"] == {"value": 2.5, "source": "user", "origin": str(user)}
    assert s["max_top_k_with_values"]["source"] == "default"


def test_project_file_beats_user_file_and_is_found_from_a_subfolder(vcli, layers, monkeypatch):
    layers.user('data_dir = "/somewhere/else"\nmax_top_k_with_values = 30\n')
    project = layers.project('data_dir = "tests/indexes"\nmax_top_k_with_values = 20\n')
    monkeypatch.chdir(layers.root / "tests" / "unit")
    s = settings_of(vcli)
    # data_dir is relative to the file, not to the current directory
    assert s["data_dir"] == {"value": str(layers.root / "tests" / "indexes"), "source": "project",
                             "origin": str(project)}
    assert s["max_top_k_with_values"]["value"] == 20
    assert vcli("create", "fixture", "--dimensions", "2", "--metric", "cosine").code == 0
    assert (layers.root / "tests" / "indexes" / "fixture" / "index.toml").is_file()
    assert vcli("config", "--json").json["files"]["project"] == str(project)


def test_the_nearest_project_file_wins(vcli, layers, monkeypatch):
    layers.project('lock_timeout = 1\n')
    inner = layers.root / "tests" / "vcli.toml"
    inner.write_text('lock_timeout = 7\n')
    monkeypatch.chdir(layers.root / "tests" / "unit")
    assert settings_of(vcli)["lock_timeout"] == {"value": 7, "source": "project", "origin": str(inner)}


def test_environment_beats_project_file(vcli, layers, monkeypatch, tmp_path):
    layers.project('data_dir = "here"\nlock_timeout = 1\n')
    monkeypatch.chdir(layers.root)
    monkeypatch.setenv("VCLI_DATA_DIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("VCLI_LOCK_TIMEOUT", "3")
    s = settings_of(vcli)
    assert s["data_dir"] == {"value": str(tmp_path / "from-env"), "source": "env", "origin": "VCLI_DATA_DIR"}
    assert s["lock_timeout"] == {"value": 3, "source": "env", "origin": "VCLI_LOCK_TIMEOUT"}


def test_flag_beats_everything(vcli, layers, monkeypatch, tmp_path):
    layers.user('data_dir = "/u"\n')
    layers.project('data_dir = "p"\n')
    monkeypatch.chdir(layers.root)
    monkeypatch.setenv("VCLI_DATA_DIR", str(tmp_path / "from-env"))
    s = settings_of(vcli, "--data-dir", str(tmp_path / "from-flag"))
    assert s["data_dir"] == {"value": str(tmp_path / "from-flag"), "source": "flag", "origin": "--data-dir"}
    assert vcli("create", "x", "--dimensions", "2", "--metric", "cosine",
                "--data-dir", str(tmp_path / "from-flag")).code == 0
    assert (tmp_path / "from-flag" / "x").is_dir() and not (tmp_path / "from-env").exists()


def test_human_output_names_each_source(vcli, layers, monkeypatch):
    project = layers.project('lock_timeout = 5\n')
    monkeypatch.chdir(layers.root)
    monkeypatch.setenv("VCLI_MAX_TOP_K_WITH_VALUES", "10")
    result = vcli("config")
    assert result.code == 0
    assert f"project ({project})" in result.out
    assert "env (VCLI_MAX_TOP_K_WITH_VALUES)" in result.out
    assert "default" in result.out and f"project config file: {project}" in result.out


@pytest.mark.parametrize(("text", "message"), [
    ('colour = "blue"\n', 'unknown key "colour"'),
    ('lock_timeout = "soon"\n', '"lock_timeout" must be a number, not a string'),
    ('lock_timeout = -1\n', '"lock_timeout" must be a number of seconds, 0 or more'),
    ('max_top_k_with_values = 60\n', '"max_top_k_with_values" must be a whole number from 1 to 50'),
    ('max_top_k_with_values = true\n', '"max_top_k_with_values" must be a whole number'),
    ('data_dir = 3\n', '"data_dir" must be a non-empty string'),
    ('data_dir = \n', "is not valid TOML"),
])
def test_bad_files_are_errors_naming_file_and_key(vcli, layers, monkeypatch, text, message):
    project = layers.project(text)
    monkeypatch.chdir(layers.root)
    for args in (("config",), ("list", "--json")):
        result = vcli(*args)
        assert result.code == 1 and result.out == ""
        assert result.err.startswith(f"Error: config file {project}") and message in result.err


def test_bad_user_file_is_named_too(vcli, layers):
    user = layers.user("[section]\nkey = 1\n")
    result = vcli("list")
    assert result.code == 1 and f"config file {user}: unknown key \"section\"" in result.err


@pytest.mark.parametrize(("var", "value"), [("VCLI_LOCK_TIMEOUT", "soon"), ("VCLI_MAX_TOP_K_WITH_VALUES", "0")])
def test_bad_environment_variables_are_errors_naming_them(vcli, layers, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    result = vcli("list")
    assert result.code == 1 and result.err.startswith(f"Error: {var} must be") and value in result.err


def test_empty_variable_counts_as_unset(vcli, layers, monkeypatch):
    monkeypatch.setenv("VCLI_DATA_DIR", "")
    assert settings_of(vcli)["data_dir"]["source"] == "default"


def test_max_top_k_with_values_lowers_the_cap(vcli, layers, monkeypatch, golden):
    golden()
    query = ("query", "golden", "--vector", "1", "2", "3", "--return-values", "--top-k", "30", "--json")
    assert vcli(*query).code == 0
    layers.user("max_top_k_with_values = 20\n")
    result = vcli(*query)
    assert result.code == 1 and "max top K is 20" in result.err and result.out == ""


def test_lock_timeout_reaches_the_writer(vcli, golden, data_dir, monkeypatch):
    from vcli.engine.lock import writer_lock

    golden()
    monkeypatch.setenv("VCLI_LOCK_TIMEOUT", "0.2")
    with writer_lock(data_dir / "golden" / "lock"):
        result = vcli("delete-vectors", "golden", "--ids", "1")
    assert result.code == 1 and "for over 0.2 s" in result.err


def test_load_settings_reads_only_the_mapping_it_is_given(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_DATA_HOME": str(tmp_path / "share")}
    settings = load_settings(env=env, cwd=tmp_path)
    assert settings.data_dir == tmp_path / "share" / "vcli"
    assert settings.user_file == tmp_path / "cfg" / "vcli" / "config.toml"
    env["VCLI_DATA_DIR"] = "rel"
    assert load_settings(env=env, cwd=tmp_path).data_dir == Path("rel")
    with pytest.raises(ConfigError, match="VCLI_LOCK_TIMEOUT"):
        load_settings(env={**env, "VCLI_LOCK_TIMEOUT": "x"}, cwd=tmp_path)
