"""UI layer: a training run as a task, and the controller that turns its events into
the signals the Train and Results steps listen to.

The run is one more job for the shared worker model (``tasks.py``): the trainer's
events are reported one by one and reach the GUI thread in lists, at most ~20 a
second, so nothing is lost and the GUI thread is never flooded; the controller
splits each list into typed signals, batches again in lists.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from ...engine.events import BatchEnd, EpochEnd, FitEnd, Log, StageProgress
from .tasks import Report, Task, TaskRunner

if TYPE_CHECKING:  # these import torch: not before the window is shown
    from ...engine.inspection import DatasetReport
    from ...engine.recipe import Recipe
    from ...engine.training import Trainer, TrainingResult


def threads_leaving_one_core() -> int:
    """Measured on 2 cores with EfficientNet-Lite0: torch on both cores stalled the
    event loop up to ~105 ms; on one core at most ~73 ms, and training was no slower
    (the data-loader process needs the other core anyway)."""
    return max(1, (os.cpu_count() or 1) - 1)


class TrainingJob:
    """Drives ``Trainer.events()`` in the worker thread; returns the generator's
    return value, the ``TrainingResult``."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def run(self, report: Report) -> TrainingResult:
        events = self.trainer.events()
        while True:
            try:
                event = next(events)
            except StopIteration as finished:
                result: TrainingResult = finished.value
                return result
            report(event)

    def cancel(self) -> None:
        """Stop after the batch in progress and keep the best model so far."""
        self.trainer.cancel()

    def abort(self) -> None:
        """Also skip the evaluation that follows a stop (the window is closing)."""
        self.trainer.abort()


class TrainingController(QObject):
    """Starts and stops runs; lives in the GUI thread. A run's outcome is announced
    once its thread has ended, so the GUI thread never waits for it."""

    batches_arrived = Signal(list)  # list[BatchEnd]
    epoch_ended = Signal(object)  # EpochEnd
    stage_progressed = Signal(str, int, int)  # stage, done, total
    log_added = Signal(str, str)  # message, level
    run_finished = Signal(object)  # FitEnd; the result is then in ``last_result``
    run_failed = Signal(str, str)  # message, traceback ("" for a user-facing error)
    running_changed = Signal(bool)

    def __init__(self, runner: TaskRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.task: Task | None = None
        self.last_result: TrainingResult | None = None
        self.started_at = datetime.now().astimezone()  # of the run going or last run
        self._fit_end: FitEnd | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and self.task.running

    def start(self, recipe: Recipe, dataset: DatasetReport | None = None) -> None:
        from ...engine.training import Trainer

        if self.running:
            raise RuntimeError("a training run is already going")
        trainer = Trainer(recipe, dataset, cpu_threads=threads_leaving_one_core())
        self._fit_end = None
        self.started_at = datetime.now().astimezone()  # the run's name in its storage
        self.task = self.runner.start(TrainingJob(trainer), "training")
        self.task.progressed.connect(self._on_task_progressed)
        self.task.succeeded.connect(self._on_task_succeeded)
        self.task.failed.connect(self._on_task_failed)
        self.task.cancelled.connect(self._on_task_cancelled)
        self.task.ended.connect(self._on_task_ended)
        self.running_changed.emit(True)

    def stop(self) -> None:
        """Stop after the batch in progress (a direct call: the worker is busy)."""
        if self.task is not None:
            self.task.cancel()

    def stop_now(self) -> None:
        """Stop, and skip the evaluation that may follow a stop as well."""
        if self.task is not None:
            self.task.abort()

    @Slot(list)
    def _on_task_progressed(self, events: list[object]) -> None:
        batches: list[BatchEnd] = []
        for event in events:
            if isinstance(event, BatchEnd):
                batches.append(event)
                continue
            if batches:
                self.batches_arrived.emit(batches)
                batches = []
            if isinstance(event, EpochEnd):
                self.epoch_ended.emit(event)
            elif isinstance(event, StageProgress):
                self.stage_progressed.emit(event.stage, event.done, event.total)
            elif isinstance(event, Log):
                self.log_added.emit(event.message, event.level)
            elif isinstance(event, FitEnd):
                self._fit_end = event
        if batches:
            self.batches_arrived.emit(batches)

    @Slot(object)
    def _on_task_succeeded(self, result: TrainingResult) -> None:
        self.last_result = result
        self._announce("finished", (self._fit_end,))

    @Slot(str, str)
    def _on_task_failed(self, message: str, details: str) -> None:
        text = message if not details else f"Training failed: {message}"
        self._announce("failed", (text, details))

    @Slot()
    def _on_task_cancelled(self) -> None:
        self._announce("failed", ("Training stopped before it could finish.", ""))

    @Slot()
    def _on_task_ended(self) -> None:
        if self.task is not None and not self.task.running and self.task.discarded:
            self.task = None  # the window closed: nobody is told
            self.running_changed.emit(False)

    def _announce(self, kind: str, args: tuple[object, ...]) -> None:
        self.task = None
        self.running_changed.emit(False)
        if kind == "finished":
            self.run_finished.emit(*args)
        else:
            self.run_failed.emit(*args)
