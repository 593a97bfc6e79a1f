"""UI layer: "Try it" in the Results step: the trained model classifies pictures the
user drops or opens, each shown with a small preview, its answer and its top three
classes (calibrated probabilities).

Pictures are classified in a task with progress and Cancel; pictures dropped while
others are being classified wait their turn. A slider sets the confidence below which
the answer is "unknown": moving it re-answers the pictures shown from the
probabilities they keep (no model run), and makes the value the model's default
threshold (the run's calibration, which the next export writes to model.json).
Below the list, how well calibrated the model's confidence is (``calibration_view``).
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSignalBlocker, QSize, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ..workers.tasks import ProgressFn, Task, TaskRunner
from .banner import Banner
from .calibration_view import CalibrationView
from .dataset_panel import icon_from_rgb
from .task_progress import show_latest_progress

if TYPE_CHECKING:
    from ...engine.predict import Prediction
    from ...engine.training import TrainingResult

VERDICT_ROLE = Qt.ItemDataRole.UserRole + 1
"""A prediction item keeps its verdict lines here; its heading (the path) changes as
more pictures with the same name arrive."""
PREDICTION_ROLE = Qt.ItemDataRole.UserRole + 2
"""The item's ``Prediction``: its calibrated probabilities, re-answered at a new threshold."""
THRESHOLD_TIP = (
    "A picture whose calibrated top probability is below this is answered “unknown”. "
    "The value becomes the model's default threshold: the next export keeps it."
)
PREVIEW_SIZE = 96
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
        predictor = Predictor(
            result.model, result.class_names, result.preprocessing, None, result.calibration
        )
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


class TryItBox(QGroupBox):
    predictions_shown = Signal(int)  # how many pictures were classified or skipped
    shown_requested = Signal()  # pictures arrived: the box should be in view

    def __init__(self, runner: TaskRunner, banner: Banner, parent: QWidget | None = None) -> None:
        super().__init__("Try it: drop pictures here or open them", parent)
        self.runner, self.banner = runner, banner
        self.result: TrainingResult | None = None
        self.prediction_task: Task | None = None
        self._queued: list[list[str]] = []  # pictures dropped while others are classified
        self.open_pictures = QPushButton("Open pictures…")
        self.prediction_progress = QProgressBar()
        self.prediction_progress.setFormat("Classifying… %p%")
        self.cancel_predictions = QPushButton("Cancel")
        self.threshold = QSlider(Qt.Orientation.Horizontal)
        self.threshold.setRange(0, 100)
        self.threshold.setToolTip(THRESHOLD_TIP)
        self.threshold_label = QLabel()
        self.threshold_label.setMinimumWidth(
            self.threshold_label.fontMetrics().horizontalAdvance("100%")
        )
        self.predictions = QListWidget()
        self.predictions.setIconSize(QSize(PREVIEW_SIZE, PREVIEW_SIZE))
        self.predictions.setWordWrap(True)
        self.calibration_view = CalibrationView()
        prediction_layout = QVBoxLayout(self)
        prediction_row = QHBoxLayout()
        prediction_row.addWidget(self.open_pictures)
        prediction_row.addWidget(self.prediction_progress, stretch=1)
        prediction_row.addWidget(self.cancel_predictions)
        prediction_layout.addLayout(prediction_row)
        threshold_row = QHBoxLayout()
        threshold_row.addWidget(QLabel("Answer “unknown” below"))
        threshold_row.addWidget(self.threshold, stretch=1)
        threshold_row.addWidget(self.threshold_label)
        prediction_layout.addLayout(threshold_row)
        prediction_layout.addWidget(self.predictions, stretch=1)
        prediction_layout.addWidget(self.calibration_view)

        self.open_pictures.clicked.connect(self._on_open_pictures_clicked)
        self.cancel_predictions.clicked.connect(self._on_cancel_predictions_clicked)
        self.threshold.valueChanged.connect(self._on_threshold_value_changed)
        self._show_prediction_progress(False)
        self.set_result(None)

    def set_result(self, result: TrainingResult | None) -> None:
        """Pictures are classified by ``result``'s model from now on; those shown, or
        still being classified, by the previous one are dropped."""
        self._queued.clear()
        if self.prediction_task is not None:
            self.prediction_task.discard()
            self.prediction_task = None
            self._show_prediction_progress(False)
        self.result = result
        self.open_pictures.setEnabled(result is not None)
        self.threshold.setEnabled(result is not None)
        with QSignalBlocker(self.threshold):  # showing a run's threshold is no change to it
            self.threshold.setValue(round(self.current_threshold * 100))
        self._show_threshold()
        self.calibration_view.set_calibration(result.calibration if result else None)
        self.predictions.clear()

    @property
    def current_threshold(self) -> float:
        return self.result.calibration.threshold if self.result is not None else 0.0

    def _show_threshold(self) -> None:
        self.threshold_label.setText(f"{self.threshold.value()}%")

    @Slot(int)
    def _on_threshold_value_changed(self, value: int) -> None:
        """The model's default threshold becomes ``value`` %, and the pictures shown are
        answered again at it."""
        self._show_threshold()
        if self.result is None:
            return
        calibration = self.result.calibration
        self.result.calibration = dataclasses.replace(calibration, threshold=value / 100)
        for row in range(self.predictions.count()):
            item = self.predictions.item(row)
            prediction: Prediction = item.data(PREDICTION_ROLE)
            item.setData(VERDICT_ROLE, self._verdict(prediction))
        self._name_predictions()

    def _verdict(self, prediction: Prediction) -> str:
        """The answer at the current threshold, then the ranked classes."""
        if prediction.error:
            return f"skipped: {prediction.error}"
        answered = prediction.with_threshold(self.current_threshold)
        answer = f"answer: {answered.answer}"
        if answered.answer != prediction.top[0][0]:
            answer += f" (under {self.current_threshold:.0%})"
        return "\n".join([answer, *(f"{label}  {p:.1%}" for label, p in prediction.top)])

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
        self.shown_requested.emit()
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
            item = QListWidgetItem()
            item.setToolTip(prediction.path)
            item.setData(PREDICTION_ROLE, prediction)
            item.setData(VERDICT_ROLE, self._verdict(prediction))
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
