"""Engine layer: cached features on disk, so a second run on the same pictures is fast.

One safetensors file per *model key*, holding one matrix: a row per picture, and in
the file's metadata the pictures' *file keys* (real path, size, modification time) in
row order. The model key says what computes the features, by content: a hash of the
weights (remembered per file in a small index beside the cache, so a large file is
hashed once), the version of the code that builds the network, where the network is
cut, preprocessing, precision and torch's version. Files beyond the size budget are
evicted, least recently used first. Plain tensors only: nothing in these files can
run code.

Why one matrix, memory-mapped: 100,000 pictures' features are 0.5 GB at 1,280 floats
each. A run reads them as a read-only mapping of the file (``open``), so they are
paged in as the head's batches need them and never copied into the process's own
memory; a save streams the stored rows and the new ones into a new file, holding
neither in memory at once. A mapping is made from the file handle the header was
read from and never re-opened by path, so a file replaced by another run's save or
evicted (unlinked) while a run uses it stays whole for that run (on Linux and macOS
an unlinked file lives on while it is mapped; on Windows the unlink fails and the
file is left for a later eviction).

A cache must never fail a run: every disk error here means "not cached".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torchvision

from .. import __version__
from .atomic import write_file_atomically
from .backbones import BackboneSpec, architecture_identity
from .preprocessing import Preprocessing
from .weights import cached_file_for, file_sha256

DEFAULT_BUDGET_BYTES = 1 * 2**30
HASH_INDEX_FILE = "weights-sha256.json"
HASH_INDEX_ENTRIES = 256  # weight files remembered; the oldest are forgotten first
MATRIX = "features"  # the one tensor in a store file
KEYS = "file_keys"  # its metadata entry: the rows' file keys, as a JSON list
COPY_BYTES = 8 << 20  # how much of a stored matrix a save holds in memory at once
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit


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

    def open(self, model_key: str) -> StoredFeatures | None:
        """All stored features of ``model_key``, memory-mapped (see the module's
        docstring); None when there are none or the file is unreadable."""
        path = self._file(model_key)
        try:
            with open(path, "rb") as handle:
                layout = _read_layout(handle)
                matrix = layout.map(handle)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                path.unlink()  # damaged or of an older layout: computed again
            return None
        # Recently used, for eviction. Vanished or read-only: the features were read.
        with contextlib.suppress(OSError):
            os.utime(path)
        return StoredFeatures(matrix, {key: row for row, key in enumerate(layout.keys)})

    def load(self, model_key: str, keys: Sequence[str | None]) -> dict[str, torch.Tensor]:
        """The stored features among ``keys``, as rows of the mapped matrix (no copy);
        an unreadable store counts as empty."""
        stored = self.open(model_key)
        return stored.select(keys) if stored is not None else {}

    def save(self, model_key: str, features: Mapping[str, torch.Tensor]) -> bool:
        """Add ``features`` to the model's file, within the budget. False if it would
        not fit or could not be written (the run goes on without it). The stored rows
        are copied from the old file to the new one in pieces, never all in memory."""
        path = self._file(model_key)
        try:
            with contextlib.ExitStack() as stack:
                old = _open_stored(path, stack)
                stored = set(old.layout.keys) if old is not None else set()
                new_keys = [k for k in features if k not in stored]
                if not new_keys:
                    return old is not None
                row_shape = tuple(features[new_keys[0]].shape)
                if any(tuple(features[k].shape) != row_shape for k in new_keys):
                    return False
                if old is not None and old.layout.row_shape != row_shape:
                    old = None  # another cut of the network: start afresh
                kept = old.layout.keys if old is not None else ()
                layout = _Layout.of([*kept, *new_keys], row_shape)
                if layout.file_bytes > self.budget_bytes:
                    return False
                self.folder.mkdir(parents=True, exist_ok=True)
                self._evict(self.budget_bytes - layout.file_bytes, keep=path)
                rows = [features[k] for k in new_keys]
                write_file_atomically(path, lambda temporary: _write(temporary, layout, old, rows))
        except (OSError, ValueError):
            return False
        return True

    def _evict(self, room: int, keep: Path) -> None:
        """Remove the least recently used files until ``room`` bytes are free. A run
        that mapped one of them keeps its features (see the module's docstring)."""
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
            with contextlib.suppress(OSError):  # gone already, or in use on Windows
                oldest.unlink()


@dataclass(frozen=True)
class StoredFeatures:
    """A store file's features: ``matrix`` (one row per picture, memory-mapped and
    copy-on-write, so writing to it never reaches the file) and each picture's row."""

    matrix: torch.Tensor
    rows: Mapping[str, int]

    def select(self, keys: Iterable[str | None]) -> dict[str, torch.Tensor]:
        """The rows of the stored ``keys``, by key: views of ``matrix``, no copy."""
        return {k: self.matrix[self.rows[k]] for k in keys if k is not None and k in self.rows}


@dataclass(frozen=True)
class _Layout:
    """Where a store file's matrix lies and which picture each row stands for."""

    keys: tuple[str, ...]
    row_shape: tuple[int, ...]
    data_start: int  # bytes before the matrix: the length field and the JSON header

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * 4

    @property
    def file_bytes(self) -> int:
        return self.data_start + len(self.keys) * self.row_bytes

    @classmethod
    def of(cls, keys: Sequence[str], row_shape: tuple[int, ...]) -> _Layout:
        header = _header(keys, row_shape)
        return cls(tuple(keys), row_shape, 8 + len(header))

    def map(self, handle: IO[bytes]) -> torch.Tensor:
        """The matrix, mapped from ``handle`` (the file the layout was read from)."""
        shape = (len(self.keys), *self.row_shape)
        if not self.keys or self.row_bytes == 0:
            return torch.empty(shape)
        mapped = np.memmap(handle, np.float32, "c", self.data_start, shape)
        return torch.from_numpy(mapped)


def _header(keys: Sequence[str], row_shape: tuple[int, ...]) -> bytes:
    """safetensors' JSON header for the matrix, padded to 8 bytes as safetensors does."""
    count = len(keys)
    size = count * int(np.prod(row_shape, dtype=np.int64)) * 4
    header = {
        "__metadata__": {KEYS: json.dumps(list(keys))},
        MATRIX: {"dtype": "F32", "shape": [count, *row_shape], "data_offsets": [0, size]},
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    return text + b" " * (-len(text) % 8)


def _read_layout(handle: IO[bytes]) -> _Layout:
    """The layout of an open store file; ``ValueError`` if it is not one, or not whole."""
    start = handle.read(8)
    (length,) = struct.unpack("<Q", start) if len(start) == 8 else (0,)
    if not 0 < length <= MAX_HEADER_BYTES:
        raise ValueError("not a store file")
    try:
        header = json.loads(handle.read(length))
        entry = header[MATRIX]
        keys = json.loads(header["__metadata__"][KEYS])
        count, *row_shape = (int(n) for n in entry["shape"])
        begin, end = (int(n) for n in entry["data_offsets"])
        dtype = entry["dtype"]
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError("not a store file of this version") from error
    if dtype != "F32" or not isinstance(keys, list) or count != len(keys):
        raise ValueError("not a store file of this version")
    layout = _Layout(tuple(str(k) for k in keys), tuple(row_shape), 8 + length)
    if (begin, end) != (0, count * layout.row_bytes):
        raise ValueError("inconsistent store file")
    if os.fstat(handle.fileno()).st_size != layout.data_start + end:
        raise ValueError("store file of the wrong size")
    return layout


@dataclass(frozen=True)
class _OpenFile:
    """A store file being copied into its successor: its layout and open handle."""

    layout: _Layout
    handle: IO[bytes]


def _open_stored(path: Path, stack: contextlib.ExitStack) -> _OpenFile | None:
    try:
        handle = stack.enter_context(open(path, "rb"))  # noqa: SIM115 (the stack closes it)
        return _OpenFile(_read_layout(handle), handle)
    except (OSError, ValueError):
        return None  # nothing stored, or nothing usable: the new file starts empty


def _write(path: Path, layout: _Layout, old: _OpenFile | None, rows: list[torch.Tensor]) -> None:
    """Write a store file: the header, the old file's matrix, then the new rows."""
    header = _header(layout.keys, layout.row_shape)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(header)) + header)
        if old is not None:
            old.handle.seek(old.layout.data_start)
            remaining = len(old.layout.keys) * old.layout.row_bytes
            while remaining > 0:
                chunk = old.handle.read(min(COPY_BYTES, remaining))
                if not chunk:
                    raise ValueError("the stored file ended early")
                out.write(chunk)
                remaining -= len(chunk)
        for row in rows:
            out.write(row.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
