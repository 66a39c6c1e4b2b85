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

Here: ``build`` and ``write``. The wrangler config as a file (reading, the JSONC and TOML editing)
is ``wrangler.py``; the npm packages found, ``toolchain.py``; the text of each piece, ``pieces.py``.
Each imports only those listed before it, and this module names what other code uses of all four.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import PLUGIN, pieces
from .pieces import DEFAULT_ENV, DEFAULT_URL, NOT_INHERITED, AiBinding, Binding
from .toolchain import POOL_WORKERS, VITEST_PLUGIN, Package, Toolchain, detect
from .wrangler import (
    CONFIG_NAMES,
    WorkersConfigError,
    WranglerConfig,
    add_binding,
    binding_name,
    closing,
    find_config,
    read_config,
    save,
    strip_jsonc,
    tokens,
)

__all__ = [
    "CONFIG_NAMES", "DEFAULT_ENV", "DEFAULT_URL", "NOT_INHERITED", "POOL_WORKERS", "VITEST_PLUGIN",
    "AiBinding", "Binding", "Package", "Toolchain", "WorkersConfig", "WorkersConfigError", "WranglerConfig",
    "add_binding", "binding_name", "build", "detect", "find_config", "read_config", "save", "strip_jsonc",
    "write",
]


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


def build(config: WranglerConfig, url: str = DEFAULT_URL, env: str = DEFAULT_ENV,
          toolchain: Toolchain | None = None) -> WorkersConfig:
    """The configuration for every entry point, from the Vectorize and AI bindings of ``config``, for
    ``toolchain`` (default: what ``detect`` finds beside the config)."""
    toolchain = toolchain or detect(config.path.resolve().parent)
    base = pieces.server_url(url)
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
        bindings.append(Binding(name, index, pieces.binding_url(base, index)))
    ai = _ai_binding(config, base)
    if not bindings and ai is None:
        raise WorkersConfigError(f"{config.path} has no Vectorize bindings (a vectorize = [...] list at "
                                 "its top level) and no AI binding (ai = {binding = ...})")
    section = pieces.environment(config.data, bindings, ai)
    return WorkersConfig(
        config, env, bindings, ai, PLUGIN, toolchain, section,
        wrangler=pieces.toml_section(env, section) if config.is_toml else pieces.jsonc_section(env, section),
        miniflare=pieces.miniflare_module(bindings, ai, base, toolchain),
        vitest=pieces.vitest_config(config.path.name, bindings, ai, base, env, toolchain),
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


def _insert_jsonc_env(config: WranglerConfig, env: str, section: dict[str, Any]) -> str:
    """The config's text with ``env.<env>`` added: into its ``env`` object when it has one, else as
    a new last key of the top level."""
    text, toks = config.text, list(tokens(config.text))
    depth, key, target = 0, None, None
    for i, (_, _, tok) in enumerate(toks):
        if tok in "{[":
            depth += 1
            if depth == 2 and key == "env" and tok == "{":
                target = closing(toks, i)
        elif tok in "}]":
            depth -= 1
        elif depth == 1 and tok.startswith('"') and i + 1 < len(toks) and toks[i + 1][2] == ":":
            key = json.loads(tok)
    if target is None:  # no env object: a new last key of the top level
        target = closing(toks, next(i for i, t in enumerate(toks) if t[2] == "{"))
        indent, entry = "  ", pieces.jsonc_section(env, section)
    else:
        indent = "    "
        entry = "\n".join(["// " + line for line in pieces.comment(env)]
                          + [f"{json.dumps(env)}: " + json.dumps(section, indent=2)])
    before = toks[target - 1][2]
    comma = "" if before in ("{", ",") else ","
    at = toks[target - 1][1]
    block = "\n".join(indent + line for line in entry.splitlines())
    return text[:at] + comma + "\n" + block + "\n" + text[at:].lstrip(" \t")
