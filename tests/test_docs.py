"""The docs cannot go stale: generated files match the app, every command is documented, the man
page renders cleanly, completions work in real shells, and README's examples run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import typer
from helpers import vcli_executable

from vcli import _gendocs
from vcli.cli import app
from vcli.cli._common import GLOBAL_PANEL

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
MAN = (REPO / _gendocs.MAN_PAGE).read_text(encoding="utf-8")
REGENERATE = f"run `{_gendocs.SCRIPT}` and commit the result"

# Commands other work is adding right now: README may show them before they exist, and its
# examples that use them are skipped until they do. Empty this once they have all landed.
UPCOMING: set[str] = set()


def commands():
    group = typer.main.get_command(app)
    ctx = group.make_context("vcli", [], resilient_parsing=True)
    return [c for c in (group.get_command(ctx, n) for n in group.list_commands(ctx)) if not c.hidden]


COMMAND_NAMES = [c.name for c in commands()]


def shell_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a person: the installed vcli on PATH, a home and data dir of their own."""
    env = {k: v for k, v in os.environ.items() if k != "VCLI_DATA_DIR"}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), PATH=f"{Path(vcli_executable()).parent}{os.pathsep}{env.get('PATH', '')}",
               NO_COLOR="1", COLUMNS="120")
    return env


# == generated files =================================================================================
def test_generated_files_are_current(tmp_path):
    assert _gendocs.main([str(tmp_path)]) == 0
    for rel in _gendocs.generate():
        fresh = (tmp_path / rel).read_text(encoding="utf-8")
        checked_in = REPO / rel
        assert checked_in.is_file(), f"{rel} is missing: {REGENERATE}"
        assert checked_in.read_text(encoding="utf-8") == fresh, f"{rel} is stale: {REGENERATE}"
    assert _gendocs.main(["--check", str(tmp_path)]) == 0


def test_check_mode_names_stale_files(tmp_path, capsys):
    assert _gendocs.main(["--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "stale: man/vcli.1" in err and _gendocs.SCRIPT in err


def test_generated_files_say_where_they_come_from():
    for rel in _gendocs.generate():
        head = (REPO / rel).read_text(encoding="utf-8").splitlines()[:2]
        assert any(_gendocs.SCRIPT in line for line in head), rel
    assert (REPO / "completions/_vcli").read_text().startswith("#compdef vcli\n")


def test_wheel_ships_completions_and_man_page_in_share():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    data_files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    assert data_files == {
        "share/man/man1": ["man/vcli.1"],
        "share/bash-completion/completions": ["completions/vcli.bash"],
        "share/zsh/site-functions": ["completions/_vcli"],
        "share/fish/vendor_completions.d": ["completions/vcli.fish"],
    }


# == every command is documented =====================================================================
@pytest.mark.parametrize("name", COMMAND_NAMES)
def test_every_command_has_help_and_is_in_readme_and_man_page(name, vcli):
    cmd = next(c for c in commands() if c.name == name)
    assert cmd.help and cmd.help.strip(), f"vcli {name} has no help text"
    for param in cmd.params:
        # Typer shows help through rich, which swallows "[word…]" as a markup tag.
        assert not re.search(r"\[[a-z/]", param.help or ""), f"{name} {param.name}: brackets vanish in --help"
    result = vcli(name, "--help")
    assert result.code == 0 and "Usage" in result.out
    assert re.search(rf"`vcli {re.escape(name)}[` ]", README), f"README.md does not show `vcli {name}`"
    assert f'.SS "vcli {_gendocs.esc(name)} ' in MAN, f"man/vcli.1 has no section for {name}: {REGENERATE}"


@pytest.mark.parametrize("name", COMMAND_NAMES)
def test_every_flag_is_in_the_man_page(name):
    cmd = next(c for c in commands() if c.name == name)
    start = MAN.index(f'.SS "vcli {_gendocs.esc(name)} ')
    end = MAN.find(".SS ", start + 1)
    section = MAN[start:end if end != -1 else MAN.index(".SH WRANGLER'S GLOBAL FLAGS")]
    shared = MAN[MAN.index(".SH WRANGLER'S GLOBAL FLAGS"):MAN.index(".SH CONFIGURATION")]
    for param in cmd.params:
        where = shared if getattr(param, "rich_help_panel", None) == GLOBAL_PANEL else section
        for opt in [*param.opts, *param.secondary_opts] if param.param_type_name == "option" else []:
            assert f"\\fB{_gendocs.esc(opt)}\\fR" in where, f"{opt} of {name} is not in man/vcli.1"


def test_readme_test_command_is_the_one_ci_runs():
    block = re.search(r"Run the tests[^\n]*\n\n```sh\n(.+?)\n```", README, re.S)
    assert block, "README.md has no 'Run the tests' block"
    ci = (REPO / ".ci/run").read_text().splitlines()
    assert block.group(1) in ci, ".ci/run must run exactly README's test command"


def test_readme_maps_all_fourteen_wrangler_commands():
    start = README.index("## From `wrangler vectorize` to vcli")
    table = README[start:README.index("\n## ", start)]
    rows = re.findall(r"^\| `([a-z-]+)[ `]", table, re.M)
    assert rows[0] == "wrangler"  # the header
    assert rows[1:] == [
        "create", "list", "get", "info", "delete", "insert", "upsert", "query", "get-vectors",
        "delete-vectors", "list-vectors", "create-metadata-index", "list-metadata-index",
        "delete-metadata-index",
    ]


# == the man page renders ============================================================================
def test_man_page_is_plain_roff():
    assert MAN.startswith('.\\" ') and "\n.TH VCLI 1 " in MAN
    assert MAN.isascii(), "non-ASCII characters must be roff escapes"
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "ENVIRONMENT",
                    "FILES", "EXAMPLES"):
        assert f"\n.SH {section}\n" in MAN
    known = {'.\\"', ".TH", ".SH", ".SS", ".TP", ".PP", ".B", ".br", ".nf", ".fi", ".RS", ".RE", ".nh"}
    for line in MAN.splitlines():
        if line.startswith((".", "'")):
            assert line.split(" ")[0] in known, f"unexpected request: {line}"


@pytest.mark.skipif(not shutil.which("groff"), reason="groff is not installed")
def test_man_page_renders_without_warnings_in_groff():
    proc = subprocess.run(["groff", "-man", "-ww", "-z", str(REPO / _gendocs.MAN_PAGE)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


@pytest.mark.skipif(not shutil.which("man"), reason="man is not installed")
def test_man_l_shows_every_command(tmp_path):
    env = {**shell_env(tmp_path), "MANWIDTH": "100", "MAN_KEEP_FORMATTING": "0", "PAGER": "cat"}
    proc = subprocess.run(["man", "-l", str(REPO / _gendocs.MAN_PAGE)], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    text = re.sub(r".\x08", "", proc.stdout)
    for name in COMMAND_NAMES:
        assert f"vcli {name} " in text
    assert "EXIT STATUS" in text and "VCLI_DATA_DIR" in text


# == completions =====================================================================================
def run_shell(args, tmp_path, **kw):
    return subprocess.run(args, capture_output=True, text=True, env=shell_env(tmp_path), cwd=REPO,
                          timeout=60, **kw)


def test_bash_completion_completes_commands_and_flags(tmp_path):
    script = (
        "source completions/vcli.bash\n"
        'complete -p vcli\n'
        "COMP_WORDS=(vcli que); COMP_CWORD=1; _vcli_completion vcli; echo \"1:${COMPREPLY[*]}\"\n"
        "COMP_WORDS=(vcli query idx --top); COMP_CWORD=3; _vcli_completion vcli; echo \"2:${COMPREPLY[*]}\"\n"
        "COMP_WORDS=(vcli insert idx --); COMP_CWORD=3; _vcli_completion vcli; echo \"3:${COMPREPLY[*]}\"\n"
    )
    proc = run_shell(["bash", "--norc", "-c", script], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "-F _vcli_completion vcli" in lines[0]
    assert lines[1] == "1:query"
    assert set(lines[2][2:].split()) == {"--top-k", "--topK"}
    assert {"--file", "--batch-size", "--json", "--data-dir"} <= set(lines[3][2:].split())


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh is not installed")
def test_zsh_completion_loads_from_fpath_and_completes(tmp_path):
    # compinit registers _vcli from fpath by its #compdef line; _arguments is stubbed to show what
    # the completion function hands to zsh's completion system.
    script = (
        "fpath=($PWD/completions $fpath); autoload -Uz compinit; compinit -u -D\n"
        'print -r -- "comps:$_comps[vcli]"\n'
        '_arguments() { print -r -- "args:$*"; }\n'
        "words=(vcli que); CURRENT=2; _vcli\n"
        "words=(vcli query idx --return); CURRENT=4; _vcli\n"
    )
    proc = run_shell(["zsh", "-f", "-c", script], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "comps:_vcli"
    assert '"query":"Query a Vectorize index."' in lines[1]
    assert '"--return-values"' in lines[2] and '"--returnValues"' in lines[2]
    sourced = run_shell(["zsh", "-f", "-c", "autoload -Uz compinit; compinit -u -D; "
                         "source completions/_vcli; print -r -- $_comps[vcli]"], tmp_path)
    assert sourced.stdout.strip() == "_vcli_completion", sourced.stderr


@pytest.mark.skipif(not shutil.which("fish"), reason="fish is not installed")
def test_fish_completion_completes_commands_and_flags(tmp_path):
    proc = run_shell(["fish", "--no-config", "-c",
                      'source completions/vcli.fish; complete -C "vcli upse"; complete -C "vcli get-vectors x --id"'],
                     tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = [line.split("\t")[0] for line in proc.stdout.splitlines()]
    assert got == ["upsert", "--ids"]


def test_install_completion_still_works(tmp_path):
    env = {**shell_env(tmp_path), "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    proc = subprocess.run([vcli_executable(), "--install-completion", "bash"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    installed = Path(env["HOME"], ".bash_completions", "vcli.sh")
    assert "_vcli_completion" in installed.read_text()
    assert str(installed) in Path(env["HOME"], ".bashrc").read_text()


# == README's examples run ===========================================================================
def readme_blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang} test\n(.*?)^```", README, re.S | re.M)


def test_readme_has_runnable_examples():
    assert len(readme_blocks("sh")) >= 4 and readme_blocks("python")


def test_readme_shell_examples_run(tmp_path):
    """Each ```sh test block runs in a fresh bash (-euo pipefail) in one folder, in order."""
    work = tmp_path / "readme"
    work.mkdir()
    skipped = []
    for n, block in enumerate(readme_blocks("sh"), 1):
        used = set(re.findall(r"\bvcli ([a-z][a-z-]*)", block))
        unknown = used - set(COMMAND_NAMES)
        assert unknown <= UPCOMING, f"README block {n} uses unknown commands {sorted(unknown)}"
        missing_tools = [t for t in ("jq",) if re.search(rf"\b{t}\b", block) and not shutil.which(t)]
        if unknown or missing_tools:
            skipped.append(f"block {n} ({', '.join(sorted(unknown) + missing_tools)} not available)")
            continue
        proc = subprocess.run(["bash", "--norc", "-euo", "pipefail", "-c", block], capture_output=True,
                              text=True, env=shell_env(tmp_path), cwd=work, timeout=120)
        assert proc.returncode == 0, f"README block {n} failed:\n{block}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        assert "Traceback" not in proc.stderr
    if skipped:
        warnings.warn("README examples not run: " + "; ".join(skipped), stacklevel=1)


def test_readme_python_example_runs_under_pytest(tmp_path):
    (tmp_path / "test_readme_example.py").write_text("\n\n".join(readme_blocks("python")))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_readme_example.py"], capture_output=True, text=True, cwd=tmp_path,
                          env=shell_env(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_exit_codes_are_pinned_and_documented():
    """Scripts depend on these numbers: they never change, and docs/contract.md lists each."""
    from vcli.errors import ExitCode

    assert {e.name: int(e) for e in ExitCode.__members__.values()} == {
        "OK": 0, "FAILURE": 1, "USAGE": 2, "REPAIRED": 3, "INTERRUPTED": 130,
    }
    assert ExitCode.DIFFERENT is ExitCode.FAILURE  # vcli diff's "they differ" is diff(1)'s 1
    contract = (REPO / "docs" / "contract.md").read_text(encoding="utf-8")
    table = contract.split("## Errors and exit codes", 1)[1].split("\n\n")[1]
    assert [int(row.split("|")[1]) for row in table.splitlines()[2:]] == [int(e) for e in ExitCode]
