"""Models on disk: one folder per model under ``models_dir()``, written whole or not at all.

    <models_dir>/baai--bge-base-en-v1.5/
        model.onnx  [model.onnx_data]  tokenizer.json  config.json
        manifest.json   each file's sha256, size and modification time; where it came from

A pull fills a temporary folder beside it, checks the model (it loads, takes ``input_ids`` and
``attention_mask``, gives ``last_hidden_state`` of the model's dimensions), writes the manifest
last, and renames the folder into place, so a folder with a manifest is always a whole copy. A
load checks each file's size against the manifest and, when its modification time differs, its
sha256: a copy cut short or changed since is refused with the command that mends it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: killed pulls' folders are left for the user
    fcntl = None  # type: ignore[assignment]

from ..errors import BadModelFolder, ModelDamaged, StorageError
from . import ModelSpec

MANIFEST = "manifest.json"
REQUIRED = ("model.onnx", "tokenizer.json", "config.json")
OPTIONAL = ("model.onnx_data",)  # the weights of a graph over 2 GB, beside it


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ModelDamaged(f"{folder / MANIFEST} cannot be read ({exc}): pull the model again") from None


def verified_files(folder: Path) -> dict[str, Path] | None:
    """The model's files by name, when its folder holds what its manifest says; None when the
    model was never pulled; ``ModelDamaged`` when a file is missing, cut short or changed."""
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    again = f"run `vcli models pull {manifest.get('model', '<model>')}` again"
    if not isinstance(manifest.get("files"), dict) or not set(REQUIRED) <= set(manifest["files"]):
        raise ModelDamaged(f"{folder / MANIFEST} does not list the model's files: {again}")
    files = {}
    for name, want in manifest["files"].items():
        path = folder / name
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ModelDamaged(f"{path} is missing: {again}") from None
        if st.st_size != want["size"]:
            raise ModelDamaged(f"{path} has {st.st_size:,} bytes, not the {want['size']:,} pulled "
                               f"(a partial or changed copy): {again}")
        if st.st_mtime_ns != want["mtime_ns"] and sha256(path) != want["sha256"]:
            raise ModelDamaged(f"{path} differs from the file pulled (sha256 mismatch): {again}")
        files[name] = path
    return files


def folder_files(folder: Path) -> dict[str, Path]:
    """A Hugging Face model folder's files under the names vcli stores them by."""
    if not folder.is_dir():
        raise BadModelFolder(f"{folder} is not a folder")
    onnx = next((p for p in (folder / "onnx" / "model.onnx", folder / "model.onnx") if p.is_file()), None)
    found = {"model.onnx": onnx, "tokenizer.json": folder / "tokenizer.json", "config.json": folder / "config.json"}
    missing = [("onnx/model.onnx or model.onnx" if n == "model.onnx" else n)
               for n, p in found.items() if p is None or not p.is_file()]
    if missing:
        raise BadModelFolder(f"{folder} is not a model folder in the Hugging Face layout: no {', no '.join(missing)}")
    files: dict[str, Path] = dict(found)  # type: ignore[arg-type]
    data = files["model.onnx"].with_name("model.onnx_data")
    if data.is_file():
        files["model.onnx_data"] = data
    return files


class staging:
    """A temporary folder beside the model's, removed unless ``finish`` renamed it into place.

    While a pull runs it holds a lock on ``<folder>.lock`` beside its folder (taken before the
    folder is made), so the next pull can tell the folders of pulls that were killed (no lock
    held) from those still running, and remove only the former."""

    def __init__(self, spec: ModelSpec, root: Path):
        self.spec = spec
        self.root = root

    def __enter__(self) -> Path:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            sweep(self.root)
            self.path = self.root / f".pull-{self.spec.folder_name}-{os.urandom(4).hex()}"
            self.lock = open(_lock_of(self.path), "wb")
            if fcntl is not None:
                fcntl.flock(self.lock, fcntl.LOCK_EX)
            self.path.mkdir()
        except OSError as exc:
            raise StorageError(f"cannot write in {self.root}: {exc.strerror or exc}") from None
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        _lock_of(self.path).unlink(missing_ok=True)
        self.lock.close()


def _lock_of(folder: Path) -> Path:
    return folder.with_name(folder.name + ".lock")


def sweep(root: Path) -> None:
    """Remove what killed pulls left under ``root``: temporary folders whose lock no pull holds,
    and the old copies ``finish`` was replacing."""
    if fcntl is None:
        return
    for path in root.glob(".old-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in root.glob(".pull-*"):
        folder = path.with_suffix("") if path.suffix == ".lock" else path
        try:
            with open(_lock_of(folder), "ab") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(folder, ignore_errors=True)
                _lock_of(folder).unlink(missing_ok=True)
        except BlockingIOError:
            continue  # a pull running now


def finish(spec: ModelSpec, tmp: Path, root: Path, about: dict[str, Any]) -> Path:
    """Write the manifest of the files in ``tmp`` and rename it to the model's folder, replacing
    any earlier copy."""
    entries = {}
    for path in sorted(tmp.iterdir()):
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        st = path.stat()
        entries[path.name] = {"sha256": sha256(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    manifest = {"model": spec.name, **about, "files": entries}
    with open(tmp / MANIFEST, "w") as f:
        f.write(json.dumps(manifest, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    target = root / spec.folder_name
    old = root / f".old-{spec.folder_name}-{os.urandom(4).hex()}"
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target
