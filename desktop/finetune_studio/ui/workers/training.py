"""UI layer: the training run in a worker thread, and the controller that owns it.

The worker iterates the engine's event stream. Batch events are coalesced and sent
at most ~20 times a second, each signal carrying a list, so nothing is lost and
the GUI thread is never flooded. Stop calls ``cancel()`` directly (the worker's
event loop is busy running the trainer, so a queued slot would never run).
"""

from __future__ import annotations

import os
import time
import traceback
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

BATCH_SIGNAL_INTERVAL_S = 0.05


def threads_leaving_one_core() -> int:
    """Measured on 2 cores with EfficientNet-Lite0: torch on both cores stalled the
    event loop up to ~105 ms; on one core at most ~73 ms, and training was no slower
    (the data-loader process needs the other core anyway)."""
    return max(1, (os.cpu_count() or 1) - 1)


class TrainingWorker(QObject):
    batches_arrived = Signal(list)  # list[BatchEnd]
    epoch_ended = Signal(object)  # EpochEnd
    stage_progressed = Signal(str, int, int)  # stage, done, total
    log_added = Signal(str, str)  # message, level
    run_finished = Signal(object)  # FitEnd
    run_failed = Signal(str, str)  # message, traceback ("" for a user-facing error)

    def __init__(self, recipe: Any, dataset: Any = None) -> None:
        super().__init__()
        from ...engine.training import Trainer

        self.trainer = Trainer(recipe, dataset, cpu_threads=threads_leaving_one_core())
        self.result: Any = None

    def cancel(self) -> None:
        """Thread-safe; the run ends after the batch in progress."""
        self.trainer.cancel()

    @Slot()
    def run(self) -> None:
        from ...engine.errors import UserFacingError
        from ...engine.events import BatchEnd, EpochEnd, FitEnd, Log, StageProgress

        pending: list[BatchEnd] = []
        last_flush = time.monotonic()

        def flush() -> None:
            nonlocal last_flush
            if pending:
                self.batches_arrived.emit(list(pending))
                pending.clear()
            last_flush = time.monotonic()

        try:
            for event in self.trainer.events():
                if isinstance(event, BatchEnd):
                    pending.append(event)
                    if time.monotonic() - last_flush >= BATCH_SIGNAL_INTERVAL_S:
                        flush()
                    continue
                flush()
                if isinstance(event, EpochEnd):
                    self.epoch_ended.emit(event)
                elif isinstance(event, StageProgress):
                    self.stage_progressed.emit(event.stage, event.done, event.total)
                elif isinstance(event, Log):
                    self.log_added.emit(event.message, event.level)
                elif isinstance(event, FitEnd):
                    self.result = self.trainer.result
                    self.run_finished.emit(event)
        except UserFacingError as error:
            flush()
            self.run_failed.emit(str(error), "")
        except BaseException as error:  # the thread boundary: shown with details
            flush()
            self.run_failed.emit(f"Training failed: {error}", traceback.format_exc())


class TrainingController(QObject):
    """Owns the training thread; lives in the GUI thread.

    A run's outcome is announced once its thread has really ended (``QThread.finished``),
    so the GUI thread never blocks on ``wait()`` while data-loader processes shut down;
    only closing the window waits, after cancelling.
    """

    batches_arrived = Signal(list)
    epoch_ended = Signal(object)
    stage_progressed = Signal(str, int, int)
    log_added = Signal(str, str)
    run_finished = Signal(object)  # FitEnd; the result is then in ``last_result``
    run_failed = Signal(str, str)
    running_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: QThread | None = None
        self._worker: TrainingWorker | None = None
        self._outcome: tuple[str, tuple[Any, ...]] | None = None
        self.last_result: Any = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, recipe: Any, dataset: Any = None) -> None:
        if self.running:
            raise RuntimeError("a training run is already going")
        self._outcome = None
        self._worker = TrainingWorker(recipe, dataset)
        self._thread = QThread()
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._thread.finished.connect(self._on_thread_finished)
        # Signal-to-signal relays and bound slots only: both run in the GUI thread.
        self._worker.batches_arrived.connect(self.batches_arrived)
        self._worker.epoch_ended.connect(self.epoch_ended)
        self._worker.stage_progressed.connect(self.stage_progressed)
        self._worker.log_added.connect(self.log_added)
        self._worker.run_finished.connect(self._on_worker_run_finished)
        self._worker.run_failed.connect(self._on_worker_run_failed)
        self._thread.start()
        self.running_changed.emit(True)

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    def shutdown(self) -> None:
        """Stop and wait for the thread (closing the window); safe when nothing runs."""
        self.stop()
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait()
            self._on_thread_finished()

    @Slot(object)
    def _on_worker_run_finished(self, event: object) -> None:
        self._outcome = ("finished", (event,))
        if self._thread is not None:
            self._thread.quit()  # the loop exits once the worker's run() returns

    @Slot(str, str)
    def _on_worker_run_failed(self, message: str, details: str) -> None:
        self._outcome = ("failed", (message, details))
        if self._thread is not None:
            self._thread.quit()

    @Slot()
    def _on_thread_finished(self) -> None:
        worker, thread = self._worker, self._thread
        if thread is None:
            return  # already cleaned up by shutdown()
        self._worker = self._thread = None
        thread.deleteLater()
        self.last_result = worker.result if worker is not None else None
        if worker is not None:
            worker.deleteLater()
        self.running_changed.emit(False)
        kind, args = self._outcome or ("failed", ("Training ended unexpectedly.", ""))
        if kind == "finished":
            self.run_finished.emit(*args)
        else:
            self.run_failed.emit(*args)
