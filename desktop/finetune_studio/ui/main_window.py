"""UI layer: the main window, one tab per step: Data, Model, Train, Results, Runs.

The window appears before torch is imported: the engine loads in a background
task and the steps that need it come alive when it arrives (``engine_ready``).
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QEvent, QSettings, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .. import __version__
from .engine_start import (
    EngineInfo,
    freeze_long_lived_objects,
    import_review_modules,
    load_engine,
)
from .resources import app_icon
from .review_loop import ReviewLoop
from .runs_loop import RunsLoop
from .session import last_opened, remember_last
from .widgets.augmentation_note import trains_cached_head
from .widgets.dataset_panel import ENGINE_SOURCE, FOLDER_SOURCE, PROJECT_SOURCE, DatasetPanel
from .widgets.getting_started import GettingStartedDialog
from .widgets.model_panel import ModelPanel
from .widgets.reopen_bar import ReopenBar
from .widgets.results_panel import ResultsPanel
from .widgets.runs_view import RunsView
from .widgets.train_panel import RECIPE_SOURCE, TrainPanel
from .workers.run_keeper import RunKeeper, app_runs_folder
from .workers.tasks import TaskRunner
from .workers.training import TrainingController, threads_leaving_one_core

if TYPE_CHECKING:
    from ..engine.events import FitEnd
    from ..engine.inspection import DatasetReport
    from ..engine.recipe import Recipe

DATA_TAB, MODEL_TAB, TRAIN_TAB, RESULTS_TAB, RUNS_TAB = range(5)


PROJECT_FILTER = "Finetune Studio project (*.json)"
CLOSE_WAIT_S = 1.0
"""How long closing the window waits for background work to stop. Work still going
after that ends on its own once the window is gone (the app waits for it then)."""
MINIMUM_SIZE = (960, 600)
"""Small enough for a 1366x768 screen; the charts' legends and axes stay readable."""


def dropped_paths(event: QDragEnterEvent | QDropEvent) -> list[Path]:
    return [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]


def draw_now(window: QWidget) -> None:
    """Lay out and paint ``window`` at once, rather than in the event loop's next turn."""
    QApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
    window.repaint()


class MainWindow(QMainWindow):
    engine_ready = Signal()
    engine_failed = Signal(str, str)  # message, details
    training_finished = Signal(bool)  # True when the run ended normally or was stopped

    def __init__(self, settings: QSettings | None = None, runs_folder: Path | None = None) -> None:
        """``runs_folder``: where runs made without a project are kept (default: the
        app's data folder, ``run_keeper.app_runs_folder``)."""
        super().__init__()
        self.settings = settings or QSettings()
        self.setWindowTitle("Finetune Studio")
        self.setWindowIcon(app_icon())
        self.setMinimumSize(*MINIMUM_SIZE)
        self.setAcceptDrops(True)
        self.engine: EngineInfo | None = None
        self.runner = TaskRunner(self)
        self.training = TrainingController(self.runner, self)
        self._recipe: Recipe | None = None  # see ``recipe()``
        self._stopping = False  # Stop was pressed once: a second press stops at once
        self.keeper = RunKeeper(self.runner, runs_folder or app_runs_folder(), self)
        self._project_path: Path | None = None  # the project file open, if any
        self._saved_recipe: Recipe | None = None  # the recipe as that file holds it
        self._reopen_when_ready: tuple[str, str] | None = None
        self._guide: GettingStartedDialog | None = None
        self._ask_before_quitting = True
        self._results_step_timer = QTimer(self)  # a zero timer: after the events waiting
        self._results_step_timer.setSingleShot(True)
        self._results_step_timer.setInterval(0)
        self._results_step_timer.timeout.connect(self._on_results_step_timer_timeout)

        self.data_panel = DatasetPanel(self.runner, self.settings)
        self.model_panel = ModelPanel(self.runner)
        self.train_panel = TrainPanel(self.runner)
        self.results_panel = ResultsPanel(self.runner)
        self.runs_view = RunsView()
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for title, panel in (
            ("1  Data", self.data_panel),
            ("2  Model", self.model_panel),
            ("3  Train", self.train_panel),
            ("4  Results", self.results_panel),
            ("5  Runs", self.runs_view),
        ):
            self.tabs.addTab(panel, title)
        self.reopen_bar = ReopenBar()
        central = QWidget()
        central_layout = QVBoxLayout(central)
        central_layout.setContentsMargins(0, 0, 0, 0)
        central_layout.addWidget(self.reopen_bar)
        central_layout.addWidget(self.tabs, stretch=1)
        self.setCentralWidget(central)

        self.device_label = QLabel("Loading PyTorch…")
        self.device_label.setToolTip(
            "This computer. A training run leaves one CPU core to the window, "
            "so its log may show fewer threads."
        )
        self.statusBar().addPermanentWidget(self.device_label)
        self.review = ReviewLoop(self)
        self.runs = RunsLoop(self, RUNS_TAB)  # keeping, listing, reopening runs
        self._build_menus()

        self.data_panel.dataset_loaded.connect(self._on_data_panel_dataset_loaded)
        self.data_panel.loading_changed.connect(self._on_start_conditions_changed)
        self.model_panel.busy_changed.connect(self._on_start_conditions_changed)
        self.model_panel.advisor.running_changed.connect(self._on_start_conditions_changed)
        self.model_panel.compare.running_changed.connect(self._on_start_conditions_changed)
        self.model_panel.compare.compare_requested.connect(self._on_compare_requested)
        self.train_panel.lr_find_requested.connect(self._on_train_panel_lr_find_requested)
        self.train_panel.lr_finder.recipe_now = self.recipe_if_valid
        self.train_panel.lr_finder.running_changed.connect(self._on_start_conditions_changed)
        self.results_panel.suspects.running_changed.connect(self._on_start_conditions_changed)
        self.results_panel.suspects.repairs.busy_changed.connect(self._on_start_conditions_changed)
        self.model_panel.advisor.measure_requested.connect(self._on_advisor_measure_requested)
        self.train_panel.device.currentIndexChanged.connect(self._on_start_conditions_changed)
        self.train_panel.run_began.connect(self._on_train_panel_run_began)
        self.train_panel.settings_edited.connect(self._on_train_panel_settings_edited)
        self.model_panel.layers.plan_changed.connect(self._on_layers_plan_changed)
        self.train_panel.more_than_head_requested.connect(
            self._on_train_panel_more_than_head_requested
        )
        self.train_panel.start_requested.connect(self._on_train_panel_start_requested)
        self.train_panel.stop_requested.connect(self._on_train_panel_stop_requested)
        self.training.batches_arrived.connect(self.train_panel.add_batches)
        self.training.epoch_ended.connect(self.train_panel.add_epoch)
        self.training.stage_progressed.connect(self.train_panel.show_stage)
        self.training.log_added.connect(self.train_panel.append_log)
        self.training.running_changed.connect(self._on_training_running_changed)
        self.training.run_finished.connect(self._on_training_run_finished)
        self.training.run_failed.connect(self._on_training_run_failed)
        self.reopen_bar.reopen_requested.connect(self._on_reopen_bar_reopen_requested)

        self.train_panel.restore_settings(self.settings)
        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 820)
        self._update_start_button()

    def _action(
        self,
        text: str,
        shortcuts: list[QKeySequence.StandardKey | str],
        slot: Callable[[], None],
    ) -> QAction:
        action = QAction(text, self)
        action.setShortcuts([QKeySequence(shortcut) for shortcut in shortcuts])
        action.triggered.connect(slot)
        return action

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.open_dataset_action = self._action(
            "&Open dataset…", [QKeySequence.StandardKey.Open], self.data_panel.choose_folder
        )
        self.open_project_action = self._action(
            "Open &project…", ["Ctrl+Shift+O"], self._on_open_project_triggered
        )
        save = self._action(
            "&Save project…", [QKeySequence.StandardKey.Save], self._on_save_project_triggered
        )
        export = self._action("&Export model…", ["Ctrl+E"], self.results_panel.choose_export_folder)
        self.cluster_action = self._action(
            "Run on a &cluster…", [], self._on_run_on_cluster_triggered
        )
        file_actions = (self.open_dataset_action, self.open_project_action, save, export)
        for action in (*file_actions, self.cluster_action):
            file_menu.addAction(action)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        self.menuBar().addMenu("&Edit").addAction(self.review.undo_action)
        self._build_step_menu()
        self._build_training_menu()
        help_menu = self.menuBar().addMenu("&Help")
        self.guide_action = self._action(
            "&Getting started", [QKeySequence.StandardKey.HelpContents], self.show_guide
        )
        help_menu.addAction(self.guide_action)
        about = QAction("&About Finetune Studio", self)
        about.triggered.connect(self._on_about_triggered)
        help_menu.addAction(about)

    def _build_step_menu(self) -> None:
        """Ctrl+1…5 go to the five steps."""
        menu = self.menuBar().addMenu("&Step")
        self.step_actions: list[QAction] = []
        for index in range(self.tabs.count()):
            title = self.tabs.tabText(index).split(maxsplit=1)[-1]
            action = QAction(f"&{index + 1} {title}", self)
            action.setShortcut(QKeySequence(f"Ctrl+{index + 1}"))
            action.setData(index)
            action.triggered.connect(self._on_step_action_triggered)
            menu.addAction(action)
            self.step_actions.append(action)

    def _build_training_menu(self) -> None:
        """Ctrl+Enter starts a run (when Start could be clicked), Esc stops it."""
        menu = self.menuBar().addMenu("&Training")
        self.start_action = self._action(
            "&Start training", ["Ctrl+Return", "Ctrl+Enter"], self._on_start_action_triggered
        )
        self.stop_action = self._action("S&top training", ["Esc"], self._on_stop_action_triggered)
        self.stop_action.setEnabled(False)
        menu.addAction(self.start_action)
        menu.addAction(self.stop_action)

    @Slot()
    def _on_step_action_triggered(self) -> None:
        action = self.sender()
        if isinstance(action, QAction):
            self.tabs.setCurrentIndex(int(action.data()))

    @Slot()
    def _on_start_action_triggered(self) -> None:
        if self.train_panel.start_button.isEnabled():
            self.start_training()

    @Slot()
    def _on_stop_action_triggered(self) -> None:
        if self.train_panel.stop_button.isEnabled():
            self.train_panel.stop_button.click()

    # --- engine start-up ---------------------------------------------------------------------
    def start_engine(self) -> None:
        """Import torch in the background; call once the window is visible."""
        task = self.runner.run_function(load_engine, "load engine")
        task.succeeded.connect(self._on_engine_task_succeeded)
        task.failed.connect(self._on_engine_task_failed)

    @Slot(object)
    def _on_engine_task_succeeded(self, engine: EngineInfo) -> None:
        freeze_long_lived_objects(collect_all=True)
        self.engine = engine
        self.device_label.setText(f"{engine.device} on this computer")
        self.train_panel.set_available_devices(engine.devices)
        self.statusBar().showMessage("Ready", 3000)
        backbone = self.settings.value("model/backbone")
        self.model_panel.set_backbones(
            engine.backbones, backbone if isinstance(backbone, str) else None
        )
        self._update_start_button()
        self.engine_ready.emit()
        if self._reopen_when_ready is not None:
            self.reopen(*self._reopen_when_ready)
        imports = self.runner.run_function(import_review_modules, "import review modules")
        imports.succeeded.connect(self._on_review_modules_imported)

    @Slot(object)
    def _on_review_modules_imported(self, _: object) -> None:
        freeze_long_lived_objects(collect_all=False)

    @Slot(str, str)
    def _on_engine_task_failed(self, message: str, details: str) -> None:
        self.device_label.setText("PyTorch failed to load")
        self.data_panel.banner.show_error(
            f"The training engine could not start: {message}", details, ENGINE_SOURCE
        )
        self.engine_failed.emit(message, details)

    # --- data ----------------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_paths(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = dropped_paths(event)
        folders = [p for p in paths if p.is_dir()]
        if self.training.running:  # the run's inputs stay as they are until it ends
            self.statusBar().showMessage(
                "Training is running: stop it before opening another dataset.", 5000
            )
        elif self.tabs.currentIndex() == RESULTS_TAB and self.results_panel.result is not None:
            self.results_panel.predict([str(p) for p in paths])
        elif folders:
            self.tabs.setCurrentIndex(DATA_TAB)
            self.data_panel.load_folder(folders[0])
        else:
            self.tabs.setCurrentIndex(DATA_TAB)
            self.data_panel.banner.show_warning(
                "That is a file. Drop a folder that holds one subfolder per class.",
                FOLDER_SOURCE,
            )
        event.acceptProposedAction()

    @Slot(object)
    def _on_data_panel_dataset_loaded(self, report: DatasetReport) -> None:
        self.model_panel.advisor.reset()  # advice measured other pictures
        self.model_panel.compare.reset()  # so did the comparison
        self.train_panel.lr_finder.reset()  # and the learning-rate curve
        self.reopen_bar.hide()  # the user chose what to work on
        self.model_panel.set_num_classes(len(report.classes))
        self._update_start_button()
        self.train_panel.run_inputs_changed()
        if self._project_path is None:
            remember_last(self.settings, "dataset", report.root)

    # --- training --------------------------------------------------------------------------------
    def start_blocker(self) -> str | None:
        """Why a run cannot start now, in words; None when it can."""
        report = self.data_panel.report
        missing_device = self.train_panel.device_missing()
        if self.training.running:
            return None  # Stop is the button that matters
        if self.engine is None:
            return "PyTorch is still loading…"
        if self.data_panel.loading:
            return "Pictures are being checked (step 1)…"
        if report is None:
            return "Load a dataset first (step 1)."
        if report.errors:
            return f"{report.errors[0]} (step 1)"
        if self.model_panel.unavailable:
            return self.model_panel.unavailable
        if missing_device:
            return f"This computer has no {missing_device}: choose Automatic or CPU as the device."
        return self.heavy_task_running()

    def heavy_task_running(self) -> str | None:
        """The task that uses the processor or the pictures now, in words, if any:
        training waits for it, and so does any other such task (a comparison timed
        beside a learning-rate ramp would time the ramp too)."""
        if self.training.running:
            return "A run is training (step 3)…"
        if self.model_panel.compare.running:
            return "Comparing backbones (step 2)… Cancel it there to train now."
        if self.model_panel.advisor.running:
            return "Measuring how much to train (step 2)… Cancel it there to train now."
        if self.train_panel.lr_finder.running:
            return "Finding the learning rate (step 3)… Cancel it there to train now."
        suspects = self.results_panel.suspects
        if suspects.running:
            return "Finding suspected wrong labels (step 4)… Cancel it there to train now."
        if suspects.repairs.busy:
            return "Moving pictures (step 4)…"
        return None

    def _update_start_button(self) -> None:
        reason = self.start_blocker()
        if self.training.running:
            self.train_panel.show_start_blocker(None)
            self.train_panel.start_button.setEnabled(False)
        else:
            self.train_panel.show_start_blocker(reason)
        self.start_action.setEnabled(not self.training.running and reason is None)

    @Slot()
    def _on_start_conditions_changed(self) -> None:
        self._update_start_button()

    @Slot()
    def _on_layers_plan_changed(self) -> None:
        """What trains changed: the Train step's note and messages follow."""
        feature_cache = self._recipe.feature_cache if self._recipe is not None else True
        self.train_panel.set_head_only_cached(
            trains_cached_head(self.model_panel.layers, feature_cache)
        )
        self.train_panel.run_inputs_changed()
        self._on_train_panel_settings_edited()

    @Slot()
    def _on_train_panel_settings_edited(self) -> None:
        """An invalid-settings message stands until the settings make a recipe."""
        from ..engine.errors import UserFacingError

        if self.train_panel.banner.message(RECIPE_SOURCE) is not None:
            try:
                self.recipe()
            except UserFacingError:
                return  # still invalid: the message still applies
            self.train_panel.banner.clear(RECIPE_SOURCE)

    @Slot()
    def _on_train_panel_more_than_head_requested(self) -> None:
        """Augmentation needs the network to run every epoch: train its last block too,
        and show the layer tree so the change is seen where it is made."""
        self.model_panel.set_preset("last:1")
        self.tabs.setCurrentIndex(MODEL_TAB)

    @Slot()
    def _on_advisor_measure_requested(self) -> None:
        """Measure how much to train with the window's recipe, on the loaded pictures."""
        box = self.model_panel.advisor
        recipe = self._recipe_for_task(box.show_unavailable, self._training_task_blocker())
        if recipe is not None:
            box.start(recipe, self.data_panel.report)

    @Slot()
    def _on_train_panel_lr_find_requested(self) -> None:
        """Find the learning rate with the window's recipe, on the loaded pictures."""
        finder = self.train_panel.lr_finder
        recipe = self._recipe_for_task(finder.show_unavailable, self._training_task_blocker())
        if recipe is not None:
            self.train_panel.find_lr(recipe, self.data_panel.report)

    @Slot()
    def _on_compare_requested(self) -> None:
        """Compare backbones with the window's recipe (its seed, device and precision
        key the cached features) on the loaded pictures. Not held back by what blocks
        training: a backbone that failed to load is a reason to compare others. Held back
        by any other task that keeps the processor busy: it would be timed too."""
        view = self.model_panel.compare
        if view.running:
            return
        reason = self.heavy_task_running()
        if reason is None and self.data_panel.loading:
            reason = "Pictures are being checked (step 1)…"
        recipe = self._recipe_for_task(view.show_unavailable, reason)
        if recipe is not None:
            view.start(recipe, self.data_panel.report)

    def _training_task_blocker(self) -> str | None:
        """Why a task that runs the recipe's network (the advisor, the learning-rate
        finder) cannot start now, as for training itself."""
        reason = self.start_blocker()
        if reason is None and not self.model_panel.ready:
            reason = "The network is still loading (step 2)…"
        return reason

    def _on_run_on_cluster_triggered(self) -> None:
        """Write the window's recipe as a cluster bundle (launch files and a manifest)."""
        from .widgets.cluster_dialog import ClusterDialog

        def unavailable(message: str) -> None:
            QMessageBox.information(self, "Run on a cluster", message)

        recipe = self._recipe_for_task(unavailable, None)
        if recipe is None:
            return
        dialog = ClusterDialog(recipe, self, runner=self.runner)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    def _recipe_for_task(
        self, show_unavailable: Callable[[str], None], reason: str | None
    ) -> Recipe | None:
        """The window's recipe for a task, or None after telling the task why not."""
        from ..engine.errors import UserFacingError

        if reason is not None:
            show_unavailable(reason)
            return None
        try:
            recipe = self.recipe()
        except UserFacingError as error:
            show_unavailable(str(error))
            return None
        if recipe is None:
            show_unavailable("Load a dataset first (step 1).")
        return recipe

    def recipe(self) -> Recipe | None:
        """The window's one recipe: the last one opened or used, with each step's own
        fields replaced by what its widgets show. Fields no widget edits (seed, feature
        cache, ...) stay as the opened project has them, and a value a field shows
        rounded keeps its full precision until the user edits it (``train_settings``).
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

    def recipe_if_valid(self) -> Recipe | None:
        """The window's recipe, or None when its fields do not make a valid one."""
        from ..engine.errors import UserFacingError

        try:
            return self.recipe()
        except UserFacingError:
            return None

    def start_training(self) -> bool:
        from ..engine.errors import UserFacingError

        if self.training.running or self.data_panel.report is None:
            return False
        reason = self.start_blocker()
        if reason is not None:
            self.train_panel.show_start_blocker(reason)
            return False
        if not self.may_replace_unkept_model("Train again"):
            return False
        try:
            recipe = self.recipe()
        except UserFacingError as error:
            self.train_panel.banner.show_error(str(error), source=RECIPE_SOURCE)
            return False
        if recipe is None:
            return False
        self.train_panel.run_note = self._cpu_note(recipe.device)
        self.train_panel.set_running(True)  # the Train step as the run will show it ...
        if self.tabs.currentIndex() != TRAIN_TAB:
            self.tabs.setCurrentIndex(TRAIN_TAB)
            draw_now(self)  # ... drawn before the run's thread competes for the CPU
        self.training.start(recipe, self.data_panel.report)
        self.keeper.begin(recipe, self.training.started_at)  # kept however it ends
        return True

    def _cpu_note(self, device: str) -> str:
        """Why the run's log counts fewer CPU threads than the status bar."""
        on_cpu = device == "cpu" or (
            device == "auto" and self.engine is not None and self.engine.devices == ("cpu",)
        )
        if not on_cpu:
            return ""
        threads = threads_leaving_one_core()
        return (
            f"This run uses {threads} CPU thread{'' if threads == 1 else 's'} and leaves a "
            "core to the window; the status bar describes the whole computer."
        )

    @Slot()
    def _on_train_panel_run_began(self) -> None:
        """The new run is under way: the previous run's results no longer apply."""
        self.keeper.forget()
        self.results_panel.set_result(None)

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
        # Every way to change the run's inputs waits for the run to end.
        for action in (self.open_dataset_action, self.open_project_action):
            action.setEnabled(not running)
        self.stop_action.setEnabled(running)
        self._update_start_button()

    @Slot(object)
    def _on_training_run_finished(self, event: FitEnd) -> None:
        self.train_panel.show_finished(event)
        result = self.training.last_result
        self.results_panel.set_result(result)
        if result is not None:
            self.keeper.keep(result, self.training.started_at)
        if event.cancelled:
            self.training_finished.emit(True)
            return
        # The Results step is shown once the events waiting now have been handled:
        # together with the work above, its first showing held the window up to ~50 ms.
        self._results_step_timer.start()

    @Slot()
    def _on_results_step_timer_timeout(self) -> None:
        self.tabs.setCurrentIndex(RESULTS_TAB)
        self.training_finished.emit(True)

    @Slot(str, str)
    def _on_training_run_failed(self, message: str, details: str) -> None:
        self.train_panel.show_failed(message, details)
        self.training_finished.emit(False)

    # --- projects --------------------------------------------------------------------------------
    def save_project(self, path: str | Path) -> bool:
        """Write the window's recipe; False (and a message) when there is none yet."""
        from ..engine.errors import UserFacingError

        try:
            recipe = self.recipe()
        except UserFacingError as error:
            self.data_panel.banner.show_error(
                f"Cannot save the project: {error}", source=PROJECT_SOURCE
            )
            return False
        if recipe is None:
            self.statusBar().showMessage("Load a dataset before saving a project.", 5000)
            return False
        try:
            recipe.save(path)
        except OSError as error:
            self.data_panel.banner.show_error(
                f"Cannot save the project to {path}: {error.strerror or error}. "
                "Choose another folder.",
                source=PROJECT_SOURCE,
            )
            return False
        self.data_panel.banner.clear(PROJECT_SOURCE)
        self.statusBar().showMessage(f"Saved {path}", 5000)
        self._project_path, self._saved_recipe = Path(path).expanduser().absolute(), recipe
        self.keeper.set_project(self._project_path)  # its runs folder gets the run shown
        remember_last(self.settings, "project", self._project_path)
        return True

    def open_project(self, path: str | Path) -> bool:
        """Make the project's recipe the window's: every step shows its fields, and the
        dataset folder is checked with the project's split."""
        from ..engine.errors import UserFacingError
        from ..engine.recipe import Recipe

        if self.training.running:
            self.statusBar().showMessage("Stop training before opening a project.", 5000)
            return False
        if not self.may_replace_unkept_model("Open the project"):
            return False
        try:
            recipe = Recipe.load(path)
        except UserFacingError as error:
            self.data_panel.banner.show_error(str(error), source=PROJECT_SOURCE)
            return False
        self.data_panel.banner.clear(PROJECT_SOURCE)
        self.show_recipe(recipe)
        self._project_path, self._saved_recipe = Path(path).expanduser().absolute(), recipe
        remember_last(self.settings, "project", self._project_path)
        self.reopen_bar.hide()
        self.results_panel.set_result(None)  # until the project's last run is back
        self.keeper.open_project(self._project_path)
        return True

    def show_recipe(self, recipe: Recipe) -> None:
        """Make ``recipe`` the window's: every step shows its fields, and its dataset
        folder is checked with its split (nothing trains until then)."""
        self._recipe = recipe
        self.train_panel.show_recipe(recipe)
        self.model_panel.show_recipe(recipe)
        self.data_panel.show_recipe(recipe)
        self._update_start_button()

    def project_changed(self) -> bool:
        """The open project's file no longer holds what the window shows."""
        from ..engine.errors import UserFacingError

        if self._project_path is None or self._saved_recipe is None:
            return False
        try:
            return self.recipe() != self._saved_recipe
        except UserFacingError:
            return True  # values that make no recipe: edited, and not saved

    # --- runs kept, and reopening at launch -------------------------------------------------
    def offer_reopen(self) -> bool:
        """At launch: offer the last project or dataset, if it still exists."""
        last = last_opened(self.settings)
        if last is not None:
            self.reopen_bar.offer(*last)
        return last is not None

    def reopen(self, kind: str, path: str) -> None:
        """Open the project (its last run comes back with it), or the dataset and the
        last run made on it without a project."""
        self.reopen_bar.hide()
        if self.engine is None:
            self._reopen_when_ready = (kind, path)
            self.statusBar().showMessage(f"Reopening {path} once PyTorch has loaded…")
            return
        self._reopen_when_ready = None
        if kind == "project":
            self.open_project(path)
        elif not self.training.running:
            self.data_panel.load_folder(path)
            self.keeper.restore(dataset=path)

    @Slot(str, str)
    def _on_reopen_bar_reopen_requested(self, kind: str, path: str) -> None:
        self.reopen(kind, path)

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
            lines.append(f"Device: {self.device_label.text()}")
        return "<br>".join(lines)

    @Slot()
    def show_guide(self) -> None:
        """Help > Getting started, beside the window (not modal)."""
        if self._guide is None:
            self._guide = GettingStartedDialog(self)
        self._guide.show()
        self._guide.raise_()
        self._guide.activateWindow()

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

    def work_at_risk(self) -> list[str]:
        """What quitting now would lose, in words; empty when nothing."""
        lost = []
        if self.keeper.unkept is not None and not self.results_panel.exporting:
            lost.append("the trained model on screen, which is not kept with the runs")
        if self.project_changed() and self._project_path is not None:
            lost.append(f"the changes to the project {self._project_path.name}")
        return lost

    def may_replace_unkept_model(self, action: str) -> bool:
        """A new run or project replaces the model on screen: ask first when that model
        exists nowhere else (it could not be kept with the runs, or its run was deleted,
        and it was not exported)."""
        keeper = self.keeper
        if keeper.unkept is None or self.results_panel.exporting:
            return True
        return not self._ask_before_quitting or self.confirm_replace_model(action)

    def confirm_replace_model(self, action: str) -> bool:
        buttons = QMessageBox.StandardButton
        choice = QMessageBox.question(
            self,
            f"{action}?",
            "The model on screen is not kept with the runs and has not been "
            f"exported. {action} and lose it? Export it first to keep it.",
            buttons.Yes | buttons.Cancel,
            buttons.Cancel,
        )
        return choice == buttons.Yes

    def confirm_quit(self, lost: list[str]) -> str:
        """Ask before losing work: "save" (the project, then quit), "quit" or "stay"."""
        can_save = any(what.startswith("the changes") for what in lost)
        buttons = QMessageBox.StandardButton
        choice = QMessageBox.question(
            self,
            "Quit without saving?",
            f"Quitting now loses {' and '.join(lost)}.",
            (buttons.Save if can_save else buttons.NoButton) | buttons.Discard | buttons.Cancel,
            buttons.Cancel,
        )
        return {buttons.Save: "save", buttons.Discard: "quit"}.get(choice, "stay")

    def _may_close(self) -> bool:
        lost = self.work_at_risk()
        if not lost:
            return True
        choice = self.confirm_quit(lost)
        if choice == "save" and self._project_path is not None:
            return self.save_project(self._project_path)
        return choice == "quit"

    def close_without_asking(self) -> bool:
        """Close for a scripted run told to quit: no question may wait for an answer."""
        self._ask_before_quitting = False
        return self.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.training.running and not self.confirm_stop_training():
            event.ignore()
            return
        if self._ask_before_quitting and not self._may_close():
            event.ignore()
            return
        self.runner.shutdown(CLOSE_WAIT_S)  # aborts training (and its final evaluation) too
        self.settings.setValue("window/geometry", self.saveGeometry())
        if self.model_panel.backbone:
            self.settings.setValue("model/backbone", self.model_panel.backbone)
        self.train_panel.save_settings(self.settings)
        self.settings.sync()
        event.accept()
