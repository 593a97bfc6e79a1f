"""UI layer: a progress bar that follows a task's progress events: a function task's
``Progress``, or an engine task's stages (``StageProgress``) and log lines."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QProgressBar

from ..workers.tasks import Progress
from .progress_value import set_bar_range, set_bar_value


def show_latest_progress(bar: QProgressBar, events: list[object]) -> None:
    """Show the newest of a batch of progress events: the earlier ones are already past."""
    latest = events[-1] if events else None
    if isinstance(latest, Progress):
        set_bar_range(bar, 0, max(latest.total, 1))
        set_bar_value(bar, latest.done)


def show_stages(bar: QProgressBar, status: QLabel, events: list[object]) -> None:
    """An engine task's stages in the bar ("Computing features: 40 of 90") and its
    latest log line in ``status``."""
    from ...engine.events import Log, StageProgress

    for event in events:
        if isinstance(event, StageProgress):
            set_bar_range(bar, 0, max(event.total, 1))
            set_bar_value(bar, event.done)
            bar.setFormat(f"{event.stage}: %v of %m")
        elif isinstance(event, Log):
            status.setText(event.message)


def show_starting(bar: QProgressBar) -> None:
    """A busy bar until the task reports its first stage."""
    bar.setRange(0, 0)
    bar.setFormat("Starting…")
