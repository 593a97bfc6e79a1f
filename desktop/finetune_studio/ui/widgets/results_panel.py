"""UI layer: step 4, how good the model is, the pictures behind every figure, the
suspected wrong labels, what it says about new pictures (``try_it``), export."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QModelIndex, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..models.table_models import ConfusionMatrixModel, RowsModel
from ..resources import action_icon
from ..workers.tasks import ProgressFn, Task, TaskRunner
from .banner import Banner
from .export_table import ExportTable, format_checkboxes
from .gallery import OLD_RUN_HINT, Gallery
from .picture_viewer import PictureViewer
from .suspects_panel import SuspectsPanel
from .try_it import TryItBox

if TYPE_CHECKING:
    from ...engine.evaluation import Evaluation
    from ...engine.review.records import PictureRecord
    from ...engine.training import TrainingResult

NO_RESULT = "Train a model to see its results here."
NO_VALIDATION_HINT = "There were no validation pictures to show here."
STORAGE_SOURCE = "storage"  # keeping or reopening a run failed: cleared when one succeeds


Preview = tuple[bytes, int, int]


class ModelExport:
    """A task's function: write the model folder (and the other formats)."""

    def __init__(
        self, result: TrainingResult, folder: Path, overwrite: bool, formats: tuple[str, ...]
    ) -> None:
        self.result, self.folder, self.overwrite, self.formats = result, folder, overwrite, formats

    def __call__(self, progress: ProgressFn, cancel: threading.Event) -> str:
        from ...engine.export import save_model_folder

        folder = save_model_folder(self.result, self.folder, self.overwrite, self.formats, progress)
        return str(folder)


def evaluation_records(evaluation: Evaluation) -> list[PictureRecord]:
    predictions = evaluation.predictions
    return [] if predictions is None else predictions.records()


def suggested_export_name(result: TrainingResult) -> str:
    dataset = Path(result.recipe.dataset).name or "model"
    return re.sub(r"[^\w.-]+", "-", f"{dataset}-{result.spec.name}")


class ResultsPanel(QWidget):
    exported = Signal(str)  # the folder written
    export_failed = Signal(str)  # the message shown
    predictions_shown = Signal(int)  # relayed from the Try it box

    def __init__(self, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.result: TrainingResult | None = None
        self.export_task: Task | None = None

        self.banner = Banner()
        self.summary = QLabel(NO_RESULT)
        self.summary.setWordWrap(True)
        self.per_class_model = RowsModel(["Class", "Validation pictures", "Accuracy"], self)
        self.per_class_view = QTableView()
        self.per_class_view.setModel(self.per_class_model)
        self.confusion_model = ConfusionMatrixModel(self)
        self.confusion_view = QTableView()
        self.confusion_view.setModel(self.confusion_model)
        for view in (self.per_class_view, self.confusion_view):
            view.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
            view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.per_class_view.verticalHeader().hide()

        self.try_it = TryItBox(runner, self.banner)
        self.format_boxes = format_checkboxes()
        self.torchscript, self.onnx = self.format_boxes["torchscript"], self.format_boxes["onnx"]
        self.export_table = ExportTable()
        self.export_button = QPushButton("Export…")
        self.export_button.setIcon(action_icon("export"))
        self.export_status = QLabel(
            "The model folder always holds model.safetensors and "
            "model.json (classes and preprocessing)."
        )
        self.export_status.setWordWrap(True)
        self.export_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        export_box = QGroupBox("Export")
        export_layout = QHBoxLayout()
        export_layout.addWidget(QLabel("Also as:"))
        for box in self.format_boxes.values():
            export_layout.addWidget(box)
        export_layout.addWidget(self.export_button)
        export_layout.addWidget(self.export_status, stretch=1)
        export_column = QVBoxLayout(export_box)
        export_column.addLayout(export_layout)
        export_column.addWidget(self.export_table)

        metrics = QSplitter(Qt.Orientation.Vertical)
        per_class_box = QGroupBox("Accuracy per class (validation)")
        QVBoxLayout(per_class_box).addWidget(self.per_class_view)
        confusion_box = QGroupBox("Confusion matrix: true class per row, predicted per column")
        QVBoxLayout(confusion_box).addWidget(self.confusion_view)
        metrics.addWidget(per_class_box)
        metrics.addWidget(confusion_box)
        self.gallery = Gallery()
        self.viewer: PictureViewer | None = None
        self.side_tabs = QTabWidget()
        self.side_tabs.addTab(self.gallery, "Pictures")
        self.suspects = SuspectsPanel(runner)
        self.suspects.set_thumbnails(self.gallery.thumbnails)
        self.side_tabs.addTab(self.suspects, "Suspected wrong labels")
        self.side_tabs.addTab(self.try_it, "Try it")
        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(metrics)
        body.addWidget(self.side_tabs)
        body.setSizes([500, 600])
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(self.summary)
        layout.addWidget(body, stretch=1)
        layout.addWidget(export_box)

        self.export_button.clicked.connect(self.choose_export_folder)
        self.try_it.predictions_shown.connect(self.predictions_shown)
        self.try_it.shown_requested.connect(self._on_try_it_shown_requested)
        self._connect_gallery()
        self.set_result(None)

    # --- results ---------------------------------------------------------------------------
    def set_result(self, result: TrainingResult | None, note: str = "") -> None:
        """Show a run's results; ``note`` says where it came from (a reopened run)."""
        self.try_it.set_result(result)
        self.result = result
        for widget in (self.export_button, *self.format_boxes.values()):
            widget.setEnabled(result is not None)
        self.export_table.clear()
        if self.viewer is not None:
            self.viewer.reject()  # a picture of the previous model
        if result is None:
            self.summary.setText(NO_RESULT)
            self.per_class_model.set_rows([])
            self.confusion_model.set_matrix([], [])
            self.gallery.set_records([], [])
            return
        evaluation = result.evaluation
        suffix = f"<br>{note}" if note else ""
        if evaluation is None or not evaluation.images:
            self.summary.setText(
                f"The model is trained, but there were no validation pictures.{suffix}"
            )
            self.per_class_model.set_rows([])
            self.confusion_model.set_matrix([], [])
            self.gallery.set_records([], result.class_names, NO_VALIDATION_HINT)
            return
        stopped = (
            " (stopped early)"
            if result.stopped_early
            else (" (stopped by you)" if result.cancelled else "")
        )
        self.summary.setText(
            f"<b>Validation accuracy {evaluation.accuracy:.1%}</b> on {evaluation.images} "
            f"pictures · best {result.unit} {result.best_epoch} of {len(result.history)}"
            f"{stopped} · "
            f"{result.spec.name}{suffix}"
        )
        counts = [sum(row) for row in evaluation.confusion]
        self.per_class_model.set_rows(
            list(zip(result.class_names, counts, evaluation.per_class_accuracy))
        )
        self.confusion_model.set_matrix(result.class_names, evaluation.confusion)
        self.gallery.set_records(evaluation_records(evaluation), result.class_names, OLD_RUN_HINT)

    # --- pictures -----------------------------------------------------------------------
    def _connect_gallery(self) -> None:
        """A confusion cell, a class (its row in either table) or a predicted class (a
        column header) lists its pictures in the gallery."""
        self.confusion_view.clicked.connect(self._on_confusion_view_clicked)
        self.confusion_view.activated.connect(self._on_confusion_view_clicked)
        self.confusion_view.verticalHeader().sectionClicked.connect(self._on_true_class_chosen)
        self.confusion_view.horizontalHeader().sectionClicked.connect(
            self._on_predicted_class_chosen
        )
        self.per_class_view.clicked.connect(self._on_per_class_view_clicked)
        self.per_class_view.activated.connect(self._on_per_class_view_clicked)
        self.gallery.record_opened.connect(self.open_record)
        self.gallery.exported.connect(self._on_gallery_exported)
        self.gallery.export_failed.connect(self._on_gallery_export_failed)
        self.suspects.suspects_found.connect(self._on_suspects_found)
        self.suspects.picture_opened.connect(self.open_path)
        self.suspects.dataset_changed.connect(self._on_suspects_dataset_changed)

    def show_pictures(self) -> None:
        self.side_tabs.setCurrentWidget(self.gallery)

    @Slot(QModelIndex)
    def _on_confusion_view_clicked(self, index: QModelIndex) -> None:
        self.gallery.show_cell(index.row(), index.column())
        self.show_pictures()

    @Slot(QModelIndex)
    def _on_per_class_view_clicked(self, index: QModelIndex) -> None:
        self._on_true_class_chosen(index.row())

    @Slot(int)
    def _on_true_class_chosen(self, true: int) -> None:
        self.gallery.show_true_class(true)
        self.show_pictures()

    @Slot(int)
    def _on_predicted_class_chosen(self, predicted: int) -> None:
        self.gallery.show_predicted_class(predicted)
        self.show_pictures()

    @Slot(object)
    def open_record(self, record: PictureRecord) -> None:
        """Show one picture large, with its heatmaps (computed in a task)."""
        if self.viewer is None:
            self.viewer = PictureViewer(self.runner, self)
            self.viewer.step_requested.connect(self._on_viewer_step_requested)
        preview = self.gallery.thumbnails.thumbnail(record.path)
        names = self.result.class_names if self.result is not None else ()
        if self.viewer.isVisible() and not self.viewer.isActiveWindow():  # bring it forward
            self.viewer.raise_()
            self.viewer.activateWindow()
        self.viewer.show_record(record, tuple(names), self.result, preview)
        row = self.gallery.model.row_of(record.path)
        self.viewer.set_neighbours(row > 0, 0 <= row < self.gallery.model.rowCount() - 1)
        self.viewer.show()

    @Slot(str)
    def open_path(self, path: str) -> bool:
        """Show the picture at ``path`` large, if the gallery holds its record (the
        suspects list's double-click); False when it does not."""
        record = self.gallery.model.record_for(path)
        if record is not None:
            self.open_record(record)
        return record is not None

    @Slot(int)
    def _on_viewer_step_requested(self, delta: int) -> None:
        current = self.viewer.record if self.viewer is not None else None
        record = self.gallery.neighbour(current, delta) if current is not None else None
        if record is not None:
            self.open_record(record)

    @Slot(dict)
    def _on_suspects_found(self, suspects: dict[str, int]) -> None:
        """The gallery's "suspected wrong label" filter shows them, training pictures
        too (with their out-of-fold probabilities as their records)."""
        report = self.suspects.report
        if report is None or self.result is None or report.class_names != self.result.class_names:
            return  # the gallery's classes are another run's: its indices would mislead
        self.gallery.set_suspects(suspects, report.out_of_fold.records())

    @Slot()
    def _on_suspects_dataset_changed(self) -> None:
        self.gallery.thumbnails.forget()  # a moved picture's path may now hold another

    @Slot(str)
    def _on_gallery_exported(self, path: str) -> None:
        self.banner.show_info(f"Saved the list of pictures to {path}")

    @Slot(str)
    def _on_gallery_export_failed(self, message: str) -> None:
        self.banner.show_error(message)

    # --- try it ---------------------------------------------------------------------------
    @property
    def predictions(self) -> QListWidget:
        return self.try_it.predictions

    @property
    def open_pictures(self) -> QPushButton:
        return self.try_it.open_pictures

    @property
    def predicting(self) -> bool:
        return self.try_it.predicting

    def predict(self, paths: list[str]) -> None:
        self.try_it.predict(paths)

    @Slot()
    def _on_try_it_shown_requested(self) -> None:
        self.side_tabs.setCurrentWidget(self.try_it)

    # --- export ---------------------------------------------------------------------------
    def selected_formats(self) -> tuple[str, ...]:
        return tuple(name for name, box in self.format_boxes.items() if box.isChecked())

    @Slot()
    def choose_export_folder(self) -> None:
        if self.result is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Export the model as a folder", suggested_export_name(self.result)
        )
        if path:
            self.export_to(path)

    def confirm_overwrite(self, folder: Path) -> bool:
        answer = QMessageBox.question(
            self,
            "Replace the export?",
            f"{folder} already holds an export. Replace it?",
        )
        return answer == QMessageBox.StandardButton.Yes

    def export_to(self, folder: str | Path, formats: tuple[str, ...] | None = None) -> None:
        from ...engine.export import METADATA_FILE

        folder = Path(folder)
        overwrite = False
        if (folder / METADATA_FILE).exists():
            if not self.confirm_overwrite(folder):
                return
            overwrite = True
        formats = self.selected_formats() if formats is None else formats
        if self.result is None:
            return
        self.export_button.setEnabled(False)
        self.export_status.setText(f"Exporting to {folder}…")
        job = ModelExport(self.result, folder, overwrite, formats)
        self.export_task = self.runner.run_function(job, "export")
        self.export_task.succeeded.connect(self._on_export_task_succeeded)
        self.export_task.failed.connect(self._on_export_task_failed)

    @Slot(object)
    def _on_export_task_succeeded(self, folder: str) -> None:
        self.export_task = None
        self.export_button.setEnabled(True)
        self.export_status.setText(f"Exported to <b>{folder}</b>")
        self.export_table.show_folder(folder)
        self.banner.show_info(f"Exported the model to {folder}")
        self.exported.emit(folder)

    @Slot(str, str)
    def _on_export_task_failed(self, message: str, details: str) -> None:
        self.export_task = None
        self.export_button.setEnabled(True)
        self.export_status.setText("Export failed; nothing was written.")
        self.banner.show_error(message, details)
        self.export_failed.emit(message)

    @property
    def exporting(self) -> bool:
        return self.export_task is not None
