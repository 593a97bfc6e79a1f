"""UI layer: "Suspected wrong labels" in the Results step, and repairing them.

Find runs the engine's ``SuspectSearch`` as a task (progress, Cancel) for the window's
recipe. The table lists the suspects, most suspicious first; a selection can be moved
to its suggested class, to a class the user picks, or excluded. Every move goes
through the dataset's repair journal (``engine.review.journal``), so Undo (Ctrl+Z in
the window) works across restarts and the app never deletes a picture. Once the
dataset changed, Retrain runs the same recipe on it again in one click.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QModelIndex, QSize, Qt, Signal, Slot
from PySide6.QtGui import QIcon, QStandardItem, QStandardItemModel
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

from ..workers.event_job import EventsJob
from ..workers.tasks import Task, TaskRunner
from .task_progress import show_stages, show_starting

if TYPE_CHECKING:
    from ...engine.inspection import DatasetReport
    from ...engine.recipe import Recipe
    from ...engine.review.journal import Action
    from ...engine.review.suspects import SuspectReport
    from ..workers.thumbnails import ThumbnailLoader

COLUMNS = ("Picture", "Labelled", "Probably", "Suspicion", "Now")
ICON_SIZE = 48
PATH_ROLE = Qt.ItemDataRole.UserRole + 1
SUGGESTED_ROLE = Qt.ItemDataRole.UserRole + 2
EXPLANATION = (
    "Finds the pictures whose label disagrees most with what the network sees in them: "
    "each picture is judged by a head trained without it (5-fold cross-validation), "
    "then ranked by confident learning."
)


class SuspectsPanel(QWidget):
    find_requested = Signal()  # the window answers with start(recipe, report)
    suspects_found = Signal(dict)  # {path: suggested class index}
    dataset_changed = Signal()  # pictures were moved (or put back)
    retrain_requested = Signal()
    picture_opened = Signal(str)  # a path, double-clicked
    search_ended = Signal(bool)  # True when suspects were found and listed

    def __init__(self, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.task: Task | None = None
        self.report: SuspectReport | None = None
        self.dataset: str | None = None
        self.changed = False  # the dataset changed since the last run
        self.thumbnails: ThumbnailLoader | None = None
        # Journal actions per repair made here, newest last: one Undo puts back a whole
        # repair ("Move to suggested class" makes an action per class). Actions made
        # before a restart, or with the CLI, are undone one at a time.
        self._repairs: list[int] = []

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
        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.verticalHeader().hide()
        self.table.setIconSize(QSize(ICON_SIZE, ICON_SIZE))
        self.table.verticalHeader().setDefaultSectionSize(ICON_SIZE + 6)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)

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

        find_row = QHBoxLayout()
        find_row.addWidget(self.find_button)
        find_row.addWidget(self.progress, stretch=1)
        find_row.addWidget(self.cancel_button)
        find_row.addStretch(0)
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

        self.find_button.clicked.connect(self.find_requested)
        self.cancel_button.clicked.connect(self._on_cancel_button_clicked)
        self.move_suggested_button.clicked.connect(self.move_to_suggested)
        self.move_to_menu.triggered.connect(self._on_move_to_menu_triggered)
        self.exclude_button.clicked.connect(self.exclude_selected)
        self.undo_button.clicked.connect(self.undo)
        self.retrain_button.clicked.connect(self.retrain_requested)
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)
        self.table.doubleClicked.connect(self._on_table_double_clicked)
        self._update_buttons()

    def set_thumbnails(self, loader: ThumbnailLoader) -> None:
        """Show each suspect's picture, decoded off the GUI thread by ``loader`` (the
        gallery's, so a picture is decoded once for both)."""
        self.thumbnails = loader
        loader.thumbnails_arrived.connect(self._on_thumbnails_arrived)

    @Slot(list)
    def _on_thumbnails_arrived(self, paths: list[str]) -> None:
        arrived = set(paths)
        for row in range(self.model.rowCount()):
            if self._path(row) in arrived:
                self._show_thumbnail(row)

    def _show_thumbnail(self, row: int) -> None:
        pixmap = self.thumbnails.thumbnail(self._path(row)) if self.thumbnails else None
        if pixmap is not None:
            self.model.item(row, 0).setIcon(QIcon(pixmap))

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

    def set_dataset(self, folder: str | None) -> None:
        """The dataset the window works on; suspects of another one are forgotten."""
        if folder == self.dataset:
            return
        if self.task is not None:
            self.task.discard()
            self.task = None
            self._set_running(False)
        self.dataset, self.report, self.changed = folder, None, False
        self._repairs.clear()
        self.model.removeRows(0, self.model.rowCount())
        self.note.hide()
        self.status.setText("")
        self.title.setText("<b>Suspected wrong labels</b>")
        self._update_buttons()

    def _set_running(self, running: bool) -> None:
        self.find_button.setEnabled(not running)
        self.cancel_button.setVisible(running)
        self.progress.setVisible(running)
        if running:
            show_starting(self.progress)

    @Slot(list)
    def _on_task_progressed(self, events: list[object]) -> None:
        show_stages(self.progress, self.status, events)

    @Slot(object)
    def _on_task_succeeded(self, report: SuspectReport | None) -> None:
        self.task = None
        self._set_running(False)
        if report is None:
            self.status.setText("Search stopped.")
            self.search_ended.emit(False)
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
        names = report.class_names
        self.model.removeRows(0, self.model.rowCount())
        for suspect in report.suspects:
            picture = QStandardItem(Path(suspect.path).name)
            picture.setToolTip(suspect.path)
            picture.setData(suspect.path, PATH_ROLE)
            picture.setData(suspect.suggested, SUGGESTED_ROLE)
            cells = [
                picture,
                QStandardItem(names[suspect.given]),
                QStandardItem(names[suspect.suggested]),
                QStandardItem(f"{suspect.score:.0%}"),
                QStandardItem(""),
            ]
            self.model.appendRow(cells)
            self._show_thumbnail(self.model.rowCount() - 1)
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
        for name in names:
            self.move_to_menu.addAction(name)
        self._update_buttons()
        self.suspects_found.emit({s.path: s.suggested for s in report.suspects})

    # --- repairing -------------------------------------------------------------------------
    def selected_rows(self) -> list[int]:
        return sorted({index.row() for index in self.table.selectionModel().selectedRows()})

    def _path(self, row: int) -> str:
        return str(self.model.item(row, 0).data(PATH_ROLE))

    def _is_moved(self, row: int) -> bool:
        return bool(self.model.item(row, 4).text())

    @Slot()
    def _update_buttons(self) -> None:
        rows = [row for row in self.selected_rows() if not self._is_moved(row)]
        for button in (self.move_suggested_button, self.move_to_button, self.exclude_button):
            button.setEnabled(bool(rows))
        self.undo_button.setEnabled(self.dataset is not None)
        self.retrain_button.setEnabled(self.changed)

    @Slot()
    def move_to_suggested(self) -> None:
        """Each selected picture to its own suggested class (one journal action per class)."""
        if self.report is None:
            return
        names = self.report.class_names
        by_class: dict[str, list[str]] = defaultdict(list)
        for row in self.selected_rows():
            if not self._is_moved(row):
                suggested = int(self.model.item(row, 0).data(SUGGESTED_ROLE))
                by_class[names[suggested]].append(self._path(row))
        self._repair([(paths, name) for name, paths in by_class.items()])

    def move_selected_to(self, class_name: str) -> None:
        paths = [self._path(r) for r in self.selected_rows() if not self._is_moved(r)]
        self._repair([(paths, class_name)])

    @Slot()
    def exclude_selected(self) -> None:
        paths = [self._path(r) for r in self.selected_rows() if not self._is_moved(r)]
        self._repair([(paths, None)])

    def _on_move_to_menu_triggered(self, action: object) -> None:
        from PySide6.QtGui import QAction

        if isinstance(action, QAction):
            self.move_selected_to(action.text())

    def _repair(self, batches: list[tuple[list[str], str | None]]) -> None:
        """Move each batch (to a class, or excluded when None); stops at the first
        refusal, which the journal guarantees left that batch unmoved."""
        from ...engine.errors import UserFacingError
        from ...engine.review.journal import RepairJournal

        if self.dataset is None or not any(paths for paths, _ in batches):
            return
        journal = RepairJournal(self.dataset)
        moved, actions = 0, 0
        for paths, class_name in batches:
            if not paths:
                continue
            try:
                action = (
                    journal.exclude(paths)
                    if class_name is None
                    else journal.relabel(paths, class_name)
                )
            except UserFacingError as error:
                self.status.setText(f"Nothing more was moved: {error}")
                break
            moved += len(action.moves)
            actions += 1
            self._mark(action)
        if actions:
            self._repairs.append(actions)
        if moved:
            where = "excluded" if batches[0][1] is None else "moved"
            self.status.setText(f"{moved} picture(s) {where}. Undo (Ctrl+Z) puts them back.")
            self._dataset_changed()

    def _mark(self, action: Action) -> None:
        """Show in the table where each moved picture went (or that it came back)."""
        rows = {self._path(row): row for row in range(self.model.rowCount())}
        for move in action.moves:
            if action.kind == "undo":
                row = rows.get(str(move.destination))
                text = ""
            else:
                row = rows.get(str(move.source))
                text = "excluded" if action.kind == "exclude" else f"in {action.to_class}"
            if row is not None:
                self.model.item(row, 4).setText(text)

    @Slot()
    def undo(self) -> None:
        """Put back the latest repair made here, else the latest action in the
        dataset's journal (made before a restart, or with the CLI)."""
        from ...engine.errors import UserFacingError
        from ...engine.review.journal import RepairJournal

        if self.dataset is None:
            return
        journal = RepairJournal(self.dataset)
        put_back, missing = 0, 0
        for _ in range(self._repairs.pop() if self._repairs else 1):
            try:
                action = journal.undo()
            except UserFacingError as error:
                self.status.setText(f"Could not undo: {error}")
                return
            if action is None:
                break
            self._mark(action)
            put_back += len(action.moves)
            missing += len(action.missing)
        if not put_back and not missing:
            self.status.setText("Nothing to undo in this dataset.")
            return
        text = f"Put back {put_back} picture(s)."
        if missing:
            text += f" {missing} could not be found and stay where they are."
        self.status.setText(text)
        self._dataset_changed()

    def _dataset_changed(self) -> None:
        self.changed = True
        self._update_buttons()
        self.dataset_changed.emit()

    def ran_again(self) -> None:
        """A run on the repaired dataset started: Retrain has done its job."""
        self.changed = False
        self._update_buttons()

    @Slot(QModelIndex)
    def _on_table_double_clicked(self, index: QModelIndex) -> None:
        self.picture_opened.emit(self._path(index.row()))
