"""UI layer: an engine task that is a generator of events, as a ``TaskRunner`` job.

The engine's long tasks (the advisor, the suspects search) yield progress and log
events and return their outcome; this job hands each event to the window and returns
the outcome (None when the task was cancelled).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Generic, TypeVar

from .tasks import Report

Outcome = TypeVar("Outcome")


class EventsJob(Generic[Outcome]):
    def __init__(
        self, events: Callable[[], Generator[object, None, Outcome]], cancel: Callable[[], None]
    ) -> None:
        """``events`` starts the task (in the worker thread); ``cancel`` is thread-safe."""
        self.events, self._cancel = events, cancel

    def run(self, report: Report) -> Outcome:
        events = self.events()
        while True:
            try:
                report(next(events))
            except StopIteration as finished:
                outcome: Outcome = finished.value
                return outcome

    def cancel(self) -> None:
        self._cancel()

    def abort(self) -> None:
        self._cancel()
