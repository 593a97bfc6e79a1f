"""Engine layer: fetch, cache and safely load weight files.

Downloads go to torch's own hub cache (so weights already fetched by torchvision
are found), with a progress callback and cancellation, and are checked against the
hash prefix in torchvision's file names. Loading never executes code: safetensors
directly, torch files only with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import torch
from safetensors.torch import load_file as load_safetensors

from .atomic import write_file_atomically
from .errors import WeightsError

DownloadProgress = Callable[[int, int], None]
"""Called as ``progress(bytes_done, bytes_total)``; total is 0 when unknown."""

_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")
_CHUNK = 1 << 20
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SAFETENSORS_SUFFIXES = (".safetensors",)


class DownloadCancelled(WeightsError):
    """The user cancelled a weights download."""


class WeightsSource(Protocol):
    """Pretrained weights that a library of their own locates (timm's on the Hugging
    Face Hub), for backbones whose weights are neither bundled nor a torchvision URL."""

    def status(self) -> str:
        """``cached`` (on this computer) or ``download`` (needs the network)."""
        ...

    def local_file(self) -> Path | None:
        """The file the weights are read from, once it is on this computer."""
        ...

    def load(
        self, progress: DownloadProgress | None, cancel: threading.Event | None
    ) -> dict[str, torch.Tensor]:
        """The state dict, downloading the file first if need be."""
        ...


def expected_hash_prefix(path: Path) -> str | None:
    """The sha256 prefix in a torchvision-style file name (``name-1a2b3c4d.pth``), if any."""
    match = _HASH_IN_NAME.search(path.name)
    return match.group(1) if match else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_hash_in_name(path: Path) -> None:
    """Refuse a file whose content does not match the hash prefix in its name."""
    expected = expected_hash_prefix(path)
    if expected and not file_sha256(path).startswith(expected):
        raise WeightsError(
            f"{path} is corrupt (its content does not match the hash in its name); "
            "reinstall the package that ships it."
        )


def hub_checkpoint_dir() -> Path:
    """torch's own weights cache (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_file_for(url: str) -> Path:
    return hub_checkpoint_dir() / os.path.basename(urllib.parse.urlparse(url).path)


def download(
    url: str,
    destination: Path,
    progress: DownloadProgress | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Download ``url`` to ``destination`` atomically, checking torchvision's hash prefix.

    Each download writes its own temporary file (``atomic.write_file_atomically``), so
    two downloads of one file, say from two windows, never write into each other, and
    cancelling one leaves the other whole.
    """
    try:
        return write_file_atomically(
            destination, lambda partial: _fetch(url, partial, destination, progress, cancel)
        )
    except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsError(
            f"Could not download {url} ({reason}). Without a network connection, download "
            f"the file on another computer and put it at {destination}, "
            "or load weights from a file instead."
        ) from exc


def _fetch(
    url: str,
    partial: Path,
    destination: Path,
    progress: DownloadProgress | None,
    cancel: threading.Event | None,
) -> None:
    """Stream ``url`` into ``partial``; raise if cancelled or if the content's hash
    does not start with the prefix in ``destination``'s name."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        if progress:
            progress(0, total)
        while chunk := response.read(_CHUNK):
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled("The download was cancelled.")
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    expected = expected_hash_prefix(destination)
    if expected and not digest.hexdigest().startswith(expected):
        raise WeightsError(f"The file downloaded from {url} is corrupt (hash mismatch).")


def _unwrap_checkpoint(data: object, path: Path) -> dict[str, torch.Tensor]:
    """Accept a bare state dict or the usual training-checkpoint wrappers around one."""
    if isinstance(data, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = data.get(key)
            if isinstance(inner, Mapping):
                data = inner
                break
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(
            f"{path.name} does not hold a state dict (a mapping of parameter names to tensors)."
        )
    return {str(k).removeprefix("module."): v for k, v in data.items()}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file without ever executing code from it."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"The weights file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        try:
            return load_safetensors(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for bad headers
            raise WeightsError(f"{path.name} is not a valid safetensors file ({exc}).") from exc
    if suffix not in TORCH_SUFFIXES:
        raise WeightsError(
            f"{path.name}: unsupported weights file type; use .safetensors, .pt or .pth."
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"Refused to load {path.name}: it holds Python objects other than tensors, and "
            "loading it could run code hidden in the file. Save only the state dict "
            "(torch.save(model.state_dict(), path)) or convert it to .safetensors."
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise WeightsError(f"{path.name} is not a readable PyTorch weights file ({exc}).") from exc
    return _unwrap_checkpoint(data, path)


def describe_mismatch(
    model_state: Mapping[str, torch.Tensor],
    file_state: Mapping[str, torch.Tensor],
    ignore_prefix: str | None = None,
) -> str | None:
    """Say how a state dict fails to fit a model (first shape mismatch, missing, extra keys)."""

    def keep(key: str) -> bool:
        return ignore_prefix is None or not key.startswith(ignore_prefix)

    for key, tensor in model_state.items():
        if keep(key) and key in file_state and file_state[key].shape != tensor.shape:
            return (
                f"parameter {key!r} has shape {tuple(file_state[key].shape)} in the file "
                f"but {tuple(tensor.shape)} in the model"
            )
    missing = [k for k in model_state if keep(k) and k not in file_state]
    extra = [k for k in file_state if keep(k) and k not in model_state]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (first: {', '.join(missing[:3])})")
    if extra:
        parts.append(f"{len(extra)} unexpected (first: {', '.join(extra[:3])})")
    return "; ".join(parts) or None
