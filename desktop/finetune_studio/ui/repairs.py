"""UI layer: the dataset's repair journal, driven from the window.

Moves and undos run as tasks, off the window's thread: each is an fsync and a rename
per picture, which on a network or USB drive can take a while for hundreds of them.
One at a time; the outcome arrives as ``finished`` with the journal's own ``Action``
records (what moved where), or the refusal's message, which the journal guarantees
left nothing half-moved.

One Undo puts back one repair made here, however many journal actions it took ("move
each to its suggested class" makes one per class), as long as those are still the
journal's latest; otherwise, and for actions made before a restart or with the CLI,
Undo puts back the journal's latest action.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from .workers.tasks import ProgressFn, Task, TaskRunner

if TYPE_CHECKING:
    from ..engine.review.journal import Action

Batch = tuple[list[str], "str | None"]  # pictures, and the class to move them to (None: exclude)


@dataclass(frozen=True)
class RepairOutcome:
    undo: bool  # an undo (else a repair)
    actions: tuple[Action, ...] = ()
    error: str = ""  # why it stopped (what was done before stays done, and is listed)
    nothing_to_undo: bool = False
    undoable: bool = False  # whether the journal holds anything to undo afterwards
    missing: int = field(default=0)  # pictures an undo could not find

    @property
    def moved(self) -> int:
        return sum(len(action.moves) for action in self.actions)


class _Repair:
    """A task's function: the batches, one journal action each, until one is refused."""

    def __init__(self, dataset: str, batches: Sequence[Batch]) -> None:
        self.dataset, self.batches = dataset, list(batches)

    def __call__(self, progress: ProgressFn, cancel: threading.Event) -> RepairOutcome:
        from ..engine.errors import UserFacingError
        from ..engine.review.journal import RepairJournal

        done: list[Action] = []
        try:
            journal = RepairJournal(self.dataset)
            for paths, class_name in self.batches:
                if class_name is None:
                    done.append(journal.exclude(paths))
                else:
                    done.append(journal.relabel(paths, class_name))
        except UserFacingError as error:
            return RepairOutcome(False, tuple(done), str(error), undoable=bool(done))
        return RepairOutcome(False, tuple(done), undoable=True)


class _Undo:
    """A task's function: put back ``expected`` (action ids, oldest first) when they
    are still the journal's latest, else its latest action alone."""

    def __init__(self, dataset: str, expected: Sequence[str]) -> None:
        self.dataset, self.expected = dataset, list(expected)

    def __call__(self, progress: ProgressFn, cancel: threading.Event) -> RepairOutcome:
        from ..engine.errors import UserFacingError
        from ..engine.review.journal import RepairJournal

        done: list[Action] = []
        try:
            journal = RepairJournal(self.dataset)
            latest = [action.id for action in journal.actions()]
            ours = bool(self.expected) and latest[-len(self.expected) :] == self.expected
            for _ in range(len(self.expected) if ours else 1):
                action = journal.undo()
                if action is None:
                    break
                done.append(action)
            undoable = bool(journal.actions())
        except UserFacingError as error:
            return RepairOutcome(True, tuple(done), str(error), undoable=True)
        missing = sum(len(action.missing) for action in done)
        return RepairOutcome(True, tuple(done), "", not done, undoable, missing)


class Repairs(QObject):
    finished = Signal(object)  # RepairOutcome
    busy_changed = Signal(bool)
    undo_available_changed = Signal(bool)

    def __init__(self, runner: TaskRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.dataset: str | None = None
        self.task: Task | None = None
        self.undo_available = False
        self._made_here: list[list[str]] = []  # action ids per repair made here, newest last

    @property
    def busy(self) -> bool:
        return self.task is not None

    def set_dataset(self, folder: str | None) -> None:
        """Work on ``folder``'s journal (None: none); reads whether it has anything to undo."""
        from ..engine.errors import UserFacingError
        from ..engine.review.journal import RepairJournal

        if folder != self.dataset:
            self._made_here.clear()
        self.dataset = folder
        available = False
        if folder is not None:
            try:
                available = bool(RepairJournal(folder).actions())
            except (UserFacingError, OSError):
                available = False
        self._set_undo_available(available)

    def repair(self, batches: Sequence[Batch]) -> bool:
        """Start moving; False when busy or there is nothing to move."""
        if self.busy or self.dataset is None or not any(paths for paths, _ in batches):
            return False
        self._start(_Repair(self.dataset, [b for b in batches if b[0]]), "repair")
        return True

    def undo(self) -> bool:
        if self.busy or self.dataset is None:
            return False
        expected = self._made_here[-1] if self._made_here else []
        self._start(_Undo(self.dataset, expected), "undo")
        return True

    def _start(self, job: _Repair | _Undo, name: str) -> None:
        self.task = task = self.runner.run_function(job, name)
        task.succeeded.connect(self._on_task_succeeded)
        task.failed.connect(self._on_task_failed)
        self.busy_changed.emit(True)

    @Slot(object)
    def _on_task_succeeded(self, outcome: RepairOutcome) -> None:
        self.task = None
        ids = [action.id for action in outcome.actions]
        if outcome.undo:
            undone = {action.undoes for action in outcome.actions}
            self._made_here = [r for r in self._made_here if not undone & set(r)]
        elif ids:
            self._made_here.append(ids)
        self._set_undo_available(outcome.undoable)
        self.busy_changed.emit(False)
        self.finished.emit(outcome)

    @Slot(str, str)
    def _on_task_failed(self, message: str, details: str) -> None:
        self.task = None
        self.busy_changed.emit(False)
        self.finished.emit(RepairOutcome(False, (), message, undoable=self.undo_available))

    def _set_undo_available(self, available: bool) -> None:
        if available != self.undo_available:
            self.undo_available = available
            self.undo_available_changed.emit(available)
