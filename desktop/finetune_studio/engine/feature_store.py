"""Engine layer: cached features on disk, so a second run on the same pictures is fast.

One safetensors file per *model key*; inside it one tensor per picture, named by the
picture's *file key* (real path, size, modification time). The model key says what
computes the features, by content: a hash of the weights (remembered per file in a
small index beside the cache, so a large file is hashed once), the version of the
code that builds the network, where the network is cut, preprocessing, precision and
torch's version. Files beyond the size budget are evicted, least recently used
first. Plain tensors only: nothing in these files can run code.

A cache must never fail a run: every disk error here means "not cached".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import __version__
from .atomic import write_file_atomically
from .backbones import BackboneSpec, architecture_identity
from .preprocessing import Preprocessing
from .weights import cached_file_for, file_sha256

DEFAULT_BUDGET_BYTES = 1 * 2**30
HASH_INDEX_FILE = "weights-sha256.json"
HASH_INDEX_ENTRIES = 256  # weight files remembered; the oldest are forgotten first


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "finetune-studio" / "features"


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def file_key(path: str | Path) -> str | None:
    """Identity of a picture file as it is now; None if it cannot be read.

    The inode and change time are in it because a file copied over another with its
    modification time kept (``cp -p``, ``rsync -t``) can have the same size and mtime.
    """
    try:
        real = os.path.realpath(path)
        stat = os.stat(real)
    except OSError:
        return None
    return _digest([real, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino])


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """A hash of a state dict's names, dtypes, shapes and bytes: the identity of
    weights that exist only in memory (a plug-in's bundled weights without a file)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _stamp(stat: os.stat_result) -> list[int]:
    """What must be unchanged for a remembered hash to hold. The inode and the change
    time catch a same-size file copied onto the path with its mtime kept (cp -p)."""
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


class ContentHashes:
    """sha256 of weight files, remembered in a JSON index per real path and stamp
    (size, mtime, ctime, inode, device), so a 100 MB file is read once, not per run."""

    def __init__(self, index_file: Path) -> None:
        self.index_file = index_file

    def sha256(self, path: str | Path) -> str | None:
        """The file's sha256, or None if it cannot be read."""
        try:
            real = os.path.realpath(path)
            stamp = _stamp(os.stat(real))
            index = self._read()
            entry = index.get(real)
            if isinstance(entry, dict) and entry.get("stamp") == stamp:
                remembered = entry.get("sha256")
                if isinstance(remembered, str):
                    return remembered
            digest = file_sha256(Path(real))
            if _stamp(os.stat(real)) != stamp:
                return digest  # changed while it was read: use it, remember nothing
        except OSError:
            return None
        index.pop(real, None)
        index[real] = {"stamp": stamp, "sha256": digest}
        self._write(dict(list(index.items())[-HASH_INDEX_ENTRIES:]))
        return digest

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.index_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, index: dict[str, Any]) -> None:
        text = json.dumps(index, indent=1)

        def write(path: Path) -> None:
            path.write_text(text, encoding="utf-8")

        with contextlib.suppress(OSError):  # only costs a second hash next time
            write_file_atomically(self.index_file, write)


class FeatureStore:
    def __init__(
        self, folder: Path | None = None, budget_bytes: int = DEFAULT_BUDGET_BYTES
    ) -> None:
        self.folder = folder or default_cache_dir()
        self.budget_bytes = budget_bytes
        self.hashes = ContentHashes(self.folder / HASH_INDEX_FILE)

    def feature_model_key(
        self,
        spec: BackboneSpec,
        weights: str,
        capture_path: str,
        preprocessing: Preprocessing,
        precision: str,
        seed: int,
    ) -> str:
        """The key of the features that ``spec`` with ``weights`` computes at
        ``capture_path``: the same exactly when the features would be the same.

        ``seed`` matters only for ``weights="none"`` (random weights are drawn from it);
        pretrained features do not depend on it.
        """
        return _digest(
            {
                "backbone": spec.name,
                "architecture": architecture_identity(spec),
                "weights": self.weights_content_identity(spec, weights, seed),
                "split": capture_path,
                "preprocessing": preprocessing.to_dict(),
                "precision": precision,
                "torch": torch.__version__,
                # How pictures are decoded and resized is this package's own code.
                "finetune_studio": __version__,
            }
        )

    def weights_content_identity(self, spec: BackboneSpec, weights: str, seed: int) -> str:
        """What the weights are, by content: ``none`` with its seed, a file by its sha256,
        the backbone's default weights by the hash of the file they come from."""
        if weights == "none":
            return f"none:seed={seed}"
        if weights != "default":
            return self._file_identity(weights)
        if spec.bundled_weights is not None:
            bundled = spec.bundled_weights_file() if spec.bundled_weights_file else None
            if bundled is not None:
                return self._file_identity(bundled)
            return f"tensors:{state_dict_sha256(spec.bundled_weights())}"
        if spec.weights_url is not None:
            cached = cached_file_for(spec.weights_url)
            if cached.is_file():
                return self._file_identity(cached)
            # Not fetched yet: torchvision's file names carry a hash prefix of the content.
            return f"url:{spec.weights_url} torchvision {torchvision.__version__}"
        return f"none:seed={seed}"

    def _file_identity(self, path: str | Path) -> str:
        digest = self.hashes.sha256(path)
        if digest is None:  # unreadable: a key that matches nothing, so nothing stale is used
            return f"unreadable:{uuid.uuid4().hex}"
        return f"sha256:{digest}"

    def _file(self, model_key: str) -> Path:
        return self.folder / f"{model_key}.safetensors"

    def load(self, model_key: str, keys: Sequence[str | None]) -> dict[str, torch.Tensor]:
        """The stored features among ``keys``; an unreadable store counts as empty."""
        path = self._file(model_key)
        if not path.is_file():
            return {}
        try:
            stored = load_file(str(path))
        except (SafetensorError, OSError, ValueError):
            path.unlink(missing_ok=True)
            return {}
        # Recently used, for eviction. Vanished or read-only: the features were read.
        with contextlib.suppress(OSError):
            os.utime(path)
        wanted = {k for k in keys if k is not None}
        return {k: v for k, v in stored.items() if k in wanted}

    def save(self, model_key: str, features: dict[str, torch.Tensor]) -> bool:
        """Merge ``features`` into the model's file, within the budget. False if it
        would not fit or could not be written (the run goes on without it)."""
        path = self._file(model_key)
        try:
            merged = load_file(str(path)) if path.is_file() else {}
        except (SafetensorError, OSError, ValueError):
            merged = {}
        merged.update({k: v.contiguous() for k, v in features.items()})
        size = sum(t.numel() * t.element_size() for t in merged.values())
        if size > self.budget_bytes:
            return False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._evict(self.budget_bytes - size, keep=path)
            write_file_atomically(path, lambda temporary: save_file(merged, str(temporary)))
        except (OSError, SafetensorError):
            return False
        return True

    def _evict(self, room: int, keep: Path) -> None:
        """Remove the least recently used files until ``room`` bytes are free."""
        files: list[tuple[int, int, Path]] = []
        for candidate in self.folder.glob("*.safetensors"):
            try:
                stat = candidate.stat()
            except OSError:
                continue  # another run evicted it first
            if candidate != keep:
                files.append((stat.st_mtime_ns, stat.st_size, candidate))
        files.sort()
        used = sum(size for _, size, _ in files)
        while files and used > room:
            _, size, oldest = files.pop(0)
            used -= size
            oldest.unlink(missing_ok=True)
