"""Benchmark: how long the window's event loop stalls while a model trains.

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/bench_responsiveness.py

Opens the real window on a drawn sample dataset, then, side by side in one run,
counts how late a 10 ms timer fires (1) with the window idle and (2) while the
bundled EfficientNet-Lite0 is fine-tuned end to end (every layer trainable, so the
CPU is busy throughout). Prints the median, 99th percentile and worst delay of each
and their ratio: a user notices stalls above ~100 ms. Timings depend on the machine
and its load, which is why this is a script and not a test.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEventLoop, QSettings, QTimer
from PySide6.QtWidgets import QApplication

from finetune_studio.engine.sample_data import generate_sample_dataset
from finetune_studio.ui.main_window import MainWindow

TICK_MS = 10


class TickRecorder:
    """Records how much later than asked each tick of a 10 ms timer arrives."""

    def __init__(self) -> None:
        self.delays_ms: list[float] = []
        self._last = 0.0
        self._timer = QTimer()
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self.delays_ms.clear()
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.delays_ms.append(max(0.0, (now - self._last) * 1000 - TICK_MS))
        self._last = now


def wait_until(condition: Callable[[], bool], timeout_s: float) -> None:
    loop = QEventLoop()
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        loop.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
    if not condition():
        sys.exit("timed out")


def summary(delays: list[float]) -> tuple[float, float, float]:
    ordered = sorted(delays)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99, ordered[-1]


def main() -> None:
    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as folder:
        dataset = generate_sample_dataset(Path(folder) / "sample", per_class=12)
        settings = QSettings(str(Path(folder) / "settings.ini"), QSettings.Format.IniFormat)
        window = MainWindow(settings)
        window.confirm_stop_training = lambda: True  # type: ignore[method-assign]
        window.show()
        window.start_engine()
        wait_until(lambda: window.engine is not None, 120)
        window.data_panel.load_folder(str(dataset))
        wait_until(lambda: window.model_panel.ready and window.model_panel.num_classes == 6, 120)
        window.model_panel.set_preset("none")  # everything trains: the CPU stays busy
        window.train_panel.epochs.setValue(2)
        recorder = TickRecorder()

        recorder.start()
        wait_until(lambda: len(recorder.delays_ms) >= 300, 60)
        recorder.stop()
        idle = summary(recorder.delays_ms)

        finished: list[bool] = []
        window.training_finished.connect(finished.append)
        recorder.start()
        window.start_training()
        wait_until(lambda: bool(finished), 1800)
        recorder.stop()
        busy = summary(recorder.delays_ms)
        window.close()
    del app

    print(f"{'timer delay (ms)':<22}{'median':>8}{'p99':>8}{'worst':>8}")
    for name, (median, p99, worst) in (("idle window", idle), ("while training", busy)):
        print(f"{name:<22}{median:>8.1f}{p99:>8.1f}{worst:>8.1f}")
    print(f"worst delay, training / idle: {busy[2] / max(idle[2], 0.1):.1f}x")


if __name__ == "__main__":
    main()
