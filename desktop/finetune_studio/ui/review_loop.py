"""UI layer: the review-and-repair loop's wiring between the Results step's suspects
list and the rest of the window.

Find asks the window for its recipe and pictures; a repair (or its undo) re-checks
the dataset folder at once, so the Data step and the next run see the pictures where
they now are; Retrain starts the same recipe once that check is done (pictures that
did not move reuse their cached features); Edit > Undo (Ctrl+Z) puts back the last
repair. While a run trains, the list is locked: the run is reading those pictures.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Slot
from PySide6.QtGui import QAction, QKeySequence

if TYPE_CHECKING:
    from ..engine.inspection import DatasetReport
    from .main_window import MainWindow


class ReviewLoop(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.panel = panel = window.results_panel.suspects
        self._retrain_when_checked = False
        self.undo_action = QAction("&Undo the last repair", window)
        self.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
        self.undo_action.setEnabled(False)
        self.undo_action.triggered.connect(panel.undo)
        panel.find_requested.connect(self._on_find_requested)
        panel.dataset_changed.connect(self._on_dataset_changed)
        panel.retrain_requested.connect(self._on_retrain_requested)
        window.data_panel.dataset_loaded.connect(self._on_dataset_loaded)
        window.training.running_changed.connect(self._on_training_running_changed)

    @Slot()
    def _on_find_requested(self) -> None:
        from ..engine.errors import UserFacingError

        window = self.window
        reason = window.start_blocker()
        if window.training.running:
            reason = "Wait for the run to finish: it is reading these pictures."
        if reason is None and not window.model_panel.ready:
            reason = "The network is still loading (step 2)…"
        if reason is not None:
            self.panel.show_unavailable(reason)
            return
        try:
            recipe = window.recipe()
        except UserFacingError as error:
            self.panel.show_unavailable(str(error))
            return
        if recipe is not None:
            self.panel.start(recipe, window.data_panel.report)

    @Slot()
    def _on_dataset_changed(self) -> None:
        if self.panel.dataset is not None:
            self.window.data_panel.load_folder(self.panel.dataset)

    @Slot()
    def _on_retrain_requested(self) -> None:
        if self.window.data_panel.loading:
            self._retrain_when_checked = True  # the re-check after the last repair
        else:
            self._retrain()

    @Slot(object)
    def _on_dataset_loaded(self, report: DatasetReport) -> None:
        shown = self.panel.dataset
        if shown is not None and Path(shown).resolve() != Path(report.root).resolve():
            self.panel.set_dataset(None)  # suspects of another folder
        self.undo_action.setEnabled(not self.window.training.running)
        if self._retrain_when_checked:
            self._retrain_when_checked = False
            self._retrain()

    def _retrain(self) -> None:
        if self.window.start_training():
            self.panel.ran_again()

    @Slot(bool)
    def _on_training_running_changed(self, running: bool) -> None:
        self.panel.setEnabled(not running)
        self.undo_action.setEnabled(not running and self.window.data_panel.report is not None)
