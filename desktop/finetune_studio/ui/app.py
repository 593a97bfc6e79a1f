"""UI layer: the ``finetune-studio`` entry point and scripted runs.

The window is shown before torch is imported (that takes seconds); the engine
loads in the background. Scripted flags drive the real widgets, for demos,
screenshots and end-to-end checks.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QSettings, QTimer
from PySide6.QtWidgets import QApplication

from .. import __version__
from .main_window import MainWindow
from .resources import app_icon
from .scripted_run import RUNS_COMPARED, STEPS, ScriptedRun, folder_from_argument
from .self_check import run_self_check
from .workers.tasks import wait_for_background_threads

__all__ = ["RUNS_COMPARED", "ScriptedRun", "folder_from_argument", "main", "parse_args"]

EXIT_WAIT_S = 30.0
"""After the window has closed, how long the process waits for background work
that outlived the window's own short wait (a training batch, a download's read)."""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="finetune-studio", description="Finetune Studio: transfer learning on images."
    )
    parser.add_argument("folder", nargs="?", help="a dataset folder to open")
    parser.add_argument("--dataset", help="a dataset folder to open")
    parser.add_argument(
        "--project", metavar="FILE", help="open this project (a saved recipe) at start"
    )
    parser.add_argument(
        "--save-project",
        metavar="FILE",
        help="save the project once everything has loaded, or at the end of a scripted run",
    )
    parser.add_argument("--backbone")
    parser.add_argument("--freeze", help="head, last:N or none")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--train", action="store_true", help="start training once loaded")
    parser.add_argument(
        "--compare",
        nargs="?",
        const="",
        metavar="a,b,c",
        help="compare backbones in the Model step once loaded (these, or those ticked), "
        "then stop there (for screenshots)",
    )
    parser.add_argument(
        "--find-lr",
        action="store_true",
        help="run the Train step's learning-rate finder once loaded, then stop there "
        "(for screenshots)",
    )
    parser.add_argument("--export", metavar="DIR", help="export the model here after training")
    parser.add_argument(
        "--export-format",
        action="append",
        choices=("pt2", "onnx", "onnx-int8", "torchscript", "executorch"),
        help="also export in this format (repeat for more); default: the window's choice",
    )
    parser.add_argument(
        "--predict",
        metavar="PATH",
        nargs="+",
        help="classify these pictures (or folders) after training",
    )
    parser.add_argument(
        "--suspects",
        action="store_true",
        help="after training (or with a reopened run), find the suspected wrong labels",
    )
    parser.add_argument(
        "--open-picture",
        action="store_true",
        help="at the end, open the Results gallery's first picture with its heatmap",
    )
    parser.add_argument(
        "--screenshot",
        metavar="FILE.png",
        help="save a screenshot of the window (of the screen, with --open-picture or "
        "--find-lr) when done",
    )
    parser.add_argument(
        "--step",
        choices=STEPS,
        help="the step to show at the end (for screenshots); runs: with the newest "
        f"{RUNS_COMPARED} runs selected, their curves overlaid",
    )
    parser.add_argument("--quit-when-done", action="store_true")
    parser.add_argument(
        "--self-check",
        action="store_true",
        help="check this installation: worker processes, then offscreen training, "
        "prediction and export on a drawn sample; exit 0 if all work",
    )
    parser.add_argument(
        "--install-desktop-entry",
        action="store_true",
        help="add Finetune Studio to your desktop menu, then exit",
    )
    parser.add_argument(
        "--uninstall-desktop-entry",
        action="store_true",
        help="remove it from the desktop menu, then exit",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser.parse_args(list(argv))


def desktop_entry_command(args: argparse.Namespace) -> int:
    from .. import desktop_integration

    if args.install_desktop_entry:
        written = desktop_integration.install()
        print(f"Installed {written[0]} and {len(written) - 1} icon and metainfo files.")
    else:
        removed = desktop_integration.uninstall()
        print(f"Removed {len(removed)} files." if removed else "Nothing was installed.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    multiprocessing.freeze_support()  # DataLoader workers in a frozen app
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.install_desktop_entry or args.uninstall_desktop_entry:
        return desktop_entry_command(args)
    if args.self_check:
        return run_self_check(args, run_window)
    return run_window(args, None)


def run_window(args: argparse.Namespace, settings: QSettings | None) -> int:
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication([sys.argv[0]])
    QCoreApplication.setOrganizationName("Finetune Studio")
    QCoreApplication.setApplicationName("Finetune Studio")
    QCoreApplication.setApplicationVersion(__version__)
    app.setWindowIcon(app_icon())
    # A self-check's settings lie in its temporary folder: its run is kept there too,
    # not among the user's runs.
    runs = None
    if args.self_check and settings is not None:
        runs = Path(settings.fileName()).parent / "runs"
    window = MainWindow(settings or QSettings(), runs)
    if args.screenshot:
        window.resize(1280, 800)  # the same frame for every screenshot
    ScriptedRun(window, args)
    window.show()
    QTimer.singleShot(0, window.start_engine)
    code = int(app.exec())
    if not wait_for_background_threads(EXIT_WAIT_S):
        # A task stuck past its cancel (a download waiting on a dead network): Python
        # cannot finalize under a running QThread, and the window is long gone.
        print("finetune-studio: background work did not stop; exiting anyway", file=sys.stderr)
        sys.stderr.flush()
        os._exit(code)
    return code
