"""Engine layer: a dataset's manifest: every picture file, its size and its SHA-256.

The files are the ones the dataset scan (``engine/scan.py``) finds, so the manifest
and a training run see the same pictures: the scan's rules on hidden entries, links
and split folders apply. It lists every candidate picture, including files the
check would then skip as unreadable: the copy on the cluster must hold the same
files, so that the same ones are skipped there and the seeded split comes out the
same. Paths are relative to the dataset folder, with forward slashes.

Hashing 100,000 pictures reads every byte once, so it is a cancellable generator:
a few threads read files in 1 MiB chunks (``hashlib`` releases the GIL while it
digests), at most a few files are in flight at a time, and progress is reported
at most ``PROGRESS_STEPS`` times.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserFacingError
from ..events import StageProgress
from ..scan import FolderScan, relative_name

MANIFEST_FORMAT = "finetune-studio-dataset-manifest"
MANIFEST_VERSION = 1
HASH_STAGE = "Hashing pictures"
PROGRESS_STEPS = 200
"""At most this many progress reports per hashing pass, however many pictures."""
HASH_THREADS = 8
"""Threads reading and hashing, whatever the cores: they mostly wait on the disk.
20,000 files of 10 KB (warm cache, 2 busy cores): 1 thread 2.7-3.4 s, 2 threads
2.1 s, 8 threads 1.2 s."""
CHUNK = 1 << 20


class ManifestError(UserFacingError):
    """A manifest file cannot be read or does not describe a dataset."""


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the dataset folder, POSIX separators
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    dataset: str  # the dataset folder's name
    classes: tuple[str, ...]
    files: tuple[FileEntry, ...]  # sorted by path

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "dataset": self.dataset,
            "hash": "sha256",
            "classes": list(self.classes),
            "totals": {"files": len(self.files), "bytes": self.total_bytes},
            "files": [
                {"path": entry.path, "size": entry.size, "sha256": entry.sha256}
                for entry in self.files
            ],
        }

    @classmethod
    def from_dict(cls, data: object, source: str = "the manifest") -> Manifest:
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"{source} is not a Finetune Studio dataset manifest.")
        if data.get("version") != MANIFEST_VERSION:
            raise ManifestError(
                f"{source} has manifest version {data.get('version')}; this version of "
                f"Finetune Studio reads version {MANIFEST_VERSION}."
            )
        try:
            files = tuple(
                FileEntry(str(item["path"]), int(item["size"]), str(item["sha256"]))
                for item in data["files"]
            )
            return cls(str(data["dataset"]), tuple(map(str, data["classes"])), files)
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{source} is damaged ({exc!r}).") from exc

    def to_json(self) -> str:
        """Indented, with one line per file (easy to diff and to grep)."""
        data = self.to_dict()
        files = data.pop("files")
        head = json.dumps(data, indent=2, ensure_ascii=False).removesuffix("\n}")
        lines = ",\n".join(f"    {json.dumps(item, ensure_ascii=False)}" for item in files)
        return f'{head},\n  "files": [\n{lines}\n  ]\n}}\n'


def load_manifest(path: str | Path) -> Manifest:
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"The manifest {path} does not exist.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"The manifest {path} cannot be read ({exc}).") from exc
    return Manifest.from_dict(data, f"The manifest {path}")


def scanned_pictures(scan: FolderScan) -> list[tuple[str, Path]]:
    """Every picture file of a scan as ``(relative path, path)``, sorted by relative path."""
    groups = [scan.train_files, *([scan.val_files] if scan.val_files is not None else [])]
    found = {
        relative_name(path, scan.root): path
        for files in groups
        for paths in files.values()
        for path in paths
    }
    return sorted(found.items())


def file_sha256(path: Path) -> str:
    """As ``weights.file_sha256``, which imports torch: verify-data runs before every
    launch, and torch's import cost it 3.7 s and ~0.5 GB here for nothing."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _measure(path: Path) -> tuple[int, str]:
    return os.stat(path).st_size, file_sha256(path)


def hash_files(
    files: list[tuple[str, Path]], cancel: threading.Event, stage: str = HASH_STAGE
) -> Generator[StageProgress, None, list[FileEntry] | None]:
    """``FileEntry`` of each ``(relative path, path)``, in order; None once ``cancel``
    is set (checked between files). A file that cannot be read raises a
    ``UserFacingError`` that names it."""
    total = len(files)
    every = max(1, total // PROGRESS_STEPS)
    entries: list[FileEntry] = []
    yield StageProgress(stage, 0, total)
    with ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="hash") as pool:
        for (name, _), measured in zip(files, _bounded_map(pool, [p for _, p in files])):
            if cancel.is_set():
                return None
            try:
                size, digest = measured.result()
            except OSError as exc:
                raise UserFacingError(
                    f"Cannot read {exc.filename or name} to hash it ({exc.strerror or exc})."
                ) from exc
            entries.append(FileEntry(name, size, digest))
            if len(entries) % every == 0 or len(entries) == total:
                yield StageProgress(stage, len(entries), total)
    return None if cancel.is_set() else entries


def _bounded_map(
    pool: ThreadPoolExecutor, paths: Iterable[Path]
) -> Iterator[Future[tuple[int, str]]]:
    """Futures of ``_measure`` in input order, with at most a few files in flight:
    memory stays constant and a cancel waits for those few only (the pool's exit
    cancels the ones not started)."""
    window: deque[Future[tuple[int, str]]] = deque()
    for path in paths:
        window.append(pool.submit(_measure, path))
        if len(window) >= 2 * HASH_THREADS:
            yield window.popleft()
    while window:
        yield window.popleft()


def build_manifest(
    scan: FolderScan, cancel: threading.Event
) -> Generator[StageProgress, None, Manifest | None]:
    """Hash every picture of ``scan``; None when cancelled."""
    pictures = scanned_pictures(scan)
    entries = yield from hash_files(pictures, cancel)
    if entries is None:
        return None
    return Manifest(Path(scan.root).name, scan.classes, tuple(entries))


def human_size(count: int) -> str:
    """``12,345 bytes``, ``1.2 MB``, ``3.4 GB``."""
    if count < 1000:
        return f"{count:,} bytes"
    value, unit = count / 1000, "KB"
    for larger in ("MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    return f"{value:.1f} {unit}"
