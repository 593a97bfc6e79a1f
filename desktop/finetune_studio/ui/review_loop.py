"""UI layer: the review-and-repair loop's wiring between the Results step's suspects
list and the rest of the window.

Find asks the window for its recipe and pictures; every dataset the window loads is
the one whose journal Undo reads (so Ctrl+Z works after a restart too); a repair (or
its undo) re-checks the dataset folder at once, so the Data step and the next run
see the pictures where they now are; Retrain starts the same recipe once that check
has succeeded on that folder (pictures that did not move reuse their cached
features). While a run trains, repairs wait: the run is reading those pictures.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Slot
from PySide6.QtGui import QAction, QKeySequence

if TYPE_CHECKING:
    from ..engine.inspection import DatasetReport
    from .main_window import MainWindow

TRAINING_LOCK = "A run is training on these pictures: repairs wait until it ends."


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
        panel.undo_available_changed.connect(self.undo_action.setEnabled)
        panel.find_requested.connect(self._on_find_requested)
        panel.dataset_changed.connect(self._on_dataset_changed)
        panel.retrain_requested.connect(self._on_retrain_requested)
        window.data_panel.dataset_loaded.connect(self._on_dataset_loaded)
        window.data_panel.loading_changed.connect(self._on_loading_changed)
        window.training.running_changed.connect(self._on_training_running_changed)

    @Slot()
    def _on_find_requested(self) -> None:
        from ..engine.errors import UserFacingError

        window = self.window
        reason = window.start_blocker()
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
        retrain = self._retrain_when_checked and shown is not None
        retrain = retrain and shown is not None and _same_folder(report.root, shown)
        self.panel.set_dataset(report.root)  # Undo reads this folder's journal
        if retrain:
            self._retrain_when_checked = False
            self._retrain()

    @Slot(bool)
    def _on_loading_changed(self, loading: bool) -> None:
        """A check that ended without loading (failed, stopped, errors) drops a waiting
        Retrain: it must not start later on whatever folder loads next."""
        if not loading and self._retrain_when_checked:
            QTimer.singleShot(0, self._drop_waiting_retrain)  # after dataset_loaded, if any

    @Slot()
    def _drop_waiting_retrain(self) -> None:
        if self._retrain_when_checked:
            self._retrain_when_checked = False
            self.panel.show_status("Not retrained: the dataset could not be checked (step 1).")

    def _retrain(self) -> None:
        if self.window.start_training():
            self.panel.ran_again()

    @Slot(bool)
    def _on_training_running_changed(self, running: bool) -> None:
        self.panel.lock(TRAINING_LOCK if running else "")


def _same_folder(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)
