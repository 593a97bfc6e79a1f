"""UI layer: one picture large, with why the model decided (a class-activation heatmap).

The heatmaps for the predicted and the true class come from one call of the engine's
``review.heatmaps.explain`` in a task (off the GUI thread); the user switches between
them, hides the heatmap or changes its opacity without computing anything again.
The picture shown then is the one the model saw (resized and centre-cropped), so
the heatmap lies on exactly the pixels it explains; until it arrives, the gallery's
thumbnail stands in.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRect, QSize, Qt, Signal, Slot
from PySide6.QtGui import QImage, QKeySequence, QPainter, QPaintEvent, QPixmap
from PySide6.QtWidgets import (
    QAbstractButton,
    QButtonGroup,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ...engine.review.records import PictureRecord
from ..workers.tasks import ProgressFn, Task, TaskRunner

if TYPE_CHECKING:
    from ...engine.training import TrainingResult

DEFAULT_OPACITY = 60  # percent
TOP_PROBABILITIES = 5
COLOUR_MAP = "turbo"


@dataclass(frozen=True)
class Heatmaps:
    """What the task hands back: the model's view of the picture (H x W x 3 uint8)
    and each class's heatmap already coloured (H x W x 4 uint8, transparent where
    the class found nothing)."""

    picture: np.ndarray
    overlays: dict[int, np.ndarray]
    layer: str


def colour_lookup() -> np.ndarray:
    """256 RGBA colours from cold to hot (pyqtgraph's copy of the turbo map)."""
    lookup: np.ndarray = pg.colormap.get(COLOUR_MAP).getLookupTable(0.0, 1.0, 256, alpha=True)
    return lookup


class PictureExplanation:
    """A task's function: heatmaps of the predicted and the true class, coloured."""

    def __init__(self, result: TrainingResult, record: PictureRecord) -> None:
        self.result, self.record = result, record

    def classes(self) -> list[int]:
        record = self.record
        return list(dict.fromkeys(c for c in (record.predicted, record.true) if c >= 0))

    def __call__(self, progress: ProgressFn, cancel: threading.Event) -> Heatmaps:
        from ...engine.review.heatmaps import explain

        result = self.result
        explanation = explain(
            result.model, result.head_path, result.preprocessing, self.record.path, self.classes()
        )
        lookup = colour_lookup()
        overlays = {}
        for index, heat in explanation.maps.items():
            levels = np.clip(np.rint(heat * 255), 0, 255).astype(np.uint8)
            rgba = lookup[levels]
            rgba[..., 3] = levels  # the cooler, the more transparent
            overlays[index] = np.ascontiguousarray(rgba)
        return Heatmaps(explanation.picture, overlays, explanation.layer)


def image_of(pixels: np.ndarray) -> QImage:
    """A QImage holding its own copy of H x W x 3 (RGB) or H x W x 4 (RGBA) bytes."""
    height, width, channels = pixels.shape
    kind = QImage.Format.Format_RGBA8888 if channels == 4 else QImage.Format.Format_RGB888
    data = np.ascontiguousarray(pixels).tobytes()
    return QImage(data, width, height, channels * width, kind).copy()


class HeatmapCanvas(QWidget):
    """The picture, scaled to fit, with the heatmap over it at an opacity."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.picture: QImage | QPixmap | None = None
        self.overlay: QImage | None = None
        self.overlay_visible = True
        self.opacity = DEFAULT_OPACITY / 100
        self.setMinimumSize(224, 224)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(448, 448)

    def set_picture(self, picture: QImage | QPixmap | None, overlay: QImage | None) -> None:
        self.picture, self.overlay = picture, overlay
        self.update()

    def set_overlay(self, overlay: QImage | None) -> None:
        self.overlay = overlay
        self.update()

    def set_overlay_visible(self, visible: bool) -> None:
        self.overlay_visible = visible
        self.update()

    def set_opacity(self, opacity: float) -> None:
        self.opacity = opacity
        self.update()

    def target(self) -> QRect:
        """Where the picture is drawn: as large as fits, centred, its shape kept."""
        if self.picture is None:
            return QRect()
        size = self.picture.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        rect = QRect(0, 0, size.width(), size.height())
        rect.moveCenter(self.rect().center())
        return rect

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().dark())
        if self.picture is None:
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        target = self.target()
        if isinstance(self.picture, QPixmap):
            painter.drawPixmap(target, self.picture)
        else:
            painter.drawImage(target, self.picture)
        if self.overlay is not None and self.overlay_visible:
            painter.setOpacity(self.opacity)
            painter.drawImage(target, self.overlay)


class PictureViewer(QDialog):
    """One record large: true → predicted, confidence, top probabilities, heatmaps.

    Closing it while the heatmaps are computed discards their task: it ends on its
    own and nothing arrives here any more."""

    step_requested = Signal(int)  # -1 or +1: the previous or next picture of the list

    def __init__(self, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.task: Task | None = None
        self.record: PictureRecord | None = None
        self.class_names: tuple[str, ...] = ()
        self.heatmaps: Heatmaps | None = None
        self._overlays: dict[int, QImage] = {}
        self.setWindowTitle("Picture")

        self.canvas = HeatmapCanvas()
        self.heading = QLabel()
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.heatmap_toggle = QCheckBox("Heatmap")
        self.heatmap_toggle.setChecked(True)
        self.heatmap_toggle.setToolTip("Where the picture pushed the chosen class's score up")
        self.for_predicted = QRadioButton()
        self.for_true = QRadioButton()
        self.for_predicted.setChecked(True)
        self.class_choice = QButtonGroup(self)
        self.class_choice.addButton(self.for_predicted)
        self.class_choice.addButton(self.for_true)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(DEFAULT_OPACITY)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setFormat("Computing the heatmaps…")
        self.progress.setTextVisible(True)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.previous_button = QPushButton("‹ Previous")
        self.previous_button.setShortcut(QKeySequence(Qt.Key.Key_Left))
        self.previous_button.setToolTip("The picture before this one in the gallery (←)")
        self.next_button = QPushButton("Next ›")
        self.next_button.setShortcut(QKeySequence(Qt.Key.Key_Right))
        self.next_button.setToolTip("The picture after this one in the gallery (→)")
        self.set_neighbours(False, False)
        self._lay_out()

        self.heatmap_toggle.toggled.connect(self._on_heatmap_toggle_toggled)
        self.class_choice.buttonToggled.connect(self._on_class_choice_toggled)
        self.opacity.valueChanged.connect(self._on_opacity_value_changed)
        self.previous_button.clicked.connect(self._on_previous_button_clicked)
        self.next_button.clicked.connect(self._on_next_button_clicked)

    def _lay_out(self) -> None:
        controls = QFormLayout()
        controls.addRow(self.heatmap_toggle)
        choice = QVBoxLayout()
        choice.addWidget(self.for_predicted)
        choice.addWidget(self.for_true)
        controls.addRow("For:", choice)
        controls.addRow("Opacity:", self.opacity)
        side = QVBoxLayout()
        side.addWidget(self.heading)
        side.addWidget(self.details)
        side.addLayout(controls)
        side.addWidget(self.progress)
        side.addWidget(self.status)
        side.addStretch(1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.previous_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.next_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        side.addWidget(buttons)
        body = QHBoxLayout(self)
        body.addWidget(self.canvas, stretch=1)
        body.addLayout(side)

    # --- showing a record -----------------------------------------------------------------
    def show_record(
        self,
        record: PictureRecord,
        class_names: tuple[str, ...],
        result: TrainingResult | None,
        preview: QPixmap | None = None,
    ) -> None:
        """Show ``record`` (the preview until the model's view arrives) and compute its
        heatmaps with ``result``'s model; without a model, the picture alone."""
        self._discard_task()
        self.record, self.class_names, self.heatmaps = record, class_names, None
        self._overlays = {}
        self.canvas.set_picture(preview, None)
        self._describe(record)
        self.status.clear()
        self._enable_controls(False)
        if result is not None:
            self._explain(result, record)
        else:
            self.status.setText("No model to explain this picture with.")
        self.progress.setVisible(self.task is not None)

    def set_neighbours(self, previous: bool, following: bool) -> None:
        """Whether the list the picture came from has one before it and one after."""
        self.previous_button.setEnabled(previous)
        self.next_button.setEnabled(following)

    @Slot()
    def _on_previous_button_clicked(self) -> None:
        self.step_requested.emit(-1)

    @Slot()
    def _on_next_button_clicked(self) -> None:
        self.step_requested.emit(1)

    def _explain(self, result: TrainingResult, record: PictureRecord) -> None:
        task = self.runner.run_function(PictureExplanation(result, record), "heatmaps")
        task.succeeded.connect(self._on_task_succeeded)
        task.failed.connect(self._on_task_failed)
        self.task = task

    def _name(self, index: int) -> str:
        return self.class_names[index] if 0 <= index < len(self.class_names) else "?"

    def _describe(self, record: PictureRecord) -> None:
        name, colour = self._name, "#1a7f37" if record.correct else "#be1e2d"
        self.setWindowTitle(record.path)
        self.heading.setText(
            f"<span style='font-size: large; color: {colour}'><b>{name(record.true)} → "
            f"{name(record.predicted)}</b></span>"
        )
        loss = "" if math.isnan(record.loss) else f" · loss {record.loss:.3f}"
        ranked = sorted(enumerate(record.probabilities), key=lambda item: -item[1])
        top = "<br>".join(f"{name(i)}: {p:.1%}" for i, p in ranked[:TOP_PROBABILITIES])
        self.details.setText(
            f"True class <b>{name(record.true)}</b>, predicted <b>{name(record.predicted)}"
            f"</b><br>Confidence {record.confidence:.1%}{loss}<br><br>"
            f"<b>Top probabilities</b><br>{top}<br><br><small>{record.path}</small>"
        )
        probability = record.probabilities
        self.for_predicted.setText(
            f"Predicted: {name(record.predicted)} ({probability[record.predicted]:.0%})"
        )
        same = record.true == record.predicted or record.true < 0
        self.for_true.setVisible(not same)
        if not same:
            self.for_true.setText(f"True: {name(record.true)} ({probability[record.true]:.0%})")
        self.for_predicted.setChecked(True)

    def _enable_controls(self, enabled: bool) -> None:
        for widget in (self.heatmap_toggle, self.for_predicted, self.for_true, self.opacity):
            widget.setEnabled(enabled)

    def chosen_class(self) -> int | None:
        if self.record is None:
            return None
        return self.record.true if self.for_true.isChecked() else self.record.predicted

    @Slot(object)
    def _on_task_succeeded(self, heatmaps: Heatmaps) -> None:
        self.task = None
        self.progress.setVisible(False)
        self.heatmaps = heatmaps
        self._overlays = {index: image_of(rgba) for index, rgba in heatmaps.overlays.items()}
        picture = image_of(heatmaps.picture)
        chosen = self.chosen_class()
        self.canvas.set_picture(picture, None if chosen is None else self._overlays.get(chosen))
        self.status.setText(
            f"As the model saw it ({picture.width()} × {picture.height()}); "
            f"heatmap from {heatmaps.layer}."
        )
        self._enable_controls(True)

    @Slot(str, str)
    def _on_task_failed(self, message: str, details: str) -> None:
        self.task = None
        self.progress.setVisible(False)
        self.status.setText(f"No heatmap: {message}")

    @Slot(bool)
    def _on_heatmap_toggle_toggled(self, checked: bool) -> None:
        self.canvas.set_overlay_visible(checked)

    @Slot(QAbstractButton, bool)
    def _on_class_choice_toggled(self, _: QAbstractButton, checked: bool) -> None:
        chosen = self.chosen_class()
        if checked and chosen is not None:
            self.canvas.set_overlay(self._overlays.get(chosen))

    @Slot(int)
    def _on_opacity_value_changed(self, value: int) -> None:
        self.canvas.set_opacity(value / 100)

    # --- closing --------------------------------------------------------------------------
    def _discard_task(self) -> None:
        if self.task is not None:
            self.task.discard()  # it ends on its own; nobody wants the heatmaps any more
            self.task = None

    def done(self, result: int) -> None:
        self._discard_task()
        self.progress.setVisible(False)
        super().done(result)

    @property
    def computing(self) -> bool:
        return self.task is not None
