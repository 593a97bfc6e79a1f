"""UI layer: a progress bar that follows a function task's ``Progress`` events."""

from __future__ import annotations

from PySide6.QtWidgets import QProgressBar

from ..workers.tasks import Progress


def show_latest_progress(bar: QProgressBar, events: list[object]) -> None:
    """Show the newest of a batch of progress events: the earlier ones are already past."""
    latest = events[-1] if events else None
    if isinstance(latest, Progress):
        bar.setRange(0, max(latest.total, 1))
        bar.setValue(latest.done)
