"""UI layer: one picture large, with why the model decided (a class-activation heatmap).

The heatmaps for the predicted and the true class come from one call of the engine's
``review.heatmaps.explain`` in a task (off the GUI thread); the user switches between
them, hides the heatmap or changes its opacity without computing anything again.
The picture shown then is the one the model saw (resized and centre-cropped), so
the heatmap lies on exactly the pixels it explains; until it arrives, the gallery's
thumbnail stands in.

At most one heatmap task runs at a time. Stepping through the gallery (holding →)
asks for one picture after another, and a Grad-CAM cannot be stopped half-way: a
task per step would pile up dozens of them on a large network. So while one runs,
only the latest picture asked for is remembered, and started when the running one
ends; the pictures stepped over in between are never computed.

A training picture opened from the suspects (an ``OutOfFoldRecord``) has no
evaluation: its record's prediction is a cross-validated head's. The heatmaps are
the trained model's, so the viewer takes that model's own prediction from the
explanation's probabilities for the heading and the "Predicted" heatmap, and says
where the suspicion came from.

The task itself and the colouring live in ``workers/heatmaps_job.py``; the painting
of the picture and its heatmap in ``heatmap_canvas.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QImage, QKeySequence, QPixmap
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
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ...engine.review.records import PictureRecord
from ..models.picture_records_model import OutOfFoldRecord
from ..workers.heatmaps_job import Heatmaps, PictureExplanation
from ..workers.tasks import Task, TaskRunner
from .heatmap_canvas import DEFAULT_OPACITY, HeatmapCanvas, image_of

if TYPE_CHECKING:
    from ...engine.training import TrainingResult

TOP_PROBABILITIES = 5


@dataclass(frozen=True, eq=False)
class _Request:
    """Heatmaps of ``record`` with ``result``'s model."""

    result: TrainingResult
    record: PictureRecord

    def same(self, other: _Request | None) -> bool:
        """The same picture with the same model (the model by identity: comparing
        results would compare their arrays)."""
        return other is not None and (self.result is other.result and self.record == other.record)


class PictureViewer(QDialog):
    """One record large: true → predicted, confidence, top probabilities, heatmaps.

    Closing it while the heatmaps are computed discards their task: it ends on its
    own and nothing arrives here any more (a picture opened again meanwhile waits
    for it to end: one task at a time)."""

    step_requested = Signal(int)  # -1 or +1: the previous or next picture of the list

    def __init__(self, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.task: Task | None = None  # the one heatmap task running (discarded if closed)
        self._running: _Request | None = None  # what ``task`` computes
        self._wanted: _Request | None = None  # what the display waits for, if anything
        self.record: PictureRecord | None = None
        self.class_names: tuple[str, ...] = ()
        self.heatmaps: Heatmaps | None = None
        self._overlays: dict[int, QImage] = {}
        self._probabilities: tuple[float, ...] | None = None  # the model's own, once known
        self._predicted: int | None = None  # the model's own prediction, once known
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
        heatmaps with ``result``'s model, once the task running (if any) has ended;
        without a model, the picture alone."""
        self.record, self.class_names, self.heatmaps = record, class_names, None
        self._overlays = {}
        evaluated = not isinstance(record, OutOfFoldRecord)
        self._probabilities = record.probabilities if evaluated else None
        self._predicted = record.predicted if evaluated else None
        self.canvas.set_picture(preview, None)
        self._describe()
        self.status.clear()
        self._enable_controls(False)
        if result is None:
            self.status.setText("No model to explain this picture with.")
        self._wanted = None if result is None else _Request(result, record)
        if self._wanted is not None and self.task is None:
            self._start(self._wanted)
        self.progress.setVisible(self._wanted is not None)

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

    def _start(self, request: _Request) -> None:
        task = self.runner.run_function(
            PictureExplanation(request.result, request.record), "heatmaps"
        )
        task.succeeded.connect(self._on_task_succeeded)
        task.failed.connect(self._on_task_failed)
        task.ended.connect(self._on_task_ended)
        self.task, self._running = task, request

    def _name(self, index: int) -> str:
        return self.class_names[index] if 0 <= index < len(self.class_names) else "?"

    def _top(self, probabilities: tuple[float, ...], count: int = TOP_PROBABILITIES) -> str:
        ranked = sorted(enumerate(probabilities), key=lambda item: -item[1])
        return "<br>".join(f"{self._name(i)}: {p:.1%}" for i, p in ranked[:count])

    def _describe(self) -> None:
        """The heading, the details and the heatmap choices, from what is known of the
        model's own prediction (an out-of-fold record's is known once computed)."""
        record, predicted, name = self.record, self._predicted, self._name
        if record is None:
            return
        self.setWindowTitle(record.path)
        if predicted is None:
            colour, shown = "#6e7781", "…"
        else:
            colour, shown = "#1a7f37" if record.true == predicted else "#be1e2d", name(predicted)
        self.heading.setText(
            f"<span style='font-size: large; color: {colour}'><b>{name(record.true)} → "
            f"{shown}</b></span>"
        )
        if isinstance(record, OutOfFoldRecord):
            self.details.setText(self._cross_validated_details(record))
        else:
            loss = "" if math.isnan(record.loss) else f" · loss {record.loss:.3f}"
            self.details.setText(
                f"True class <b>{name(record.true)}</b>, predicted <b>{name(record.predicted)}"
                f"</b><br>Confidence {record.confidence:.1%}{loss}<br><br>"
                f"<b>Top probabilities</b><br>{self._top(record.probabilities)}<br><br>"
                f"<small>{record.path}</small>"
            )
        self._label_choices(record)

    def _cross_validated_details(self, record: OutOfFoldRecord) -> str:
        """A training picture's: what the model says (once known), and that the
        suspicion comes from cross-validation, with those probabilities."""
        name, predicted, probabilities = self._name, self._predicted, self._probabilities
        if predicted is None or probabilities is None:
            verdict = "the model's own prediction is being computed…"
            model = ""
        else:
            verdict = (
                f"the model predicts <b>{name(predicted)}</b> ({probabilities[predicted]:.1%})"
            )
            model = f"<br><br><b>The model's probabilities</b><br>{self._top(probabilities)}"
        return (
            f"Given class <b>{name(record.true)}</b>; {verdict}<br><br>"
            "<b>A training picture</b>: the model learned from it, so the evaluation did "
            "not see it. Its label is suspected from cross-validation: a head trained "
            f"without it gave<br>{self._top(record.probabilities, 3)}{model}<br><br>"
            f"<small>{record.path}</small>"
        )

    def _label_choices(self, record: PictureRecord) -> None:
        """Offer the model's own prediction, and the true class (a training picture's
        given one) when it differs."""
        name, predicted, probabilities = self._name, self._predicted, self._probabilities

        def share(index: int) -> str:
            return "" if probabilities is None else f" ({probabilities[index]:.0%})"

        shown = "…" if predicted is None else f"{name(predicted)}{share(predicted)}"
        self.for_predicted.setText(f"Predicted: {shown}")
        same = record.true < 0 or record.true == predicted
        self.for_true.setVisible(not same)
        if not same:
            label = "Given" if isinstance(record, OutOfFoldRecord) else "True"
            self.for_true.setText(f"{label}: {name(record.true)}{share(record.true)}")
        self.for_predicted.setChecked(True)

    def _enable_controls(self, enabled: bool) -> None:
        for widget in (self.heatmap_toggle, self.for_predicted, self.for_true, self.opacity):
            widget.setEnabled(enabled)

    def chosen_class(self) -> int | None:
        if self.record is None:
            return None
        return self.record.true if self.for_true.isChecked() else self._predicted

    def _serves_display(self) -> bool:
        """Whether the task's outcome is for the picture shown (not one stepped past)."""
        return self._running is not None and self._running.same(self._wanted)

    @Slot(object)
    def _on_task_succeeded(self, heatmaps: Heatmaps) -> None:
        if not self._serves_display():
            return
        self._wanted = None
        self.progress.setVisible(False)
        self.heatmaps = heatmaps
        if isinstance(self.record, OutOfFoldRecord):  # now the model's own prediction is known
            self._probabilities, self._predicted = heatmaps.probabilities, heatmaps.predicted
            self._describe()
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
        if not self._serves_display():
            return
        self._wanted = None
        self.progress.setVisible(False)
        self.status.setText(f"No heatmap: {message}")

    @Slot()
    def _on_task_ended(self) -> None:
        """The one task has ended: start the picture shown now, if it still waits."""
        self.task = self._running = None
        if self._wanted is not None:
            self._start(self._wanted)

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
    def done(self, result: int) -> None:
        """Nothing is wanted any more: the running task is discarded (it ends on its
        own, and is still the one task until then)."""
        self._wanted = None
        if self.task is not None:
            self.task.discard()
        self.progress.setVisible(False)
        super().done(result)

    @property
    def computing(self) -> bool:
        """Whether the heatmaps of the picture shown are still to come."""
        return self._wanted is not None
