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
from .limits import DEFAULT_LOCK_TIMEOUT, MAX_TOP_K_WITH_DATA

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
    kind: str  # "path", "seconds" or "top-k"
    help: str


KEYS: tuple[Key, ...] = (
    Key("data_dir", "VCLI_DATA_DIR", "--data-dir", "path",
        "Folder holding the indexes. In a file, a relative path is relative to that file."),
    Key("lock_timeout", "VCLI_LOCK_TIMEOUT", None, "seconds",
        f"Seconds a write waits for another writer of the same index before giving up "
        f"(default {DEFAULT_LOCK_TIMEOUT:g})."),
    Key("max_top_k_with_values", "VCLI_MAX_TOP_K_WITH_VALUES", None, "top-k",
        f"Largest --top-k with --return-values or --return-metadata all: 1 to {MAX_TOP_K_WITH_DATA} "
        f"(default {MAX_TOP_K_WITH_DATA}; Vectorize's documentation says 20)."),
)
KEY_NAMES = tuple(k.name for k in KEYS)


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

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": {
                name: {"value": str(s.value) if isinstance(s.value, Path) else s.value,
                       "source": s.source, "origin": s.origin}
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


_CHECK: dict[str, Callable[[Any, Path | None], Any]] = {"path": _path, "seconds": _seconds, "top-k": _top_k}


def _default(key: Key, env: Mapping[str, str]) -> Any:
    if key.name == "data_dir":
        return default_data_dir(env)
    if key.name == "lock_timeout":
        return DEFAULT_LOCK_TIMEOUT
    return MAX_TOP_K_WITH_DATA


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
        try:
            if keys[name].kind != "path" and isinstance(value, str):
                raise ValueError("must be a number, not a string")
            out[name] = _CHECK[keys[name].kind](value, path.parent.absolute())
        except ValueError as exc:
            raise ConfigError(f'config file {path}: "{name}" {exc}, got {value!r}') from None
    return out


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
        value = env.get(key.env, "")
        if value:
            try:
                settings[key.name] = Setting(_CHECK[key.kind](value, None), "env", key.env)
            except ValueError as exc:
                raise ConfigError(f"{key.env} {exc}, got {value!r}") from None
    for key in KEYS:
        value = flags.get(key.name)
        if value is not None and value != "":
            try:
                checked = _CHECK[key.kind](str(value) if key.kind == "path" else value, None)
            except ValueError as exc:
                raise ConfigError(f"{key.flag or key.name} {exc}, got {value!r}") from None
            settings[key.name] = Setting(checked, "flag", key.flag or key.name)
    return Settings(settings, user_file, project_file)
