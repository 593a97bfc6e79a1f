"""Engine layer: find classes and picture files in a dataset folder.

Layout: each immediate subfolder of the root is a class, pictures in nested folders
below a class belong to it. If the root holds ``train/`` and ``val/`` (or
``valid/``, ``validation/``), those are the split. Hidden entries are ignored, and
symbolic links are followed at most once per real folder, so loops end.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DatasetError
from .images import is_candidate_image

TRAIN_FOLDER_NAMES = ("train", "training")
VAL_FOLDER_NAMES = ("val", "valid", "validation")


class ScanCancelled(DatasetError):
    """The check of a folder was cancelled: a newer one replaced it, or the window closed."""


def raise_if_cancelled(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise ScanCancelled("The check of the folder was cancelled.")


@dataclass(frozen=True)
class FolderScan:
    """Candidate picture files per class, before any file is opened."""

    root: Path
    classes: tuple[str, ...]
    train_files: dict[str, list[Path]]
    val_files: dict[str, list[Path]] | None  # None: no split folders, split randomly later
    notes: list[str] = field(default_factory=list)


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")


def walk_files(folder: Path, cancel: threading.Event | None = None) -> Iterator[Path]:
    """All non-hidden files below ``folder``, following links but never in circles.
    A set ``cancel`` raises ``ScanCancelled`` at the next folder: a large tree on a
    slow disk takes seconds to walk."""
    seen: set[tuple[int, int]] = set()
    for current, dirs, files in os.walk(folder, followlinks=True):
        raise_if_cancelled(cancel)
        stat = os.stat(current)
        key = (stat.st_dev, stat.st_ino)
        if key in seen:
            dirs[:] = []
            continue
        seen.add(key)
        dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
        for name in sorted(files):
            if not _is_hidden(name):
                yield Path(current, name)


def _class_folders(folder: Path) -> list[Path]:
    return sorted(
        entry for entry in folder.iterdir() if entry.is_dir() and not _is_hidden(entry.name)
    )


def _files_per_class(folder: Path, cancel: threading.Event | None) -> dict[str, list[Path]]:
    return {
        class_dir.name: [p for p in walk_files(class_dir, cancel) if is_candidate_image(p)]
        for class_dir in _class_folders(folder)
    }


def _find_child(root: Path, names: tuple[str, ...]) -> Path | None:
    for child in _class_folders(root):
        if child.name.lower() in names:
            return child
    return None


def scan_folder(root: str | Path, cancel: threading.Event | None = None) -> FolderScan:
    """List classes and candidate picture files; raises ``DatasetError`` on bad layout
    (``ScanCancelled`` once ``cancel`` is set)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"The dataset folder {root} does not exist.")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file. Choose a folder that holds one subfolder per class.")
    try:
        train_dir = _find_child(root, TRAIN_FOLDER_NAMES)
        val_dir = _find_child(root, VAL_FOLDER_NAMES)
        notes: list[str] = []
        if train_dir is not None and val_dir is not None:
            train_files = _files_per_class(train_dir, cancel)
            val_files: dict[str, list[Path]] | None = _files_per_class(val_dir, cancel)
            assert val_files is not None
            extra = sorted(set(val_files) - set(train_files))
            if extra:
                notes.append(
                    f"Validation classes with no training folder are ignored: {', '.join(extra)}"
                )
            val_files = {name: val_files.get(name, []) for name in train_files}
            notes.append(f"Using the split folders {train_dir.name}/ and {val_dir.name}/.")
        else:
            train_files = _files_per_class(root, cancel)
            val_files = None
    except PermissionError as exc:
        raise DatasetError(f"Cannot read {exc.filename}: permission denied.") from exc
    classes = tuple(sorted(train_files))
    if len(classes) < 2:
        found = f"only the class folder {classes[0]!r}" if classes else "no class folders"
        raise DatasetError(
            f"Found {found} in {root}. A dataset needs at least 2 classes: "
            "put the pictures of each class in its own subfolder."
        )
    return FolderScan(root, classes, train_files, val_files, notes)
