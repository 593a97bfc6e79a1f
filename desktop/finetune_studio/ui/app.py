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

from PySide6.QtCore import QCoreApplication, QObject, QSettings, QTimer, Slot
from PySide6.QtWidgets import QApplication

from .. import __version__
from .main_window import MainWindow
from .resources import app_icon
from .self_check import run_self_check
from .workers.tasks import wait_for_background_threads

STEPS = ("data", "model", "train", "results", "runs")
RUNS_COMPARED = 3
"""``--step runs`` selects the newest runs, their curves overlaid (for screenshots)."""
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
        help="save a screenshot of the window (of the screen, with --open-picture) when done",
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


def folder_from_argument(value: str | None) -> str | None:
    """A path, or a file:// URL as desktop launchers pass for %u."""
    if value and value.startswith("file://"):
        from PySide6.QtCore import QUrl

        return QUrl(value).toLocalFile()
    return value


class ScriptedRun(QObject):
    """Performs the scripted flags through the window's own widgets, in order:
    project -> dataset -> backbone -> freeze -> train -> predict -> export ->
    save project -> screenshot -> quit. Without a project or dataset, the window
    offers to reopen the last one."""

    def __init__(self, window: MainWindow, args: argparse.Namespace) -> None:
        super().__init__(window)
        self.window = window
        self.args = args
        self.dataset = args.dataset or folder_from_argument(args.folder)
        self.failed = False
        self.exit_code: int | None = None
        window.engine_ready.connect(self._on_window_engine_ready)
        window.engine_failed.connect(self._on_window_engine_failed)
        if not (args.project or self.dataset or args.self_check):
            window.offer_reopen()  # a folder or project asked for replaces the offer

    @property
    def wants_training(self) -> bool:
        return bool(self.args.train)

    @Slot(str, str)
    def _on_window_engine_failed(self, message: str, details: str) -> None:
        self.finish(failed=True)

    @Slot()
    def _on_window_engine_ready(self) -> None:
        window, args = self.window, self.args
        if args.project or self.dataset:
            window.data_panel.dataset_loaded.connect(self._on_dataset_loaded)
            window.data_panel.loading_changed.connect(self._on_loading_changed)
        if args.project and not window.open_project(args.project):
            self.finish(failed=True)
            return
        if args.epochs:
            window.train_panel.epochs.setValue(args.epochs)
        if args.backbone and not window.model_panel.select_backbone(args.backbone):
            self.finish(failed=True)
            return
        if self.dataset:
            window.data_panel.load_folder(self.dataset)
        elif not args.project:
            self._when_model_ready(self._after_setup)

    @Slot(bool)
    def _on_loading_changed(self, loading: bool) -> None:
        if not loading and self.window.data_panel.report is None:
            self.finish(failed=True)  # the folder could not be read

    @Slot(object)
    def _on_dataset_loaded(self, report: object) -> None:
        self._when_model_ready(self._after_setup)

    def _when_model_ready(self, then: object) -> None:
        panel = self.window.model_panel
        self._then = then
        if panel.ready and panel.num_classes == self._expected_classes():
            QTimer.singleShot(0, self._run_then)
        else:
            panel.model_ready.connect(self._on_model_ready)
            panel.busy_changed.connect(self._on_model_busy_changed)

    @Slot(bool)
    def _on_model_busy_changed(self, busy: bool) -> None:
        """A build that ended without a network (no download, unknown weights) ends
        the scripted run: nothing would train."""
        panel = self.window.model_panel
        if busy or not panel.unavailable:
            return
        panel.model_ready.disconnect(self._on_model_ready)
        panel.busy_changed.disconnect(self._on_model_busy_changed)
        self.finish(failed=True)

    def _expected_classes(self) -> int:
        report = self.window.data_panel.report
        return len(report.classes) if report is not None else self.window.model_panel.num_classes

    @Slot(str)
    def _on_model_ready(self, _: str) -> None:
        if self.window.model_panel.num_classes != self._expected_classes():
            return
        self.window.model_panel.model_ready.disconnect(self._on_model_ready)
        self.window.model_panel.busy_changed.disconnect(self._on_model_busy_changed)
        self._run_then()

    def _run_then(self) -> None:
        self._then()  # type: ignore[operator]

    def _after_setup(self) -> None:
        window, args = self.window, self.args
        if args.freeze:
            window.model_panel.set_preset(args.freeze)
        if args.compare is not None:
            self._compare(args.compare)
            return
        if self.wants_training:
            window.training_finished.connect(self._on_training_finished)
            if not window.start_training():
                self.finish(failed=True)
            return
        if window.keeper.restoring:  # a project's last run is on its way back
            window.keeper.restore_ended.connect(self._on_restore_ended)
        else:
            self._use_reopened_run()

    def _compare(self, names: str) -> None:
        """Compare as the Compare button does, with the tab shown."""
        panel = self.window.model_panel
        if names:
            panel.compare.set_chosen(names.split(","))
        panel.side_tabs.setCurrentWidget(panel.compare)
        panel.compare.comparison_ended.connect(self._on_comparison_ended)
        panel.compare.compare_requested.emit()

    @Slot(bool)
    def _on_comparison_ended(self, compared: bool) -> None:
        self.window.model_panel.compare.comparison_ended.disconnect(self._on_comparison_ended)
        self.finish(failed=not compared)

    @Slot()
    def _on_restore_ended(self) -> None:
        self.window.keeper.restore_ended.disconnect(self._on_restore_ended)
        self._use_reopened_run()

    def _use_reopened_run(self) -> None:
        """Without --train, --predict, --export and the review flags use the project's
        last run."""
        args = self.args
        if not (args.predict or args.export or args.suspects or args.open_picture):
            self.finish()
        elif self.window.results_panel.result is None:
            print("finetune-studio: no trained model: add --train", file=sys.stderr)
            self.finish(failed=True)
        else:
            self._on_training_finished(True)

    @Slot(bool)
    def _on_training_finished(self, ok: bool) -> None:
        if not ok:
            self.finish(failed=True)
        elif self.args.predict:
            panel = self.window.results_panel
            panel.predictions_shown.connect(self._on_predictions_shown)
            panel.predict(self.args.predict)
        else:
            self._export_or_finish()

    @Slot(int)
    def _on_predictions_shown(self, count: int) -> None:
        if count == 0:
            self.failed = True
        self._export_or_finish()

    def _export_or_finish(self) -> None:
        if self.args.export:
            panel = self.window.results_panel
            panel.exported.connect(self._on_exported)
            panel.export_failed.connect(self._on_export_failed)
            formats = tuple(self.args.export_format) if self.args.export_format else None
            panel.export_to(self.args.export, formats)
        else:
            self._review_or_finish()

    @Slot(str)
    def _on_exported(self, _: str) -> None:
        self._review_or_finish()

    def _review_or_finish(self) -> None:
        results = self.window.results_panel
        if self.args.suspects:
            results.suspects.search_ended.connect(self._on_search_ended)
            results.side_tabs.setCurrentWidget(results.suspects)
            results.suspects.find_requested.emit()
        else:
            self._open_picture_or_finish()

    @Slot(bool)
    def _on_search_ended(self, found: bool) -> None:
        self.window.results_panel.suspects.search_ended.disconnect(self._on_search_ended)
        if not found:
            self.failed = True
        self._open_picture_or_finish()

    def _open_picture_or_finish(self) -> None:
        results = self.window.results_panel
        shown = results.gallery.shown_records()
        if not self.args.open_picture or not shown:
            self.finish(failed=self.args.open_picture and not shown)
            return
        results.show_pictures()
        results.open_record(shown[0])
        self._wait_for_heatmap()

    @Slot()
    def _wait_for_heatmap(self) -> None:
        viewer = self.window.results_panel.viewer
        if viewer is not None and viewer.computing:
            QTimer.singleShot(100, self._wait_for_heatmap)
        else:
            self.finish()

    @Slot(str)
    def _on_export_failed(self, _: str) -> None:
        self.finish(failed=True)

    def finish(self, failed: bool = False) -> None:
        if self.args.save_project and not failed:
            failed = not self.window.save_project(self.args.save_project)
        if failed:
            self._print_errors()
        self.failed = self.failed or failed
        if self.args.step == "runs" and self.window.engine is not None:
            self.window.runs.listed.connect(self._on_runs_listed)
            self.window.tabs.setCurrentIndex(STEPS.index("runs"))  # lists them
            return
        if self.args.step:
            self.window.tabs.setCurrentIndex(STEPS.index(self.args.step))
        self._end()

    @Slot()
    def _on_runs_listed(self) -> None:
        self.window.runs.listed.disconnect(self._on_runs_listed)
        view = self.window.runs_view
        view.select_rows(list(range(min(RUNS_COMPARED, view.model.rowCount()))))
        self._end()

    def _end(self) -> None:
        if self.args.screenshot:
            # Let pending repaints and the plots' redraw timer run first.
            QTimer.singleShot(300, self._take_screenshot)
        else:
            self._quit_if_asked()

    @Slot()
    def _take_screenshot(self) -> None:
        path = Path(self.args.screenshot)
        path.parent.mkdir(parents=True, exist_ok=True)
        screen, frame = self.window.screen(), self.window.geometry()
        picture = (  # the viewer is a window of its own: what the screen shows there
            screen.grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height())
            if self.args.open_picture and screen is not None
            else self.window.grab()
        )
        if not picture.save(str(path)):
            print(f"finetune-studio: could not save the screenshot to {path}", file=sys.stderr)
            self.failed = True
        self._quit_if_asked()

    def _print_errors(self) -> None:
        """What the window shows, for a run nobody watches."""
        window = self.window
        banners = (
            window.data_panel.banner,
            window.model_panel.banner,
            window.train_panel.banner,
            window.results_panel.banner,
            window.runs_view.banner,
        )
        for step, banner in zip(STEPS, banners):
            if banner.level == "error" and banner.text:
                print(f"finetune-studio: {step}: {banner.text}", file=sys.stderr)
                if banner.details:
                    print(banner.details, file=sys.stderr)

    def _quit_if_asked(self) -> None:
        self.exit_code = 1 if self.failed else 0
        if self.args.quit_when_done:
            self.window.close_without_asking()
            QCoreApplication.exit(self.exit_code)


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
