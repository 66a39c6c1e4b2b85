"""A Worker's ``env.VECTORIZE`` and ``env.AI`` answered by ``vcli serve``: what a local Workers
runtime needs.

* ``plugin.mjs``: vcli's Miniflare plugin, which ``wrangler dev`` and ``getPlatformProxy()`` load
  for a binding declared under ``unsafe.bindings`` (shipped as package data).
* ``config.py``: reads a wrangler config's Vectorize and AI bindings and writes what points each entry
  point (plain Miniflare, vitest-pool-workers, wrangler) at the server (``vcli workers-config``),
  with ``wrangler.py`` (the config file: read, edited in place), ``toolchain.py`` (the Miniflare
  and vitest packages of the project) and ``pieces.py`` (the text written for each entry point).

The server's side of the protocols is ``vcli.server.binding`` and ``vcli.server.ai``; docs/workers.md tells the whole story.
"""

from __future__ import annotations

from pathlib import Path

PLUGIN = Path(__file__).with_name("plugin.mjs")
PLUGIN_NAME = "vcli"  # the name under plugins in plugin.mjs
AI_PLUGIN_NAME = "vcli-ai"  # the AI plugin's name there (env.AI, Workers AI's embeddings)
