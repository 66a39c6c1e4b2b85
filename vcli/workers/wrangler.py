"""A project's wrangler config as a file: finding and reading it (JSON, JSONC or TOML), and
editing it in place.

A JSON or JSONC config is edited through its tokens (``tokens``), so everything around an edit —
comments, order, layout — stays as it was; a TOML config only ever gets tables added at its end,
checked by reading the result back. ``vcli create --binding NAME --update-config`` adds a
Vectorize binding here (``add_binding``); ``vcli workers-config --write`` adds an environment
(``vcli.workers.config.write``, with the text ``vcli.workers.pieces`` makes).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.fsutil import write_bytes_atomic
from ..errors import VcliError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# wrangler's own order when no --config is given
CONFIG_NAMES = ("wrangler.json", "wrangler.jsonc", "wrangler.toml")


class WorkersConfigError(VcliError):
    """A wrangler config that cannot be read or changed as asked."""


@dataclass(frozen=True)
class WranglerConfig:
    path: Path
    text: str
    data: dict[str, Any]

    @property
    def is_toml(self) -> bool:
        return self.path.suffix == ".toml"


def find_config(given: Path | None, cwd: Path) -> Path:
    if given is not None:
        if not given.is_file():
            raise WorkersConfigError(f"no wrangler config at {given}")
        return given
    for name in CONFIG_NAMES:
        if (cwd / name).is_file():
            return cwd / name
    raise WorkersConfigError(
        f"no wrangler config here ({', '.join(CONFIG_NAMES)} in {cwd}); name one with --config"
    )


def read_config(path: Path) -> WranglerConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkersConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(strip_jsonc(text))
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise WorkersConfigError(f"{path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise WorkersConfigError(f"{path} does not hold an object")
    return WranglerConfig(path, text, data)


def save(path: Path, text: str) -> None:
    """Replace a config file's text atomically, keeping its mode."""
    mode = os.stat(path).st_mode & 0o7777
    try:
        write_bytes_atomic(path, text.encode("utf-8"))
        os.chmod(path, mode)
    except OSError as exc:
        raise WorkersConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


# -- a Vectorize binding added to the config (``vcli create --binding NAME --update-config``) ----


def binding_name(given: str | None, default: str = "VECTORIZE") -> str:
    """wrangler's clean-up of a ``--binding`` name: spaces and ``-`` become ``_``, anything but
    letters, digits and ``_`` goes, runs of ``_`` become one, a leading digit gets a ``_``; nothing
    left means the default."""
    name = re.sub(r"[\s-]", "_", given or "")
    name = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "", name))
    if name[:1].isdigit():
        name = "_" + name
    return name or default


def add_binding(config: WranglerConfig, entry: dict[str, Any], env: str | None = None) -> str:
    """The config's text with ``entry`` (``{"binding", "index_name"[, "remote"]}``) in its
    ``vectorize`` list, at the top level or under ``env.<env>``; an entry with the same binding
    name is replaced. JSON and JSONC keep their comments and layout; TOML gets an
    ``[[vectorize]]`` table at its end (refused where that would not be clean)."""
    if config.is_toml:
        return _add_toml_binding(config, entry, env)
    text, toks = config.text, list(tokens(config.text))
    obj = next((i for i, t in enumerate(toks) if t[2] == "{"), None)
    if obj is None:
        raise WorkersConfigError(f"{config.path} does not hold an object")
    path = ["env", env] if env else []
    for depth, key in enumerate(path):
        value = _member(toks, obj, key)
        if value is None:
            nested: Any = {"vectorize": [entry]}
            for outer in reversed(path[depth + 1:]):
                nested = {outer: nested}
            return _insert_into(text, toks, obj, f"{json.dumps(key)}: {json.dumps(nested, indent=2)}")
        if toks[value][2] != "{":
            raise WorkersConfigError(f"{config.path}: {'.'.join(path[:depth + 1])} is not an object")
        obj = value
    array = _member(toks, obj, "vectorize")
    if array is None:
        return _insert_into(text, toks, obj, f'"vectorize": {json.dumps([entry], indent=2)}')
    if toks[array][2] != "[":
        raise WorkersConfigError(f"{config.path}: vectorize is not a list")
    for element in _elements(toks, array):
        if toks[element][2] != "{":
            continue
        name = _member(toks, element, "binding")
        if name is not None and toks[name][2].startswith('"') and json.loads(toks[name][2]) == entry["binding"]:
            start, end = toks[element][0], toks[closing(toks, element)][1]
            indent = _indent_of(text, start)
            block = json.dumps(entry, indent=2).replace("\n", "\n" + indent)
            return text[:start] + block + text[end:]
    return _insert_into(text, toks, array, json.dumps(entry, indent=2))


def _walk(toks: list[tuple[int, int, str]], opening: int) -> Iterator[tuple[int, int, str]]:
    """Each token from the brace or bracket at ``opening`` to the one that closes it, as
    (its index, the depth it stands at, the token): 1 for the members of that object or array."""
    depth = 0
    for j in range(opening, len(toks)):
        tok = toks[j][2]
        yield j, depth, tok
        if tok in "{[":
            depth += 1
        elif tok in "}]":
            depth -= 1
            if depth == 0:
                return


def _member(toks: list[tuple[int, int, str]], obj: int, key: str) -> int | None:
    """The index of the first token of ``key``'s value in the object opening at ``obj``."""
    for j, depth, tok in _walk(toks, obj):
        if (depth == 1 and tok.startswith('"') and j + 2 < len(toks) and toks[j + 1][2] == ":"
                and json.loads(tok) == key):
            return j + 2
    return None


def _elements(toks: list[tuple[int, int, str]], array: int) -> list[int]:
    """The index of the first token of each element of the array opening at ``array``."""
    found, expect = [], True
    for j, depth, tok in _walk(toks, array):
        if depth == 1 and expect and tok not in "]":
            found.append(j)
            expect = False
        if tok == "," and depth == 1:
            expect = True
    return found


def _indent_of(text: str, at: int) -> str:
    line = text[text.rfind("\n", 0, at) + 1:]
    return line[: len(line) - len(line.lstrip(" \t"))]


def _insert_into(text: str, toks: list[tuple[int, int, str]], opening: int, member: str) -> str:
    """``member`` (JSON text) added as the last member or element of the object or array opening
    at ``opening``, on a line of its own, indented one step more than the container's line."""
    close = closing(toks, opening)
    before = toks[close - 1][2]
    comma = "" if before in ("{", "[", ",") else ","
    at = toks[close - 1][1]
    inner = _indent_of(text, toks[opening][0]) + "  "
    block = inner + member.replace("\n", "\n" + inner)
    rest = text[at:]
    if "\n" not in text[at:toks[close][0]]:  # the closing bracket shared the last line
        rest = "\n" + _indent_of(text, toks[opening][0]) + rest.lstrip(" \t")
    return text[:at] + comma + "\n" + block + rest


def _add_toml_binding(config: WranglerConfig, entry: dict[str, Any], env: str | None) -> str:
    table = f"env.{env}.vectorize" if env else "vectorize"
    holder = (config.data.get("env") or {}).get(env) or {} if env else config.data
    existing = holder.get("vectorize") if isinstance(holder, dict) else None
    snippet = f"[[{table}]]\n" + "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in entry.items())
    if existing and any(isinstance(b, dict) and b.get("binding") == entry["binding"] for b in existing):
        raise WorkersConfigError(
            f"{config.path} already has a Vectorize binding named {entry['binding']}: change it by hand, "
            f"or choose another name with --binding (vcli rewrites bindings in JSON configs only)")
    text = config.text.rstrip("\n") + "\n\n" + snippet
    try:
        after = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        after = {}
    target = (after.get("env") or {}).get(env) or {} if env else after
    if entry not in (target.get("vectorize") or []):  # e.g. vectorize = [...] written inline
        raise WorkersConfigError(f"cannot add the binding to {config.path} cleanly; add it by hand:\n{snippet}")
    return text


# -- TOML values (also for the environment pieces.py writes) -------------------------------------


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def toml_value(value: Any) -> str:
    """A TOML inline value for what a JSON-shaped config holds (JSON's string escapes are TOML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items() if v is not None) + " }"
    raise WorkersConfigError(f"cannot write {value!r} in TOML")  # dates: only TOML has them, and they pass through


# -- JSONC ----------------------------------------------------------------------------------------

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|//[^\n]*|/\*.*?\*/|[{}\[\]:,]|[^\s{}\[\]:,"/]+|\s+|/', re.S)


def tokens(text: str):
    """(start, end, token) for each significant token of JSONC text: comments and space left out."""
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok.isspace() or tok.startswith(("//", "/*")):
            continue
        yield m.start(), m.end(), tok


def strip_jsonc(text: str) -> str:
    """JSON from JSONC: comments and trailing commas removed (strings left as they are)."""
    toks = list(tokens(text))
    kept = [tok for i, (_, _, tok) in enumerate(toks)
            if not (tok == "," and i + 1 < len(toks) and toks[i + 1][2] in ("}", "]"))]
    return " ".join(kept)


def closing(toks: list[tuple[int, int, str]], opening: int) -> int:
    """The index of the token that closes the brace or bracket at ``opening``."""
    for j, depth, tok in _walk(toks, opening):
        if depth == 1 and tok in "}]":
            return j
    raise WorkersConfigError("the wrangler config's braces do not match")
