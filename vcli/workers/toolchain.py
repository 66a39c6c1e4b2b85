"""Which Miniflare and which vitest package a Worker's project has (``detect``): the Miniflare and
vitest pieces of ``vcli workers-config`` are written for them, and what was found or assumed is
said with the result."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POOL_WORKERS = "@cloudflare/vitest-pool-workers"  # up to 0.23; 0.20 and later run Miniflare 5
VITEST_PLUGIN = "@cloudflare/vitest-plugin"  # its successor (1.x), on Miniflare 5


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
