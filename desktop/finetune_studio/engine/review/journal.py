"""Engine layer: the repair journal, through which pictures move between class folders.

A user fixes a wrong label by moving the picture to its class folder, or excludes a
picture by moving it into a hidden folder the dataset scan skips. The app never
deletes a picture: every move is written to the journal first and can be undone,
in this session or after a restart, since the journal file is the only state.

API (synchronous and quick, no global state: the window calls it from a worker)::

    journal = RepairJournal(dataset_root)
    journal.relabel(paths, to_class) -> Action    # into another class folder
    journal.exclude(paths) -> Action              # into excluded_folder
    journal.undo() -> Action | None               # the latest action put back; None: nothing left
    journal.undo_all() -> list[Action]            # every action put back, newest first
    journal.actions() -> list[Action]             # those that can still be undone, oldest first
    journal.excluded_folder                       # <root>/.finetune-studio/excluded

Paths given as relative paths are taken from the current folder, as a shell does,
so a path printed by another command can be pasted as it is. A picture keeps its
split (``train/cat/x.jpg`` to class dog is ``train/dog/x.jpg``) and its file name,
unless the name is taken: then it gets a free one (``x (2).jpg``), never overwriting.
An excluded picture goes to ``excluded/<class>/<file>`` (``excluded/<split>/<class>/
<file>`` with split folders). Pictures of a selection already in the target class
are left alone (``Action.unchanged``); a selection with nothing to move is an error.

Safety: the whole selection is checked before anything moves. If a move still fails
(a read-only folder, a file gone meanwhile), the pictures already moved are moved
back and the action is marked rolled back, so nothing is left half-done. An undo
puts back every picture still where the action left it; one that is gone is named
in ``Action.missing`` and the rest are put back, so one lost file never blocks the
undo of the others (or of older actions). An original place taken meanwhile gives
the returning picture a free name (``Action.renamed``).

The journal file (``journal_file.py``: its format, and how a line is made durable and
read back) is the only state; where pictures sit and the free names they take are
``dataset_paths.py``; the results and the error are ``repair_actions.py``, all
importable from here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..scan import MAX_NAMED
from .dataset_paths import (
    Place,
    absolute,
    class_bases,
    class_names,
    class_place,
    free_name,
    inside,
    nearest_existing,
    plan_moves,
)
from .journal_file import FORMAT_VERSION, JOURNAL_FILE, JournalFile
from .repair_actions import Action, Move, Renamed, RepairError, renamed_by

__all__ = [
    "APP_FOLDER",
    "EXCLUDED_FOLDER",
    "FORMAT_VERSION",
    "JOURNAL_FILE",
    "Action",
    "Move",
    "Renamed",
    "RepairError",
    "RepairJournal",
]

APP_FOLDER = ".finetune-studio"
EXCLUDED_FOLDER = "excluded"


class RepairJournal:
    """Moves, exclusions and their undo for one dataset folder; see the module doc."""

    def __init__(self, dataset_root: str | Path) -> None:
        root = Path(dataset_root).expanduser()
        if not root.is_dir():
            what = "is not a folder" if root.exists() else "does not exist"
            raise RepairError(f"The dataset folder {root} {what}.")
        self.root = root.resolve()
        self.app_folder = self.root / APP_FOLDER
        self._file = JournalFile(self.root, self.app_folder)
        self.journal_path = self._file.path
        self.excluded_folder = self.app_folder / EXCLUDED_FOLDER

    # -- public API -------------------------------------------------------------------

    def relabel(self, paths: Sequence[str | Path], to_class: str) -> Action:
        """Move the pictures to the class folder ``to_class``, each in its own split."""
        classes = self.classes()
        if not classes:
            raise RepairError(f"{self.root} has no class folders to move pictures into.")
        if to_class not in classes:
            raise RepairError(
                f"There is no class {to_class!r} in {self.root}. "
                f"The classes are: {', '.join(classes)}."
            )
        places = self._locate_all(paths, "relabel")
        unchanged = tuple(p.path for p in places if p.class_name == to_class)
        moving = [p for p in places if p.class_name != to_class]
        if not moving:
            names = _named([str(path) for path in unchanged])
            raise RepairError(f"Already in class {to_class!r}, nothing to move: {names}.")
        plan = plan_moves(moving, lambda place: place.base / to_class)
        return self._act("relabel", plan, to_class, unchanged)

    def exclude(self, paths: Sequence[str | Path]) -> Action:
        """Move the pictures out of the dataset into ``excluded_folder``; undo brings
        them back."""
        places = self._locate_all(paths, "exclude")

        def folder(place: Place) -> Path:
            split = place.base.relative_to(self.root)
            return self.excluded_folder / split / place.class_name

        return self._act("exclude", plan_moves(places, folder), None, ())

    def undo(self) -> Action | None:
        """Put back the pictures of the latest action that can still be undone."""
        history = self._file.read()
        pending = history.undoable()
        if not pending:
            return None
        record = history.actions[pending[-1]]
        moves, renamed, missing = self._plan_undo(record, history.interrupted(record["id"]))
        self._check_writable(moves, "put back")
        ident = _new_id()
        time = _now()
        self._file.write_ahead(
            {
                "type": "undo",
                "id": ident,
                "of": record["id"],
                "time": time,
                "moves": self._file.relative_moves(moves),
                "missing": self._file.relative_moves(missing),
            }
        )
        self._move_all(ident, moves, "put back")
        return Action(
            ident, "undo", tuple(moves), time, undoes=record["id"], renamed=renamed, missing=missing
        )

    def undo_all(self) -> list[Action]:
        """Undo every action, newest first; stops at the first that fails (raised),
        those before it staying undone."""
        undone: list[Action] = []
        while (action := self.undo()) is not None:
            undone.append(action)
        return undone

    def actions(self) -> list[Action]:
        """The actions that can still be undone, oldest first."""
        history = self._file.read()
        return [self._file.action_of(history.actions[ident]) for ident in history.undoable()]

    def classes(self) -> list[str]:
        """The class names, as the dataset scan finds them (the training folder's with
        split folders)."""
        return class_names(self.root)

    # -- locating pictures ------------------------------------------------------------

    def _locate_all(self, paths: Sequence[str | Path], verb: str) -> list[Place]:
        if not paths:
            raise RepairError(f"No pictures to {verb}.")
        bases = class_bases(self.root)
        places = {place.path: place for place in (self._locate(p, bases, verb) for p in paths)}
        return list(places.values())

    def _locate(self, given: str | Path, bases: list[Path], verb: str) -> Place:
        path = absolute(given)
        if not inside(path, self.root):
            raise RepairError(
                f"{given} is not inside the dataset {self.root} (a relative path is taken "
                "from the current folder). Nothing was moved."
            )
        if inside(path, self.excluded_folder):
            raise RepairError(
                f"{given} is excluded: undo its exclusion to bring it back. Nothing was moved."
            )
        if not os.path.lexists(path) or os.path.isdir(path):
            what = "a folder, not a picture" if os.path.isdir(path) else "not found"
            raise RepairError(f"Cannot {verb} {given}: it is {what}. Nothing was moved.")
        place = class_place(path, bases)
        if place is not None:
            return place
        raise RepairError(f"{given} is not in a class folder of {self.root}. Nothing was moved.")

    # -- moving -----------------------------------------------------------------------

    def _act(
        self, kind: str, moves: list[Move], to_class: str | None, unchanged: tuple[Path, ...]
    ) -> Action:
        self._check_writable(moves, "move")
        ident = _new_id()
        time = _now()
        record = {"type": "action", "id": ident, "kind": kind, "to": to_class, "time": time}
        self._file.write_ahead({**record, "moves": self._file.relative_moves(moves)})
        self._move_all(ident, moves, "move")
        return Action(
            ident,
            kind,
            tuple(moves),
            time,
            to_class,
            renamed=renamed_by(moves),
            unchanged=unchanged,
        )

    def _check_writable(self, moves: Sequence[Move], verb: str) -> None:
        """Both folders of every move must let us remove and add names; checked before
        anything moves, so a read-only dataset is refused whole."""
        folders = {m.source.parent for m in moves} | {m.destination.parent for m in moves}
        for folder in sorted(folders):
            existing = nearest_existing(folder)
            if not os.access(existing, os.W_OK | os.X_OK):
                raise RepairError(
                    f"Cannot {verb} pictures in {existing}: the folder is read-only "
                    "(permission denied). Nothing was moved."
                )

    def _move_all(self, ident: str, moves: Sequence[Move], verb: str) -> None:
        """Make every move, or reverse those made and mark the step rolled back."""
        made: list[Move] = []
        for move in moves:
            try:
                _move(move.source, move.destination)
            except OSError as error:
                reason = error.strerror or str(error)
                left = self._reverse(made)
                if not left:
                    self._file.append({"type": "rolled_back", "id": ident}, sync=False)
                raise RepairError(
                    f"Could not {verb} {move.source} to {move.destination}: {reason}. "
                    + _rollback_note(len(made), left)
                ) from error
            made.append(move)
        self._file.append({"type": "done", "id": ident}, sync=False)

    def _reverse(self, made: Sequence[Move]) -> list[Move]:
        """Move back what was moved, newest first; returns those that could not be."""
        left: list[Move] = []
        for move in reversed(made):
            try:
                _move(move.destination, move.source)
            except OSError:
                left.append(move)
        return left

    def _plan_undo(
        self, record: dict[str, Any], interrupted: bool
    ) -> tuple[list[Move], tuple[Renamed, ...], tuple[Move, ...]]:
        """The moves that put the action's pictures back, newest first, those of them
        that find their place taken, and those that cannot be made since the picture
        is gone from where the action put it."""
        moves: list[Move] = []
        renamed: list[Renamed] = []
        missing: list[Move] = []
        taken: set[str] = set()
        for pair in reversed(record["moves"]):
            original, current = self.root / pair["from"], self.root / pair["to"]
            if os.path.lexists(current):
                back = free_name(original.parent, original.name, taken)
                moves.append(Move(current, back))
                if back != original:
                    renamed.append(Renamed(original, back))
            elif not (interrupted and os.path.lexists(original)):
                missing.append(Move(current, original))
        return moves, tuple(renamed), tuple(missing)


# -- helpers --------------------------------------------------------------------------


def _move(source: Path, destination: Path) -> None:
    """``os.replace`` refusing to overwrite: the destination was free when planned, and
    a name that appeared since (another program) fails the step instead."""
    if os.path.lexists(destination):
        raise FileExistsError(17, "another file took its name meanwhile", str(destination))
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, destination)


def _rollback_note(made: int, left: Sequence[Move]) -> str:
    """What the failed step left behind: nothing, or the pictures that are stuck (the
    step then reads as interrupted, and undo finishes putting things back)."""
    if not left:
        if not made:
            return "Nothing was moved."
        return f"The {made} already moved went back where they were: nothing changed."
    names = _named([str(m.destination) for m in left])
    return f"These could not go back now, and undo will return them: {names}."


def _named(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_NAMED])
    more = len(items) - MAX_NAMED
    return f"{shown} and {more} more" if more > 0 else shown


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
