"""``vcli models pull MODEL``: the official weights from the model's Hugging Face repository, or
(``--from DIR``, ``install_from_folder``) a model folder already on disk.

One commit of the repository is resolved first (``model_info``, with each file's size, git blob id
and, for files kept in Git LFS, sha256); every file is then downloaded from that commit with
``hf_hub_download`` and checked: sha256 against the LFS oid, or the git blob id (sha1 of
``blob <size>\\0`` + content) for a file kept in git itself. Only then is the model checked and
renamed into place (``store.finish``), so an interrupted or corrupt download leaves nothing behind.
A pull of the commit already on disk (whole, by its manifest) downloads nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import DownloadFailed, ModelDamaged
from . import ModelSpec
from .store import finish, folder_files, read_manifest, sha256, staging, verified_files

Progress = Callable[[int, int], None]


def git_blob_id(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _progress_class(report: Progress, total: int) -> type:
    """A tqdm class for ``hf_hub_download`` that prints nothing and reports bytes to ``report``."""
    from tqdm import tqdm

    done = [0]

    class Report(tqdm):
        def __init__(self, *args: Any, **kwargs: Any):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            done[0] += int(n or 0)
            report(done[0], total)
            return None

    return Report


def _have(folder: Path, repo_url: str, revision: str | None) -> bool:
    try:
        manifest = read_manifest(folder)
        return (manifest is not None and (manifest.get("source"), manifest.get("revision")) == (repo_url, revision)
                and verified_files(folder) is not None)
    except ModelDamaged:
        return False  # download it again


def download(spec: ModelSpec, root: Path, progress: Progress | None = None, endpoint: str | None = None) -> bool:
    """Download, check and install ``spec``'s model under ``root``; ``endpoint`` is the hub's URL
    (default: ``$HF_ENDPOINT`` as huggingface_hub read it, else https://huggingface.co). False when
    the hub's commit was on disk already, whole, so nothing was downloaded."""
    try:
        import huggingface_hub
    except ImportError:
        from ..errors import AiExtraMissing

        raise AiExtraMissing("huggingface_hub") from None
    from .runtime import check_model, require_extra

    require_extra()
    offline = (f"; on a computer without access, download the repository's {spec.onnx_file}, "
               f"tokenizer.json and config.json elsewhere and run `vcli models pull {spec.name} --from DIR`")
    # The hub's client logs its retries as warnings on stderr; the one line vcli prints says it all.
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    api = huggingface_hub.HfApi(endpoint=endpoint.rstrip("/") if endpoint else None)
    repo_url = f"{api.endpoint}/{spec.hf_repo}"
    try:
        info = api.model_info(spec.hf_repo, files_metadata=True, timeout=30)
    except Exception as exc:  # noqa: BLE001 - httpx, hub and OS errors alike: one line for the user
        raise DownloadFailed(f"cannot reach {repo_url}: {_reason(exc)}{offline}") from None
    siblings = {s.rfilename: s for s in info.siblings or ()}
    data_file = spec.onnx_file + "_data"
    wanted = {spec.onnx_file: "model.onnx", "tokenizer.json": "tokenizer.json", "config.json": "config.json"}
    if data_file in siblings:
        wanted[data_file] = "model.onnx_data"
    missing = [f for f in wanted if f not in siblings]
    if missing:
        raise DownloadFailed(f"{repo_url} (commit {info.sha}) has no {', '.join(missing)}; export the model "
                             f"to ONNX yourself and run `vcli models pull {spec.name} --from DIR`")
    if _have(root / spec.folder_name, repo_url, info.sha):
        return False  # this commit is on disk already, whole: nothing to download
    total = sum(siblings[f].size or 0 for f in wanted)
    tqdm_class = _progress_class(progress, total) if progress else None
    with staging(spec, root) as tmp:
        fetched = tmp / ".download"
        for remote, local in wanted.items():
            try:
                path = Path(huggingface_hub.hf_hub_download(
                    spec.hf_repo, remote, revision=info.sha, local_dir=fetched, endpoint=api.endpoint,
                    tqdm_class=tqdm_class))
            except Exception as exc:  # noqa: BLE001
                raise DownloadFailed(f"downloading {remote} from {repo_url} failed: {_reason(exc)}{offline}") from None
            meta = siblings[remote]
            want: str | None
            if meta.lfs is not None:
                want, got, kind = meta.lfs.sha256, sha256(path), "sha256"
            else:
                want, got, kind = meta.blob_id, git_blob_id(path), "git blob id"
            if want is None or got != want:
                raise DownloadFailed(f"{remote} from {repo_url} does not match its {kind} "
                                     f"({got} instead of {want}): run the pull again")
            os.replace(path, tmp / local)
        shutil.rmtree(fetched, ignore_errors=True)
        check_model(spec, tmp / "model.onnx", tmp / "tokenizer.json")
        finish(spec, tmp, root, {"source": repo_url, "revision": info.sha})
        return True


def install_from_folder(spec: ModelSpec, folder: Path, root: Path) -> Path:
    """``vcli models pull MODEL --from FOLDER``: check the model there, then copy it into place."""
    from .runtime import check_model  # lazy: NumPy, ONNX Runtime and tokenizers

    files = folder_files(folder)
    check_model(spec, files["model.onnx"], files["tokenizer.json"])
    with staging(spec, root) as tmp:
        for name, src in files.items():
            shutil.copyfile(src, tmp / name)
        return finish(spec, tmp, root, {"source": str(folder.resolve())})
