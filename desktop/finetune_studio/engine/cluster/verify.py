"""Engine layer: checking a copy of a dataset against its manifest.

The copy is scanned as a training run scans it (``engine/scan.py``), so an "extra"
file is one the run would train on and the manifest does not know; other files (a
notes.txt, hidden folders) are not the run's business and are not reported. A file
whose size differs is changed without reading it; the others are hashed, unless
only sizes are asked for (a quick check before a requeued job).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..events import Log, StageProgress
from ..scan import MAX_NAMED, ScanCancelled, scan_folder
from .manifest import FileEntry, Manifest, hash_files, human_size, scanned_pictures

VERIFY_STAGE = "Checking the copy"


@dataclass(frozen=True)
class ChangedFile:
    path: str
    reason: str  # "size 120 bytes, expected 123" or "content differs"


@dataclass(frozen=True)
class CopyCheck:
    """How a copy of a dataset compares with its manifest; plain data."""

    root: str
    dataset: str
    expected: int  # files in the manifest
    expected_bytes: int
    missing: tuple[str, ...]
    changed: tuple[ChangedFile, ...]
    extra: tuple[str, ...]
    hashed: bool  # False: only sizes were compared

    @property
    def matches(self) -> bool:
        return not (self.missing or self.changed or self.extra)

    def summary(self) -> str:
        """One paragraph for the person who copied the data."""
        compared = "sizes and SHA-256 hashes" if self.hashed else "sizes (not hashes)"
        if self.matches:
            return (
                f"The copy at {self.root} matches the manifest of {self.dataset!r}: "
                f"{self.expected:,} pictures, {human_size(self.expected_bytes)}, same {compared}."
            )
        problems = [
            _listed(len(self.missing), "missing", self.missing),
            _listed(len(self.changed), "changed", [f"{c.path}: {c.reason}" for c in self.changed]),
            _listed(len(self.extra), "not in the manifest", self.extra),
        ]
        found = "; ".join(problem for problem in problems if problem)
        return (
            f"The copy at {self.root} does not match the manifest of {self.dataset!r} "
            f"({self.expected:,} pictures, {compared} compared): {found}. Copy the dataset "
            "again (rsync -aL --checksum from the original folder), or make a new bundle "
            "if the original changed on purpose."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "dataset": self.dataset,
            "matches": self.matches,
            "hashed": self.hashed,
            "expected_files": self.expected,
            "expected_bytes": self.expected_bytes,
            "missing": list(self.missing),
            "changed": [{"path": c.path, "reason": c.reason} for c in self.changed],
            "extra": list(self.extra),
        }


def _listed(count: int, what: str, names: Sequence[str]) -> str:
    if not count:
        return ""
    shown = ", ".join(names[:MAX_NAMED])
    more = f" and {count - MAX_NAMED:,} more" if count > MAX_NAMED else ""
    return f"{count:,} {what} ({shown}{more})"


def verify_copy(
    root: str | Path, manifest: Manifest, cancel: threading.Event, sizes_only: bool = False
) -> Generator[StageProgress | Log, None, CopyCheck | None]:
    """Compare the dataset at ``root`` with ``manifest``; None once ``cancel`` is set.
    A folder that does not exist raises ``DatasetError``."""
    root = Path(root).expanduser()
    yield Log(f"Listing the pictures in {root}…")
    try:
        scan = scan_folder(root, cancel, min_classes=0)
    except ScanCancelled:
        return None
    found = dict(scanned_pictures(scan))
    expected = {entry.path: entry for entry in manifest.files}
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    changed, same_size = _compare_sizes(
        [expected[name] for name in sorted(set(expected) & set(found))], found
    )
    if not sizes_only:
        hashed = yield from hash_files(
            [(e.path, found[e.path]) for e in same_size], cancel, VERIFY_STAGE
        )
        if hashed is None:
            return None
        wanted = {entry.path: entry.sha256 for entry in same_size}
        changed += [
            ChangedFile(entry.path, "content differs")
            for entry in hashed
            if entry.sha256 != wanted[entry.path]
        ]
    return CopyCheck(
        str(root),
        manifest.dataset,
        len(manifest.files),
        manifest.total_bytes,
        tuple(missing),
        tuple(sorted(changed, key=lambda c: c.path)),
        tuple(extra),
        hashed=not sizes_only,
    )


def _compare_sizes(
    entries: list[FileEntry], found: dict[str, Path]
) -> tuple[list[ChangedFile], list[FileEntry]]:
    """Files whose size differs (changed, without reading them), and the others."""
    changed: list[ChangedFile] = []
    same: list[FileEntry] = []
    for entry in entries:
        try:
            size = os.stat(found[entry.path]).st_size
        except OSError as exc:  # a dangling link in the copy
            changed.append(ChangedFile(entry.path, f"cannot be read ({exc.strerror})"))
            continue
        if size == entry.size:
            same.append(entry)
        else:
            changed.append(ChangedFile(entry.path, f"size {size:,} bytes, expected {entry.size:,}"))
    return changed, same


class CopyVerification:
    """``verify_copy`` as a cancellable task (``cli/common.py``'s ``CancellableTask``)."""

    def __init__(self, root: str | Path, manifest: Manifest, sizes_only: bool = False) -> None:
        self.root, self.manifest, self.sizes_only = root, manifest, sizes_only
        self._cancel = threading.Event()

    def events(self) -> Generator[StageProgress | Log, None, CopyCheck | None]:
        return (yield from verify_copy(self.root, self.manifest, self._cancel, self.sizes_only))

    def cancel(self) -> None:
        self._cancel.set()
