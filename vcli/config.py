"""Settings: built-in defaults, then ``VCLI_*`` environment variables, then command-line flags.

Resolved inside functions from an explicit environment mapping, never at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("vcli", appauthor=False))


def resolve_data_dir(flag: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> Path:
    """``--data-dir``, else ``VCLI_DATA_DIR``, else the platform's user data dir."""
    env = os.environ if env is None else env
    if flag:
        return Path(flag).expanduser()
    if env.get("VCLI_DATA_DIR"):
        return Path(env["VCLI_DATA_DIR"]).expanduser()
    return default_data_dir()
