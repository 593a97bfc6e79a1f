"""UI layer: the main window, one tab per step: Data, Model, Train, Results.

The window appears before torch is imported: the engine loads in a background
task and the steps that need it come alive when it arrives (``engine_ready``).
"""

from __future__ import annotations

import gc
import platform
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QSettings, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import QFileDialog, QLabel, QMainWindow, QMessageBox, QTabWidget

from .. import __version__
from .resources import app_icon
from .widgets.dataset_panel import DatasetPanel
from .widgets.model_panel import ModelPanel
from .widgets.results_panel import ResultsPanel
from .widgets.train_panel import TrainPanel
from .workers.tasks import ProgressFn, TaskRunner
from .workers.training import TrainingController

if TYPE_CHECKING:
    from ..engine.backbones import BackboneInfo
    from ..engine.events import FitEnd
    from ..engine.inspection import DatasetReport
    from ..engine.recipe import Recipe

DATA_TAB, MODEL_TAB, TRAIN_TAB, RESULTS_TAB = range(4)
PROJECT_FILTER = "Finetune Studio project (*.json)"
CLOSE_WAIT_S = 1.0
"""How long closing the window waits for background work to stop. Work still going
after that ends on its own once the window is gone (the app waits for it then)."""


@dataclass(frozen=True)
class EngineInfo:
    """What the window needs once torch is loaded."""

    backbones: list[BackboneInfo]
    device: str  # the device training uses, in words


def load_engine(progress: ProgressFn, cancel: threading.Event) -> EngineInfo:
    """Runs in a worker thread: import torch and the engine, describe the device."""
    from ..engine.backbones import backbone_infos
    from ..engine.devices import describe_device, resolve_device
    from ..engine.export import load_model_folder  # noqa: F401 - warm the import
    from ..engine.training import Trainer  # noqa: F401 - warm the import

    device = resolve_device("auto")
    engine = EngineInfo(backbone_infos(), describe_device(device))
    # torch and torchvision leave ~340,000 long-lived objects: a full garbage collection
    # then takes ~180 ms (measured here), and one during training stalls the window.
    # Freezing them once at start-up makes later collections skip them.
    gc.collect()
    gc.freeze()
    return engine


def dropped_paths(event: QDragEnterEvent | QDropEvent) -> list[Path]:
    return [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]


class MainWindow(QMainWindow):
    engine_ready = Signal()
    engine_failed = Signal(str, str)  # message, details
    training_finished = Signal(bool)  # True when the run ended normally or was stopped

    def __init__(self, settings: QSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or QSettings()
        self.setWindowTitle("Finetune Studio")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.engine: EngineInfo | None = None
        self.runner = TaskRunner(self)
        self.training = TrainingController(self.runner, self)
        self._recipe: Recipe | None = None  # see ``recipe()``
        self._stopping = False  # Stop was pressed once: a second press stops at once

        self.data_panel = DatasetPanel(self.runner, self.settings)
        self.model_panel = ModelPanel(self.runner)
        self.train_panel = TrainPanel()
        self.results_panel = ResultsPanel(self.runner)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for title, panel in (
            ("1  Data", self.data_panel),
            ("2  Model", self.model_panel),
            ("3  Train", self.train_panel),
            ("4  Results", self.results_panel),
        ):
            self.tabs.addTab(panel, title)
        self.setCentralWidget(self.tabs)

        self.device_label = QLabel("Loading PyTorch…")
        self.statusBar().addPermanentWidget(self.device_label)
        self._build_menus()

        self.data_panel.dataset_loaded.connect(self._on_data_panel_dataset_loaded)
        self.train_panel.start_requested.connect(self._on_train_panel_start_requested)
        self.train_panel.stop_requested.connect(self._on_train_panel_stop_requested)
        self.training.batches_arrived.connect(self.train_panel.add_batches)
        self.training.epoch_ended.connect(self.train_panel.add_epoch)
        self.training.stage_progressed.connect(self.train_panel.show_stage)
        self.training.log_added.connect(self.train_panel.append_log)
        self.training.running_changed.connect(self._on_training_running_changed)
        self.training.run_finished.connect(self._on_training_run_finished)
        self.training.run_failed.connect(self._on_training_run_failed)

        self.train_panel.restore_settings(self.settings)
        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 820)
        self.train_panel.start_button.setEnabled(False)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        actions: list[tuple[str, QKeySequence.StandardKey | str, Callable[[], None]]] = [
            ("&Open dataset…", QKeySequence.StandardKey.Open, self.data_panel.choose_folder),
            ("Open &project…", "Ctrl+Shift+O", self._on_open_project_triggered),
            ("&Save project…", QKeySequence.StandardKey.Save, self._on_save_project_triggered),
            ("&Export model…", "Ctrl+E", self.results_panel.choose_export_folder),
        ]
        for text, shortcut, slot in actions:
            action = QAction(text, self)
            action.setShortcut(QKeySequence(shortcut))
            action.triggered.connect(slot)
            file_menu.addAction(action)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        help_menu = self.menuBar().addMenu("&Help")
        about = QAction("&About Finetune Studio", self)
        about.triggered.connect(self._on_about_triggered)
        help_menu.addAction(about)

    # --- engine start-up ---------------------------------------------------------------------
    def start_engine(self) -> None:
        """Import torch in the background; call once the window is visible."""
        task = self.runner.run_function(load_engine, "load engine")
        task.succeeded.connect(self._on_engine_task_succeeded)
        task.failed.connect(self._on_engine_task_failed)

    @Slot(object)
    def _on_engine_task_succeeded(self, engine: EngineInfo) -> None:
        self.engine = engine
        self.device_label.setText(engine.device)
        self.statusBar().showMessage("Ready", 3000)
        backbone = self.settings.value("model/backbone")
        self.model_panel.set_backbones(
            engine.backbones, backbone if isinstance(backbone, str) else None
        )
        self._update_start_button()
        self.engine_ready.emit()

    @Slot(str, str)
    def _on_engine_task_failed(self, message: str, details: str) -> None:
        self.device_label.setText("PyTorch failed to load")
        self.data_panel.banner.show_error(
            f"The training engine could not start: {message}", details
        )
        self.engine_failed.emit(message, details)

    # --- data ----------------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_paths(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = dropped_paths(event)
        folders = [p for p in paths if p.is_dir()]
        if self.tabs.currentIndex() == RESULTS_TAB and self.results_panel.result is not None:
            self.results_panel.predict([str(p) for p in paths])
        elif folders:
            self.tabs.setCurrentIndex(DATA_TAB)
            self.data_panel.load_folder(folders[0])
        else:
            self.tabs.setCurrentIndex(DATA_TAB)
            self.data_panel.banner.show_warning(
                "That is a file. Drop a folder that holds one subfolder per class."
            )
        event.acceptProposedAction()

    @Slot(object)
    def _on_data_panel_dataset_loaded(self, report: DatasetReport) -> None:
        self.model_panel.set_num_classes(len(report.classes))
        self._update_start_button()

    # --- training --------------------------------------------------------------------------------
    def _update_start_button(self) -> None:
        ready = (
            self.engine is not None
            and self.data_panel.report is not None
            and not self.data_panel.report.errors
            and not self.training.running
        )
        self.train_panel.start_button.setEnabled(ready)
        self.train_panel.start_button.setToolTip("" if ready else "Load a dataset first (step 1).")

    def recipe(self) -> Recipe | None:
        """The window's one recipe: the last one opened or used, with each step's own
        fields replaced by what its widgets show. Fields no widget edits (weight decay,
        warm-up, label smoothing, seed, ...) stay as the opened project has them.
        None until a dataset is loaded or a project opened. Raises ``RecipeError``
        when the widgets' values do not make a valid recipe together."""
        from ..engine.recipe import Recipe

        recipe = self._recipe
        report = self.data_panel.report
        if recipe is None:
            if report is None:
                return None
            recipe = Recipe(dataset=report.root)
        for panel in (self.data_panel, self.model_panel, self.train_panel):
            recipe = panel.update_recipe(recipe)
        self._recipe = recipe
        return recipe

    def start_training(self) -> bool:
        from ..engine.errors import UserFacingError

        if self.training.running or self.data_panel.report is None:
            return False
        try:
            recipe = self.recipe()
        except UserFacingError as error:
            self.train_panel.banner.show_error(str(error))
            return False
        if recipe is None:
            return False
        self.results_panel.set_result(None)
        self.tabs.setCurrentIndex(TRAIN_TAB)
        self.training.start(recipe, self.data_panel.report)
        return True

    @Slot()
    def _on_train_panel_start_requested(self) -> None:
        self.start_training()

    @Slot()
    def _on_train_panel_stop_requested(self) -> None:
        button = self.train_panel.stop_button
        if self._stopping:
            self.training.stop_now()
            button.setEnabled(False)
            self.train_panel.progress.setFormat("Stopping now…")
            return
        self._stopping = True
        self.training.stop()
        button.setText("Stop now")
        button.setToolTip("Also skip evaluating the model as it is when no epoch has ended")
        self.train_panel.progress.setFormat("Stopping after this batch…")

    @Slot(bool)
    def _on_training_running_changed(self, running: bool) -> None:
        self._stopping = False
        self.train_panel.stop_button.setText("Stop")
        self.train_panel.stop_button.setToolTip("")
        self.train_panel.set_running(running)
        self.model_panel.set_editable(not running)
        self.data_panel.setEnabled(not running)
        self._update_start_button()

    @Slot(object)
    def _on_training_run_finished(self, event: FitEnd) -> None:
        self.train_panel.show_finished(event)
        self.results_panel.set_result(self.training.last_result)
        if not event.cancelled:
            self.tabs.setCurrentIndex(RESULTS_TAB)
        self.training_finished.emit(True)

    @Slot(str, str)
    def _on_training_run_failed(self, message: str, details: str) -> None:
        self.train_panel.banner.show_error(message, details)
        self.train_panel.progress.setFormat("Training failed")
        self.training_finished.emit(False)

    # --- projects --------------------------------------------------------------------------------
    def save_project(self, path: str | Path) -> bool:
        """Write the window's recipe; False (and a message) when there is none yet."""
        from ..engine.errors import UserFacingError

        try:
            recipe = self.recipe()
        except UserFacingError as error:
            self.data_panel.banner.show_error(f"Cannot save the project: {error}")
            return False
        if recipe is None:
            self.statusBar().showMessage("Load a dataset before saving a project.", 5000)
            return False
        try:
            recipe.save(path)
        except OSError as error:
            self.data_panel.banner.show_error(
                f"Cannot save the project to {path}: {error.strerror or error}. "
                "Choose another folder."
            )
            return False
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return True

    def open_project(self, path: str | Path) -> bool:
        """Make the project's recipe the window's: every step shows its fields, and the
        dataset folder is checked with the project's split."""
        from ..engine.errors import UserFacingError
        from ..engine.recipe import Recipe

        try:
            recipe = Recipe.load(path)
        except UserFacingError as error:
            self.data_panel.banner.show_error(str(error))
            return False
        self._recipe = recipe
        self.train_panel.show_recipe(recipe)
        self.model_panel.show_recipe(recipe)
        self.data_panel.show_recipe(recipe)
        self._update_start_button()  # nothing trains until the project's folder is checked
        return True

    @Slot()
    def _on_save_project_triggered(self) -> None:
        if self.engine is None or (self._recipe is None and self.data_panel.report is None):
            self.statusBar().showMessage("Load a dataset before saving a project.", 5000)
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save project", "project.json", PROJECT_FILTER)
        if path:
            self.save_project(path)

    @Slot()
    def _on_open_project_triggered(self) -> None:
        if self.engine is None:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open project", "", PROJECT_FILTER)
        if path:
            self.open_project(path)

    # --- about, closing -------------------------------------------------------------------------
    def about_text(self) -> str:
        import pyqtgraph
        import PySide6

        lines = [
            f"<b>Finetune Studio {__version__}</b>",
            "Transfer learning for images, on your own computer.",
            "",
            f"Python {platform.python_version()} · PySide6 {PySide6.__version__} · "
            f"pyqtgraph {pyqtgraph.__version__}",
        ]
        if self.engine is not None:
            import torch
            import torchvision

            lines.append(f"PyTorch {torch.__version__} · torchvision {torchvision.__version__}")
            lines.append(f"Device: {self.engine.device}")
        return "<br>".join(lines)

    @Slot()
    def _on_about_triggered(self) -> None:
        QMessageBox.about(self, "About Finetune Studio", self.about_text())

    def confirm_stop_training(self) -> bool:
        answer = QMessageBox.question(
            self,
            "Stop training?",
            "A model is training. Stop it and quit? The run so far will be lost.",
        )
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.training.running and not self.confirm_stop_training():
            event.ignore()
            return
        self.runner.shutdown(CLOSE_WAIT_S)  # aborts training (and its final evaluation) too
        self.settings.setValue("window/geometry", self.saveGeometry())
        if self.model_panel.backbone:
            self.settings.setValue("model/backbone", self.model_panel.backbone)
        self.train_panel.save_settings(self.settings)
        self.settings.sync()
        event.accept()
