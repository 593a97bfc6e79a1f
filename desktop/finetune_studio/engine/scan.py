"""Engine layer: find classes and picture files in a dataset folder.

Layout: each immediate subfolder of the root is a class, pictures in nested folders
below a class belong to it. If the root holds ``train/`` and ``val/`` (or
``valid/``, ``validation/``), those are the split. Hidden entries are ignored.

A picture takes the label of the class folder it is in, so links are followed only
where they cannot give a picture a second label: a link inside a class may lead into
that class or out of the dataset, never back to the dataset's root, into another
class, or to a folder that holds the whole dataset. A file reached twice (a link or a
hard link: the same ``(st_dev, st_ino)``) is counted once. Nothing here reads a
picture, except ``identical_files_across_classes``, which reads only files whose sizes
collide.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DatasetError
from .images import is_candidate_image

TRAIN_FOLDER_NAMES = ("train", "training")
VAL_FOLDER_NAMES = ("val", "valid", "validation")
MAX_NAMED = 5
"""A warning about links or copies names at most this many, then says how many more."""


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


FileKey = tuple[int, int]  # (st_dev, st_ino): one file, however many paths reach it


@dataclass(frozen=True)
class Boundary:
    """Where links below one class folder may lead: into that class, or out of the dataset."""

    root: str  # the dataset's real path
    own: str  # the class folder's real path

    @classmethod
    def of(cls, root: Path, class_dir: Path) -> Boundary:
        return cls(os.path.realpath(root), os.path.realpath(class_dir))

    def allows(self, link: str | Path) -> bool:
        target = os.path.realpath(link)
        if _inside(target, self.own):
            return True
        return not _inside(target, self.root) and not _inside(self.root, target)


def _inside(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # on different drives
        return False


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")


def walk_files(
    folder: Path,
    cancel: threading.Event | None = None,
    boundary: Boundary | None = None,
    refused: list[Path] | None = None,
) -> Iterator[Path]:
    """All non-hidden files below ``folder``, following links but never in circles, and
    with a ``boundary`` only the links it allows (the others are added to ``refused``).
    A set ``cancel`` raises ``ScanCancelled`` at the next folder: a large tree on a
    slow disk takes seconds to walk."""

    def allowed(path: Path) -> bool:
        if boundary is None or not path.is_symlink() or boundary.allows(path):
            return True
        if refused is not None:
            refused.append(path)
        return False

    seen: set[FileKey] = set()
    for current, dirs, files in os.walk(folder, followlinks=True):
        raise_if_cancelled(cancel)
        stat = os.stat(current)
        key = (stat.st_dev, stat.st_ino)
        if key in seen:
            dirs[:] = []
            continue
        seen.add(key)
        dirs[:] = [d for d in sorted(dirs) if not _is_hidden(d) and allowed(Path(current, d))]
        for name in sorted(files):
            path = Path(current, name)
            if not _is_hidden(name) and allowed(path):
                yield path


def _class_folders(folder: Path) -> list[Path]:
    return sorted(
        entry for entry in folder.iterdir() if entry.is_dir() and not _is_hidden(entry.name)
    )


class _Collector:
    """Candidate pictures per class for one dataset, each file once (the first path found
    wins), and what was left out on the way, for the notes."""

    def __init__(self, root: Path, cancel: threading.Event | None) -> None:
        self.root = root
        self.cancel = cancel
        self.owner: dict[FileKey, tuple[str, Path]] = {}
        self.refused: list[Path] = []
        self.shared: list[tuple[Path, Path, str]] = []  # kept, left out, kept's class

    def files_per_class(self, folder: Path) -> dict[str, list[Path]]:
        return {
            class_dir.name: self._class_files(class_dir) for class_dir in _class_folders(folder)
        }

    def _class_files(self, class_dir: Path) -> list[Path]:
        boundary = Boundary.of(self.root, class_dir)
        kept: list[Path] = []
        for path in walk_files(class_dir, self.cancel, boundary, self.refused):
            if not is_candidate_image(path):
                continue
            try:
                stat = os.stat(path)
            except OSError:
                kept.append(path)  # a dangling link: the check says why it is skipped
                continue
            key = (stat.st_dev, stat.st_ino)
            if key not in self.owner:
                self.owner[key] = (class_dir.name, path)
                kept.append(path)
            elif self.owner[key][0] != class_dir.name:
                self.shared.append((self.owner[key][1], path, self.owner[key][0]))
        return kept

    def notes(self) -> list[str]:
        notes: list[str] = []
        if self.refused:
            links = _named([self._relative(p) for p in self.refused])
            notes.append(
                f"Links not followed, since they lead back into the dataset: {links}. "
                "A picture takes the label of its own class folder only."
            )
        if self.shared:
            pairs = _named(
                [
                    f"{self._relative(a)} and {self._relative(b)} (counted once, in {c!r})"
                    for a, b, c in self.shared
                ]
            )
            notes.append(f"The same file is in two classes, under two labels: {pairs}.")
        return notes

    def _relative(self, path: Path) -> str:
        return relative_name(path, self.root)


def relative_name(path: str | Path, root: str | Path) -> str:
    """``path`` as the user knows it inside the dataset (``cat/0005.jpg``)."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _named(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_NAMED])
    more = len(items) - MAX_NAMED
    return f"{shown} and {more} more" if more > 0 else shown


def identical_files_across_classes(
    files: Mapping[str, Sequence[Path]], cancel: threading.Event | None = None
) -> list[list[tuple[str, Path]]]:
    """Groups of byte-identical files that lie in two or more classes, as (class, path).
    Only files whose sizes collide across classes are read, so a dataset of distinct
    pictures is not read a second time."""
    by_size: dict[int, list[tuple[str, Path]]] = {}
    for name, paths in files.items():
        for path in paths:
            try:
                size = os.stat(path).st_size
            except OSError:
                continue  # removed since it was checked: nothing left to compare
            by_size.setdefault(size, []).append((name, path))
    groups: list[list[tuple[str, Path]]] = []
    for same_size in by_size.values():
        if len({name for name, _ in same_size}) < 2:
            continue
        by_digest: dict[bytes, list[tuple[str, Path]]] = {}
        for name, path in same_size:
            raise_if_cancelled(cancel)
            try:
                by_digest.setdefault(_digest(path), []).append((name, path))
            except OSError:
                continue  # removed while the others were read
        groups += [g for g in by_digest.values() if len({name for name, _ in g}) >= 2]
    return groups


def _digest(path: Path) -> bytes:
    digest = hashlib.blake2b()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.digest()


def _find_child(root: Path, names: tuple[str, ...]) -> Path | None:
    for child in _class_folders(root):
        if child.name.lower() in names:
            return child
    return None


def scan_folder(
    root: str | Path, cancel: threading.Event | None = None, min_classes: int = 2
) -> FolderScan:
    """List classes and candidate picture files; raises ``DatasetError`` on bad layout
    (``ScanCancelled`` once ``cancel`` is set). Training needs two classes; reviewing a
    model's predictions on a folder needs one (``min_classes``)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"The dataset folder {root} does not exist.")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file. Choose a folder that holds one subfolder per class.")
    collector = _Collector(root, cancel)
    try:
        train_dir = _find_child(root, TRAIN_FOLDER_NAMES)
        val_dir = _find_child(root, VAL_FOLDER_NAMES)
        notes: list[str] = []
        if train_dir is not None and val_dir is not None:
            train_files = collector.files_per_class(train_dir)
            val_files: dict[str, list[Path]] | None = collector.files_per_class(val_dir)
            assert val_files is not None
            extra = sorted(set(val_files) - set(train_files))
            if extra:
                notes.append(
                    f"Validation classes with no training folder are ignored: {', '.join(extra)}"
                )
            val_files = {name: val_files.get(name, []) for name in train_files}
            notes.append(f"Using the split folders {train_dir.name}/ and {val_dir.name}/.")
        else:
            train_files = collector.files_per_class(root)
            val_files = None
    except PermissionError as exc:
        raise DatasetError(f"Cannot read {exc.filename}: permission denied.") from exc
    classes = tuple(sorted(train_files))
    if len(classes) < min_classes:
        found = f"only the class folder {classes[0]!r}" if classes else "no class folders"
        raise DatasetError(
            f"Found {found} in {root}. A dataset needs at least {min_classes} "
            f"class{'es' if min_classes > 1 else ''}: "
            "put the pictures of each class in its own subfolder."
        )
    return FolderScan(root, classes, train_files, val_files, notes + collector.notes())
