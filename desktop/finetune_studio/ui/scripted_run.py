"""UI layer: the scripted flags of ``finetune-studio`` (``--train``, ``--export``,
``--compare``, ``--find-lr``, ``--screenshot`` ...), performed through the window's
own widgets, for demos, screenshots and end-to-end checks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QObject, QTimer, Slot

from .main_window import MainWindow

STEPS = ("data", "model", "train", "results", "runs")
RUNS_COMPARED = 3
"""``--step runs`` selects the newest runs, their curves overlaid (for screenshots)."""


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
        if args.find_lr:
            self._find_lr()
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

    def _find_lr(self) -> None:
        """Find the learning rate as the Find button does, with the Train step shown."""
        self.window.tabs.setCurrentIndex(STEPS.index("train"))
        panel = self.window.train_panel
        panel.lr_finder.running_changed.connect(self._on_lr_finder_running_changed)
        panel.lr_find_requested.emit()
        if not panel.lr_finder.running:  # refused: the finder shows why
            panel.lr_finder.running_changed.disconnect(self._on_lr_finder_running_changed)
            self.finish(failed=True)

    @Slot(bool)
    def _on_lr_finder_running_changed(self, running: bool) -> None:
        finder = self.window.train_panel.lr_finder
        if running:
            return
        finder.running_changed.disconnect(self._on_lr_finder_running_changed)
        self.finish(failed=finder.finding is None)

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
        own_window = self.args.open_picture or self.args.find_lr  # the viewer, the finder
        picture = (  # a window of its own: what the screen shows there
            screen.grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height())
            if own_window and screen is not None
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
