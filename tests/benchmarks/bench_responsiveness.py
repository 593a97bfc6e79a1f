"""Benchmark: how long the window's event loop stalls while it works.

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/bench_responsiveness.py
    ... --scenario training                     # only the training run
    ... --scenario review                       # only finding suspects, then comparing
    ... --scenario open --pictures 50000        # only opening a 50,000-picture folder
    ... --scenario open --skipped 10000         # ... with 10,000 unreadable files in it
    ... --explain                               # also name the slowest events

Opens the real window and counts how late a 10 ms timer fires, side by side in one
run: (1) with the window idle; (2) while the bundled EfficientNet-Lite0 is fine-tuned
end to end on a drawn sample dataset (every layer trainable, so the CPU is busy
throughout), from Start to the results shown; (3) while the window opens a folder of
``--pictures`` small pictures (drawn once into the temporary folder and kept there
for the next run), from the folder chosen to its classes and skipped files listed,
scrolled through, and one more second for the class thumbnails; (4) while the
suspected wrong labels are found (Results step) and then the backbones at hand are
compared (Model step), each from its button to its results shown.

Prints the median, 99th percentile and worst delay of each: a user notices stalls
above ~100 ms. ``--explain`` times every event the window handles (Qt's ``notify``)
and prints the slowest, with the GUI thread's own CPU time in each: a stall far
longer than its CPU time was spent waiting for the CPU or for Python's GIL (timing
each event in Python adds to the GUI thread's work and its waits, and a wait for the
GIL before an event's Python begins is not seen: a late tick with no slow event). It
also prints when the latest ticks came, to match them with those events. Timings
depend on the machine and its load (printed), which is why this is a script and not
a test. On a machine shared with other work, run it under ``nice -n -10`` (as root)
so that the others' load does not decide the figures; ``--switch-interval-ms``
compares Python's thread switch intervals.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEvent, QEventLoop, QObject, QSettings, QTimer
from PySide6.QtWidgets import QApplication, QPushButton, QWidget

from finetune_studio.engine.sample_data import generate_sample_dataset
from finetune_studio.ui.main_window import MainWindow
from finetune_studio.ui.widgets.compare_view import CompareView
from finetune_studio.ui.widgets.suspects_panel import SuspectsPanel

TICK_MS = 10
CHECK_MS = 20  # how often a wait looks at its condition
STALL_TARGETS_MS = {
    "while training": 50.0,
    "review and compare": 50.0,
    "opening the folder": 100.0,
}
PICTURE_SIDE = 40
SCENARIOS = ("training", "review", "open")


class TickRecorder:
    """Records how much later than asked each tick of a 10 ms timer arrives."""

    def __init__(self) -> None:
        self.delays_ms: list[float] = []
        self.arrivals: list[float] = []  # seconds since start, of each tick
        self._started = self._last = 0.0
        self._timer = QTimer()
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self.delays_ms.clear()
        self.arrivals.clear()
        self._started = self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> list[float]:
        self._timer.stop()
        return list(self.delays_ms)

    def pause(self) -> None:
        """Stops counting until ``resume`` (the gap is not a delay)."""
        self._timer.stop()

    def resume(self) -> None:
        self._last = time.perf_counter()
        self._timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.delays_ms.append(max(0.0, (now - self._last) * 1000 - TICK_MS))
        self.arrivals.append(now - self._started)
        self._last = now

    def worst(self, count: int) -> list[tuple[float, float]]:
        """The ``count`` longest delays (ms) and when each tick arrived (s)."""
        return sorted(zip(self.delays_ms, self.arrivals, strict=True), reverse=True)[:count]


class TimedApplication(QApplication):
    """Times every event it delivers, outermost first (``--explain``)."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__(argv)
        self.slow: list[tuple[float, float, str]] = []  # wall ms, GUI CPU ms, what
        self._recording_since = 0.0
        self.recording = False
        self._depth = 0
        self._collecting = 0.0
        gc.callbacks.append(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        """Python's cycle collector holds the GIL throughout: every thread waits."""
        if phase == "start":
            self._collecting = time.perf_counter()
            return
        wall_ms = (time.perf_counter() - self._collecting) * 1000
        if self.recording and wall_ms > TICK_MS:
            thread = threading.current_thread().name
            when = self._collecting - self._recording_since
            what = f"{when:6.2f} s garbage collection, generation {info['generation']}, in {thread}"
            self.slow.append((wall_ms, float("nan"), what))

    def notify(self, receiver: QObject, event: QEvent) -> bool:
        self._depth += 1
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return bool(super().notify(receiver, event))
        finally:
            self._depth -= 1
            wall_ms = (time.perf_counter() - wall) * 1000
            if self.recording and wall_ms > 2 * TICK_MS:
                cpu_ms = (time.thread_time() - cpu) * 1000
                when = wall - self._recording_since
                what = (
                    f"{when:6.2f} s {'  ' * self._depth}{_describe(receiver)} {event.type().name}"
                )
                self.slow.append((wall_ms, cpu_ms, what))

    def record(self) -> None:
        self._recording_since = time.perf_counter()
        self.recording = True

    def report(self, title: str, count: int = 16) -> None:
        self.recording = False
        print(f"\nslowest events {title} (wall ms, GUI thread CPU ms, when):")
        for wall_ms, cpu_ms, what in sorted(self.slow, reverse=True)[:count]:
            print(f"{wall_ms:8.1f}{cpu_ms:8.1f}  {what}")
        self.slow.clear()


def _describe(item: QObject) -> str:
    """A receiver and its first parents: ``QWidget<TrainingPlots<QSplitter``."""
    names = []
    current: QObject | None = item
    while current is not None and len(names) < 3:
        names.append(type(current).__name__)
        current = current.parent()
    return "<".join(names)


def wait_until(condition: Callable[[], bool], timeout_s: float) -> None:
    """Run the event loop, asleep between events as the app's own is, until
    ``condition`` holds. (Calling ``processEvents`` in a loop instead, as this script
    first did, kept the GUI thread busy throughout: it competed with the training
    thread for the CPU and for Python's lock as no window does.)"""
    loop = QEventLoop()
    deadline = time.monotonic() + timeout_s
    check = QTimer()
    check.setInterval(CHECK_MS)

    def look() -> None:
        if condition() or time.monotonic() > deadline:
            loop.quit()

    check.timeout.connect(look)
    check.start()
    if not condition():
        loop.exec()
    check.stop()
    if not condition():
        sys.exit("timed out")


def wait_for(seconds: float) -> None:
    end = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() >= end, seconds + 60)


def summary(delays: list[float]) -> tuple[float, float, float]:
    ordered = sorted(delays) or [0.0]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99, ordered[-1]


# --- the pictures ------------------------------------------------------------------------------
def picture_folder(pictures: int, skipped: int, classes: int) -> Path:
    """``pictures`` small JPEGs in ``classes`` class folders, drawn once and kept in the
    temporary folder; with ``skipped`` unreadable files spread over the classes (a
    second folder of hard links to the same pictures)."""
    base = Path(tempfile.gettempdir()) / "finetune-studio-responsiveness"
    drawn = base / f"pictures-{pictures}-{classes}"
    if not (drawn / ".complete").exists():
        print(f"Drawing {pictures:,} pictures into {drawn} (once)…", flush=True)
        _draw_pictures(drawn, pictures, classes)
        (drawn / ".complete").touch()
    if not skipped:
        return drawn
    mixed = base / f"pictures-{pictures}-{classes}-skipped-{skipped}"
    if not (mixed / ".complete").exists():
        _link_with_unreadable(drawn, mixed, skipped)
        (mixed / ".complete").touch()
    return mixed


def _draw_pictures(folder: Path, count: int, classes: int) -> None:
    import numpy as np

    from finetune_studio.engine.sample_data import SAMPLE_CLASSES, draw_picture

    rng = np.random.default_rng(0)
    for index in range(count):
        label = index % classes
        class_dir = folder / f"class_{label:03d}"
        if index < classes:
            class_dir.mkdir(parents=True, exist_ok=True)
        kind = SAMPLE_CLASSES[label % len(SAMPLE_CLASSES)]
        draw_picture(kind, rng, PICTURE_SIDE).save(class_dir / f"{index:06d}.jpg", quality=85)


def _link_with_unreadable(drawn: Path, mixed: Path, skipped: int) -> None:
    class_dirs = sorted(p for p in drawn.iterdir() if p.is_dir())
    for class_dir in class_dirs:
        target = mixed / class_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for picture in class_dir.iterdir():
            if not (target / picture.name).exists():
                os.link(picture, target / picture.name)
    for index in range(skipped):  # a picture's name, not a picture's bytes
        target = mixed / class_dirs[index % len(class_dirs)].name / f"broken_{index:06d}.jpg"
        target.write_bytes(b"not a picture " * (1 + index % 40))


# --- the scenarios -----------------------------------------------------------------------------
def open_window(folder: Path) -> MainWindow:
    settings = QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings)
    window.confirm_stop_training = lambda: True  # type: ignore[method-assign]
    window.show()
    window.start_engine()
    # the engine, then the review's modules imported in the background (a start-up task)
    wait_until(lambda: window.engine is not None and not window.runner.busy, 120)
    return window


def open_sample(window: MainWindow, folder: Path) -> None:
    """The drawn sample, every layer trainable (so the CPU stays busy), 2 epochs."""
    if window.model_panel.ready and window.model_panel.num_classes == 6:
        return  # opened for an earlier scenario
    dataset = generate_sample_dataset(folder / "sample", per_class=12)
    window.data_panel.load_folder(str(dataset))
    wait_until(lambda: window.model_panel.ready and window.model_panel.num_classes == 6, 120)
    window.model_panel.set_preset("none")
    window.train_panel.epochs.setValue(2)
    wait_for(1.0)  # the model step settles


def train(window: MainWindow, folder: Path, recorder: TickRecorder) -> list[float]:
    """From Start to the results shown, fine-tuning every layer."""
    open_sample(window, folder)
    finished: list[bool] = []
    window.training_finished.connect(finished.append)
    recorder.start()
    started, gui_cpu = time.perf_counter(), time.thread_time()
    window.start_training()
    wait_until(lambda: bool(finished), 1800)
    took, gui_cpu = time.perf_counter() - started, time.thread_time() - gui_cpu
    print(f"Trained in {took:.2f} s, of which the GUI thread used {gui_cpu:.2f} s of CPU.")
    wait_for(0.5)  # the results step is drawn
    return recorder.stop()


def review(window: MainWindow, folder: Path, recorder: TickRecorder) -> list[float]:
    """Finding suspected wrong labels (Results step), then comparing the backbones at
    hand (Model step): each from its button to its results shown. Going to a step is
    timed on its own (a first visit lays out and draws the whole step: the window's
    own work, done before the task starts, as a user clicks a tab)."""
    open_sample(window, folder)
    recorder.start()
    recorder.pause()
    model = window.model_panel
    suspects = window.results_panel.suspects
    tasks = (
        ("Results", window.results_panel, None, suspects, suspects.find_button),
        ("Model", model, model.compare, model.compare, model.compare.compare_button),
    )
    for name, step, tab, view, button in tasks:
        worst = go_to_step(window, step, tab)
        print(f"Going to the {name} step: worst delay {worst:.1f} ms.")
        recorder.resume()
        run_until_done(view, button)
        recorder.pause()
    return recorder.stop()


def go_to_step(window: MainWindow, step: QWidget, tab: QWidget | None) -> float:
    """Shows a step (and one of its side tabs); the worst tick delay until it is drawn."""
    ticks = TickRecorder()
    ticks.start()
    window.tabs.setCurrentWidget(step)
    if tab is not None:
        window.model_panel.side_tabs.setCurrentWidget(tab)
    wait_for(0.5)
    return max(ticks.stop(), default=0.0)


def run_until_done(view: SuspectsPanel | CompareView, button: QPushButton) -> None:
    ran: list[bool] = []
    view.running_changed.connect(ran.append)
    started = time.perf_counter()
    button.click()
    wait_until(lambda: ran[-2:] == [True, False], 1800)
    print(f"{type(view).__name__}: done in {time.perf_counter() - started:.1f} s.")
    wait_for(0.5)  # its results are drawn


def open_folder(window: MainWindow, dataset: Path, recorder: TickRecorder) -> list[float]:
    """From the folder chosen to its lists shown and scrolled through, plus a second."""
    panel = window.data_panel
    recorder.start()
    started = time.perf_counter()
    panel.load_folder(str(dataset))
    wait_until(lambda: not panel.loading, 1800)
    took = time.perf_counter() - started
    for view in (panel.skipped_view, panel.classes_view):
        for _ in range(5):
            view.scrollToBottom()
            wait_for(0.05)
            view.scrollToTop()
            wait_for(0.05)
    wait_for(1.0)
    delays = recorder.stop()
    report = panel.report
    counted = (len(report.train) + len(report.val), len(report.skipped)) if report else (0, 0)
    print(f"Opened {counted[0]:,} pictures ({counted[1]:,} skipped) in {took:.1f} s.")
    return delays


def measure(args: argparse.Namespace, app: QApplication) -> dict[str, list[float]]:
    explain = app if isinstance(app, TimedApplication) else None
    results: dict[str, list[float]] = {}
    recorder = TickRecorder()
    dataset = None
    if "open" in args.scenario:
        dataset = picture_folder(args.pictures, args.skipped, args.classes)
    with tempfile.TemporaryDirectory() as folder:
        window = open_window(Path(folder))
        window.tabs.setCurrentIndex(0)
        recorder.start()
        wait_until(lambda: len(recorder.delays_ms) >= 300, 60)
        results["idle window"] = recorder.stop()
        if dataset is not None:
            _explained(explain, True)
            results["opening the folder"] = open_folder(window, dataset, recorder)
            _explained(explain, False, "opening the folder", recorder)
        if "training" in args.scenario:
            _explained(explain, True)
            results["while training"] = train(window, Path(folder), recorder)
            _explained(explain, False, "while training", recorder)
        if "review" in args.scenario:
            _explained(explain, True)
            results["review and compare"] = review(window, Path(folder), recorder)
            _explained(explain, False, "review and compare", recorder)
        window.close()
    return results


def _explained(
    app: TimedApplication | None,
    recording: bool,
    title: str = "",
    ticks: TickRecorder | None = None,
) -> None:
    if app is None:
        return
    if recording:
        app.record()
        return
    app.report(title)
    if ticks is not None:  # to find the events above that delayed them
        late = ", ".join(f"{delay:.1f} ms at {when:.2f} s" for delay, when in ticks.worst(3))
        print(f"latest ticks {title}: {late}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--pictures", type=int, default=50_000)
    parser.add_argument("--skipped", type=int, default=0, help="unreadable files added")
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--explain", action="store_true", help="name the slowest events")
    parser.add_argument(
        "--switch-interval-ms", type=float, help="Python's thread switch interval, to compare"
    )
    args = parser.parse_args()
    if args.switch_interval_ms:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    app = TimedApplication([]) if args.explain else QApplication.instance() or QApplication([])
    results = measure(args, app)
    print(f"\nload average before: {LOAD_BEFORE}, after: {os.getloadavg()[0]:.1f}")
    print(f"Python's switch interval: {sys.getswitchinterval() * 1000:g} ms")
    print(f"{'timer delay (ms)':<22}{'median':>8}{'p99':>8}{'worst':>8}{'target':>8}")
    for name, delays in results.items():
        median, p99, worst = summary(delays)
        target = STALL_TARGETS_MS.get(name)
        goal = f"< {target:.0f}" if target else ""
        print(f"{name:<22}{median:>8.1f}{p99:>8.1f}{worst:>8.1f}{goal:>8}")


LOAD_BEFORE = f"{os.getloadavg()[0]:.1f}"

if __name__ == "__main__":
    main()
