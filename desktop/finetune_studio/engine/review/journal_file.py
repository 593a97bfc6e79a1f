"""Engine layer: the repair journal's file, written ahead of every move and read back
for undo, in this session or after a restart (the file is the repairs' only state).

Kept apart from the moves (``journal.py``) since what makes the record durable and
safe to read back is its own concern: JSON lines, fsync of the line and of a new
file's name, lines torn by a crash, and paths in a hand-edited line that could lead
out of the dataset.

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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from .repair_actions import Action, Move, RepairError, renamed_by

JOURNAL_FILE = "journal.jsonl"
FORMAT_VERSION = 1


@dataclass
class JournalHistory:
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


class JournalFile:
    """The journal of one dataset, ``app_folder/journal.jsonl``; the paths in its lines
    are relative to ``root``."""

    def __init__(self, root: Path, app_folder: Path) -> None:
        self.root = root
        self.app_folder = app_folder
        self.path = app_folder / JOURNAL_FILE

    def write_ahead(self, record: dict[str, Any]) -> None:
        """Append and sync an ``action`` or ``undo`` line before its first move."""
        try:
            self.append(record, sync=True)
        except OSError as error:
            raise RepairError(
                f"Cannot write the repair journal {self.path}: "
                f"{error.strerror or error}. Nothing was moved."
            ) from error

    def append(self, record: dict[str, Any], sync: bool) -> None:
        """One line, after a newline if a crash left the last line torn. ``done`` and
        ``rolled_back`` lines are not synced and their failure is ignored: without
        them an action reads as interrupted, which its undo handles."""
        # ASCII escapes: a file name that is not valid UTF-8 (kept by Python as lone
        # surrogates) is written as \udcXX and reads back as the same name.
        line = json.dumps({"v": FORMAT_VERSION, **record}) + "\n"
        try:
            self.app_folder.mkdir(exist_ok=True)
            new = not self.path.exists()
            with open(self.path, "a+b") as file:
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

    def read(self) -> JournalHistory:
        """Every line that parses, in order; no file yet is an empty history."""
        history = JournalHistory()
        try:
            with open(self.path, encoding="utf-8", errors="replace") as file:
                lines = file.readlines()
        except FileNotFoundError:
            return history
        except OSError as error:
            raise RepairError(
                f"Cannot read the repair journal {self.path}: {error.strerror}."
            ) from error
        for line in lines:
            record = _parse(line)
            if record is not None:
                history.add(record)
        return history

    def relative_moves(self, moves: Iterable[Move]) -> list[dict[str, str]]:
        """The moves as a line holds them: paths relative to the root, POSIX style."""
        return [
            {
                "from": m.source.relative_to(self.root).as_posix(),
                "to": m.destination.relative_to(self.root).as_posix(),
            }
            for m in moves
        ]

    def action_of(self, record: dict[str, Any]) -> Action:
        """An ``action`` line read back as the ``Action`` it recorded."""
        moves = tuple(
            Move(self.root / pair["from"], self.root / pair["to"]) for pair in record["moves"]
        )
        return Action(
            record["id"],
            record["kind"],
            moves,
            record["time"],
            record["to"],
            renamed=renamed_by(moves),
        )


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


def _sync_folder(folder: Path) -> None:
    """Make a new file's name durable (POSIX; Windows cannot open a folder)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
