"""Where indexes live: the data dir, and create / list / open / delete (names: ``validate.check_name``).

An index is a folder ``<data dir>/<name>/`` (``layout.py`` names its files) holding
``index.toml`` (its configuration, written here), ``store.sqlite`` (the truth) and a search file.
A folder only ever appears or disappears whole: create builds it under a temporary name and renames
it into place; delete renames it away before removing it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from ..errors import IndexExists, IndexNotFound, InvalidConfig, QuotaExceeded, StorageError
from . import fsutil, limits
from .index import VectorIndex
from .layout import CONFIG_FILE, OWN_FILES, Folder, now_iso
from .records import IndexConfig
from .settings import load_settings
from .store import Store
from .tuning import DEFAULT, Tuning
from .validate import NAME_RE, check_config, check_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FORMAT = 1  # of index.toml


def _toml_str(value: str) -> str:
    # A JSON string with ASCII escapes is a valid TOML basic string once DEL is escaped too.
    return json.dumps(value, ensure_ascii=True).replace("\x7f", "\\u007f")


def _config_toml(cfg: IndexConfig) -> bytes:
    lines = [f"format = {FORMAT}", f"name = {_toml_str(cfg.name)}", f"dimensions = {cfg.dimensions}"]
    lines.append(f"metric = {_toml_str(cfg.metric)}")
    if cfg.description is not None:
        lines.append(f"description = {_toml_str(cfg.description)}")
    if cfg.preset is not None:
        lines.append(f"preset = {_toml_str(cfg.preset)}")
    lines += [f"created_on = {_toml_str(cfg.created_on)}", f"modified_on = {_toml_str(cfg.modified_on)}"]
    return ("\n".join(lines) + "\n").encode()


class Catalog:
    """The indexes in one data dir.

    ``lock_timeout`` (seconds a write waits for another writer), ``max_top_k_with_values``
    (1..50), ``max_namespaces`` and ``tuning`` (``tuning.py``) are handed to every index it opens;
    ``max_indexes`` caps how many it holds; ``vcli.engine.open_catalog`` takes all but the tuning
    and ``background_builds`` from the configuration files and ``VCLI_*`` variables.

    ``background_builds``: whether its indexes may start a detached builder process (``builder.py``)
    to make a large index's graph after a write returns, as the CLI and ``vcli serve`` do. Off by
    default: a library call starts no process, and the graph is built in the calling process, by
    the write (or the first query) that finds it missing."""

    def __init__(
        self, data_dir: str | os.PathLike[str], *, lock_timeout: float | None = None,
        max_top_k_with_values: int | None = None, tuning: Tuning | None = None,
        max_indexes: int = limits.DEFAULT_MAX_INDEXES, max_namespaces: int = limits.DEFAULT_MAX_NAMESPACES,
        background_builds: bool = False,
    ):
        self.data_dir = Path(data_dir)
        self.max_indexes = max_indexes
        self.max_namespaces = max_namespaces
        self.lock_timeout = limits.DEFAULT_LOCK_TIMEOUT if lock_timeout is None else lock_timeout
        self.max_top_k_with_values = (limits.MAX_TOP_K_WITH_DATA if max_top_k_with_values is None
                                      else max_top_k_with_values)
        tuning = tuning or DEFAULT
        self.background_builds = background_builds
        self.tuning = tuning if background_builds else tuning._replace(graph_in_background=False)

    # -- paths -----------------------------------------------------------------------------
    def path_of(self, name: str) -> Path:
        """The folder of index ``name``; the name is checked so it can never leave the data dir."""
        path = self.data_dir / check_name(name)
        if path.is_symlink():
            raise StorageError(f'{path} is a symbolic link; vcli does not follow links in its data dir')
        return path

    def _existing(self, name: str) -> Path:
        path = self.path_of(name)
        if not (path / CONFIG_FILE).is_file():
            raise IndexNotFound(name)
        for part in OWN_FILES:  # a link planted in the index folder would lead reads/writes elsewhere
            if (path / part).is_symlink():
                raise StorageError(f"{path / part} is a symbolic link; vcli does not follow links in an index")
        return path

    # -- operations ------------------------------------------------------------------------
    def create(
        self,
        name: str,
        dimensions: int | None = None,
        metric: str | None = None,
        *,
        preset: str | None = None,
        description: str | None = None,
    ) -> IndexConfig:
        dims, metric_ = check_config(dimensions, metric, preset)
        final = self.path_of(name)
        if final.exists():
            raise IndexExists(name)
        held = sum(1 for entry in self.data_dir.iterdir() if NAME_RE.fullmatch(entry.name)
                   and (entry / CONFIG_FILE).is_file()) if self.data_dir.is_dir() else 0
        if held >= self.max_indexes:
            raise QuotaExceeded(
                f"cannot create index \"{name}\": the data dir holds {held} indexes, the most allowed "
                f"(setting max_indexes, {self.max_indexes}; Vectorize allows 50,000 per account on Workers "
                f"Paid, 100 on Free)")
        stamp = now_iso()
        cfg = IndexConfig(name, dims, metric_, description, stamp, stamp, preset)
        tmp = self.data_dir / f".create-{name}-{os.urandom(4).hex()}"
        self._sweep()
        try:
            fsutil.make_dir(self.data_dir)
            tmp.mkdir(mode=fsutil.DIR_MODE)
            fsutil.write_bytes_atomic(tmp / CONFIG_FILE, _config_toml(cfg))
            Store.create(Folder(tmp).store).close()
            try:
                os.rename(tmp, final)
            except OSError as exc:
                if final.exists():
                    raise IndexExists(name) from exc
                raise
            fsutil.fsync_dir(self.data_dir)
        except OSError as exc:
            raise StorageError(
                f'cannot create index "{name}" in {self.data_dir}: {exc.strerror or exc}'
            ) from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return cfg

    def config(self, name: str) -> IndexConfig:
        return read_config(self._existing(name))

    def list(self) -> list[IndexConfig]:
        if not self.data_dir.is_dir():
            return []
        out = []
        for entry in sorted(self.data_dir.iterdir()):
            config = entry / CONFIG_FILE
            if NAME_RE.fullmatch(entry.name) and not entry.is_symlink() and config.is_file() \
                    and not config.is_symlink():
                out.append(read_config(entry))
        return out

    def open(self, name: str, *, write: bool = False) -> VectorIndex:
        """Open index ``name`` for reading or (with ``write=True``) for writing."""
        path = self._existing(name)
        return VectorIndex(Folder(path), read_config(path), write=write, lock_timeout=self.lock_timeout,
                           max_top_k_with_values=self.max_top_k_with_values, tuning=self.tuning,
                           max_namespaces=self.max_namespaces)

    def open_or_create(
        self,
        name: str,
        dimensions: int | None = None,
        metric: str | None = None,
        *,
        preset: str | None = None,
        description: str | None = None,
    ) -> VectorIndex:
        """Open index ``name`` for writing, creating it first when it does not exist.

        An existing index must have the same dimensions and metric, else ``InvalidConfig``."""
        dims, metric_ = check_config(dimensions, metric, preset)
        try:
            self.create(name, dimensions, metric, preset=preset, description=description)
        except IndexExists:
            cfg = self.config(name)
            if (cfg.dimensions, cfg.metric) != (dims, metric_):
                raise InvalidConfig(
                    f'index "{name}" exists with {cfg.dimensions} dimensions and metric '
                    f"{cfg.metric}, not {dims} and {metric_}"
                ) from None
        return self.open(name, write=True)

    def delete(self, name: str) -> None:
        path = self._existing(name)
        trash = self.data_dir / f".delete-{name}-{os.urandom(4).hex()}"
        try:
            os.rename(path, trash)
        except OSError as exc:
            raise StorageError(f'cannot delete index "{name}" from {self.data_dir}: {exc.strerror or exc}') from exc
        fsutil.fsync_dir(self.data_dir)
        shutil.rmtree(trash, ignore_errors=True)
        self._sweep()

    def _sweep(self) -> None:
        """Remove what killed creates and deletes left behind (see ``Tuning.stale_create_seconds``)."""
        try:
            entries = list(os.scandir(self.data_dir))
        except OSError:
            return
        now = time.time()
        for entry in entries:
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                if entry.name.startswith(".delete-") or (
                    entry.name.startswith(".create-")
                    and now - entry.stat(follow_symlinks=False).st_mtime > self.tuning.stale_create_seconds
                ):
                    shutil.rmtree(entry.path, ignore_errors=True)
            except OSError:
                continue


def read_config(path: Path) -> IndexConfig:
    try:
        raw = tomllib.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
        return IndexConfig(
            name=raw["name"],
            dimensions=int(raw["dimensions"]),
            metric=raw["metric"],
            description=raw.get("description"),
            created_on=raw["created_on"],
            modified_on=raw["modified_on"],
            preset=raw.get("preset"),
        )
    except (OSError, KeyError, ValueError, TypeError, tomllib.TOMLDecodeError) as exc:
        raise StorageError(f"cannot read {path / CONFIG_FILE}: {exc}") from exc


def open_catalog(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    tuning: Tuning | None = None,
    background_builds: bool = False,
) -> Catalog:
    """The catalog of indexes as the CLI sees it, with the configured settings.

    ``data_dir`` wins as ``--data-dir`` does; without it the data dir comes from ``VCLI_DATA_DIR``,
    a project ``vcli.toml`` (searched from ``cwd`` upwards), the user ``config.toml``, or the
    platform's user data dir. ``lock_timeout`` and ``max_top_k_with_values`` come from the same
    places. ``env`` defaults to ``os.environ``; ``tuning`` to ``Tuning()``; ``background_builds``
    (off: no builder process is started) is ``Catalog``'s. Raises ``ConfigError`` for a bad config
    file."""
    settings = load_settings({"data_dir": data_dir}, env, cwd)
    return Catalog(settings.data_dir, lock_timeout=settings.lock_timeout,
                   max_top_k_with_values=settings.max_top_k_with_values, tuning=tuning,
                   max_indexes=settings.max_indexes, max_namespaces=settings.max_namespaces,
                   background_builds=background_builds)
