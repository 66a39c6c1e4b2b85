"""What every command shares: option types, the error boundary, wrangler's command-line habits, and
the catalog a command works on.

Options are defined once as ``Annotated`` aliases. ``VectorizeCommand`` takes a command line as
wrangler's yargs does before Click reads it: ``--vector`` and ``--ids`` take several values after
one flag (``--vector -0.12 0.5 -3e-4``), a boolean flag takes ``--flag=true|false``, ``--flag
true|false`` and ``--no-flag``, and ``--deprecated-v1`` is refused with a sentence. ``run`` is the one
place where engine errors become an ``Error: …`` line and an exit code; it also gives every command
wrangler's global flags (``-c/--config``, ``-e/--env``, ``--cwd``, ``--env-file``, ``--profile``,
``--install-skills``) and applies them around the command (``wrangler_globals``).
"""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, Optional, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from .. import render, startup
from ..errors import BadInput, ExitCode, VcliError

if TYPE_CHECKING:
    from ..engine.tuning import Tuning

F = TypeVar("F", bound=Callable[..., Any])

# Options whose values may follow one flag; True means the values are numbers (so "-0.5" is a
# value, not an option).
ARRAY_OPTIONS = {"--vector": True, "--ids": False}
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(inf|infinity|nan)", re.I)


def expand_array_options(args: list[str]) -> list[str]:
    """Rewrite ``--vector 1 -2 3`` as ``--vector=1 --vector=-2 --vector=3``."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            out.append(arg)
            out.extend(args[i:])
            break
        if arg not in ARRAY_OPTIONS:
            out.append(arg)
            continue
        numeric = ARRAY_OPTIONS[arg]
        values = []
        while i < len(args):
            nxt = args[i]
            if nxt.startswith("-") and nxt != "-" and not (numeric and _NUMBER.fullmatch(nxt)):
                break
            values.append(nxt)
            i += 1
        out.extend(f"{arg}={v}" for v in values) if values else out.append(arg)
    return out


TRUE, FALSE = ("true",), ("false",)
V1_FLAGS = ("--deprecated-v1", "--deprecatedV1")
V1_GONE = ("Vectorize V1 (legacy) indexes are gone: Cloudflare blocked creating them from December 2024 "
           "and vcli has V2 indexes only; leave out --deprecated-v1")


def boolean_forms(args: list[str], flags: dict[str, str]) -> list[str]:
    """yargs' spellings of a boolean flag as Click's: ``--x=true`` and ``--x true`` are ``--x``;
    ``--x=false``, ``--x false`` and ``--no-x`` leave it out (the last spelling wins, as in
    yargs). ``flags`` maps each name of a flag that is false when left out to the flag (its
    parameter's name); other flags are left as they are."""
    out: list[tuple[str, str | None]] = []  # (argument, the flag it sets)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            out.extend((a, None) for a in args[i - 1:])
            break
        name, eq, value = arg.partition("=")
        negated = name.startswith("--no-") and not eq and "--" + name[5:] in flags
        if not negated and name not in flags:
            out.append((arg, None))
            continue
        flag = flags["--" + name[5:]] if negated else flags[name]
        if not negated and not eq and i < len(args) and args[i].lower() in TRUE + FALSE:
            eq, value = "=", args[i]  # --x true: yargs takes the next word as the flag's value
            i += 1
        if negated or (eq and value.lower() in FALSE):
            out = [(a, f) for a, f in out if f != flag]  # false: as if never given
        elif not eq or value.lower() in TRUE:
            out.append((name, flag))
        else:
            out.append((arg, flag))  # --x=maybe: Click says the flag takes no value
    return [a for a, _ in out]


def false_flags(params: list) -> dict[str, str]:
    """``boolean_forms``' map: each long name of a flag that is false unless given -> the flag."""
    return {name: p.name for p in params if getattr(p, "is_bool_flag", False) and not p.default
            and not p.secondary_opts for name in p.opts if name.startswith("--")}


def _is_v1(arg: str) -> bool:
    name, eq, value = arg.partition("=")
    return name in V1_FLAGS and (not eq or value.lower() not in FALSE)


class VectorizeCommand(TyperCommand):
    """A command that reads its command line as wrangler does (the module docstring says how), and
    converts its plain option values without pydantic (``vcli.startup.plain_params``)."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        cut = args.index("--") if "--" in args else len(args)
        head, tail = list(args[:cut]), list(args[cut:])
        if any(_is_v1(a) for a in head):
            render.error(V1_GONE)
            raise typer.Exit(ExitCode.FAILURE)
        valued = {o for p in self.params if not getattr(p, "is_flag", True) for o in p.opts if len(o) == 2}
        head = [a[:2] + a[3:] if a[:2] in valued and a[2:3] == "=" else a for a in head]  # yargs' -e=NAME
        args = [a for a in head if a.partition("=")[0] not in V1_FLAGS] + tail  # =false: V2, as always
        return super().parse_args(ctx, boolean_forms(expand_array_options(args), false_flags(self.params)))

    def get_params(self, ctx):
        return without_bool_metavar(startup.plain_params(super().get_params(ctx)))


class FlagGroup(TyperGroup):
    """A group of commands whose own flags (``--help``) show no ``<bool>`` metavar, its options
    converted without pydantic as a command's are."""

    def get_params(self, ctx):
        return without_bool_metavar(startup.plain_params(super().get_params(ctx)))


def without_bool_metavar(params: list) -> list:
    """A flag shows no value in help (typer would show ``<bool>``, though a flag takes none)."""
    for p in params:
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""
    return params


# == wrangler's global flags ======================================================================
class Wrangler(NamedTuple):
    """wrangler's global flags as a command sees them (``WRANGLER``): the wrangler config named with
    ``-c`` (relative to ``--cwd``) and the environment named with ``-e``."""

    config: Optional[Path] = None
    env: Optional[str] = None


WRANGLER: ContextVar[Wrangler] = ContextVar("vcli_wrangler", default=Wrangler())  # noqa: B039 - a tuple
GLOBAL_PANEL = "wrangler's global flags"
_DOTENV_LINE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*?)\s*")
GLOBAL_OPTIONS: dict[str, tuple[Any, Any]] = {
    "wrangler_config": (Optional[Path], typer.Option(
        "--config", "-c", show_default=False, metavar="FILE", rich_help_panel=GLOBAL_PANEL,
        help="Path to the wrangler config (wrangler.json, wrangler.jsonc or wrangler.toml).")),
    "wrangler_env": (Optional[str], typer.Option(
        "--env", "-e", show_default=False, metavar="NAME", rich_help_panel=GLOBAL_PANEL,
        help="The wrangler environment to use (create --binding writes under env.NAME).")),
    "wrangler_cwd": (Optional[Path], typer.Option(
        "--cwd", show_default=False, metavar="DIR", rich_help_panel=GLOBAL_PANEL,
        help="Run as if started in this folder (relative paths are read from there).")),
    "wrangler_env_file": (Optional[list[str]], typer.Option(
        "--env-file", show_default=False, metavar="FILE", rich_help_panel=GLOBAL_PANEL,
        help="A .env file of variables to load (repeatable; later files win; read from where the "
             "command starts, before --cwd; default: .env beside the wrangler config, else in the working "
             "directory). Variables already set win over files.")),
    "wrangler_profile": (Optional[str], typer.Option(
        "--profile", show_default=False, metavar="NAME", rich_help_panel=GLOBAL_PANEL,
        help="wrangler's login profile: accepted, unused (vcli reads CLOUDFLARE_API_TOKEN).")),
    "wrangler_install_skills": (bool, typer.Option(
        "--install-skills", rich_help_panel=GLOBAL_PANEL,
        help="wrangler's agent skills installer: accepted, does nothing here.")),
}


def globals_after_command(args: list[str]) -> list[str]:
    """``vcli -c wrangler.json --cwd app list`` as ``vcli list -c wrangler.json --cwd app``: wrangler
    takes its global flags before the command too, and vcli's commands hold them."""
    valued = {d for _, option in GLOBAL_OPTIONS.values() if option.metavar for d in (option.default, *option.param_decls)}
    flags = {d for _, option in GLOBAL_OPTIONS.values() if not option.metavar for d in (option.default, *option.param_decls)}
    moved: list[str] = []
    i = 0
    while i < len(args):
        name, eq, _ = args[i].partition("=")
        step = 2 if name in valued and not eq else 1
        if name not in valued and name not in flags and name.replace("--no-", "--", 1) not in flags:
            break
        moved += args[i:i + step]
        i += step
    return [args[i], *moved, *args[i + 1:]] if moved and i < len(args) else list(args)


def _option_names(param: inspect.Parameter) -> set[str]:
    infos = [m for m in getattr(param.annotation, "__metadata__", ()) if isinstance(m, typer.models.OptionInfo)]
    names = {"--" + param.name.replace("_", "-")}
    for info in infos:
        names.update(d for d in (info.default, *(info.param_decls or ())) if isinstance(d, str))
    return names


def _with_global_options(fn: Callable, wrapper: Callable) -> None:
    """Give ``wrapper`` the signature of ``fn`` plus the global flags that ``fn`` does not define
    itself (workers-config has its own ``--config`` and ``--env``)."""
    signature = inspect.signature(fn, eval_str=True)
    taken = set().union(*(_option_names(p) for p in signature.parameters.values()))
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[kind, option],
                          default=False if kind is bool else None)
        for name, (kind, option) in GLOBAL_OPTIONS.items()
        if not taken & {option.default, *option.param_decls}
    ]
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values()]
    wrapper.__signature__ = signature.replace(parameters=[*params, *extra])  # type: ignore[attr-defined]


def read_dotenv(path: Path) -> dict[str, str]:
    """The variables of a ``.env`` file: ``KEY=value`` lines (``export`` allowed), values bare (a
    `` #`` starts a comment), in single quotes (as written) or double quotes (``\\n`` escapes)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read the env file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    found: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _DOTENV_LINE.fullmatch(line)
        if m is None:
            raise BadInput(f"{path}, line {lineno}: not a KEY=value line")  # the value is never shown
        key, value = m.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
            if line.rstrip()[-1] == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"')
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].strip()
        found[key] = value
    return found


@contextmanager
def wrangler_globals(config: Optional[Path] = None, env: Optional[str] = None, cwd: Optional[Path] = None,
                     env_files: Optional[list[str]] = None) -> Iterator[None]:
    """Apply wrangler's global flags for one command, and undo them after (a program may run the
    CLI in-process): ``--cwd`` changes the working directory; the variables of the ``--env-file``
    files (relative to where the command started, as wrangler reads them before ``--cwd``; or of
    ``.env`` beside the config, else in the working directory) are set where the environment does
    not set them already; ``-c``/``-e`` are what ``WRANGLER`` holds."""
    before = os.getcwd()
    added: list[str] = []
    token = None
    try:
        given = [Path(before, f) for f in env_files or ()]  # read from where we started, as wrangler does
        if cwd is not None:
            if not cwd.is_dir():
                raise BadInput(f"--cwd {cwd}: no such folder")
            os.chdir(cwd)
        if config is not None and not config.is_file():
            raise BadInput(f"--config {config}: no such file")
        if env is not None and not re.fullmatch(r"[A-Za-z0-9_-]+", env):
            raise BadInput(f'--env "{env}" cannot name a wrangler environment (letters, digits, - and _)')
        if given:
            files = given
            for f, name in zip(files, env_files or (), strict=True):
                if not f.is_file():
                    raise BadInput(f"--env-file {name}: no such file")
        else:
            default = (config.parent if config is not None else Path(".")) / ".env"
            files = [default] if default.is_file() else []
        loaded: dict[str, str] = {}
        for f in files:
            loaded.update(read_dotenv(f))  # a later file wins
        for key, value in loaded.items():
            if key not in os.environ:  # the process's own environment wins, as in wrangler
                os.environ[key] = value
                added.append(key)
        token = WRANGLER.set(Wrangler(config, env))
        yield
    finally:
        if token is not None:
            WRANGLER.reset(token)
        for key in added:
            os.environ.pop(key, None)
        if os.getcwd() != before:
            os.chdir(before)


def run(fn: F) -> F:
    """The error boundary: VcliError → ``Error: …`` and its exit code; Ctrl-C → 130; anything
    unexpected → one line (a traceback only with ``VCLI_DEBUG=1``). The command also takes
    wrangler's global flags, applied around it by ``wrangler_globals``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name, None) for name in GLOBAL_OPTIONS}
        try:
            with wrangler_globals(given["wrangler_config"], given["wrangler_env"], given["wrangler_cwd"],
                                  given["wrangler_env_file"]):
                return fn(*args, **kwargs)
        except VcliError as exc:
            render.show_notes(exc.notes)
            render.error(exc.message)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            # ``errors.Interrupted`` says so when the write had already been saved.
            render.error(getattr(exc, "message", None)
                         or "interrupted; the index is as it was before this command")
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except (typer.Exit, typer.Abort):
            raise
        except OSError as exc:
            if os.environ.get("VCLI_DEBUG"):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            render.error(f"{where}{exc.strerror or exc}")
            raise typer.Exit(ExitCode.FAILURE) from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if os.environ.get("VCLI_DEBUG"):
                raise
            if type(exc).__module__ == "sqlite3":  # the store said no outside a write
                render.error(f"the index store could not be read: {exc} (run `vcli check` on it)")
                raise typer.Exit(ExitCode.FAILURE) from None
            render.error(f"unexpected {type(exc).__name__}: {exc} (run with VCLI_DEBUG=1 for details)")
            raise typer.Exit(ExitCode.FAILURE) from None

    _with_global_options(fn, wrapper)
    return wrapper  # type: ignore[return-value]


# The engine's tuning for this run: the Click context object when a program that runs the CLI
# in-process gives one (``app(obj=Tuning(...))``, as tests do), else the defaults.
TUNING: ContextVar[Tuning | None] = ContextVar("vcli_tuning", default=None)  # set by the root callback


def catalog(data_dir: Optional[Path], remote: bool = False):
    """The configured catalog (``--data-dir`` > ``VCLI_*`` > vcli.toml > config.toml > defaults);
    with ``remote``, the account's indexes on the live service instead (``vcli.remote``)."""
    if remote:
        return remote_catalog(data_dir)
    from ..engine.catalog import open_catalog  # lazy: ``vcli --help`` opens no catalog

    return open_catalog(data_dir, tuning=TUNING.get(), background_builds=True)  # graphs built after a write returns


def remote_catalog(data_dir: Optional[Path] = None):
    from ..engine.settings import load_settings
    from ..remote import RemoteCatalog, Target

    return RemoteCatalog(Target.from_settings(load_settings({"data_dir": data_dir})))


def wait_for(index, mutation_id: str, wait: bool, timeout: int) -> None:
    """``--wait``: return once the index shows the write applied (at once for a local index)."""
    if wait and mutation_id:
        index.wait(mutation_id, timeout)


IndexName = Annotated[str, typer.Argument(help="The name of the index.", show_default=False)]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout, nothing else.")]
RemoteFlag = Annotated[bool, typer.Option(
    "--remote", help="Run against the live Vectorize service (CLOUDFLARE_API_TOKEN, CLOUDFLARE_ACCOUNT_ID; "
    "see vcli config).")]
WaitFlag = Annotated[bool, typer.Option(
    "--wait", help="Return only once the index shows the write applied (on the service it is "
    "applied a few seconds later; a local write at once).")]
WaitTimeout = Annotated[int, typer.Option(
    "--wait-timeout", help="Seconds --wait waits at most before giving up (the write still happens).")]
DataDir = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        help="Folder holding the indexes (default: $VCLI_DATA_DIR, else data_dir in vcli.toml "
        "or config.toml, else the user data dir; see vcli config).",
        show_default=False,
        file_okay=False,
    ),
]
