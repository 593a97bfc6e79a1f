"""CLI layer: repairing a dataset by hand: relabel (or exclude) pictures, and undo.

Every move goes through the engine's repair journal (``engine/review/journal.py``),
so ``undo`` works across runs and the same actions can be undone in the window.
Moved pictures are printed one a line on stdout (``moved A -> B``, paths relative
to the current folder where they are below it, so they can be pasted back); the
summary and warnings go to stderr. A picture missing at undo is a warning, not a
failure: the others are put back and the command exits 0.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .common import EXIT_OK, Commands, Handler, print_json

if TYPE_CHECKING:
    from ..engine.review.journal import Action, Move


def add_commands(commands: Commands) -> dict[str, Handler]:
    relabel = commands.add_parser(
        "relabel",
        help="move pictures to another class folder, or exclude them (undo puts them back)",
    )
    relabel.add_argument("data", help="dataset folder")
    relabel.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="pictures (a relative path starts from the current folder)",
    )
    target = relabel.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="CLASS", help="the class folder to move them into")
    target.add_argument(
        "--exclude",
        action="store_true",
        help="move them out of the dataset, into its hidden .finetune-studio/excluded folder",
    )
    relabel.add_argument("--json", action="store_true", help="print the action as JSON")

    undo = commands.add_parser(
        "undo", help="put back the pictures of the latest relabel or exclusion"
    )
    undo.add_argument("data", help="dataset folder")
    undo.add_argument("--all", action="store_true", help="undo every action, newest first")
    undo.add_argument("--json", action="store_true", help="print the undone actions as JSON")
    return {"relabel": _cmd_relabel, "undo": _cmd_undo}


def _cmd_relabel(args: argparse.Namespace) -> int:
    from ..engine.review.journal import RepairJournal

    journal = RepairJournal(args.data)
    action = journal.exclude(args.paths) if args.exclude else journal.relabel(args.paths, args.to)
    if args.json:
        print_json(action.to_dict())
    else:
        _print_moves("moved", action.moves)
    print(_relabel_summary(action, Path(args.data)), file=sys.stderr)
    return EXIT_OK


def _relabel_summary(action: Action, data: Path) -> str:
    where = f"into class {action.to_class!r}" if action.to_class else "out of the dataset"
    notes = [f"{len(action.renamed)} renamed, their names were taken"] if action.renamed else []
    if action.unchanged:
        notes.append(f"{len(action.unchanged)} already in class {action.to_class!r}, left alone")
    extra = f" ({'; '.join(notes)})" if notes else ""
    return (
        f"Moved {_pictures(len(action.moves))} {where}{extra}. "
        f"To undo: finetune-studio-cli undo {shlex.quote(_shown(data))}"
    )


def _cmd_undo(args: argparse.Namespace) -> int:
    from ..engine.errors import UserFacingError
    from ..engine.review.journal import RepairJournal

    journal = RepairJournal(args.data)
    undone: list[Action] = []
    try:
        while (action := journal.undo()) is not None:
            undone.append(action)
            if not args.json:
                _report_undo(action)
            if not args.all:
                break
    except UserFacingError:
        if args.json:  # what was already undone stays undone: say so
            print_json([a.to_dict() for a in undone])
        raise
    if args.json:
        print_json([a.to_dict() for a in undone])
    if not undone:
        print(f"Nothing to undo in {_shown(Path(args.data))}.", file=sys.stderr)
    return EXIT_OK


def _report_undo(action: Action) -> None:
    _print_moves("put back", action.moves)
    for renamed in action.renamed:
        print(
            f"warning: {_shown(renamed.wanted)} was taken, "
            f"so the picture is back as {_shown(renamed.got)}",
            file=sys.stderr,
        )
    for move in action.missing:
        print(
            f"warning: {_shown(move.source)} is not there any more (moved or deleted by "
            f"something else), so it could not go back to {_shown(move.destination)}",
            file=sys.stderr,
        )
    print(f"Put back {_pictures(len(action.moves))}.", file=sys.stderr)


def _print_moves(verb: str, moves: Iterable[Move]) -> None:
    for move in moves:
        print(f"{verb} {_shown(move.source)} -> {_shown(move.destination)}")


def _shown(path: Path) -> str:
    """Relative to the current folder when below it, else absolute: pasteable as is."""
    absolute = path.absolute()
    try:
        return str(absolute.relative_to(Path.cwd().resolve()))
    except ValueError:
        pass
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def _pictures(count: int) -> str:
    return f"{count} picture" if count == 1 else f"{count} pictures"
