"""A Worker's ``env.VECTORIZE`` answered by ``vcli serve``: what a local Workers runtime needs.

* ``plugin.mjs``: vcli's Miniflare plugin, which ``wrangler dev`` and ``getPlatformProxy()`` load
  for a binding declared under ``unsafe.bindings`` (shipped as package data).
* ``config.py``: reads a wrangler config's Vectorize bindings and writes what points each entry
  point (plain Miniflare, vitest-pool-workers, wrangler) at the server (``vcli workers-config``).

The server's side of the protocol is ``vcli.server.binding``; docs/workers.md tells the whole story.
"""

from __future__ import annotations

from pathlib import Path

PLUGIN = Path(__file__).with_name("plugin.mjs")
PLUGIN_NAME = "vcli"  # the name under plugins in plugin.mjs
