"""UI layer: moving a progress bar without painting the window on the spot.

``QProgressBar.setValue`` (and ``setRange`` when it resets the value) calls Qt's
``repaint()``, not ``update()``: the bar is painted before the call returns, and a
synchronous repaint paints every other region of the window waiting to be painted
along with it. While training, a progress update then carried the live curves'
repaint with it: 20-38 ms of the GUI thread in one event (``bench_responsiveness.py
--explain``), which the worker's share of the CPU and of Python's lock stretched past
100 ms. With updates switched off around the change, Qt's ``repaint()`` does nothing,
and switching them back on schedules an ordinary ``update()``, painted with the
window's next frame.
"""

from __future__ import annotations

from PySide6.QtWidgets import QProgressBar


def set_bar_value(bar: QProgressBar, value: int) -> None:
    if bar.value() == value:
        return
    bar.setUpdatesEnabled(False)
    try:
        bar.setValue(value)
    finally:
        bar.setUpdatesEnabled(True)  # schedules the bar's repaint


def set_bar_range(bar: QProgressBar, minimum: int, maximum: int) -> None:
    if (bar.minimum(), bar.maximum()) == (minimum, maximum):
        return
    bar.setUpdatesEnabled(False)
    try:
        bar.setRange(minimum, maximum)
    finally:
        bar.setUpdatesEnabled(True)
