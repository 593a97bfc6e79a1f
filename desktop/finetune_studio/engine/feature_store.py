"""Engine layer: cached features on disk, so a second run on the same pictures is fast.

One safetensors file per *model key* (backbone, weights, where the network is cut,
preprocessing, precision, torch version); inside it one tensor per picture, named
by the picture's *file key* (real path, size, modification time). Any change to
either makes a different key, so stale features are never used. Files beyond the
size budget are evicted, least recently used first. Plain tensors only: nothing in
these files can run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

DEFAULT_BUDGET_BYTES = 1 * 2**30


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "finetune-studio" / "features"


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def file_key(path: str | Path) -> str | None:
    """Identity of a picture file as it is now; None if it cannot be read."""
    try:
        real = os.path.realpath(path)
        stat = os.stat(real)
    except OSError:
        return None
    return _digest([real, stat.st_size, stat.st_mtime_ns])


def weights_identity(weights: str, default_identity: str) -> str:
    """``default``/``none`` as themselves (with the backbone's source), a file by content
    identity."""
    if weights == "default":
        return f"default:{default_identity}"
    if weights == "none":
        return "none"  # random weights differ per seed; the seed is part of the key too
    return f"file:{file_key(weights)}"


class FeatureStore:
    def __init__(
        self, folder: Path | None = None, budget_bytes: int = DEFAULT_BUDGET_BYTES
    ) -> None:
        self.folder = folder or default_cache_dir()
        self.budget_bytes = budget_bytes

    @staticmethod
    def model_key(**identity: Any) -> str:
        return _digest({**identity, "torch": torch.__version__})

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
        os.utime(path)  # recently used
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
            handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".partial")
            os.close(handle)
            try:
                save_file(merged, temporary)
                os.replace(temporary, path)
            finally:
                Path(temporary).unlink(missing_ok=True)
        except OSError:
            return False
        return True

    def _evict(self, room: int, keep: Path) -> None:
        files = sorted(
            (p for p in self.folder.glob("*.safetensors") if p != keep),
            key=lambda p: p.stat().st_mtime,
        )
        used = sum(p.stat().st_size for p in files)
        while files and used > room:
            oldest = files.pop(0)
            used -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)
