"""The configuration that points a Worker's Vectorize bindings and its AI binding at ``vcli serve``.

It starts from the user's own wrangler config (``wrangler.json``, ``wrangler.jsonc`` or
``wrangler.toml``), takes its ``vectorize`` bindings and its ``ai`` binding (Workers AI: vcli
serves its embedding models at ``<server>/ai/``), and writes, for each local entry point:

* **wrangler** (``wrangler dev --env local``, ``getPlatformProxy({environment: "local"})``): an
  environment whose bindings are vcli's plugin (``unsafe.bindings``). An environment inherits no
  bindings, so every other binding of the top level is repeated in it;
* **Miniflare**: a module for ``new Miniflare()``. Miniflare 4: the ``vectorize`` option (and
  ``ai``), each binding with a ``remoteProxyConnectionString`` (a ``URL``: Miniflare crashes on a
  string). Miniflare 5 keeps one such URL per Worker, so there: vcli's plugins as
  ``unsafeBindings``, which Miniflare 5 takes through its ``convertV4MiniflareOptions``;
* **vitest**: a ``vitest.config.mjs`` using the wrangler config, with ``remoteBindings: false`` so
  no binding asks for a Cloudflare login. On Miniflare 4 (vitest-pool-workers < 0.20) it gives the
  same ``vectorize`` and ``ai`` options; on Miniflare 5 it uses the local environment, i.e. the
  plugins.

Which Miniflare and vitest package the project has is read from its ``node_modules`` or
``package.json`` (``detect``); what was found or assumed is said with the result. Nothing here
talks to the server; the URL is only written down.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from ..engine.fsutil import write_bytes_atomic
from ..errors import VcliError
from . import AI_PLUGIN_NAME, PLUGIN, PLUGIN_NAME

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# wrangler's own order when no --config is given
CONFIG_NAMES = ("wrangler.json", "wrangler.jsonc", "wrangler.toml")
DEFAULT_URL = "http://127.0.0.1:8787"
DEFAULT_ENV = "local"
# The top-level keys an environment does not inherit (wrangler 4.86.0's list), which the local
# environment repeats; ``vectorize`` and ``ai`` themselves become vcli's unsafe bindings.
NOT_INHERITED = (
    "vars", "secrets", "define", "durable_objects", "workflows", "kv_namespaces", "cloudchamber",
    "containers", "send_email", "queues", "r2_buckets", "d1_databases", "vectorize",
    "ai_search_namespaces", "ai_search", "hyperdrive", "services", "analytics_engine_datasets",
    "dispatch_namespaces", "mtls_certificates", "tail_consumers", "streaming_tail_consumers",
    "unsafe", "browser", "ai", "images", "stream", "media", "pipelines", "secrets_store_secrets",
    "artifacts", "unsafe_hello_world", "flagship", "worker_loaders", "ratelimits", "vpc_services",
    "vpc_networks", "version_metadata",
)


class WorkersConfigError(VcliError):
    """A wrangler config that cannot be read or changed as asked."""


@dataclass(frozen=True)
class Binding:
    name: str  # the Worker's name for it: env.<name>
    index_name: str
    url: str  # vcli serve's URL for the index: <server>/binding/<index>/


@dataclass(frozen=True)
class AiBinding:
    name: str  # env.<name>
    url: str  # vcli serve's AI binding: <server>/ai/


@dataclass(frozen=True)
class WranglerConfig:
    path: Path
    text: str
    data: dict[str, Any]

    @property
    def is_toml(self) -> bool:
        return self.path.suffix == ".toml"


@dataclass(frozen=True)
class Package:
    """An npm package of the Worker's project, as ``detect`` found it."""

    name: str
    version: str | None  # None: not found, the newest assumed
    source: str  # "node_modules", "package.json" or "assumed"

    @property
    def major_minor(self) -> tuple[int, int] | None:
        m = re.search(r"(\d+)(?:\.(\d+))?", self.version or "")
        return (int(m.group(1)), int(m.group(2) or 0)) if m else None

    def describe(self) -> str:
        if self.source == "assumed":
            return f"{self.name} (not found in the project: the newest assumed)"
        return f"{self.name} {self.version} (from {self.source})"


@dataclass(frozen=True)
class Toolchain:
    """What the pieces are written for: the Miniflare a plain ``new Miniflare()`` loads, and the
    vitest package with the Miniflare inside it."""

    miniflare: Package
    vitest: Package

    @property
    def miniflare5(self) -> bool:
        return (self.miniflare.major_minor or (5, 0)) >= (5, 0)

    @property
    def vitest_miniflare5(self) -> bool:
        # vitest-pool-workers runs Miniflare 5 from 0.20 on; its successor, the vitest plugin, always
        return self.vitest.name != POOL_WORKERS or (self.vitest.major_minor or (0, 20)) >= (0, 20)

    def notes(self) -> list[str]:
        return [
            f"Miniflare piece written for Miniflare {5 if self.miniflare5 else 4}: {self.miniflare.describe()}",
            f"vitest piece written for {self.vitest.name} on Miniflare {5 if self.vitest_miniflare5 else 4}: "
            f"{self.vitest.describe()}",
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "miniflare": {"package": self.miniflare.name, "version": self.miniflare.version,
                          "source": self.miniflare.source, "major": 5 if self.miniflare5 else 4},
            "vitest": {"package": self.vitest.name, "version": self.vitest.version, "source": self.vitest.source,
                       "miniflare_major": 5 if self.vitest_miniflare5 else 4},
        }


@dataclass(frozen=True)
class WorkersConfig:
    """What ``vcli workers-config`` prints (or writes)."""

    config: WranglerConfig
    env: str
    bindings: list[Binding]
    ai: AiBinding | None
    plugin: Path
    toolchain: Toolchain
    section: dict[str, Any]  # the wrangler environment, as data
    wrangler: str  # ... as text to add to the wrangler config
    miniflare: str  # a module: ``export const vectorize`` and ``ai`` (Miniflare 4) or ``unsafeBindings`` (5)
    vitest: str  # a vitest.config.mjs

    def remarks(self, written: bool = False) -> list[str]:
        """What the pieces were written for, and what they still need."""
        envs = self.config.data.get("env")
        missing = not written and not (isinstance(envs, dict) and self.env in envs)
        return self.toolchain.notes() + ([
            f"the vitest piece takes the bindings of env.{self.env}, which {self.config.path} does not have "
            "yet: add it with --write"] if missing and self.toolchain.vitest_miniflare5 else [])

    def to_json(self) -> dict[str, Any]:
        return {
            "config": str(self.config.path), "env": self.env, "plugin": str(self.plugin),
            "bindings": [{"binding": b.name, "index_name": b.index_name, "url": b.url} for b in self.bindings],
            "ai": None if self.ai is None else {"binding": self.ai.name, "url": self.ai.url},
            "toolchain": self.toolchain.to_json(),
            "wrangler": {"section": self.section, "text": self.wrangler},
            "miniflare": self.miniflare, "vitest": self.vitest,
        }


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


POOL_WORKERS = "@cloudflare/vitest-pool-workers"  # up to 0.23; 0.20 and later run Miniflare 5
VITEST_PLUGIN = "@cloudflare/vitest-plugin"  # its successor (1.x), on Miniflare 5


def detect(project: Path) -> Toolchain:
    """The Miniflare and the vitest package of the Worker's project: installed in a
    ``node_modules`` of ``project`` or a folder above it (as Node finds them), else named in the
    nearest ``package.json``; else the newest (Miniflare 5, the vitest plugin) is assumed."""
    folders = [project, *project.parents]
    manifest = next((f / "package.json" for f in folders if (f / "package.json").is_file()), None)
    wanted: dict[str, Any] = {}
    if manifest is not None:
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            for key in ("dependencies", "devDependencies"):
                if isinstance(data.get(key), dict):
                    wanted.update(data[key])
        except (OSError, ValueError):
            pass

    def find(name: str) -> Package | None:
        for folder in folders:
            try:
                version = json.loads((folder / "node_modules" / name / "package.json").read_text("utf-8"))["version"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            return Package(name, str(version), "node_modules")
        if isinstance(wanted.get(name), str):
            return Package(name, wanted[name], "package.json")
        return None

    vitest = find(VITEST_PLUGIN) or find(POOL_WORKERS) or Package(VITEST_PLUGIN, None, "assumed")
    return Toolchain(find("miniflare") or Package("miniflare", None, "assumed"), vitest)


def build(config: WranglerConfig, url: str = DEFAULT_URL, env: str = DEFAULT_ENV,
          toolchain: Toolchain | None = None) -> WorkersConfig:
    """The configuration for every entry point, from the Vectorize and AI bindings of ``config``, for
    ``toolchain`` (default: what ``detect`` finds beside the config)."""
    toolchain = toolchain or detect(config.path.resolve().parent)
    base = _server_url(url)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", env):
        raise WorkersConfigError(f'"{env}" cannot name a wrangler environment (letters, digits, - and _)')
    found = config.data.get("vectorize") or []
    if not isinstance(found, list) or not all(isinstance(b, dict) for b in found):
        raise WorkersConfigError(f"{config.path}: vectorize must be a list of bindings")
    bindings = []
    for b in found:
        name, index = b.get("binding"), b.get("index_name")
        if not isinstance(name, str) or not isinstance(index, str):
            raise WorkersConfigError(f"{config.path}: each vectorize binding needs binding and index_name")
        bindings.append(Binding(name, index, _binding_url(base, index)))
    ai = _ai_binding(config, base)
    if not bindings and ai is None:
        raise WorkersConfigError(f"{config.path} has no Vectorize bindings (a vectorize = [...] list at "
                                 "its top level) and no AI binding (ai = {binding = ...})")
    section = _environment(config.data, bindings, ai)
    return WorkersConfig(
        config, env, bindings, ai, PLUGIN, toolchain, section,
        wrangler=_toml_section(env, section) if config.is_toml else _jsonc_section(env, section),
        miniflare=_miniflare_module(bindings, ai, base, toolchain),
        vitest=_vitest_config(config.path.name, bindings, ai, base, env, toolchain),
    )


def _ai_binding(config: WranglerConfig, base: str) -> AiBinding | None:
    """wrangler's ``"ai": {"binding": "AI"}`` (one binding, not a list)."""
    found = config.data.get("ai")
    if found is None:
        return None
    if not isinstance(found, dict) or not isinstance(found.get("binding"), str):
        raise WorkersConfigError(f'{config.path}: ai must be one binding, {{"binding": "AI"}}')
    return AiBinding(found["binding"], f"{base}/ai/")


def write(result: WorkersConfig) -> None:
    """Add the local environment to the wrangler config file, keeping everything else as it was
    (comments included). Refuses when the environment is already there."""
    config, env = result.config, result.env
    envs = config.data.get("env")
    if isinstance(envs, dict) and env in envs:
        raise WorkersConfigError(
            f"{config.path} already has an environment named {env}: remove it to write it again, "
            f"or choose another name with --env"
        )
    if config.is_toml:
        text = config.text.rstrip("\n") + "\n\n" + result.wrangler
    else:
        text = _insert_jsonc_env(config, env, result.section)
    save(config.path, text)


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
    text, toks = config.text, list(_tokens(config.text))
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
            start, end = toks[element][0], toks[_closing(toks, element)][1]
            indent = _indent_of(text, start)
            block = json.dumps(entry, indent=2).replace("\n", "\n" + indent)
            return text[:start] + block + text[end:]
    return _insert_into(text, toks, array, json.dumps(entry, indent=2))


def _member(toks: list[tuple[int, int, str]], obj: int, key: str) -> int | None:
    """The index of the first token of ``key``'s value in the object opening at ``obj``."""
    depth = 0
    for j in range(obj, len(toks)):
        tok = toks[j][2]
        if tok in "{[":
            depth += 1
        elif tok in "}]":
            depth -= 1
            if depth == 0:
                return None
        elif (depth == 1 and tok.startswith('"') and j + 2 < len(toks) and toks[j + 1][2] == ":"
              and json.loads(tok) == key):
            return j + 2
    return None


def _elements(toks: list[tuple[int, int, str]], array: int) -> list[int]:
    """The index of the first token of each element of the array opening at ``array``."""
    found, depth, expect = [], 0, True
    for j in range(array, len(toks)):
        tok = toks[j][2]
        if depth == 1 and expect and tok not in "]":
            found.append(j)
            expect = False
        if tok in "{[":
            depth += 1
        elif tok in "}]":
            depth -= 1
            if depth == 0:
                return found
        elif tok == "," and depth == 1:
            expect = True
    return found


def _indent_of(text: str, at: int) -> str:
    line = text[text.rfind("\n", 0, at) + 1:]
    return line[: len(line) - len(line.lstrip(" \t"))]


def _insert_into(text: str, toks: list[tuple[int, int, str]], opening: int, member: str) -> str:
    """``member`` (JSON text) added as the last member or element of the object or array opening
    at ``opening``, on a line of its own, indented one step more than the container's line."""
    close = _closing(toks, opening)
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
    snippet = f"[[{table}]]\n" + "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in entry.items())
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


# -- the pieces -----------------------------------------------------------------------------------


def _server_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WorkersConfigError(f'"{url}" is not the http:// URL of vcli serve (e.g. {DEFAULT_URL})')
    if parts.path.strip("/") or parts.query:
        # A token (``?token=``) is never written: it would end up in a file kept in git.
        raise WorkersConfigError(
            f"give the server's URL alone (e.g. {DEFAULT_URL}), with no path or query; a server "
            "with --token takes it as ?token=<token> at the end of each binding URL, which you add yourself"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _binding_url(base: str, index: str) -> str:
    return f"{base}/binding/{quote(index, safe='')}/"


def _plugin(name: str) -> dict[str, str]:
    return {"package": str(PLUGIN), "name": name}


def _unsafe_bindings(bindings: list[Binding], ai: AiBinding | None) -> list[dict[str, Any]]:
    """Each binding answered by vcli's plugins, as wrangler's ``unsafe.bindings`` takes it."""
    out: list[dict[str, Any]] = [
        {"name": b.name, "type": "vectorize", "index_name": b.index_name,
         "dev": {"plugin": _plugin(PLUGIN_NAME), "options": {"url": b.url}}} for b in bindings]
    if ai is not None:
        out.append({"name": ai.name, "type": "ai", "dev": {"plugin": _plugin(AI_PLUGIN_NAME), "options": {"url": ai.url}}})
    return out


def _environment(data: dict[str, Any], bindings: list[Binding], ai: AiBinding | None) -> dict[str, Any]:
    """The wrangler environment: the top level's other bindings, and vcli's in place of the
    Vectorize and AI ones."""
    section = {k: data[k] for k in NOT_INHERITED if k in data and k not in ("vectorize", "ai", "unsafe")}
    unsafe = dict(data.get("unsafe") or {})
    unsafe["bindings"] = [*unsafe.get("bindings", []), *_unsafe_bindings(bindings, ai)]
    section["unsafe"] = unsafe
    return section


def _comment(env: str) -> list[str]:
    return [
        f"Written by `vcli workers-config`: `wrangler dev --env {env}` and "
        f'getPlatformProxy({{ environment: "{env}" }})',
        "with the Vectorize and AI bindings answered by `vcli serve`. An environment inherits no bindings,",
        "so the others are repeated here.",
    ]


def _jsonc_section(env: str, section: dict[str, Any]) -> str:
    body = json.dumps({env: section}, indent=2)
    return "\n".join(["// " + line for line in _comment(env)] + ['"env": ' + body])


def _toml_section(env: str, section: dict[str, Any]) -> str:
    lines = ["# " + line for line in _comment(env)] + [f"[env.{env}]"]
    rest = {k: v for k, v in section.items() if k != "unsafe"}
    unsafe = dict(section["unsafe"])
    bindings = unsafe.pop("bindings")
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in rest.items()]
    if unsafe:
        lines += ["", f"[env.{env}.unsafe]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in unsafe.items()]
    for b in bindings:
        lines += ["", f"[[env.{env}.unsafe.bindings]]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in b.items()]
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    """A TOML inline value for what a JSON-shaped config holds (JSON's string escapes are TOML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None) + " }"
    raise WorkersConfigError(f"cannot write {value!r} in TOML")  # dates: only TOML has them, and they pass through


def _kinds(ai: AiBinding | None) -> str:
    return f"Vectorize {'and AI ' if ai else ''}bindings"


def _proxy_entries(bindings: list[Binding], indent: str) -> str:
    """Miniflare 4's ``vectorize`` option: each binding sent to its URL by the remote-proxy client."""
    return "\n".join(
        f"{indent}{json.dumps(b.name)}: {{ index_name: {json.dumps(b.index_name)}, "
        f"remoteProxyConnectionString: new URL({json.dumps(b.url)}) }},"
        for b in bindings
    )


def _proxy_ai(ai: AiBinding) -> str:
    """Miniflare 4's ``ai`` option (one binding, not a record), sent to vcli serve the same way."""
    return f"{{ binding: {json.dumps(ai.name)}, remoteProxyConnectionString: new URL({json.dumps(ai.url)}) }}"


def _miniflare_module(bindings: list[Binding], ai: AiBinding | None, base: str, toolchain: Toolchain) -> str:
    head = (f"// {_kinds(ai)} for {toolchain.miniflare.name}, answered by `vcli serve` at {base}\n"
            f"// (written by `vcli workers-config` for Miniflare {5 if toolchain.miniflare5 else 4}): ")
    if not toolchain.miniflare5:
        return (head + f"new Miniflare({{ ...yourOptions, vectorize{', ai' if ai else ''} }})\n"
                f"export const vectorize = {{\n{_proxy_entries(bindings, '  ')}\n}};\n"
                + (f"export const ai = {_proxy_ai(ai)};\n" if ai else ""))
    # wrangler's unsafe bindings in Miniflare's shape: the plugin beside the name, every option in options
    entries = [{"name": u["name"], "type": u["type"], "plugin": u["dev"]["plugin"],
                "options": {**{k: v for k, v in u.items() if k not in ("name", "type", "dev")}, **u["dev"]["options"]}}
               for u in _unsafe_bindings(bindings, ai)]
    return (
        head + "vcli's plugin for each binding.\n"
        "// Miniflare 5 takes options of version 4 through its converter:\n"
        "//   new Miniflare(convertV4MiniflareOptions({ ...yourV4Options, unsafeBindings }))\n"
        "// (Miniflare 4 takes them as they are: new Miniflare({ ...yourOptions, unsafeBindings }))\n"
        "export const unsafeBindings = [\n" + "".join(f"  {json.dumps(e)},\n" for e in entries) + "];\n"
    )


def _vitest_config(config_name: str, bindings: list[Binding], ai: AiBinding | None, base: str, env: str,
                   toolchain: Toolchain) -> str:
    package = toolchain.vitest.name
    if toolchain.vitest_miniflare5:
        # One remote-proxy URL per Worker in Miniflare 5: the bindings go through the plugin,
        # i.e. the wrangler environment.
        how = (f"      wrangler: {{ configPath: {json.dumps('./' + config_name)}, environment: {json.dumps(env)} }},\n"
               f"      // the {_kinds(ai)} are those of env.{env}: vcli's plugin (vcli workers-config --write)\n"
               "      remoteBindings: false, // no Cloudflare login\n")
    else:
        how = (f"      wrangler: {{ configPath: {json.dumps('./' + config_name)} }},\n"
               "      remoteBindings: false, // no Cloudflare login: the bindings below are local\n"
               "      miniflare: {\n"
               "        vectorize: {\n"
               f"{_proxy_entries(bindings, ' ' * 10)}\n"
               "        },\n"
               + (f"        ai: {_proxy_ai(ai)},\n" if ai else "")
               + "      },\n")
    return (
        f"// {package} with the {_kinds(ai)} answered by `vcli serve` at {base}\n"
        f"// (written by `vcli workers-config` for Miniflare {5 if toolchain.vitest_miniflare5 else 4}; "
        "keep it beside your wrangler config).\n"
        'import { defineConfig } from "vitest/config";\n'
        f"import {{ cloudflareTest }} from {json.dumps(package)};\n\n"
        "export default defineConfig({\n"
        "  plugins: [\n"
        "    cloudflareTest({\n"
        f"{how}"
        "    }),\n"
        "  ],\n"
        "});\n"
    )


# -- JSONC ----------------------------------------------------------------------------------------

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|//[^\n]*|/\*.*?\*/|[{}\[\]:,]|[^\s{}\[\]:,"/]+|\s+|/', re.S)


def _tokens(text: str):
    """(start, end, token) for each significant token of JSONC text: comments and space left out."""
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok.isspace() or tok.startswith(("//", "/*")):
            continue
        yield m.start(), m.end(), tok


def strip_jsonc(text: str) -> str:
    """JSON from JSONC: comments and trailing commas removed (strings left as they are)."""
    toks = list(_tokens(text))
    kept = [tok for i, (_, _, tok) in enumerate(toks)
            if not (tok == "," and i + 1 < len(toks) and toks[i + 1][2] in ("}", "]"))]
    return " ".join(kept)


def _insert_jsonc_env(config: WranglerConfig, env: str, section: dict[str, Any]) -> str:
    """The config's text with ``env.<env>`` added: into its ``env`` object when it has one, else as
    a new last key of the top level."""
    text, toks = config.text, list(_tokens(config.text))
    depth, key, target = 0, None, None
    for i, (_, _, tok) in enumerate(toks):
        if tok in "{[":
            depth += 1
            if depth == 2 and key == "env" and tok == "{":
                target = _closing(toks, i)
        elif tok in "}]":
            depth -= 1
        elif depth == 1 and tok.startswith('"') and i + 1 < len(toks) and toks[i + 1][2] == ":":
            key = json.loads(tok)
    if target is None:  # no env object: a new last key of the top level
        target = _closing(toks, next(i for i, t in enumerate(toks) if t[2] == "{"))
        indent, entry = "  ", _jsonc_section(env, section)
    else:
        indent = "    "
        entry = "\n".join(["// " + line for line in _comment(env)]
                          + [f"{json.dumps(env)}: " + json.dumps(section, indent=2)])
    before = toks[target - 1][2]
    comma = "" if before in ("{", ",") else ","
    at = toks[target - 1][1]
    block = "\n".join(indent + line for line in entry.splitlines())
    return text[:at] + comma + "\n" + block + "\n" + text[at:].lstrip(" \t")


def _closing(toks: list[tuple[int, int, str]], opening: int) -> int:
    depth = 0
    for j in range(opening, len(toks)):
        tok = toks[j][2]
        if tok in "{[":
            depth += 1
        elif tok in "}]":
            depth -= 1
            if depth == 0:
                return j
    raise WorkersConfigError("the wrangler config's braces do not match")
