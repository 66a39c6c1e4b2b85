"""The configuration that points a Worker's Vectorize bindings and its AI binding at ``vcli serve``.

It starts from the user's own wrangler config (``wrangler.json``, ``wrangler.jsonc`` or
``wrangler.toml``), takes its ``vectorize`` bindings and its ``ai`` binding (Workers AI: vcli
serves its embedding models at ``<server>/ai/``), and writes, for each local entry point:

* **wrangler** (``wrangler dev --env local``, ``getPlatformProxy({environment: "local"})``): an
  environment whose bindings are vcli's plugin (``unsafe.bindings``). An environment inherits no
  bindings, so every other binding of the top level is repeated in it;
* **Miniflare**: a module exporting the ``vectorize`` option (and ``ai``), each binding with a
  ``remoteProxyConnectionString`` (a ``URL``: Miniflare crashes on a string);
* **vitest-pool-workers**: a ``vitest.config.mjs`` using the wrangler config, with the same
  ``vectorize`` and ``ai`` options, and ``remoteBindings: false`` so no binding asks for a Cloudflare login.

Nothing here talks to the server; the URL is only written down.
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
class WorkersConfig:
    """What ``vcli workers-config`` prints (or writes)."""

    config: WranglerConfig
    env: str
    bindings: list[Binding]
    ai: AiBinding | None
    plugin: Path
    section: dict[str, Any]  # the wrangler environment, as data
    wrangler: str  # ... as text to add to the wrangler config
    miniflare: str  # a module: ``export const vectorize = {...}`` (and ``ai``)
    vitest: str  # a vitest.config.mjs

    def to_json(self) -> dict[str, Any]:
        return {
            "config": str(self.config.path), "env": self.env, "plugin": str(self.plugin),
            "bindings": [{"binding": b.name, "index_name": b.index_name, "url": b.url} for b in self.bindings],
            "ai": None if self.ai is None else {"binding": self.ai.name, "url": self.ai.url},
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


def build(config: WranglerConfig, url: str = DEFAULT_URL, env: str = DEFAULT_ENV) -> WorkersConfig:
    """The configuration for every entry point, from the Vectorize and AI bindings of ``config``."""
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
        config, env, bindings, ai, PLUGIN, section,
        wrangler=_toml_section(env, section) if config.is_toml else _jsonc_section(env, section),
        miniflare=_miniflare_module(bindings, ai, base),
        vitest=_vitest_config(config.path.name, bindings, ai, base),
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
    mode = os.stat(config.path).st_mode & 0o7777
    try:
        write_bytes_atomic(config.path, text.encode("utf-8"))
        os.chmod(config.path, mode)
    except OSError as exc:
        raise WorkersConfigError(f"cannot write {config.path}: {exc.strerror or exc}") from None


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


def _environment(data: dict[str, Any], bindings: list[Binding], ai: AiBinding | None) -> dict[str, Any]:
    """The wrangler environment: the top level's other bindings, and vcli's in place of the
    Vectorize and AI ones."""
    section = {k: data[k] for k in NOT_INHERITED if k in data and k not in ("vectorize", "ai", "unsafe")}
    unsafe = dict(data.get("unsafe") or {})
    unsafe["bindings"] = [*unsafe.get("bindings", []), *(
        {"name": b.name, "type": "vectorize", "index_name": b.index_name,
         "dev": {"plugin": {"package": str(PLUGIN), "name": PLUGIN_NAME}, "options": {"url": b.url}}}
        for b in bindings
    )]
    if ai is not None:
        unsafe["bindings"].append({"name": ai.name, "type": "ai", "dev": {
            "plugin": {"package": str(PLUGIN), "name": AI_PLUGIN_NAME}, "options": {"url": ai.url}}})
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


def _ai_option(ai: AiBinding) -> str:
    return f"{{ binding: {json.dumps(ai.name)}, remoteProxyConnectionString: new URL({json.dumps(ai.url)}) }}"


def _miniflare_module(bindings: list[Binding], ai: AiBinding | None, base: str) -> str:
    entries = "\n".join(
        f"  {json.dumps(b.name)}: {{ index_name: {json.dumps(b.index_name)}, "
        f"remoteProxyConnectionString: new URL({json.dumps(b.url)}) }},"
        for b in bindings
    )
    return (
        f"// Vectorize {'and AI ' if ai else ''}bindings for Miniflare, answered by `vcli serve` at {base}\n"
        "// (written by `vcli workers-config`): new Miniflare({ ...yourOptions, vectorize"
        f"{', ai' if ai else ''} }})\n"
        f"export const vectorize = {{\n{entries}\n}};\n"
        + (f"export const ai = {_ai_option(ai)};\n" if ai else "")
    )


def _vitest_config(config_name: str, bindings: list[Binding], ai: AiBinding | None, base: str) -> str:
    entries = "\n".join(
        f"          {json.dumps(b.name)}: {{ index_name: {json.dumps(b.index_name)}, "
        f"remoteProxyConnectionString: new URL({json.dumps(b.url)}) }},"
        for b in bindings
    )
    return (
        f"// vitest-pool-workers with the Vectorize {'and AI ' if ai else ''}bindings answered by `vcli serve` at {base}\n"
        "// (written by `vcli workers-config`; keep it beside your wrangler config).\n"
        'import { defineConfig } from "vitest/config";\n'
        'import { cloudflareTest } from "@cloudflare/vitest-pool-workers";\n\n'
        "export default defineConfig({\n"
        "  plugins: [\n"
        "    cloudflareTest({\n"
        f"      wrangler: {{ configPath: {json.dumps('./' + config_name)} }},\n"
        "      remoteBindings: false, // no Cloudflare login: the bindings below are local\n"
        "      miniflare: {\n"
        "        vectorize: {\n"
        f"{entries}\n"
        "        },\n"
        + (f"        ai: {_ai_option(ai)},\n" if ai else "")
        + "      },\n"
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
