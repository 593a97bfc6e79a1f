"""Engine layer: what a repair did, as the journal reports it (``Action``, ``Move``,
``Renamed``), and the error it raises (``RepairError``).

These are the shared words of the repair journal (``journal.py``), its file
(``journal_file.py``) and the window and CLI that report on it; they stand apart so
that each of those can import them without importing the journal itself. Import them
from ``engine.review.journal``, which is the public face of the repairs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserFacingError


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


def renamed_by(moves: Iterable[Move]) -> tuple[Renamed, ...]:
    """The moves into a folder that could not keep the picture's name."""
    return tuple(
        Renamed(m.destination.parent / m.source.name, m.destination)
        for m in moves
        if m.destination.name != m.source.name
    )
