"""Fixtures for the window tests: isolated settings, a shown window, thread checks."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import open_window
from PySide6.QtCore import QSettings, QThread

_started: list[weakref.ref[QThread]] = []
_original_start = QThread.start


def _tracking_start(self: QThread, *args: object) -> None:
    _started.append(weakref.ref(self))
    _original_start(self, *args)


QThread.start = _tracking_start  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def no_thread_left_running() -> Iterator[None]:
    """Fail any test that leaves a QThread running (it would crash at exit)."""
    _started.clear()
    yield
    running = [t for ref in _started if (t := ref()) is not None and t.isRunning()]
    for thread in running:
        thread.quit()
        thread.wait(5000)
    assert not running, f"{len(running)} QThread(s) left running"


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def window(qtbot, settings: QSettings):
    from finetune_studio.ui.workers.tasks import background_threads_running

    win = open_window(qtbot, settings)
    yield win
    win.close()  # waits a bounded time: work still going ends on its own, soon after
    qtbot.waitUntil(lambda: background_threads_running() == 0, timeout=30_000)
