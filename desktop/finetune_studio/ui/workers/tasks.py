"""UI layer: the one way the window runs long work off the GUI thread.

Every long task (starting the engine, checking a folder, building a network and
downloading its weights, training, predicting, exporting) is a *job*: plain Python
that runs in a worker thread, reports progress events through a callback, and
returns a result. ``TaskRunner.start(job)`` runs it and returns a ``Task``, which
lives in the GUI thread and announces progress and the outcome as signals.

The rules, kept here so that callers need not know them:

- The worker emits nothing: its outcome is an attribute, read by the ``Task`` (in
  the GUI thread) when the thread's ``finished`` arrives at a bound ``@Slot``.
  (PySide6 queues a cross-thread call only for a receiver that is a QObject; a
  lambda or ``functools.partial`` connected there would run in the worker's thread.)
- ``cancel()`` is a direct, thread-safe call (a ``threading.Event`` or the job's own
  token): the worker thread is busy inside the job, so a queued slot would only run
  after the job has ended.
- Progress crosses as lists: the job appends its events to a queue and the task,
  in the GUI thread, takes what has arrived every ``PROGRESS_INTERVAL_S``. However
  many events a job reports (a batch each, a picture each), the window gets at most
  ~20 ``progressed`` signals a second, none is lost, and the last one arrives within
  50 ms even when the job then goes quiet for minutes. (Sending lists from the worker
  at most every 50 ms, the first design, held back the last event until the next.)
- Errors cross the boundary as data, a message and a formatted traceback ("" for a
  ``UserFacingError``, whose message says it all). This is the one catch-all.
- Nobody waits for a thread without a bound. ``TaskRunner.shutdown`` waits at most
  its timeout; a thread still running then finishes on its own, kept alive by this
  module until it does (destroying a running ``QThread`` aborts the process), and
  ``wait_for_background_threads`` gives it a last bounded wait when the app exits.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from PySide6.QtCore import (
    QDeadlineTimer,
    QObject,
    QThread,
    QTimer,
    Signal,
    Slot,
)

from ...engine.errors import UserFacingError
from .thread_priority import lower_current_thread_priority

PROGRESS_INTERVAL_S = 0.05
"""At most ~20 progress signals a second per task: more than a person can see, and
few enough that the GUI thread stays free."""

Report = Callable[[object], None]
"""``report(event)``: how a job hands an event to the window (thread-safe)."""
ProgressFn = Callable[[int, int], None]


class Job(Protocol):
    """What the worker runs. ``cancel`` and ``abort`` are called from the GUI thread
    while ``run`` is going, so they must be thread-safe."""

    def run(self, report: Report) -> object: ...

    def cancel(self) -> None: ...

    def abort(self) -> None: ...


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` units (pictures, bytes, ...) of a function job."""

    done: int
    total: int


class FunctionJob:
    """A job from ``function(progress, cancel)``: the shape of the engine's calls that
    take a progress callback and a ``threading.Event``."""

    def __init__(self, function: Callable[[ProgressFn, threading.Event], object]) -> None:
        self.function = function
        self.token = threading.Event()

    def run(self, report: Report) -> object:
        def progress(done: int, total: int) -> None:
            report(Progress(done, total))

        return self.function(progress, self.token)

    def cancel(self) -> None:
        self.token.set()

    def abort(self) -> None:
        self.token.set()


class TaskWorker(QObject):
    """Runs one job in its thread, keeps the outcome, and ends the thread's event loop.

    The outcome is a plain attribute, read by the ``Task`` once the thread has
    finished, and the worker stays in its finished thread until the ``Task`` lets it
    go. Signalling the outcome and moving back to the GUI thread, the first design,
    took Qt's locks while holding Python's: one test run hung for good when the GUI
    thread, destroying a plot, held the same (shared, hashed) Qt lock and waited for
    Python's to call a Python override. Ending the loop takes only the thread's own
    lock.
    """

    def __init__(self, job: Job, report: Report) -> None:
        super().__init__()
        self.job = job
        self.report = report
        self.outcome: tuple[str, tuple[object, ...]] | None = None

    @Slot()
    def run(self) -> None:
        lower_current_thread_priority()  # the window comes first
        try:
            result = self.job.run(self.report)
        except UserFacingError as error:
            self.outcome = ("failed", (str(error), ""))
        except BaseException as error:  # the thread boundary: even SystemExit is reported
            self.outcome = ("failed", (f"{type(error).__name__}: {error}", traceback.format_exc()))
        else:
            self.outcome = ("succeeded", (result,))
        finally:
            QThread.currentThread().quit()


_unfinished: set[Task] = set()
"""Tasks whose thread has not ended yet, kept alive here whoever else lets go."""


class Task(QObject):
    """One job in its own thread; lives in the GUI thread.

    Exactly one of ``succeeded``, ``failed`` or ``cancelled`` follows, once the thread
    has really ended, unless the task was discarded. ``cancelled`` means the job failed
    after a cancel was asked for (a cancelled download, a replaced folder check); a job
    that returns after a cancel (training keeps its best model) ``succeeded``.
    """

    progressed = Signal(list)
    succeeded = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()
    ended = Signal()  # after the outcome, discarded or not: the thread is gone

    def __init__(self, job: Job, name: str) -> None:
        super().__init__()
        self.job = job
        self.name = name
        self.cancel_requested = False
        self.discarded = False
        self._running = False
        self._events: deque[object] = deque()  # appended by the worker, taken here
        self._poll = QTimer(self)
        self._poll.setInterval(round(PROGRESS_INTERVAL_S * 1000))
        self._poll.timeout.connect(self._on_poll_timeout)
        self._thread = QThread()
        self._thread.setObjectName(name)
        self._worker = TaskWorker(job, self._events.append)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._thread.finished.connect(self._on_thread_finished)

    @property
    def running(self) -> bool:
        """True until the thread has ended and the outcome has been announced."""
        return self._running

    @property
    def thread_running(self) -> bool:
        """True while the job's thread still runs (the outcome may not be announced
        after it has ended: that waits for the event loop)."""
        return self._thread.isRunning()

    def start(self) -> None:
        _unfinished.add(self)
        self._running = True
        self._poll.start()
        self._thread.start()

    def cancel(self) -> None:
        """Ask the job to stop (thread-safe, returns at once)."""
        self.cancel_requested = True
        self.job.cancel()

    def abort(self) -> None:
        """Ask the job to stop as soon as it can, skipping any work after a stop."""
        self.cancel_requested = True
        self.job.abort()

    def discard(self) -> None:
        """Abort, and announce nothing more but ``ended``: nobody wants the outcome."""
        self.discarded = True
        self.abort()

    def wait(self, timeout_s: float) -> bool:
        """Wait for the thread at most ``timeout_s``; True when it has ended, and then
        the task has ended too (a discarded task's end need not wait for the event loop
        to deliver the thread's ``finished``)."""
        ended = self._thread.wait(QDeadlineTimer(max(0, int(timeout_s * 1000))))
        if ended and self.discarded:
            self._on_thread_finished()
        return ended

    @Slot()
    def _on_poll_timeout(self) -> None:
        events = []
        while self._events:  # deque.popleft is atomic: the worker may append meanwhile
            events.append(self._events.popleft())
        if events and not self.discarded:
            self.progressed.emit(events)

    @Slot()
    def _on_thread_finished(self) -> None:
        """The thread has ended, and with it the job: announce its outcome."""
        if not self._running:
            return
        self._poll.stop()
        self._on_poll_timeout()  # what the job reported last
        self._running = False
        _unfinished.discard(self)
        kind, args = self._worker.outcome or ("failed", ("The task ended unexpectedly.", ""))
        if not self.discarded:
            if kind == "succeeded":
                self.succeeded.emit(*args)
            elif self.cancel_requested:
                self.cancelled.emit()
            else:
                self.failed.emit(*args)
        self.ended.emit()


class TaskRunner(QObject):
    """Starts tasks for one window and stops them all, without blocking, when it closes."""

    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tasks: set[Task] = set()

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def start(self, job: Job, name: str = "task") -> Task:
        """Start ``job`` in a new thread. Connect to the returned task's signals right
        away: its outcome arrives through the event loop, never before this returns."""
        task = Task(job, name)
        task.ended.connect(self._on_task_ended)
        self._tasks.add(task)
        task.start()
        if len(self._tasks) == 1:
            self.busy_changed.emit(True)
        return task

    def run_function(
        self, function: Callable[[ProgressFn, threading.Event], object], name: str
    ) -> Task:
        return self.start(FunctionJob(function), name)

    def shutdown(self, timeout_s: float = 1.0) -> bool:
        """Abort every task and wait for their threads, all together at most
        ``timeout_s``; True when all have ended. The rest end on their own."""
        tasks = list(self._tasks)
        for task in tasks:
            task.discard()
        deadline = time.monotonic() + timeout_s
        ended = all([task.wait(deadline - time.monotonic()) for task in tasks])
        self._tasks.clear()
        return ended

    @Slot()
    def _on_task_ended(self) -> None:
        ended = {task for task in self._tasks if not task.running}
        if ended:
            self._tasks -= ended
            if not self._tasks:
                self.busy_changed.emit(False)


def background_threads_running() -> int:
    """Task threads not yet ended, in every window (for tests and the app's exit)."""
    return sum(1 for task in _unfinished if task.thread_running)


def wait_for_background_threads(timeout_s: float) -> bool:
    """The app's last wait, after its windows are gone: True when every task thread
    has ended within ``timeout_s`` (the process may then exit safely)."""
    deadline = time.monotonic() + timeout_s
    return all(task.wait(deadline - time.monotonic()) for task in list(_unfinished))
