"""UI layer: "Find learning rate" for the Train step.

A small window beside the Train step: it runs the engine's ``LrFinder`` on the
window's recipe as a task (progress and Cancel), draws the smoothed loss against the
learning rate as the ramp goes (log scale), marks the suggestion, and "Use" puts the
suggested rate into the learning-rate field (``use_requested``). It never runs while
a training run does: the Train step blocks it (``set_training``), and the window
blocks Start while it runs (``running``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..workers.event_job import EventsJob
from .plot_grid import PlotGrid
from .task_progress import show_stages, show_starting
from .training_plots import TEXT_COLOUR

if TYPE_CHECKING:
    from ...engine.inspection import DatasetReport
    from ...engine.lr_find import LrFinding
    from ...engine.recipe import Recipe
    from ..workers.tasks import Task, TaskRunner

TRAINING_RUNS = "A training run is going: find the learning rate once it has ended."
UNUSED_BY_THE_RAMP = ("lr", "epochs", "patience")  # changing them keeps a finding valid
EXPLANATION = (
    "Trains the layers your recipe trains for up to 100 steps, with a learning rate "
    "growing from 0.0000001 to 10, and watches the loss. A good rate is where the loss "
    "falls fastest, well before it shoots up. The model is put back as it was."
)
SUGGESTION = (
    "Suggested: <b>{lr:.2g}</b>, the middle of the longest fall of the loss (fastai's “valley”)."
)
CURVE_PEN = pg.mkPen((31, 119, 180), width=2)
MARK_PEN = pg.mkPen((214, 39, 40), width=1, style=Qt.PenStyle.DashLine)


class LrFinderDialog(QDialog):
    """Runs the finder for a recipe and shows its curve; the Train step owns it."""

    use_requested = Signal(float)  # the suggested learning rate
    running_changed = Signal(bool)

    def __init__(self, runner: TaskRunner | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Find the learning rate")
        self.runner = runner
        self.task: Task | None = None
        self.finding: LrFinding | None = None
        self.measured: Recipe | None = None  # the recipe the finding was made for
        # The window's recipe now, set by the window: Use refuses a stale finding.
        self.recipe_now: Callable[[], Recipe | None] | None = None
        self._training = False
        self._lrs: list[float] = []
        self._losses: list[float] = []

        explanation = QLabel(EXPLANATION)
        explanation.setWordWrap(True)
        self.progress = QProgressBar()
        self.cancel_button = QPushButton("Cancel")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setObjectName("lrFinderNote")
        self.note.hide()
        self.plot = self._make_plot()
        self.curve = self.plot.plot(pen=CURVE_PEN)
        self.marker_point = self.plot.plot(
            pen=None, symbol="o", symbolSize=10, symbolBrush=(214, 39, 40)
        )
        self.marker_line = pg.InfiniteLine(angle=90, pen=MARK_PEN)
        self.marker_line.hide()
        self.plot.addItem(self.marker_line)
        self.suggestion = QLabel()
        self.suggestion.setWordWrap(True)
        self.use_button = QPushButton("Use")
        self.use_button.hide()
        self.close_button = QPushButton("Close")

        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, stretch=1)
        progress_row.addWidget(self.cancel_button)
        answer_row = QHBoxLayout()
        answer_row.addWidget(self.suggestion, stretch=1)
        answer_row.addWidget(self.use_button)
        answer_row.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(explanation)
        layout.addLayout(progress_row)
        layout.addWidget(self.status)
        layout.addWidget(self.note)
        layout.addWidget(self.plot, stretch=1)
        layout.addLayout(answer_row)
        self.resize(620, 480)

        self.cancel_button.clicked.connect(self._on_cancel_button_clicked)
        self.use_button.clicked.connect(self._on_use_button_clicked)
        self.close_button.clicked.connect(self.close)
        self._show_running(False)

    @staticmethod
    def _make_plot() -> pg.PlotWidget:
        plot = pg.PlotWidget(background="w")
        plot.setLogMode(x=True, y=False)
        PlotGrid(plot.getPlotItem(), alpha=0.2)  # kept by the plot's view
        for side, label in (("bottom", "learning rate"), ("left", "loss (smoothed)")):
            axis = plot.getAxis(side)
            axis.setLabel(label, color=TEXT_COLOUR)
            axis.setTextPen(pg.mkPen(TEXT_COLOUR))
            axis.setPen(pg.mkPen(TEXT_COLOUR))
        plot.setMenuEnabled(False)
        return plot

    @property
    def running(self) -> bool:
        return self.task is not None and self.task.running

    @property
    def available(self) -> bool:
        """Whether this window can run the finder (the Train step was given a runner)."""
        return self.runner is not None

    # --- starting and stopping -------------------------------------------------------------
    def start(self, recipe: Recipe, dataset: DatasetReport | None) -> None:
        """Find the learning rate for ``recipe``, on ``dataset`` when it is loaded."""
        from ...engine.lr_find import LrFinder
        from ..workers.training import threads_leaving_one_core

        self.bring_up()
        if self.running or self.runner is None:
            return
        if self._training:
            self.show_unavailable(TRAINING_RUNS)
            return
        finder = LrFinder(recipe, dataset, cpu_threads=threads_leaving_one_core())
        self._clear()
        self.measured = recipe
        self.task = task = self.runner.start(EventsJob(finder.events, finder.cancel), "lr-find")
        task.progressed.connect(self._on_task_progressed)
        task.succeeded.connect(self._on_task_succeeded)
        task.failed.connect(self._on_task_failed)
        task.cancelled.connect(self._on_task_cancelled)
        self._show_running(True)
        show_starting(self.progress)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def done(self, result: int) -> None:
        """Closed (Close, Esc, the title bar): a search still going is not wanted."""
        self.cancel()
        super().done(result)

    def reset(self) -> None:
        """Forget the curve (and stop finding): what it measured has changed."""
        if self.task is not None:
            self.task.discard()
            self.task = None
            self._show_running(False)
        self._clear()

    def show_unavailable(self, reason: str) -> None:
        """Find was pressed but nothing can be measured now."""
        self.bring_up()
        self.status.setText(reason)

    def bring_up(self) -> None:
        """Show the window, or bring it to the front."""
        if self.isVisible():
            self.raise_()  # behind the main window, say
        else:
            self.show()

    def set_training(self, training: bool) -> None:
        """A training run started or ended: no search meanwhile (one still going
        stops), and no Use (the settings are locked)."""
        self._training = training
        self.use_button.setEnabled(not training)
        if training:
            self.cancel()

    def _clear(self) -> None:
        self.finding = None
        self._lrs, self._losses = [], []
        self.curve.setData([], [])
        self.marker_point.setData([], [])
        self.marker_line.hide()
        self.suggestion.setText("")
        self.status.setText("")
        self.status.setToolTip("")
        self.note.hide()
        self.use_button.hide()

    def _show_running(self, running: bool) -> None:
        self.cancel_button.setVisible(running)
        self.progress.setVisible(running)
        self.running_changed.emit(running)

    # --- the task ----------------------------------------------------------------------------
    @Slot(list)
    def _on_task_progressed(self, events: list[object]) -> None:
        from ...engine.lr_find import RampStep

        show_stages(self.progress, self.status, events)
        steps = [event for event in events if isinstance(event, RampStep)]
        if steps:
            self._lrs += [step.lr for step in steps]
            self._losses += [step.loss for step in steps]
            self.curve.setData(self._lrs, self._losses)

    @Slot(object)
    def _on_task_succeeded(self, finding: LrFinding | None) -> None:
        """The finding is shown before ``running_changed`` says the search ended, so
        whoever listens finds it there."""
        self.task = None
        if finding is None:
            self.status.setText("Stopped; the model is as it was.")
        else:
            self.show_finding(finding)
        self._show_running(False)

    @Slot(str, str)
    def _on_task_failed(self, message: str, details: str) -> None:
        self.task = None
        self._show_running(False)
        self.status.setText(f"Could not find a learning rate: {message}")
        self.status.setToolTip(details)

    @Slot()
    def _on_task_cancelled(self) -> None:
        self.task = None
        self._show_running(False)
        self.status.setText("Stopped; the model is as it was.")

    def show_finding(self, finding: LrFinding) -> None:
        self.finding = finding
        self.status.setText(
            f"Tried {len(finding.lrs)} learning rates"
            + ("; stopped where the loss shot up." if finding.diverged else ".")
        )
        self.curve.setData(list(finding.lrs), list(finding.losses))
        if finding.notes:
            self.note.setText(" ".join(finding.notes))
            self.note.show()
        if finding.suggested_lr is None or finding.suggestion_index is None:
            self.suggestion.setText(
                "No suggestion: the loss shot up too soon to see where it falls. "
                "Try a smaller batch, or train fewer layers."
            )
            return
        index = finding.suggestion_index
        self.marker_point.setData([finding.lrs[index]], [finding.losses[index]])
        self.marker_line.setValue(math.log10(finding.suggested_lr))  # the axis is log10
        self.marker_line.show()
        self.suggestion.setText(SUGGESTION.format(lr=finding.suggested_lr))
        self.use_button.setText(f"Use {finding.suggested_lr:.2g}")
        self.use_button.setToolTip("Put this rate in the Learning rate field")
        self.use_button.show()

    # --- buttons -------------------------------------------------------------------------------
    @Slot()
    def _on_cancel_button_clicked(self) -> None:
        self.cancel()
        self.progress.setFormat("Stopping…")

    @Slot()
    def _on_use_button_clicked(self) -> None:
        if self.finding is None or self.finding.suggested_lr is None:
            return
        changed = self.changed_since_measured()
        if changed:
            self.status.setText(
                f"The recipe has changed since this search ({', '.join(changed)}): "
                "find again for a rate that fits it."
            )
            return
        self.use_requested.emit(float(f"{self.finding.suggested_lr:.2g}"))

    def changed_since_measured(self) -> list[str]:
        """The recipe's fields that shape the ramp and have changed since it ran (the
        learning rate itself and the epochs, which the ramp does not use, aside)."""
        from ...engine.recipe_diff import recipe_diff

        now = self.recipe_now() if self.recipe_now is not None else None
        if now is None or self.measured is None:
            return []
        return [
            difference.field
            for difference in recipe_diff(self.measured, now)
            if difference.field not in UNUSED_BY_THE_RAMP
        ]
