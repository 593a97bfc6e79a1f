"""UI layer: run one engine call off the GUI thread and report back.

``TaskRunner`` lives in the GUI thread and owns one ``QThread`` per task. Results,
progress and errors come back through signals connected to the runner's own bound
slots, which then call the given callbacks in the GUI thread: lambdas connected to
a worker's signal would run in the worker thread instead (see DESIGN.md).
"""

from __future__ import annotations

import itertools
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

ProgressFn = Callable[[int, int], None]
TaskFn = Callable[[ProgressFn, threading.Event], Any]


class TaskWorker(QObject):
    progressed = Signal(int, int, int)  # task id, done, total
    succeeded = Signal(int, object)  # task id, result
    failed = Signal(int, str, str)  # task id, message for the user, traceback ("" if expected)

    def __init__(self, task_id: int, function: TaskFn, cancel: threading.Event) -> None:
        super().__init__()
        self.task_id = task_id
        self.function = function
        self.cancel = cancel

    @Slot()
    def run(self) -> None:
        from ...engine.errors import UserFacingError

        try:
            result = self.function(self._progress, self.cancel)
        except UserFacingError as error:
            self.failed.emit(self.task_id, str(error), "")
        except BaseException as error:  # the thread boundary: even SystemExit must be reported
            self.failed.emit(self.task_id, f"Unexpected error: {error!r}", traceback.format_exc())
        else:
            self.succeeded.emit(self.task_id, result)

    def _progress(self, done: int, total: int) -> None:
        self.progressed.emit(self.task_id, done, total)


@dataclass
class _Task:
    thread: QThread
    worker: TaskWorker
    cancel: threading.Event
    on_success: Callable[[Any], None] | None
    on_failure: Callable[[str, str], None] | None
    on_progress: Callable[[int, int], None] | None
    on_cancelled: Callable[[], None] | None = field(default=None)


class TaskRunner(QObject):
    """Starts background tasks and delivers their outcome in the GUI thread."""

    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tasks: dict[int, _Task] = {}
        self._ids = itertools.count(1)

    def start(
        self,
        function: TaskFn,
        on_success: Callable[[Any], None] | None = None,
        on_failure: Callable[[str, str], None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
    ) -> int:
        """Run ``function(progress, cancel)`` in a new thread. Exactly one of the callbacks
        ``on_success``, ``on_failure`` or (after ``cancel``) ``on_cancelled`` follows."""
        task_id = next(self._ids)
        cancel = threading.Event()
        thread = QThread()
        worker = TaskWorker(task_id, function, cancel)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.progressed.connect(self._on_worker_progressed)
        worker.succeeded.connect(self._on_worker_succeeded)
        worker.failed.connect(self._on_worker_failed)
        self._tasks[task_id] = _Task(
            thread, worker, cancel, on_success, on_failure, on_progress, on_cancelled
        )
        thread.start()
        if len(self._tasks) == 1:
            self.busy_changed.emit(True)
        return task_id

    def cancel(self, task_id: int) -> None:
        task = self._tasks.get(task_id)
        if task is not None:
            task.cancel.set()

    def is_running(self, task_id: int) -> bool:
        return task_id in self._tasks

    def shutdown(self) -> None:
        """Cancel everything and wait for the threads (window closing)."""
        for task_id in list(self._tasks):
            self.cancel(task_id)
        for task_id in list(self._tasks):
            self._finish(task_id)

    def _finish(self, task_id: int) -> _Task | None:
        task = self._tasks.pop(task_id, None)
        if task is None:
            return None
        task.thread.quit()
        task.thread.wait()
        task.worker.deleteLater()
        task.thread.deleteLater()
        if not self._tasks:
            self.busy_changed.emit(False)
        return task

    @Slot(int, int, int)
    def _on_worker_progressed(self, task_id: int, done: int, total: int) -> None:
        task = self._tasks.get(task_id)
        if task is not None and task.on_progress is not None:
            task.on_progress(done, total)

    @Slot(int, object)
    def _on_worker_succeeded(self, task_id: int, result: object) -> None:
        task = self._finish(task_id)
        if task is not None and not self._report_cancelled(task) and task.on_success:
            task.on_success(result)

    @Slot(int, str, str)
    def _on_worker_failed(self, task_id: int, message: str, details: str) -> None:
        task = self._finish(task_id)
        if task is not None and not self._report_cancelled(task) and task.on_failure:
            task.on_failure(message, details)

    @staticmethod
    def _report_cancelled(task: _Task) -> bool:
        if not task.cancel.is_set():
            return False
        if task.on_cancelled is not None:
            task.on_cancelled()
        return True
