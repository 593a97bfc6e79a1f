"""UI layer: every run of the window is kept in the run storage (``engine/runs.py``),
and a reopened project or dataset gets its last run back, or any kept run on request.

A run that ends (finished, stopped, or cut short with "Stop now") is kept with its
model; a run that fails is kept as its recipe, the epochs it finished and its error.

Both are tasks (``tasks.py``): writing a model folder and rebuilding a network take
seconds on a large backbone. A save does not stop on a cancel: closing the window
right after a run must not lose it, and the app waits for background work before it
exits (``wait_for_background_threads``).
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QStandardPaths, Signal, Slot

from .tasks import ProgressFn, Task, TaskRunner

if TYPE_CHECKING:  # these import torch: not before the window is shown
    from ...engine.events import EpochEnd
    from ...engine.recipe import Recipe
    from ...engine.runs import RunRecord
    from ...engine.training import TrainingResult


def app_runs_folder() -> Path:
    """Where runs made without a project are kept: ``runs`` in the app's data folder,
    without Qt's repeated "Finetune Studio" (as ``dataset_panel.sample_folder``)."""
    base = Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation))
    if base.name == base.parent.name:
        base = base.parent
    return base / "runs"


@dataclass(frozen=True)
class ShownRun:
    """The run the window shows: its result, when it started, how long it took (None:
    unknown) and the store it is kept in."""

    result: TrainingResult
    started: datetime
    seconds: float | None
    root: Path


class RunSave:
    """A task's function: keep the run shown in its store."""

    def __init__(self, run: ShownRun) -> None:
        self.run = run

    def __call__(self, progress: ProgressFn, cancel: threading.Event) -> RunRecord:
        from ...engine.runs import RunStore

        run = self.run
        return RunStore(run.root).save(run.result, run.started, run.seconds)


class FailedRunSave:
    """A task's function: keep a run that failed, as a record without a model."""

    def __init__(
        self, root: Path, recipe: Recipe, history: list[EpochEnd], started: datetime, failure: str
    ) -> None:
        self.root, self.recipe, self.history = root, recipe, history
        self.started, self.failure = started, failure

    def __call__(self, progress: ProgressFn, cancel: threading.Event) -> RunRecord:
        from ...engine.runs import RunStore

        store = RunStore(self.root)
        return store.save_failed(self.recipe, self.history, self.started, self.failure)


class RunLoad:
    """A task's function: one kept run, its model rebuilt."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record

    def __call__(
        self, progress: ProgressFn, cancel: threading.Event
    ) -> tuple[TrainingResult, RunRecord]:
        from ...engine.runs import RunStore

        return RunStore(self.record.folder.parent).load(self.record), self.record


class LastRunLoad:
    """A task's function: the newest run at ``root`` (on ``dataset`` only, if given),
    its model rebuilt; None when there is none."""

    def __init__(self, root: Path, dataset: str | None) -> None:
        self.root, self.dataset = root, dataset

    def __call__(
        self, progress: ProgressFn, cancel: threading.Event
    ) -> tuple[TrainingResult, RunRecord] | None:
        from ...engine.runs import RunStore

        store = RunStore(self.root)
        record = store.latest(self.dataset)
        if record is None or cancel.is_set():
            return None
        return store.load(record), record


class RunKeeper(QObject):
    """Knows where runs are kept (beside the project file, or the app's folder), which
    run the Results step shows, and whether it would be lost on quitting."""

    kept = Signal(object)  # RunRecord (a failed run's too)
    root_changed = Signal()  # the runs now belong to another store (a project opened)
    keep_failed = Signal(str, str)  # message, details
    restored = Signal(object, object)  # TrainingResult, RunRecord
    restore_failed = Signal(str, str)
    restore_ended = Signal()  # after restored, restore_failed, nothing found or a discard

    def __init__(self, runner: TaskRunner, app_root: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.app_root = app_root
        self.project: Path | None = None
        # The run the Results step shows: its result, start time and the store it is in.
        self.shown: ShownRun | None = None
        self.unkept: TrainingResult | None = None  # not in any store, not exported
        self.shown_folder: Path | None = None  # the shown run's folder, once kept
        self._saves: dict[Task, TrainingResult | None] = {}
        # The run going: its recipe, start time and the epochs it has finished, kept
        # if it fails (a finished run's result carries all of that).
        self._running: tuple[Recipe, datetime, list[EpochEnd]] | None = None
        self._restore: Task | None = None

    @property
    def root(self) -> Path:
        """``<project stem>.runs`` beside the project file, else the app's folder."""
        if self.project is None:
            return self.app_root
        from ...engine.runs import runs_folder_for

        return runs_folder_for(self.project)

    @property
    def saving(self) -> bool:
        return bool(self._saves)

    @property
    def restoring(self) -> bool:
        return self._restore is not None

    # --- keeping --------------------------------------------------------------------------
    def begin(self, recipe: Recipe, started: datetime) -> None:
        """A run has started with ``recipe``: the run shown before is no longer the
        window's, and this one is kept however it ends."""
        self.forget()
        self._running = (recipe, started, [])

    @Slot(object)
    def note_epoch(self, epoch: EpochEnd) -> None:
        if self._running is not None:
            self._running[2].append(epoch)

    def keep(self, result: TrainingResult, started: datetime) -> None:
        """A run has finished: keep it in the current store."""
        self._running = None
        self.unkept = None
        took = (datetime.now(timezone.utc) - started.astimezone(timezone.utc)).total_seconds()
        self.shown = ShownRun(result, started, max(took, 0.0), self.root)
        self._save(self.shown)

    def keep_failure(self, failure: str) -> None:
        """The run going has failed: keep its recipe, epochs and error."""
        if self._running is None:
            return
        recipe, started, history = self._running
        self._running = None
        job = FailedRunSave(self.root, recipe, history, started, failure)
        self._watch_save(self.runner.run_function(job, "keep failed run"), None)

    def set_project(self, project: Path) -> None:
        """The window's project is now ``project`` (saved as): its runs folder gets the
        run shown, so reopening the project brings it back."""
        moved = self.project != project
        self.project = project
        if self.shown is not None and self.shown.root != self.root:
            self.shown = dataclasses.replace(self.shown, root=self.root)
            self._save(self.shown)
        if moved:
            self.root_changed.emit()

    def forget(self) -> None:
        """A new run has begun: the run shown before is no longer the window's."""
        self.discard_restore()
        self.shown, self.unkept, self.shown_folder = None, None, None

    def mark_exported(self) -> None:
        self.unkept = None

    def forget_deleted(self, folders: list[Path]) -> None:
        """Runs were deleted: when the shown run was one of them, its model now lives
        only in the window (the question before quitting says so)."""
        if self.shown is not None and self.shown_folder in folders:
            self.unkept, self.shown_folder = self.shown.result, None

    def _save(self, run: ShownRun) -> None:
        self._watch_save(self.runner.run_function(RunSave(run), "keep run"), run.result)

    def _watch_save(self, task: Task, result: TrainingResult | None) -> None:
        self._saves[task] = result
        task.succeeded.connect(self._on_save_task_succeeded)
        task.failed.connect(self._on_save_task_failed)
        task.ended.connect(self._on_save_task_ended)

    def _task_result(self) -> TrainingResult | None:
        task = self.sender()
        return self._saves.get(task) if isinstance(task, Task) else None

    @Slot(object)
    def _on_save_task_succeeded(self, record: RunRecord) -> None:
        result = self._task_result()
        if self.unkept is not None and self.unkept is result:
            self.unkept = None
        if result is not None and self.shown is not None and self.shown.result is result:
            self.shown_folder = record.folder
        self.kept.emit(record)

    @Slot(str, str)
    def _on_save_task_failed(self, message: str, details: str) -> None:
        result = self._task_result()
        if result is not None and self.shown is not None and result is self.shown.result:
            self.unkept = result
        self.keep_failed.emit(message, details)

    @Slot()
    def _on_save_task_ended(self) -> None:
        task = self.sender()
        if isinstance(task, Task):
            self._saves.pop(task, None)

    # --- restoring ------------------------------------------------------------------------
    def open_project(self, project: Path) -> None:
        """A project was opened: bring back the last run kept beside it."""
        moved = self.project != project
        self.project = project
        self.restore()
        if moved:
            self.root_changed.emit()

    def restore(self, dataset: str | None = None) -> None:
        """Bring back the newest run of the current store (on ``dataset``, if given)."""
        self._start_restore(LastRunLoad(self.root, dataset))

    def open_run(self, record: RunRecord) -> None:
        """Bring back one kept run (any, not only the latest) for the Results step."""
        self._start_restore(RunLoad(record))

    def _start_restore(self, job: LastRunLoad | RunLoad) -> None:
        self.forget()
        task = self.runner.run_function(job, "reopen run")
        task.succeeded.connect(self._on_restore_task_succeeded)
        task.failed.connect(self._on_restore_task_failed)
        self._restore = task

    def discard_restore(self) -> None:
        if self._restore is not None:
            self._restore.discard()
            self._restore = None
            self.restore_ended.emit()

    @Slot(object)
    def _on_restore_task_succeeded(self, outcome: tuple[TrainingResult, RunRecord] | None) -> None:
        self._restore = None
        if outcome is not None:
            result, record = outcome
            self.shown = ShownRun(result, record.started, record.seconds, record.folder.parent)
            self.shown_folder = record.folder
            self.restored.emit(result, record)
        self.restore_ended.emit()

    @Slot(str, str)
    def _on_restore_task_failed(self, message: str, details: str) -> None:
        self._restore = None
        self.restore_failed.emit(message, details)
        self.restore_ended.emit()
