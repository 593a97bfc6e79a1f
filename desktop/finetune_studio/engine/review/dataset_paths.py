"""Engine layer: where a picture sits in a class-per-folder dataset and where it may
go, for the repair journal (``journal.py``).

The class folders are found as the dataset scan (``engine/scan.py``) finds them: the
root's subfolders, or those of its train and val folders when both exist; hidden
entries are not part of the dataset. A picture moving into a folder keeps its file
name unless the name is taken, on disk or by another picture of the same step: then
it gets a free one (``x (2).jpg``), so nothing is ever overwritten.

Pure path work with no journal and no moves, kept apart so the journal's module
holds only its operations.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..scan import TRAIN_FOLDER_NAMES, VAL_FOLDER_NAMES
from .repair_actions import Move


@dataclass(frozen=True)
class Place:
    """Where a picture of the dataset sits: ``base`` is the root or its split folder."""

    path: Path
    base: Path
    class_name: str


def class_bases(root: Path) -> list[Path]:
    """The folders whose subfolders are classes: the train and val folders when
    both exist, as ``engine/scan.py`` decides (its ``_find_child``), else the root."""
    train = _find_child(root, TRAIN_FOLDER_NAMES)
    val = _find_child(root, VAL_FOLDER_NAMES)
    return [train, val] if train is not None and val is not None else [root]


def class_names(root: Path) -> list[str]:
    """The class names, as the dataset scan finds them (the training folder's with
    split folders)."""
    return [folder.name for folder in _subfolders(class_bases(root)[0])]


def class_place(path: Path, bases: Sequence[Path]) -> Place | None:
    """The class folder ``path`` lies in, below the first of ``bases`` that holds it;
    None if it is in none (at a base's top, or under a hidden folder)."""
    for base in bases:
        parts = path.relative_to(base).parts if inside(path, base) else ()
        if len(parts) >= 2 and not is_hidden(parts[0]):
            return Place(path, base, parts[0])
    return None


def plan_moves(places: Sequence[Place], folder_of: Callable[[Place], Path]) -> list[Move]:
    """Each picture into its new folder under its own name, or a free one."""
    taken: set[str] = set()
    return [Move(p.path, free_name(folder_of(p), p.path.name, taken)) for p in places]


def free_name(folder: Path, name: str, taken: set[str]) -> Path:
    """``folder/name``, or ``name (2)``, ``name (3)``... before the suffix if the name is
    in use on disk or by another picture of the same step. ``taken`` compares names
    without case, since a case-insensitive disk would make ``A.jpg`` replace ``a.jpg``."""
    stem, suffix = os.path.splitext(name)
    candidate, number = folder / name, 1
    while os.path.lexists(candidate) or str(candidate).casefold() in taken:
        number += 1
        candidate = folder / f"{stem} ({number}){suffix}"
    taken.add(str(candidate).casefold())
    return candidate


def is_hidden(name: str) -> bool:
    """As the scan decides: such entries are not part of the dataset."""
    return name.startswith(".") or name.startswith("__")


def absolute(given: str | Path) -> Path:
    """An absolute path whose folders are resolved but whose last part is not: a
    picture that is a link is moved as a link."""
    path = Path(given).expanduser().absolute()
    if path.name in ("", ".", ".."):
        return path.resolve()
    return path.parent.resolve() / path.name


def inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def nearest_existing(folder: Path) -> Path:
    """``folder`` or its closest ancestor that exists (a move may create the rest)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _find_child(root: Path, names: tuple[str, ...]) -> Path | None:
    for child in _subfolders(root):
        if child.name.lower() in names:
            return child
    return None


def _subfolders(folder: Path) -> list[Path]:
    return sorted(e for e in folder.iterdir() if e.is_dir() and not is_hidden(e.name))
