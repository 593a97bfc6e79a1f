"""UI layer: "Suspected wrong labels" in the Results step, and repairing them.

Find runs the engine's ``SuspectSearch`` as a task (progress, Cancel) for the window's
recipe. The table (``models.suspects_model``) lists the suspects, most suspicious
first; a selection can be moved to its suggested class, to a class the user picks, or
excluded. Every move goes through the dataset's repair journal (``ui.repairs``, off
the window's thread), so Undo (Ctrl+Z in the window) works across restarts and the
app never deletes a picture. Repairs wait while a search or a training run reads the
pictures. Once the dataset changed, Retrain runs the same recipe on it again.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import TYPE_CHECKING

from PySide6.QtCore import QModelIndex, QSize, Qt, Signal, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..models.suspects_model import SuspectsModel
from ..repairs import Batch, RepairOutcome, Repairs
from ..workers.event_job import EventsJob
from ..workers.tasks import Task, TaskRunner
from .task_progress import show_stages, show_starting

if TYPE_CHECKING:
    from ...engine.inspection import DatasetReport
    from ...engine.recipe import Recipe
    from ...engine.review.suspects import SuspectReport
    from ..workers.thumbnails import ThumbnailLoader

ICON_SIZE = 48
EXPLANATION = (
    "Finds the pictures whose label disagrees most with what the network sees in them: "
    "each picture is judged by a head trained without it (5-fold cross-validation), "
    "then ranked by confident learning."
)


class SuspectsPanel(QWidget):
    find_requested = Signal()  # the window answers with start(recipe, report)
    suspects_found = Signal(dict)  # {path: suggested class index}
    search_ended = Signal(bool)  # True when suspects were found and listed
    running_changed = Signal(bool)  # a search started or ended
    dataset_changed = Signal()  # pictures were moved (or put back)
    retrain_requested = Signal()
    picture_opened = Signal(str)  # a path, double-clicked
    undo_available_changed = Signal(bool)  # whether Undo can be pressed now

    def __init__(self, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.task: Task | None = None
        self.report: SuspectReport | None = None
        self.changed = False  # the dataset changed since the last run
        self.locked_reason = ""  # why repairs wait (a training run), "" when they need not
        self.thumbnails: ThumbnailLoader | None = None
        self.repairs = Repairs(runner, self)

        self.title = QLabel("<b>Suspected wrong labels</b>")
        explanation = QLabel(EXPLANATION)
        explanation.setWordWrap(True)
        self.find_button = QPushButton("Find suspects")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.progress = QProgressBar()
        self.progress.hide()
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.hide()
        self.model = SuspectsModel(self)
        self.table = self._table()
        self.move_suggested_button = QPushButton("Move to suggested class")
        self.move_to_button = QToolButton()
        self.move_to_button.setText("Move to…")
        self.move_to_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.move_to_menu = QMenu(self.move_to_button)
        self.move_to_button.setMenu(self.move_to_menu)
        self.exclude_button = QPushButton("Exclude")
        self.exclude_button.setToolTip(
            "Moves the pictures into the dataset's hidden .finetune-studio/excluded "
            "folder; nothing is deleted, and Undo puts them back."
        )
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Put back the last pictures moved in this dataset (Ctrl+Z)")
        self.retrain_button = QPushButton("Retrain with the same recipe")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._lay_out(explanation)

        self.find_button.clicked.connect(self.find_requested)
        self.cancel_button.clicked.connect(self._on_cancel_button_clicked)
        self.move_suggested_button.clicked.connect(self.move_to_suggested)
        self.move_to_menu.triggered.connect(self._on_move_to_menu_triggered)
        self.exclude_button.clicked.connect(self.exclude_selected)
        self.undo_button.clicked.connect(self.undo)
        self.retrain_button.clicked.connect(self.retrain_requested)
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)
        self.table.doubleClicked.connect(self._on_table_double_clicked)
        self.repairs.finished.connect(self._on_repairs_finished)
        self.repairs.busy_changed.connect(self._update_buttons)
        self.repairs.undo_available_changed.connect(self._update_buttons)
        self._update_buttons()

    def _table(self) -> QTableView:
        table = QTableView()
        table.setModel(self.model)
        table.verticalHeader().hide()
        table.setIconSize(QSize(ICON_SIZE, ICON_SIZE))
        table.verticalHeader().setDefaultSectionSize(ICON_SIZE + 6)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        return table

    def _lay_out(self, explanation: QLabel) -> None:
        find_row = QHBoxLayout()
        find_row.addWidget(self.find_button)
        find_row.addWidget(self.progress, stretch=1)
        find_row.addWidget(self.cancel_button)
        actions = QHBoxLayout()
        for button in (self.move_suggested_button, self.move_to_button, self.exclude_button):
            actions.addWidget(button)
        actions.addStretch(1)
        actions.addWidget(self.undo_button)
        actions.addWidget(self.retrain_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(explanation)
        layout.addLayout(find_row)
        layout.addWidget(self.note)
        layout.addWidget(self.table, stretch=1)
        layout.addLayout(actions)
        layout.addWidget(self.status)

    @property
    def dataset(self) -> str | None:
        return self.repairs.dataset

    def set_thumbnails(self, loader: ThumbnailLoader) -> None:
        """Show each suspect's picture, decoded off the GUI thread by ``loader`` (the
        gallery's, so a picture is decoded once for both)."""
        self.thumbnails = loader
        loader.thumbnails_arrived.connect(self._on_thumbnails_arrived)

    @Slot(list)
    def _on_thumbnails_arrived(self, paths: list[str]) -> None:
        for row in self.model.rows_of(set(paths)):
            self._show_thumbnail(row)

    def _show_thumbnail(self, row: int) -> None:
        pixmap = self.thumbnails.thumbnail(self.model.path(row)) if self.thumbnails else None
        if pixmap is not None:
            self.model.set_thumbnail(row, pixmap)

    # --- finding ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.task is not None and self.task.running

    def start(self, recipe: Recipe, dataset: DatasetReport | None) -> None:
        from ...engine.review.suspects import SuspectSearch
        from ..workers.training import threads_leaving_one_core

        if self.running:
            return
        search = SuspectSearch(recipe, dataset, cpu_threads=threads_leaving_one_core())
        self.set_dataset(recipe.dataset)
        self.task = task = self.runner.start(EventsJob(search.events, search.cancel), "suspects")
        task.progressed.connect(self._on_task_progressed)
        task.succeeded.connect(self._on_task_succeeded)
        task.failed.connect(self._on_task_failed)
        task.cancelled.connect(self._on_task_cancelled)
        self._set_running(True)
        self.status.setText("")

    def show_unavailable(self, reason: str) -> None:
        self.status.setText(reason)
        self.search_ended.emit(False)

    def show_status(self, text: str) -> None:
        self.status.setText(text)

    def set_dataset(self, folder: str | None) -> None:
        """The dataset the window works on; suspects of another one are forgotten."""
        if not _same_folder(folder, self.dataset):
            if self.task is not None:
                self.task.discard()
                self.task = None
                self._set_running(False)
            self.report, self.changed = None, False
            self.model.show_report(None)
            self.note.hide()
            self.status.setText("")
            self.title.setText("<b>Suspected wrong labels</b>")
        self.repairs.set_dataset(folder)  # also re-reads what can be undone
        self._update_buttons()

    def _set_running(self, running: bool) -> None:
        self.cancel_button.setVisible(running)
        self.progress.setVisible(running)
        if running:
            show_starting(self.progress)
        self._update_buttons()
        self.running_changed.emit(running)

    @Slot(list)
    def _on_task_progressed(self, events: list[object]) -> None:
        show_stages(self.progress, self.status, events)

    @Slot(object)
    def _on_task_succeeded(self, report: SuspectReport | None) -> None:
        self.task = None
        self._set_running(False)
        if report is None:
            self._on_task_cancelled()
            return
        self.show_report(report)
        self.search_ended.emit(True)

    @Slot(str, str)
    def _on_task_failed(self, message: str, details: str) -> None:
        self.task = None
        self._set_running(False)
        self.status.setText(f"Could not search: {message}")
        self.status.setToolTip(details)
        self.search_ended.emit(False)

    @Slot()
    def _on_task_cancelled(self) -> None:
        self.task = None
        self._set_running(False)
        self.status.setText("Search stopped.")
        self.search_ended.emit(False)

    @Slot()
    def _on_cancel_button_clicked(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def show_report(self, report: SuspectReport) -> None:
        self.report = report
        self.model.show_report(report)
        for row in range(self.model.rowCount()):
            self._show_thumbnail(row)
        count = len(report.suspects)
        self.title.setText(f"<b>Suspected wrong labels ({count})</b>")
        self.note.setText(report.note)
        self.note.setVisible(bool(report.note))
        self.status.setText(
            f"{count} of {report.pictures} pictures look mislabelled."
            if count
            else f"None of the {report.pictures} pictures looks mislabelled."
        )
        self.move_to_menu.clear()
        for name in report.class_names:
            action = self.move_to_menu.addAction(name)
            action.setData(name)  # the text may gain an accelerator's "&"
        self._update_buttons()
        self.suspects_found.emit({s.path: s.suggested for s in report.suspects})

    # --- repairing -------------------------------------------------------------------------
    def lock(self, reason: str) -> None:
        """Repairs (and searches) wait while ``reason`` holds ("" releases them); a
        search already running keeps its Cancel."""
        self.locked_reason = reason
        self._update_buttons()

    def selected_rows(self) -> list[int]:
        rows = {index.row() for index in self.table.selectionModel().selectedRows()}
        return sorted(row for row in rows if not self.model.is_moved(row))

    @Slot()
    def _update_buttons(self) -> None:
        free = not (self.locked_reason or self.running or self.repairs.busy)
        rows = self.selected_rows()
        for button in (self.move_suggested_button, self.move_to_button, self.exclude_button):
            button.setEnabled(free and bool(rows))
        self.find_button.setEnabled(not (self.locked_reason or self.running))
        self.undo_button.setEnabled(free and self.repairs.undo_available)
        self.retrain_button.setEnabled(free and self.changed)
        self.undo_available_changed.emit(self.can_undo)

    @property
    def can_undo(self) -> bool:
        return not (self.locked_reason or self.running or self.repairs.busy) and (
            self.repairs.undo_available
        )

    @Slot()
    def move_to_suggested(self) -> None:
        """Each selected picture to its own suggested class (one journal action per class)."""
        by_class: dict[str, list[str]] = defaultdict(list)
        for row in self.selected_rows():
            by_class[self.model.suggested_class(row)].append(self.model.path(row))
        self._repair([(paths, name) for name, paths in by_class.items()])

    def move_selected_to(self, class_name: str) -> None:
        self._repair([([self.model.path(r) for r in self.selected_rows()], class_name)])

    @Slot()
    def exclude_selected(self) -> None:
        self._repair([([self.model.path(r) for r in self.selected_rows()], None)])

    @Slot(QAction)
    def _on_move_to_menu_triggered(self, action: QAction) -> None:
        self.move_selected_to(str(action.data()))

    def _repair(self, batches: list[Batch]) -> None:
        if not self.locked_reason and not self.running and self.repairs.repair(batches):
            self.status.setText("Moving pictures…")

    @Slot()
    def undo(self) -> None:
        """Put back the latest repair made here, else the latest action in the
        dataset's journal (made before a restart, or with the CLI)."""
        if self.can_undo and self.repairs.undo():
            self.status.setText("Putting pictures back…")

    @Slot(object)
    def _on_repairs_finished(self, outcome: RepairOutcome) -> None:
        for action in outcome.actions:
            self.model.mark(action)
        self.status.setText(_outcome_text(outcome))
        if outcome.actions:
            self.changed = True
            self.dataset_changed.emit()
        self._update_buttons()

    def ran_again(self) -> None:
        """A run on the repaired dataset started: Retrain has done its job."""
        self.changed = False
        self._update_buttons()

    @Slot(QModelIndex)
    def _on_table_double_clicked(self, index: QModelIndex) -> None:
        self.picture_opened.emit(self.model.path(index.row()))


def _same_folder(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    return os.path.realpath(a) == os.path.realpath(b)


def _outcome_text(outcome: RepairOutcome) -> str:
    if outcome.nothing_to_undo:
        return "Nothing to undo in this dataset."
    if outcome.undo:
        text = f"Put back {outcome.moved} picture(s)."
        if outcome.missing:
            text += f" {outcome.missing} could not be found and stay where they are."
    elif outcome.moved:
        text = f"{outcome.moved} picture(s) moved. Undo (Ctrl+Z) puts them back."
    else:
        text = ""
    if outcome.error:
        prefix = "Could not undo" if outcome.undo else "Nothing more was moved"
        text = f"{text} {prefix}: {outcome.error}".strip()
    return text
