"""UI layer: step 4, how good the model is, what it says about new pictures, export."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QModelIndex, QSize, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
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
from .dataset_panel import icon_from_rgb
from .gallery import OLD_RUN_HINT, Gallery
from .picture_viewer import PictureViewer
from .task_progress import show_latest_progress

VERDICT_ROLE = Qt.ItemDataRole.UserRole + 1
"""A prediction item keeps its verdict lines here; its heading (the path) changes as
more pictures with the same name arrive."""

if TYPE_CHECKING:
    from ...engine.evaluation import Evaluation
    from ...engine.predict import Prediction
    from ...engine.review.records import PictureRecord
    from ...engine.training import TrainingResult

PREVIEW_SIZE = 96
NO_RESULT = "Train a model to see its results here."
NO_VALIDATION_HINT = "There were no validation pictures to show here."
STORAGE_SOURCE = "storage"  # keeping or reopening a run failed: cleared when one succeeds
PICTURE_FILTER = "Pictures (*.jpg *.jpeg *.png *.bmp *.gif *.webp *.tif *.tiff)"


Preview = tuple[bytes, int, int]


class PictureClassification:
    """A task's function: top-3 predictions, then a small preview of each picture.
    Progress counts both passes; a cancel keeps the pictures done so far."""

    def __init__(self, result: TrainingResult, paths: list[str]) -> None:
        self.result, self.paths = result, paths

    def __call__(
        self, progress: ProgressFn, cancel: threading.Event
    ) -> list[tuple[Prediction, Preview | None]]:
        from ...engine.images import ImageProblem, load_rgb
        from ...engine.predict import Predictor, expand_paths

        result = self.result
        predictor = Predictor(result.model, result.class_names, result.preprocessing)
        files = expand_paths(self.paths)
        total = 2 * len(files)

        def predicted(done: int, _: int) -> None:
            progress(done, total)

        predictions = predictor.predict(files, 3, progress=predicted, cancel=cancel)
        outcome: list[tuple[Prediction, Preview | None]] = []
        for prediction in predictions:
            preview = None
            try:
                if not cancel.is_set():  # after a cancel, the predictions made so far
                    image = load_rgb(prediction.path, PREVIEW_SIZE)
                    image.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
                    preview = (image.tobytes(), image.width, image.height)
            except ImageProblem:
                pass
            outcome.append((prediction, preview))
            progress(len(files) + len(outcome), total)
        return outcome


class ModelExport:
    """A task's function: write the model folder (and the other formats)."""

    def __init__(
        self, result: TrainingResult, folder: Path, overwrite: bool, formats: tuple[str, ...]
    ) -> None:
        self.result, self.folder, self.overwrite, self.formats = result, folder, overwrite, formats

    def __call__(self, progress: ProgressFn, cancel: threading.Event) -> str:
        from ...engine.export import save_model_folder

        return str(save_model_folder(self.result, self.folder, self.overwrite, self.formats))


def distinct_names(paths: list[str]) -> list[str]:
    """The shortest tail of each path (file name, then ``parent/name``, and so on) that no
    other path shown shares; the same path twice gets the same name."""
    parts = {path: Path(path).parts for path in paths}
    depth = dict.fromkeys(parts, 1)
    while True:
        groups: dict[tuple[str, ...], list[str]] = {}
        for path, tail in parts.items():
            groups.setdefault(tail[-depth[path] :], []).append(path)
        deeper = [
            path
            for group in groups.values()
            if len(group) > 1
            for path in group
            if depth[path] < len(parts[path])
        ]
        if not deeper:
            break
        for path in deeper:
            depth[path] += 1
    return ["/".join(parts[path][-depth[path] :]) for path in paths]


def evaluation_records(evaluation: Evaluation) -> list[PictureRecord]:
    predictions = evaluation.predictions
    return [] if predictions is None else predictions.records()


def suggested_export_name(result: TrainingResult) -> str:
    dataset = Path(result.recipe.dataset).name or "model"
    return re.sub(r"[^\w.-]+", "-", f"{dataset}-{result.spec.name}")


class ResultsPanel(QWidget):
    exported = Signal(str)  # the folder written
    export_failed = Signal(str)  # the message shown
    predictions_shown = Signal(int)  # how many pictures were classified or skipped

    def __init__(self, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.result: TrainingResult | None = None
        self.export_task: Task | None = None
        self.prediction_task: Task | None = None
        self._queued: list[list[str]] = []  # pictures dropped while others are classified

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

        self.open_pictures = QPushButton("Open pictures…")
        self.prediction_progress = QProgressBar()
        self.prediction_progress.setFormat("Classifying… %p%")
        self.cancel_predictions = QPushButton("Cancel")
        self.predictions = QListWidget()
        self.predictions.setIconSize(QSize(PREVIEW_SIZE, PREVIEW_SIZE))
        self.predictions.setWordWrap(True)
        self.prediction_box = prediction_box = QGroupBox("Try it: drop pictures here or open them")
        prediction_layout = QVBoxLayout(prediction_box)
        prediction_row = QHBoxLayout()
        prediction_row.addWidget(self.open_pictures)
        prediction_row.addWidget(self.prediction_progress, stretch=1)
        prediction_row.addWidget(self.cancel_predictions)
        prediction_layout.addLayout(prediction_row)
        prediction_layout.addWidget(self.predictions)

        self.torchscript = QCheckBox("TorchScript")
        self.onnx = QCheckBox("ONNX")
        self.export_button = QPushButton("Export…")
        self.export_button.setIcon(action_icon("export"))
        self.export_status = QLabel(
            "The model folder always holds model.safetensors and "
            "model.json (classes and preprocessing)."
        )
        self.export_status.setWordWrap(True)
        self.export_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        export_box = QGroupBox("Export")
        export_layout = QHBoxLayout(export_box)
        export_layout.addWidget(QLabel("Also as:"))
        export_layout.addWidget(self.torchscript)
        export_layout.addWidget(self.onnx)
        export_layout.addWidget(self.export_button)
        export_layout.addWidget(self.export_status, stretch=1)

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
        self.side_tabs.addTab(prediction_box, "Try it")
        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(metrics)
        body.addWidget(self.side_tabs)
        body.setSizes([500, 600])
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(self.summary)
        layout.addWidget(body, stretch=1)
        layout.addWidget(export_box)

        self.open_pictures.clicked.connect(self._on_open_pictures_clicked)
        self.cancel_predictions.clicked.connect(self._on_cancel_predictions_clicked)
        self.export_button.clicked.connect(self.choose_export_folder)
        self._connect_gallery()
        self._show_prediction_progress(False)
        self.set_result(None)

    # --- results ---------------------------------------------------------------------------
    def set_result(self, result: TrainingResult | None, note: str = "") -> None:
        """Show a run's results; ``note`` says where it came from (a reopened run)."""
        self._queued.clear()
        if self.prediction_task is not None:
            self.prediction_task.discard()  # pictures classified by the previous model
            self.prediction_task = None
            self._show_prediction_progress(False)
        self.result = result
        has_model = result is not None
        for widget in (self.open_pictures, self.export_button, self.torchscript, self.onnx):
            widget.setEnabled(has_model)
        self.predictions.clear()
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

    @Slot(str)
    def _on_gallery_exported(self, path: str) -> None:
        self.banner.show_info(f"Saved the list of pictures to {path}")

    @Slot(str)
    def _on_gallery_export_failed(self, message: str) -> None:
        self.banner.show_error(message)

    # --- predictions -----------------------------------------------------------------------
    @property
    def predicting(self) -> bool:
        return self.prediction_task is not None

    def predict(self, paths: list[str]) -> None:
        """Classify pictures (or the pictures in folders) in a task, with progress and
        Cancel; pictures dropped meanwhile wait for the ones in progress."""
        if self.result is None:
            self.banner.show_warning("Train a model first, then drop pictures here.")
            return
        self._queued.append(paths)
        self.side_tabs.setCurrentWidget(self.prediction_box)
        if self.prediction_task is None:
            self._predict_next()

    def _predict_next(self) -> None:
        if not self._queued or self.result is None:
            return
        self.banner.clear()
        job = PictureClassification(self.result, self._queued.pop(0))
        task = self.runner.run_function(job, "predict")
        task.progressed.connect(self._on_prediction_task_progressed)
        task.succeeded.connect(self._on_prediction_task_succeeded)
        task.failed.connect(self._on_prediction_task_failed)
        self.prediction_task = task
        self.prediction_progress.setRange(0, 0)
        self._show_prediction_progress(True)

    def _show_prediction_progress(self, visible: bool) -> None:
        self.prediction_progress.setVisible(visible)
        self.cancel_predictions.setVisible(visible)
        self.cancel_predictions.setEnabled(visible)

    @Slot(list)
    def _on_prediction_task_progressed(self, events: list[object]) -> None:
        show_latest_progress(self.prediction_progress, events)

    @Slot()
    def _on_cancel_predictions_clicked(self) -> None:
        self._queued.clear()
        if self.prediction_task is not None:
            self.prediction_task.cancel()
            self.cancel_predictions.setEnabled(False)

    @Slot(object)
    def _on_prediction_task_succeeded(
        self, outcome: list[tuple[Prediction, Preview | None]]
    ) -> None:
        task, self.prediction_task = self.prediction_task, None
        self._show_prediction_progress(False)
        if task is not None and task.cancel_requested:
            self.banner.show_info(f"Stopped: {len(outcome)} pictures classified.")
        elif not outcome:
            self.banner.show_warning("No pictures found there.")
        for prediction, preview in reversed(outcome):  # the newest batch on top, in its order
            if prediction.error:
                verdict = f"skipped: {prediction.error}"
            else:
                verdict = "\n".join(f"{label}  {p:.1%}" for label, p in prediction.top)
            item = QListWidgetItem()
            item.setToolTip(prediction.path)
            item.setData(VERDICT_ROLE, verdict)
            if preview is not None:
                item.setIcon(icon_from_rgb(*preview))
            self.predictions.insertItem(0, item)
        self._name_predictions()
        self.predictions_shown.emit(len(outcome))
        self._predict_next()

    def _name_predictions(self) -> None:
        """Head each prediction with as much of its path as tells it from the others shown:
        two ``0005.jpg`` from different folders read ``a/0005.jpg`` and ``b/0005.jpg``."""
        items = [self.predictions.item(row) for row in range(self.predictions.count())]
        names = distinct_names([item.toolTip() for item in items])
        for item, name in zip(items, names):
            item.setText(f"{name}\n{item.data(VERDICT_ROLE)}")

    @Slot(str, str)
    def _on_prediction_task_failed(self, message: str, details: str) -> None:
        self.prediction_task = None
        self._show_prediction_progress(False)
        self.banner.show_error(message, details)
        self.predictions_shown.emit(0)
        self._predict_next()

    @Slot()
    def _on_open_pictures_clicked(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open pictures", "", PICTURE_FILTER)
        if paths:
            self.predict(paths)

    # --- export ---------------------------------------------------------------------------
    def selected_formats(self) -> tuple[str, ...]:
        return tuple(
            name
            for name, box in (("torchscript", self.torchscript), ("onnx", self.onnx))
            if box.isChecked()
        )

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
