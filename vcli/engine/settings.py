"""Settings, from lowest to highest precedence (docs/contract.md, "Configuration"):

1. built-in defaults;
2. the user file, ``config.toml`` in the user config dir (``$XDG_CONFIG_HOME/vcli`` on Linux);
3. the project file, ``vcli.toml`` in the current directory or the nearest parent that has one
   (a relative ``data_dir`` there is relative to that file, so an index folder can live in a
   repository as a test fixture);
4. ``VCLI_*`` environment variables;
5. command-line flags (``--data-dir``).

Both files are flat TOML tables of the keys in ``KEYS``. An unknown key or a wrong type is a
``ConfigError`` naming the file and the key. Everything is resolved inside ``load_settings`` from
an explicit environment mapping and working directory, never at import time, and nothing heavy is
imported (``vcli list`` and ``vcli --help`` stay fast).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import ConfigError
from .limits import DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_INDEXES, DEFAULT_MAX_NAMESPACES, MAX_TOP_K_WITH_DATA

DEFAULT_API_BASE_URL = "https://api.cloudflare.com/client/v4"
DEFAULT_REMOTE_RATE = (1200, 300.0)  # the Cloudflare API's limit: 1,200 requests per 5 minutes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

APP = "vcli"
USER_FILE = "config.toml"
PROJECT_FILE = "vcli.toml"


class Key(NamedTuple):
    """One setting: its name in the files, its ``VCLI_*`` variable, its flag, and what it means."""

    name: str
    env: str
    flag: str | None
    kind: str  # "path", "seconds", "top-k", "count", "text", "secret", "url" or "rate"
    help: str
    alias: str | None = None  # an older variable read when ``env`` is not set (wrangler's CF_*)


KEYS: tuple[Key, ...] = (
    Key("data_dir", "VCLI_DATA_DIR", "--data-dir", "path",
        "Folder holding the indexes. In a file, a relative path is relative to that file."),
    Key("lock_timeout", "VCLI_LOCK_TIMEOUT", None, "seconds",
        f"Seconds a write waits for another writer of the same index before giving up "
        f"(default {DEFAULT_LOCK_TIMEOUT:g})."),
    Key("max_top_k_with_values", "VCLI_MAX_TOP_K_WITH_VALUES", None, "top-k",
        f"Largest --top-k with --return-values or --return-metadata all: 1 to {MAX_TOP_K_WITH_DATA} "
        f"(default {MAX_TOP_K_WITH_DATA}, as Vectorize)."),
    Key("max_indexes", "VCLI_MAX_INDEXES", None, "count",
        f"Most indexes in the data dir, as Vectorize's per-account cap (default {DEFAULT_MAX_INDEXES:,}, "
        f"Workers Paid; 100 on the Free plan)."),
    Key("max_namespaces", "VCLI_MAX_NAMESPACES", None, "count",
        f"Most namespaces in one index, as Vectorize's cap (default {DEFAULT_MAX_NAMESPACES:,}, "
        f"Workers Paid; 1000 on the Free plan)."),
    Key("apply_delay", "VCLI_APPLY_DELAY", "--apply-delay", "seconds",
        "vcli serve: seconds between acknowledging a write and applying it, as on the live service "
        "(median under 30 s, p99 under 2 min; default 0: at once)."),
    Key("apply_jitter", "VCLI_APPLY_JITTER", "--apply-jitter", "seconds",
        "vcli serve: up to this many seconds more, at random, per write (default 0)."),
    # The live service, for --remote, push and pull (the variables are wrangler's own).
    Key("api_base_url", "CLOUDFLARE_API_BASE_URL", None, "url",
        f"Cloudflare's API for --remote (default {DEFAULT_API_BASE_URL}); plain http only to this machine.",
        "CF_API_BASE_URL"),
    Key("account_id", "CLOUDFLARE_ACCOUNT_ID", None, "text",
        "The Cloudflare account for --remote (default: the token's one account).", "CF_ACCOUNT_ID"),
    Key("api_token", "CLOUDFLARE_API_TOKEN", None, "secret",
        "The API token for --remote; never shown. In a file: only the user file, readable by you alone.",
        "CF_API_TOKEN"),
    Key("remote_rate", "VCLI_REMOTE_RATE", None, "rate",
        f"Most requests --remote sends per period, as REQUESTS/SECONDS (default {DEFAULT_REMOTE_RATE[0]}/"
        f"{DEFAULT_REMOTE_RATE[1]:g}, the API's limit)."),
)
KEY_NAMES = tuple(k.name for k in KEYS)
SECRET_KEYS = frozenset(k.name for k in KEYS if k.kind == "secret")
_ENV_OF = {k.name: k.env for k in KEYS}


class Setting(NamedTuple):
    """An effective value and where it came from: ``source`` is default, user, project, env or
    flag; ``origin`` is the file, variable or flag that set it (``None`` for a default)."""

    value: Any
    source: str
    origin: str | None = None

    def describe(self) -> str:
        if self.source == "default":
            return "default"
        return f"{self.source} ({self.origin})"


class Settings(NamedTuple):
    """The effective configuration. ``settings`` maps each key of ``KEYS`` to its ``Setting``."""

    settings: dict[str, Setting]
    user_file: Path
    project_file: Path | None

    @property
    def data_dir(self) -> Path:
        return self.settings["data_dir"].value

    @property
    def lock_timeout(self) -> float:
        return self.settings["lock_timeout"].value

    @property
    def max_top_k_with_values(self) -> int:
        return self.settings["max_top_k_with_values"].value

    @property
    def max_indexes(self) -> int:
        return self.settings["max_indexes"].value

    @property
    def max_namespaces(self) -> int:
        return self.settings["max_namespaces"].value

    def value(self, name: str) -> Any:
        return self.settings[name].value

    def shown(self, name: str) -> Any:
        """A setting as front ends may show it: a secret only says whether it is set."""
        value = self.settings[name].value
        if name in SECRET_KEYS:
            return None if value is None else "(set, hidden)"
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple):  # a rate
            return f"{value[0]}/{value[1]:g}"
        return value

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": {
                name: {"value": self.shown(name), "source": s.source, "origin": s.origin}
                for name, s in self.settings.items()
            },
            "files": {
                "user": {"path": str(self.user_file), "exists": self.user_file.is_file()},
                "project": None if self.project_file is None else str(self.project_file),
            },
        }


# -- where things are ---------------------------------------------------------------------------
def _xdg(env: Mapping[str, str], var: str) -> Path | None:
    """``$XDG_*_HOME/vcli`` on Linux and the BSDs when set to an absolute path (platformdirs does
    the same, but reads ``os.environ``; this reads the mapping it is given)."""
    if sys.platform in ("win32", "darwin"):
        return None
    value = env.get(var, "")
    return Path(value) / APP if value and os.path.isabs(value) else None


def user_config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    found = _xdg(env, "XDG_CONFIG_HOME")
    if found is not None:
        return found
    import platformdirs

    return Path(platformdirs.user_config_dir(APP, appauthor=False))


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    found = _xdg(env, "XDG_DATA_HOME")
    if found is not None:
        return found
    import platformdirs

    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def find_project_file(cwd: str | os.PathLike[str] | None = None) -> Path | None:
    """The ``vcli.toml`` in ``cwd`` or the nearest parent that has one."""
    here = Path(os.getcwd() if cwd is None else cwd).absolute()
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return candidate
    return None


# -- checking values ------------------------------------------------------------------------------
def _path(value: Any, base: Path | None) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string (a folder path)")
    path = Path(value).expanduser()
    return path if base is None or path.is_absolute() else base / path


def _seconds(value: Any, _base: Path | None) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError("must be a number of seconds") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number of seconds")
    if not math.isfinite(value) or value < 0:
        raise ValueError("must be a number of seconds, 0 or more")
    return float(value)


def _top_k(value: Any, _base: Path | None) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"must be a whole number from 1 to {MAX_TOP_K_WITH_DATA}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOP_K_WITH_DATA:
        raise ValueError(f"must be a whole number from 1 to {MAX_TOP_K_WITH_DATA}")
    return value


def _count(value: Any, _base: Path | None) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip().replace("_", ""))
        except ValueError:
            raise ValueError("must be a whole number, 1 or more") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a whole number, 1 or more")
    return value


def _text(value: Any, _base: Path | None) -> str:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value.strip()):
        raise ValueError("must be a non-empty string without spaces")
    return value.strip()


def _url(value: Any, base: Path | None) -> str:
    text = _text(value, base)
    if not text.startswith(("https://", "http://")):
        raise ValueError("must be an http:// or https:// URL")
    return text.rstrip("/")


def _rate(value: Any, _base: Path | None) -> tuple[int, float]:
    requests, _, seconds = str(value).partition("/")
    try:
        out = (int(requests), float(seconds))
    except ValueError:
        out = (0, 0.0)
    if out[0] < 1 or not math.isfinite(out[1]) or out[1] <= 0:
        raise ValueError("must be REQUESTS/SECONDS, e.g. 1200/300")
    return out


def _secret(value: Any, base: Path | None) -> str:
    text = _text(value, base)
    if not (text.isascii() and text.isprintable()):
        raise ValueError("must be printable ASCII (as Cloudflare's tokens are)")
    return text


_CHECK: dict[str, Callable[[Any, Path | None], Any]] = {
    "path": _path, "seconds": _seconds, "top-k": _top_k, "count": _count, "text": _text, "secret": _secret, "url": _url,
    "rate": _rate,
}


def _default(key: Key, env: Mapping[str, str]) -> Any:
    if key.name == "data_dir":
        return default_data_dir(env)
    if key.name == "lock_timeout":
        return DEFAULT_LOCK_TIMEOUT
    if key.name == "max_top_k_with_values":
        return MAX_TOP_K_WITH_DATA
    if key.name == "max_indexes":
        return DEFAULT_MAX_INDEXES
    if key.name == "max_namespaces":
        return DEFAULT_MAX_NAMESPACES
    if key.name in ("apply_delay", "apply_jitter"):
        return 0.0
    if key.name == "api_base_url":
        return DEFAULT_API_BASE_URL
    if key.name == "remote_rate":
        return DEFAULT_REMOTE_RATE
    return None


def read_file(path: Path) -> dict[str, Any]:
    """The settings in one TOML file, checked; relative paths are made relative to the file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read the config file {path}: it is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    keys = {k.name: k for k in KEYS}
    out = {}
    for name, value in raw.items():
        if name not in keys:
            raise ConfigError(
                f'config file {path}: unknown key "{name}" (known keys: {", ".join(KEY_NAMES)})'
            )
        if keys[name].kind == "secret":
            _check_secret_file(path, name)
        try:
            if keys[name].kind in ("seconds", "top-k", "count") and isinstance(value, str):
                raise ValueError("must be a number, not a string")
            out[name] = _CHECK[keys[name].kind](value, path.parent.absolute())
        except ValueError as exc:
            shown = "(hidden)" if keys[name].kind == "secret" else repr(value)
            raise ConfigError(f'config file {path}: "{name}" {exc}, got {shown}') from None
    return out


def _check_secret_file(path: Path, name: str) -> None:
    """A token may sit only in the user's own file, readable by that user alone (as ssh insists
    for its keys): a project file is often committed, and a shared one is read by others."""
    if path.name != USER_FILE:
        raise ConfigError(f'config file {path}: "{name}" belongs in the user config file, not in a '
                          f"project file (which is often committed); or set {_ENV_OF[name]}")
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if os.name == "posix" and mode & 0o077:
        raise ConfigError(f'config file {path} holds "{name}" but others can read it: '
                          f"run `chmod 600 {path}`")


# -- resolving ------------------------------------------------------------------------------------
def load_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Settings:
    """The effective settings: defaults < user file < project file < ``VCLI_*`` < ``flags``.

    ``flags`` maps key names to flag values (``None`` means the flag was not given); ``env``
    defaults to ``os.environ`` and ``cwd`` to the current directory (where the search for
    ``vcli.toml`` starts). Raises ``ConfigError`` for a bad file, key or value."""
    env = os.environ if env is None else env
    flags = flags or {}
    user_file = user_config_dir(env) / USER_FILE
    project_file = find_project_file(cwd)
    settings = {k.name: Setting(_default(k, env), "default") for k in KEYS}
    if user_file.is_file():
        for name, value in read_file(user_file).items():
            settings[name] = Setting(value, "user", str(user_file))
    if project_file is not None:
        for name, value in read_file(project_file).items():
            settings[name] = Setting(value, "project", str(project_file))
    for key in KEYS:
        value = env.get(key.env, "") or (env.get(key.alias, "") if key.alias else "")
        if value:
            try:
                found = key.env if env.get(key.env, "") else key.alias
                settings[key.name] = Setting(_CHECK[key.kind](value, None), "env", found)
            except ValueError as exc:
                shown = "(hidden)" if key.kind == "secret" else repr(value)
                raise ConfigError(f"{key.env} {exc}, got {shown}") from None
    for key in KEYS:
        value = flags.get(key.name)
        if value is not None and value != "":
            try:
                checked = _CHECK[key.kind](str(value) if key.kind == "path" else value, None)
            except ValueError as exc:
                raise ConfigError(f"{key.flag or key.name} {exc}, got {value!r}") from None
            settings[key.name] = Setting(checked, "flag", key.flag or key.name)
    return Settings(settings, user_file, project_file)
