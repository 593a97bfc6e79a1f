"""Benchmark: how long closing the window takes while a dataset folder is being checked.

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/bench_close_during_scan.py

Builds a folder of 1,600 pictures (4 classes of 400 PNGs, 1024x768), opens the real
window, starts checking the folder, waits 0.5 s, then times ``window.close()``: the
moment from the user's click to the window being gone, and then until the check's
thread has ended (when the process can exit). For context it also times one whole
check of the folder with the engine alone. A user notices a frozen window
from about 100 ms; issue 10 asks for about a second at most. Timings depend on the
machine and its load, which is why this is a script and not a test.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEventLoop, QSettings
from PySide6.QtWidgets import QApplication

from finetune_studio.engine.inspection import inspect_dataset
from finetune_studio.engine.sample_data import SAMPLE_CLASSES, draw_picture
from finetune_studio.ui.main_window import MainWindow
from finetune_studio.ui.workers.tasks import wait_for_background_threads

CLASSES = 4
SIZE = (1024, 768)


def make_folder(root: Path, pictures: int) -> Path:
    """``pictures`` PNG files, ``CLASSES`` classes; each class repeats one drawn picture,
    which checks exactly as slowly as distinct ones and is far quicker to build."""
    rng = np.random.default_rng(0)
    for kind in SAMPLE_CLASSES[:CLASSES]:
        buffer = io.BytesIO()
        draw_picture(kind, rng, SIZE[0]).crop((0, 0, *SIZE)).save(buffer, "PNG")
        folder = root / kind
        folder.mkdir(parents=True)
        for index in range(pictures // CLASSES):
            (folder / f"{kind}_{index:04d}.png").write_bytes(buffer.getvalue())
    return root


def process_events_for(seconds: float, until: Callable[[], bool] = lambda: False) -> None:
    loop = QEventLoop()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not until():
        loop.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, default=1600)
    parser.add_argument("--after", type=float, default=0.5, help="seconds before closing")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as temporary:
        folder = make_folder(Path(temporary) / "data", args.pictures)
        started = time.perf_counter()
        inspect_dataset(folder)
        whole_scan = time.perf_counter() - started

        settings = QSettings(str(Path(temporary) / "settings.ini"), QSettings.Format.IniFormat)
        window = MainWindow(settings)
        window.show()
        window.start_engine()
        process_events_for(120, until=lambda: window.engine is not None)
        if window.engine is None:
            raise SystemExit("the engine did not load")
        window.data_panel.load_folder(folder)
        process_events_for(args.after)
        if window.data_panel.report is not None:
            raise SystemExit("the scan ended before the window was closed: use more pictures")
        started = time.perf_counter()
        window.close()
        closing = time.perf_counter() - started
        wait_for_background_threads(60)  # what the app does once its window is gone
        stopped = time.perf_counter() - started
        process_events_for(0.2)
    del app
    print(f"one whole check of {args.pictures:,} pictures (engine alone): {whole_scan:.2f} s")
    print(f"closing the window {args.after} s into the check: {closing:.2f} s")
    print(f"the check's thread ended {stopped:.2f} s after the click")


if __name__ == "__main__":
    main()
