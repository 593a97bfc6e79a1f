"""UI layer: ``finetune-studio --self-check``: does this installation work?

Made for the frozen (PyInstaller) app, whose classic failures are compiled parts
left out of the bundle and worker processes that cannot start. The check starts a
DataLoader worker process the way Windows and macOS do ("spawn"), then drives the
real window offscreen through a scripted run on a small drawn dataset: load the
default backbone, train one epoch, classify a picture, export in every format.
It prints one line per step and exits 0 only if all of them worked.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings

# The whole check takes ~15 s on a 2-core CPU; far beyond that something hangs.
LIMIT_S = 300.0

RunWindow = Callable[[argparse.Namespace, QSettings], int]


def run_self_check(args: argparse.Namespace, run_window: RunWindow) -> int:
    start_watchdog(LIMIT_S)
    started = time.perf_counter()
    if not _worker_processes_start():
        return 1
    with tempfile.TemporaryDirectory() as folder:
        settings = _prepare_scripted_run(args, Path(folder))
        code = run_window(args, settings)
        if code == 0:
            code = _report_export(Path(args.export), args.export_format)
    if code == 0:
        print(f"Self-check passed in {time.perf_counter() - started:.1f} s.")
    return code


def _worker_processes_start() -> bool:
    from ..engine.diagnostics import check_worker_processes
    from ..engine.errors import WorkerProcessError

    try:
        check_worker_processes("spawn")
    except WorkerProcessError as error:
        print(f"finetune-studio: self-check failed: {error}", file=sys.stderr)
        return False
    print("Self-check: DataLoader worker processes start (spawn).")
    return True


def _prepare_scripted_run(args: argparse.Namespace, folder: Path) -> QSettings:
    """A scripted run on a drawn dataset, offscreen, with settings of its own so the
    user's are untouched."""
    from ..engine.export import EXPORT_FORMATS
    from ..engine.sample_data import generate_sample_dataset

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    dataset = generate_sample_dataset(folder / "sample", per_class=4)
    args.dataset = str(dataset)
    args.epochs, args.train, args.quit_when_done = 1, True, True
    pictures = sorted(path for path in dataset.glob("*/*") if path.is_file())
    args.predict = [str(pictures[0])]
    args.export, args.export_format = str(folder / "export"), list(EXPORT_FORMATS)
    return QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat)


def _report_export(folder: Path, formats: list[str]) -> int:
    from ..engine.export import FORMAT_FILES, WEIGHTS_FILE

    expected = [WEIGHTS_FILE, *(FORMAT_FILES[name] for name in formats)]
    missing = [name for name in expected if not (folder / name).is_file()]
    if missing:
        print(f"finetune-studio: self-check failed: export lacks {missing}", file=sys.stderr)
        return 1
    print(
        "Self-check: window, default backbone, one training epoch, a prediction and "
        f"an export ({', '.join(expected)}) worked."
    )
    return 0


def start_watchdog(limit_s: float) -> None:
    """A self-check must end: past ``limit_s`` print every thread's stack and exit 1.
    A plain thread, so it fires even when the event loop is blocked."""

    def give_up() -> None:
        if sys.stderr is not None:  # None in a windowed build on Windows
            message = f"finetune-studio: the self-check did not finish in {limit_s:g} s"
            print(message, file=sys.stderr)
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(1)  # a hung thread could block a normal exit forever

    watchdog = threading.Timer(limit_s, give_up)
    watchdog.daemon = True
    watchdog.start()
