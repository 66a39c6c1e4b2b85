"""wrangler command lines run through vcli: the global flags, yargs' boolean forms,
``--deprecated-v1``, ``create --binding/--update-config``, and the first help screen.

docs/contract.md, "Commands" ("wrangler's command lines", "create --binding …", "Help").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import httpx
import pytest
from helpers import NODE_PROJECT, ndjson, serve_process, vcli_executable

VECTORS = [{"id": f"v{i}", "values": [1.0, float(i), 0.5]} for i in range(1, 6)]
QUERY = ["--vector", "1", "2", "0.5"]


@pytest.fixture
def films(vcli, tmp_path):
    assert vcli("create", "films", "--dimensions", "3", "--metric", "cosine").code == 0
    (tmp_path / "films.ndjson").write_text(ndjson(VECTORS))
    assert vcli("insert", "films", "--file", "films.ndjson").code == 0
    return tmp_path


# == help =========================================================================================
def help_at(columns: int, *args: str) -> str:
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "dumb", "NO_COLOR": "1"}
    proc = subprocess.run([vcli_executable(), *args, "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("columns", [80, 120])
def test_help_gives_each_command_one_line(columns):
    from vcli.cli import app

    names = {info.name for info in app.registered_commands} | {info.name for info in app.registered_groups}
    text = help_at(columns)
    panel = text[text.index("Commands"):]
    rows = [line.strip("│ ").split(" ", 1) for line in panel.splitlines()[1:] if line.startswith("│")]
    assert all(len(line) <= columns for line in text.splitlines())
    # every row of the panel starts with a command name: no summary is continued on a next line
    assert [r[0] for r in rows] and all(r[0] in names for r in rows), rows
    assert {r[0] for r in rows} == names
    assert all(len(r) == 2 and r[1].strip().endswith(".") for r in rows), rows
    assert "<bool>" not in text


def test_a_command_help_keeps_its_long_text_and_shows_flags_without_a_value():
    text = help_at(100, "export")
    assert "in the order they" in text and "whole or not at all" in text  # the long text lives here
    text = help_at(100, "query")
    assert "<bool>" not in text and "--return-values" in text
    assert "wrangler's global flags" in text and "--env-file" in text and "--cwd" in text


# == boolean forms ===============================================================================
def test_boolean_flags_take_yargs_forms(vcli, films):
    with_values = vcli("query", "films", *QUERY, "--return-values", "--json").json
    assert "values" in with_values["matches"][0]
    for form in (["--return-values=true"], ["--return-values", "true"], ["--returnValues=TRUE"]):
        assert vcli("query", "films", *QUERY, *form, "--json").json == with_values, form
    without = vcli("query", "films", *QUERY, "--json").json
    assert "values" not in without["matches"][0]
    for form in (["--return-values=false"], ["--no-return-values"], ["--return-values", "false"],
                 ["--return-values", "--no-return-values"]):
        assert vcli("query", "films", *QUERY, *form, "--json").json == without, form
    human = vcli("query", "films", *QUERY, "--json=false")
    assert human.code == 0 and "┌" in human.out
    res = vcli("delete", "films", "--force=maybe")
    assert res.code == 2 and "does not take a value" in res.err
    assert vcli("get", "films").code == 0
    assert vcli("delete", "films", "--force=true", "--json=true").json == {"deleted": "films"}
    assert vcli("--version=true").out.startswith("vcli ")
    assert vcli("--version=false", "list", "--json").json == []


def test_deprecated_v1_is_refused_with_a_sentence(vcli, tmp_path):
    for args in (["create", "old", "--dimensions", "3", "--metric", "cosine", "--deprecated-v1"],
                 ["list", "--deprecatedV1"], ["list", "--deprecated-v1=true"]):
        res = vcli(*args)
        assert res.code == 1, args
        err = res.err.strip()
        assert len(err.splitlines()) == 1 and "V1" in err and "--deprecated-v1" in err and "No such option" not in err
    assert vcli("list", "--json").json == []
    assert vcli("list", "--deprecated-v1=false", "--json").json == []


# == global flags ================================================================================
def test_cwd_reads_relative_paths_from_there(vcli, tmp_path, monkeypatch):
    monkeypatch.delenv("VCLI_DATA_DIR")  # so that the project's vcli.toml says where the indexes are
    project = tmp_path / "project"
    (project / "vectors").mkdir(parents=True)
    (project / "vectors" / "v.ndjson").write_text(ndjson(VECTORS))
    (project / "vcli.toml").write_text('data_dir = "indexes"\n')
    here = os.getcwd()
    assert vcli("create", "docs", "--dimensions", "3", "--metric", "cosine", "--cwd", "project",
                "--data-dir", "elsewhere").code == 0  # --data-dir is read from --cwd too
    assert (project / "elsewhere" / "docs").is_dir()
    assert vcli("create", "docs", "--dimensions", "3", "--metric", "cosine", "--cwd", str(project)).code == 0
    assert vcli("insert", "docs", "--file", "vectors/v.ndjson", "--cwd", str(project)).code == 0
    assert (project / "indexes" / "docs").is_dir()  # the project's vcli.toml, found from --cwd
    assert vcli("info", "docs", "--cwd", str(project), "--json").json["vectorCount"] == 5
    assert os.getcwd() == here  # an in-process run leaves the working directory as it was
    res = vcli("list", "--cwd", str(tmp_path / "nowhere"))
    assert res.code == 1 and "--cwd" in res.err and "no such folder" in res.err


def settings_seen(vcli, *args) -> dict:
    res = vcli("config", "--json", *args)
    assert res.code == 0, res.err
    return res.json["settings"]


def test_env_files_load_variables_as_wrangler_does(vcli, tmp_path, monkeypatch):
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN", raising=False)
    monkeypatch.delenv("VCLI_LOCK_TIMEOUT", raising=False)
    monkeypatch.delenv("CF_API_TOKEN", raising=False)
    secret = "tok-" + "s3cr3t" * 4
    (tmp_path / ".env").write_text(f'# the default file\nexport CLOUDFLARE_API_TOKEN="{secret}"\nVCLI_LOCK_TIMEOUT=7 # s\n')
    seen = settings_seen(vcli)
    assert seen["api_token"] == {"value": "(set, hidden)", "source": "env", "origin": "CLOUDFLARE_API_TOKEN"}
    assert seen["lock_timeout"]["value"] == 7
    assert "CLOUDFLARE_API_TOKEN" not in os.environ  # set for the command only
    # --env-file replaces the default; a later file wins over an earlier one
    (tmp_path / "a.env").write_text("VCLI_LOCK_TIMEOUT=11\n")
    (tmp_path / "b.env").write_text("VCLI_LOCK_TIMEOUT='12'\n")
    seen = settings_seen(vcli, "--env-file", "a.env", "--env-file", "b.env")
    assert seen["lock_timeout"]["value"] == 12 and seen["api_token"]["value"] is None
    # the process's own environment wins over every file
    monkeypatch.setenv("VCLI_LOCK_TIMEOUT", "13")
    assert settings_seen(vcli, "--env-file", "b.env")["lock_timeout"]["value"] == 13
    # a .env beside the config given with -c, when no --env-file
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "wrangler.json").write_text('{"name": "w"}')
    (tmp_path / "w" / ".env").write_text("VCLI_REMOTE_RATE=10/10\n")
    assert settings_seen(vcli, "-c", "w/wrangler.json")["remote_rate"]["value"] == "10/10"
    # errors: one line, never the value
    (tmp_path / "bad.env").write_text(f"CLOUDFLARE_API_TOKEN {secret}\n")
    res = vcli("list", "--env-file", "bad.env")
    assert res.code == 1 and "bad.env, line 1" in res.err and secret not in res.err + res.out
    # an --env-file is read from where the command started, not from --cwd (as wrangler does)
    assert settings_seen(vcli, "--cwd", "w", "--env-file", "a.env")["lock_timeout"]["value"] == 13
    monkeypatch.delenv("VCLI_LOCK_TIMEOUT")
    assert settings_seen(vcli, "--cwd", "w", "--env-file", "a.env")["lock_timeout"]["value"] == 11
    assert settings_seen(vcli, "--cwd", "w")["remote_rate"]["value"] == "10/10"  # .env there by default
    res = vcli("list", "--env-file", "missing.env")
    assert res.code == 1 and "missing.env" in res.err
    res = vcli("list", "-c", "missing.json")
    assert res.code == 1 and "missing.json" in res.err


def test_profile_install_skills_and_env_are_accepted(vcli, films):
    res = vcli("list", "--profile", "work", "--install-skills", "-e", "staging", "--json")
    assert res.code == 0 and [i["name"] for i in res.json] == ["films"]
    # before the command too, as wrangler takes them (npx wrangler -c wrangler.staging.json …)
    (films / "w.json").write_text('{"name": "w"}')
    res = vcli("-c", "w.json", "--cwd", str(films), "--install-skills", "-e=staging", "get", "films", "--json")
    assert res.code == 0 and res.json["name"] == "films"
    res = vcli("-c", "missing.json", "list")
    assert res.code == 1 and "missing.json" in res.err
    res = vcli("get", "films", "--install-skills=false", "--json")
    assert res.code == 0 and res.json["name"] == "films"


# == create --binding --update-config ============================================================
JSONC = """{
  // my worker
  "name": "w",
  "main": "src/index.js", /* entry point */
  "compatibility_date": "2025-01-01",
  "vectorize": [
    { "binding": "OTHER", "index_name": "other" } // keep me
  ],
  "env": {
    "staging": { "vars": { "A": "1" } }
  }
}
"""


def test_create_binding_update_config_edits_jsonc_keeping_comments(vcli, tmp_path):
    from vcli.workers.config import read_config

    (tmp_path / "wrangler.jsonc").write_text(JSONC)
    res = vcli("create", "films", "--dimensions", "3", "--metric", "cosine", "--binding", "my-films", "--update-config")
    assert res.code == 0, res.err
    assert "my_films" in res.err and "wrangler.jsonc" in res.err
    res = vcli("create", "docs", "--dimensions", "3", "--metric", "cosine", "--update-config", "-e", "staging",
               "--use-remote=true", "--json")
    assert res.code == 0 and res.json["name"] == "docs"
    res = vcli("create", "films2", "--dimensions", "3", "--metric", "cosine", "--binding", "my_films")
    assert res.code == 0
    text = (tmp_path / "wrangler.jsonc").read_text()
    for kept in ("// my worker", "/* entry point */", "// keep me", '"compatibility_date": "2025-01-01",'):
        assert kept in text
    data = read_config(tmp_path / "wrangler.jsonc").data
    assert data["vectorize"] == [{"binding": "OTHER", "index_name": "other"},
                                 {"binding": "my_films", "index_name": "films2"}]  # the same binding: replaced
    assert data["env"]["staging"] == {"vars": {"A": "1"}, "vectorize": [
        {"binding": "VECTORIZE", "index_name": "docs", "remote": True}]}


def test_create_binding_in_toml_and_where_it_cannot_be_clean(vcli, tmp_path):
    from vcli.workers.config import read_config

    (tmp_path / "wrangler.toml").write_text('name = "w"\nmain = "x.js"\n\n[vars]\nA = "1"\n')
    assert vcli("create", "films", "--dimensions", "3", "--metric", "cosine", "--binding", "FILMS").code == 0
    assert vcli("create", "docs", "--dimensions", "3", "--metric", "cosine", "--binding", "FILMS", "-e", "dev").code == 0
    data = read_config(tmp_path / "wrangler.toml").data
    assert data["vectorize"] == [{"binding": "FILMS", "index_name": "films"}]
    assert data["env"]["dev"]["vectorize"] == [{"binding": "FILMS", "index_name": "docs"}]
    assert data["vars"] == {"A": "1"}
    before = (tmp_path / "wrangler.toml").read_text()
    res = vcli("create", "more", "--dimensions", "3", "--metric", "cosine", "--binding", "FILMS")
    assert res.code == 1 and "already has a Vectorize binding named FILMS" in res.err
    assert vcli("get", "more").code == 1  # refused before anything was created
    assert (tmp_path / "wrangler.toml").read_text() == before
    (tmp_path / "w2").mkdir()
    (tmp_path / "w2" / "wrangler.toml").write_text('name = "w"\nvectorize = [{ binding = "A", index_name = "a1" }]\n')
    res = vcli("create", "more", "--dimensions", "3", "--metric", "cosine", "--binding", "B", "--cwd", "w2")
    assert res.code == 1 and "by hand" in res.err and vcli("get", "more").code == 1
    res = vcli("create", "more", "--dimensions", "3", "--metric", "cosine", "--update-config", "--cwd", "w2/..",
               "-c", "nothing.json")
    assert res.code == 1 and "nothing.json" in res.err


def test_create_update_config_then_workers_config_serves_the_index(vcli, tmp_path):
    """The issue's acceptance line: create … --binding X --update-config, then workers-config
    --write, gives a local environment whose binding vcli serve answers for that index."""
    from vcli.workers.config import read_config

    (tmp_path / "wrangler.jsonc").write_text('{\n  // a Worker\n  "name": "w",\n  "main": "src/index.js"\n}\n')
    with serve_process(tmp_path, "--data-dir", str(tmp_path / "data")) as server:
        res = vcli("create", "films", "--dimensions", "3", "--metric", "cosine", "--binding", "FILMS",
                   "--update-config")
        assert res.code == 0, res.err
        (tmp_path / "v.ndjson").write_text(ndjson(VECTORS))
        assert vcli("insert", "films", "--file", "v.ndjson").code == 0
        assert vcli("workers-config", "--write", "--url", server.url).code == 0
        config = read_config(tmp_path / "wrangler.jsonc").data
        assert config["vectorize"] == [{"binding": "FILMS", "index_name": "films"}]
        [bound] = config["env"]["local"]["unsafe"]["bindings"]
        assert bound["name"] == "FILMS" and bound["index_name"] == "films"
        url = bound["dev"]["options"]["url"]
        described = httpx.get(url + "info", timeout=30)  # what env.FILMS.describe() asks
        assert described.status_code == 200 and described.json()["vectorCount"] == 5
        found = httpx.post(url + "query", json={"vector": [1, 2, 0.5], "topK": 1}, timeout=30).json()
        assert found["matches"][0]["id"] == "v2"


def test_the_binding_name_is_cleaned_as_wrangler_does():
    from vcli.workers.config import binding_name

    assert binding_name("my-films index") == "my_films_index"
    assert binding_name("9lives") == "_9lives"
    assert binding_name("a--b!!c") == "a_bc"
    assert binding_name("!!!") == "VECTORIZE" and binding_name(None) == "VECTORIZE"


def test_a_one_letter_index_is_created_with_a_note(vcli):
    res = vcli("create", "a", "--dimensions", "3", "--metric", "cosine")
    assert res.code == 0 and re.search(r"at least 2 characters", res.err)
    assert vcli("get", "a", "--json").json["name"] == "a"


def test_serve_takes_its_token_from_an_env_file(tmp_path, monkeypatch):
    monkeypatch.delenv("VCLI_SERVE_TOKEN", raising=False)
    (tmp_path / "serve.env").write_text("VCLI_SERVE_TOKEN=from-the-file\n")
    with serve_process(tmp_path, "--data-dir", str(tmp_path / "data"), "--env-file", str(tmp_path / "serve.env")) \
            as server:
        assert httpx.get(server.api + "/indexes", timeout=30).status_code == 401
        resp = httpx.get(server.api + "/indexes", headers={"authorization": "Bearer from-the-file"}, timeout=30)
        assert resp.status_code == 200 and resp.json()["result"] == []
        assert "from-the-file" not in server.output()


def test_update_config_then_get_platform_proxy_serves_the_index(node_packages, tmp_path):
    """The acceptance line end to end: a Worker with no Vectorize binding; ``vcli create …
    --binding LAUNCH --update-config``; ``vcli workers-config --write``; then wrangler's own
    getPlatformProxy() on the local environment upserts and queries that index through vcli serve."""
    quiet = {"WRANGLER_SEND_METRICS": "false", "WRANGLER_SEND_ERROR_REPORTS": "false", "CI": "1", "NO_COLOR": "1"}
    project = tmp_path / "worker"
    shutil.copytree(NODE_PROJECT / "project" / "src", project / "src")
    (project / "node_modules").symlink_to(node_packages)
    (project / "wrangler.jsonc").write_text(
        '{\n  // a Worker with no index yet\n  "name": "w",\n  "main": "src/index.mjs",\n'
        '  "compatibility_date": "2025-01-01",\n  "compatibility_flags": ["nodejs_compat"]\n}\n')
    env = {**os.environ, **quiet, "VCLI_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}

    def vcli_run(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([vcli_executable(), *args], cwd=project, env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, (args, proc.stderr)
        return proc

    with serve_process(tmp_path, "--data-dir", str(tmp_path / "data")) as server:
        vcli_run("create", "launch-post", "--dimensions", "3", "--metric", "cosine", "--binding", "LAUNCH",
                 "--update-config")
        vcli_run("workers-config", "--write", "--url", server.url)
        proc = subprocess.run(
            ["node", "--no-warnings", str(NODE_PROJECT / "drive.mjs"), "platform-proxy", str(project),
             str(project / "wrangler.jsonc"), "local"],
            input=json.dumps([{"path": "/launch-post", "body": {"binding": "LAUNCH"}}]), cwd=project, env=env,
            capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        [answer] = json.loads(proc.stdout)
        matches = answer["result"]["matches"]["matches"]
        assert [(m["id"], round(m["score"], 6)) for m in matches] == [("5", 0.999909), ("4", 0.789848), ("2", 0.611976)]
        info = json.loads(vcli_run("info", "launch-post", "--json").stdout)
        assert info["vectorCount"] == 5
