"""The text ``vcli workers-config`` writes for each entry point, from the bindings it found: the
wrangler environment (as data, and as JSONC or TOML text), the Miniflare module and the
``vitest.config.mjs`` (module docstring of ``vcli.workers.config``: what each one holds)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from . import AI_PLUGIN_NAME, PLUGIN, PLUGIN_NAME
from .toolchain import Toolchain
from .wrangler import WorkersConfigError, toml_key, toml_value

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


@dataclass(frozen=True)
class Binding:
    name: str  # the Worker's name for it: env.<name>
    index_name: str
    url: str  # vcli serve's URL for the index: <server>/binding/<index>/


@dataclass(frozen=True)
class AiBinding:
    name: str  # env.<name>
    url: str  # vcli serve's AI binding: <server>/ai/


def server_url(url: str) -> str:
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


def binding_url(base: str, index: str) -> str:
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


def environment(data: dict[str, Any], bindings: list[Binding], ai: AiBinding | None) -> dict[str, Any]:
    """The wrangler environment: the top level's other bindings, and vcli's in place of the
    Vectorize and AI ones."""
    section = {k: data[k] for k in NOT_INHERITED if k in data and k not in ("vectorize", "ai", "unsafe")}
    unsafe = dict(data.get("unsafe") or {})
    unsafe["bindings"] = [*unsafe.get("bindings", []), *_unsafe_bindings(bindings, ai)]
    section["unsafe"] = unsafe
    return section


def comment(env: str) -> list[str]:
    return [
        f"Written by `vcli workers-config`: `wrangler dev --env {env}` and "
        f'getPlatformProxy({{ environment: "{env}" }})',
        "with the Vectorize and AI bindings answered by `vcli serve`. An environment inherits no bindings,",
        "so the others are repeated here.",
    ]


def jsonc_section(env: str, section: dict[str, Any]) -> str:
    body = json.dumps({env: section}, indent=2)
    return "\n".join(["// " + line for line in comment(env)] + ['"env": ' + body])


def toml_section(env: str, section: dict[str, Any]) -> str:
    lines = ["# " + line for line in comment(env)] + [f"[env.{env}]"]
    rest = {k: v for k, v in section.items() if k != "unsafe"}
    unsafe = dict(section["unsafe"])
    bindings = unsafe.pop("bindings")
    lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in rest.items()]
    if unsafe:
        lines += ["", f"[env.{env}.unsafe]"] + [f"{toml_key(k)} = {toml_value(v)}" for k, v in unsafe.items()]
    for b in bindings:
        lines += ["", f"[[env.{env}.unsafe.bindings]]"] + [f"{toml_key(k)} = {toml_value(v)}" for k, v in b.items()]
    return "\n".join(lines) + "\n"


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


def miniflare_module(bindings: list[Binding], ai: AiBinding | None, base: str, toolchain: Toolchain) -> str:
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


def vitest_config(config_name: str, bindings: list[Binding], ai: AiBinding | None, base: str, env: str,
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
