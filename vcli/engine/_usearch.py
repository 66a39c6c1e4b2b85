"""usearch without its downloads and progress bars: ``import_usearch`` imports ``usearch.index``
without tqdm and ``urllib.request``, which usearch imports for progress bars and binary downloads
vcli never uses (~50 ms and ~30 ms with ``http``, ``email`` and ``ssl`` at each start of a process
that searches). Test: ``tests/test_imports.py::test_usearch_is_imported_without_tqdm_and_urllib_request``.
"""

from __future__ import annotations

import sys
import types


def import_usearch():
    """Import ``usearch.index`` with stand-ins for tqdm and ``urllib.request`` in ``sys.modules``
    while it loads; each stand-in loads the real module only if it is ever used, and both leave
    ``sys.modules`` at once, so nobody else sees them."""
    if "usearch" in sys.modules:
        from usearch import index
        return index

    def tqdm(*args, **kwargs):
        from tqdm import tqdm as real

        return real(*args, **kwargs)

    def request_attribute(name):
        import importlib

        return getattr(importlib.import_module("urllib.request"), name)

    stand_ins = {"tqdm": types.ModuleType("tqdm"), "urllib.request": types.ModuleType("urllib.request")}
    stand_ins["tqdm"].tqdm = tqdm
    stand_ins["urllib.request"].__getattr__ = request_attribute
    placed = [name for name in stand_ins if name not in sys.modules]
    sys.modules.update({name: stand_ins[name] for name in placed})
    try:
        from usearch import index
    except ImportError:  # a usearch that wants more of them: import it the ordinary way
        for name in placed:
            sys.modules.pop(name, None)
        from usearch import index
    finally:
        for name in placed:
            if sys.modules.get(name) is stand_ins[name]:
                del sys.modules[name]
    return index
