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

Journal format: ``<root>/.finetune-studio/journal.jsonl``, one JSON object a line,
paths relative to the dataset root (so the dataset folder can be moved)::

    {"v": 1, "type": "action", "id": ID, "kind": "relabel" | "exclude",
     "to": CLASS | null, "time": ISO8601, "moves": [{"from": REL, "to": REL}, ...]}
    {"v": 1, "type": "undo", "id": ID, "of": ACTION_ID, "time": ISO8601,
     "moves": [{"from": REL, "to": REL}, ...], "missing": [{"from": REL, "to": REL}, ...]}
    {"v": 1, "type": "done", "id": ID}          # every move of that action or undo made
    {"v": 1, "type": "rolled_back", "id": ID}   # it failed and every move was reversed

An ``action`` or ``undo`` line is appended and synced before its first move. One
with neither ``done`` nor ``rolled_back`` was interrupted (a crash); undoing it puts
back what moved and quietly passes over pictures that never left their place. A line
that does not parse (torn by a crash while being written) is skipped.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from ..errors import UserFacingError
from ..scan import MAX_NAMED, TRAIN_FOLDER_NAMES, VAL_FOLDER_NAMES

APP_FOLDER = ".finetune-studio"
JOURNAL_FILE = "journal.jsonl"
EXCLUDED_FOLDER = "excluded"
FORMAT_VERSION = 1


class RepairError(UserFacingError):
    """A move or an undo cannot be done; nothing was left half-done."""


@dataclass(frozen=True)
class Move:
    """One picture moved; absolute paths."""

    source: Path
    destination: Path


@dataclass(frozen=True)
class Renamed:
    """A picture that could not take the place it was meant for, since a file had that
    name: it went to ``got`` instead."""

    wanted: Path
    got: Path


@dataclass(frozen=True)
class Action:
    """What one call did, for the window's status line and the CLI's report.

    ``kind`` is ``"relabel"``, ``"exclude"`` or ``"undo"``; an undo's ``undoes`` is the
    id of the action it put back and its ``missing`` the moves it could not make (the
    picture was not where the action had put it)."""

    id: str
    kind: str
    moves: tuple[Move, ...]
    time: str
    to_class: str | None = None
    undoes: str | None = None
    renamed: tuple[Renamed, ...] = ()
    unchanged: tuple[Path, ...] = ()
    missing: tuple[Move, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        def pairs(moves: Iterable[Move]) -> list[dict[str, str]]:
            return [{"from": str(m.source), "to": str(m.destination)} for m in moves]

        return {
            "id": self.id,
            "kind": self.kind,
            "time": self.time,
            "to_class": self.to_class,
            "undoes": self.undoes,
            "moves": pairs(self.moves),
            "renamed": [{"wanted": str(r.wanted), "got": str(r.got)} for r in self.renamed],
            "unchanged": [str(path) for path in self.unchanged],
            "missing": pairs(self.missing),
        }


@dataclass(frozen=True)
class _Place:
    """Where a picture of the dataset sits: ``base`` is the root or its split folder."""

    path: Path
    base: Path
    class_name: str


@dataclass
class _History:
    """The journal read back: actions in order and what became of each."""

    actions: dict[str, dict[str, Any]] = field(default_factory=dict)
    undo_of: dict[str, str] = field(default_factory=dict)  # undo id -> action id
    done: set[str] = field(default_factory=set)
    rolled_back: set[str] = field(default_factory=set)

    def add(self, record: dict[str, Any]) -> None:
        kind, ident = record["type"], record["id"]
        if kind == "action":
            self.actions[ident] = record
        elif kind == "undo":
            self.undo_of[ident] = record["of"]
        elif kind == "done":
            self.done.add(ident)
        elif kind == "rolled_back":
            self.rolled_back.add(ident)

    def undoable(self) -> list[str]:
        """Action ids not rolled back and not undone yet, oldest first."""
        undone = {of for u, of in self.undo_of.items() if u in self.done}
        return [a for a in self.actions if a not in self.rolled_back and a not in undone]

    def interrupted(self, action_id: str) -> bool:
        """Whether the action, or an earlier undo of it, stopped partway (a crash):
        some of its pictures may never have moved, or already be back."""
        if action_id not in self.done and action_id not in self.rolled_back:
            return True
        return any(
            of == action_id and u not in self.done and u not in self.rolled_back
            for u, of in self.undo_of.items()
        )


class RepairJournal:
    """Moves, exclusions and their undo for one dataset folder; see the module doc."""

    def __init__(self, dataset_root: str | Path) -> None:
        root = Path(dataset_root).expanduser()
        if not root.is_dir():
            raise RepairError(f"The dataset folder {root} does not exist.")
        self.root = root.resolve()
        self.app_folder = self.root / APP_FOLDER
        self.journal_path = self.app_folder / JOURNAL_FILE
        self.excluded_folder = self.app_folder / EXCLUDED_FOLDER

    # -- public API -------------------------------------------------------------------

    def relabel(self, paths: Sequence[str | Path], to_class: str) -> Action:
        """Move the pictures to the class folder ``to_class``, each in its own split."""
        classes = self.classes()
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
        plan = _plan(moving, lambda place: place.base / to_class)
        return self._act("relabel", plan, to_class, unchanged)

    def exclude(self, paths: Sequence[str | Path]) -> Action:
        """Move the pictures out of the dataset into ``excluded_folder``; undo brings
        them back."""
        places = self._locate_all(paths, "exclude")

        def folder(place: _Place) -> Path:
            split = place.base.relative_to(self.root)
            return self.excluded_folder / split / place.class_name

        return self._act("exclude", _plan(places, folder), None, ())

    def undo(self) -> Action | None:
        """Put back the pictures of the latest action that can still be undone."""
        history = self._read()
        pending = history.undoable()
        if not pending:
            return None
        record = history.actions[pending[-1]]
        moves, renamed, missing = self._plan_undo(record, history.interrupted(record["id"]))
        self._check_writable(moves, "put back")
        ident = _new_id()
        time = _now()
        self._write_ahead(
            {
                "type": "undo",
                "id": ident,
                "of": record["id"],
                "time": time,
                "moves": self._relative_moves(moves),
                "missing": self._relative_moves(missing),
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
        history = self._read()
        return [self._action_of(history.actions[ident]) for ident in history.undoable()]

    def classes(self) -> list[str]:
        """The class names, as the dataset scan finds them (the training folder's with
        split folders)."""
        return [folder.name for folder in _subfolders(self._bases()[0])]

    # -- locating pictures ------------------------------------------------------------

    def _bases(self) -> list[Path]:
        """The folders whose subfolders are classes: the train and val folders when
        both exist, as ``engine/scan.py`` decides (its ``_find_child``), else the root."""
        train = _find_child(self.root, TRAIN_FOLDER_NAMES)
        val = _find_child(self.root, VAL_FOLDER_NAMES)
        return [train, val] if train is not None and val is not None else [self.root]

    def _locate_all(self, paths: Sequence[str | Path], verb: str) -> list[_Place]:
        if not paths:
            raise RepairError(f"No pictures to {verb}.")
        bases = self._bases()
        places = {place.path: place for place in (self._locate(p, bases, verb) for p in paths)}
        return list(places.values())

    def _locate(self, given: str | Path, bases: list[Path], verb: str) -> _Place:
        path = _absolute(given)
        if not _inside(path, self.root):
            raise RepairError(
                f"{given} is not inside the dataset {self.root} (a relative path is taken "
                "from the current folder). Nothing was moved."
            )
        if _inside(path, self.excluded_folder):
            raise RepairError(
                f"{given} is excluded: undo its exclusion to bring it back. Nothing was moved."
            )
        if not os.path.lexists(path) or os.path.isdir(path):
            what = "a folder, not a picture" if os.path.isdir(path) else "not found"
            raise RepairError(f"Cannot {verb} {given}: it is {what}. Nothing was moved.")
        for base in bases:
            parts = path.relative_to(base).parts if _inside(path, base) else ()
            if len(parts) >= 2 and not _is_hidden(parts[0]):
                return _Place(path, base, parts[0])
        raise RepairError(f"{given} is not in a class folder of {self.root}. Nothing was moved.")

    # -- moving -----------------------------------------------------------------------

    def _act(
        self, kind: str, moves: list[Move], to_class: str | None, unchanged: tuple[Path, ...]
    ) -> Action:
        self._check_writable(moves, "move")
        ident = _new_id()
        time = _now()
        record = {"type": "action", "id": ident, "kind": kind, "to": to_class, "time": time}
        self._write_ahead({**record, "moves": self._relative_moves(moves)})
        self._move_all(ident, moves, "move")
        return Action(
            ident, kind, tuple(moves), time, to_class, renamed=_renamed(moves), unchanged=unchanged
        )

    def _check_writable(self, moves: Sequence[Move], verb: str) -> None:
        """Both folders of every move must let us remove and add names; checked before
        anything moves, so a read-only dataset is refused whole."""
        folders = {m.source.parent for m in moves} | {m.destination.parent for m in moves}
        for folder in sorted(folders):
            existing = _nearest_existing(folder)
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
                    self._append({"type": "rolled_back", "id": ident}, sync=False)
                raise RepairError(
                    f"Could not {verb} {move.source} to {move.destination}: {reason}. "
                    + _rollback_note(len(made), left)
                ) from error
            made.append(move)
        self._append({"type": "done", "id": ident}, sync=False)

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
                back = _free_name(original.parent, original.name, taken)
                moves.append(Move(current, back))
                if back != original:
                    renamed.append(Renamed(original, back))
            elif not (interrupted and os.path.lexists(original)):
                missing.append(Move(current, original))
        return moves, tuple(renamed), tuple(missing)

    # -- the journal file -------------------------------------------------------------

    def _write_ahead(self, record: dict[str, Any]) -> None:
        try:
            self._append(record, sync=True)
        except OSError as error:
            raise RepairError(
                f"Cannot write the repair journal {self.journal_path}: "
                f"{error.strerror or error}. Nothing was moved."
            ) from error

    def _append(self, record: dict[str, Any], sync: bool) -> None:
        """One line, after a newline if a crash left the last line torn. ``done`` and
        ``rolled_back`` lines are not synced and their failure is ignored: without
        them an action reads as interrupted, which its undo handles."""
        line = json.dumps({"v": FORMAT_VERSION, **record}, ensure_ascii=False) + "\n"
        try:
            self.app_folder.mkdir(exist_ok=True)
            new = not self.journal_path.exists()
            with open(self.journal_path, "a+b") as file:
                if file.tell() > 0:
                    file.seek(-1, os.SEEK_END)
                    if file.read(1) != b"\n":
                        line = "\n" + line
                file.write(line.encode("utf-8"))
                if sync:
                    file.flush()
                    os.fsync(file.fileno())
            if sync and new:
                _sync_folder(self.app_folder)
        except OSError:
            if sync:
                raise

    def _read(self) -> _History:
        history = _History()
        try:
            with open(self.journal_path, encoding="utf-8", errors="replace") as file:
                lines = file.readlines()
        except FileNotFoundError:
            return history
        except OSError as error:
            raise RepairError(
                f"Cannot read the repair journal {self.journal_path}: {error.strerror}."
            ) from error
        for line in lines:
            record = _parse(line)
            if record is not None:
                history.add(record)
        return history

    def _relative_moves(self, moves: Iterable[Move]) -> list[dict[str, str]]:
        return [
            {
                "from": m.source.relative_to(self.root).as_posix(),
                "to": m.destination.relative_to(self.root).as_posix(),
            }
            for m in moves
        ]

    def _action_of(self, record: dict[str, Any]) -> Action:
        moves = tuple(
            Move(self.root / pair["from"], self.root / pair["to"]) for pair in record["moves"]
        )
        return Action(
            record["id"],
            record["kind"],
            moves,
            record["time"],
            record["to"],
            renamed=_renamed(moves),
        )


# -- helpers --------------------------------------------------------------------------


def _plan(places: Sequence[_Place], folder_of: Callable[[_Place], Path]) -> list[Move]:
    """Each picture into its new folder under its own name, or a free one."""
    taken: set[str] = set()
    return [Move(p.path, _free_name(folder_of(p), p.path.name, taken)) for p in places]


def _renamed(moves: Iterable[Move]) -> tuple[Renamed, ...]:
    """The moves into a folder that could not keep the picture's name."""
    return tuple(
        Renamed(m.destination.parent / m.source.name, m.destination)
        for m in moves
        if m.destination.name != m.source.name
    )


def _free_name(folder: Path, name: str, taken: set[str]) -> Path:
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


def _parse(line: str) -> dict[str, Any] | None:
    """One journal line, or None for a torn, foreign or unsafe one (a path leading out
    of the dataset is never followed)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        return None
    kind = record.get("type")
    if kind in ("done", "rolled_back"):
        return record
    if kind == "undo" and isinstance(record.get("of"), str):
        return record
    if kind != "action" or record.get("kind") not in ("relabel", "exclude"):
        return None
    to_class = record.setdefault("to", None)
    if to_class is not None and not isinstance(to_class, str):
        return None
    moves = record.get("moves")
    if not isinstance(moves, list) or not all(_safe_pair(pair) for pair in moves):
        return None
    record.setdefault("time", "")
    return record


def _safe_pair(pair: object) -> bool:
    """Both paths relative and below the dataset root, read as POSIX and as Windows
    paths alike, so a hand-edited line cannot reach outside on either system."""
    if not isinstance(pair, dict):
        return False
    for key in ("from", "to"):
        value = pair.get(key)
        if not isinstance(value, str) or not value:
            return False
        for path in (PurePosixPath(value), PureWindowsPath(value)):
            if path.is_absolute() or path.anchor or ".." in path.parts:
                return False
    return True


def _find_child(root: Path, names: tuple[str, ...]) -> Path | None:
    for child in _subfolders(root):
        if child.name.lower() in names:
            return child
    return None


def _subfolders(folder: Path) -> list[Path]:
    return sorted(e for e in folder.iterdir() if e.is_dir() and not _is_hidden(e.name))


def _is_hidden(name: str) -> bool:
    """As the scan decides: such entries are not part of the dataset."""
    return name.startswith(".") or name.startswith("__")


def _absolute(given: str | Path) -> Path:
    """An absolute path whose folders are resolved but whose last part is not: a
    picture that is a link is moved as a link."""
    path = Path(given).expanduser().absolute()
    if path.name in ("", ".", ".."):
        return path.resolve()
    return path.parent.resolve() / path.name


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _sync_folder(folder: Path) -> None:
    """Make a new file's name durable (POSIX; Windows cannot open a folder)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _named(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_NAMED])
    more = len(items) - MAX_NAMED
    return f"{shown} and {more} more" if more > 0 else shown


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
