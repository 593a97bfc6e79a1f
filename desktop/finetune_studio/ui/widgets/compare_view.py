"""UI layer: "Compare backbones" in the Model step.

The view asks the window for the recipe when Compare is pressed
(``compare_requested``), runs the engine's ``BackboneComparison`` as a task with
progress and Cancel, and shows each backbone as soon as it is measured: a point on a
scatter of accuracy against latency (with the accuracy's spread across folds as an
error bar) and a row of a sortable table. "Use this backbone" hands the selected one
to the Model step's backbone choice (``use_requested``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import (
    QItemSelectionModel,
    QSortFilterProxyModel,
    Qt,
    Signal,
    Slot,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGraphicsItem,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..models.compare_model import ACCURACY, NAME_ROLE, SORT_ROLE, CompareModel
from ..workers.event_job import EventsJob
from ..workers.tasks import Task, TaskRunner
from .task_progress import show_stages, show_starting
from .training_plots import TEXT_COLOUR

if TYPE_CHECKING:
    from ...engine.backbones import BackboneInfo
    from ...engine.compare import BackboneScore, Comparison
    from ...engine.inspection import DatasetReport
    from ...engine.recipe import Recipe

DEFAULT_PER_CLASS = 50  # engine.compare.DEFAULT_PER_CLASS (not imported: it loads torch)
OFFLINE_WEIGHTS = ("bundled", "cached")  # engine.compare.OFFLINE_WEIGHTS
TIMM_PREFIX = "timm/"  # engine.backbones.TIMM_PREFIX (not imported: it loads torch)
POINT_BRUSH = (31, 119, 180)
SELECTED_BRUSH = (255, 127, 14)
ERROR_PEN = pg.mkPen((120, 120, 120), width=1)
LABEL_ROOM = 1.4  # the x axis reaches this times the slowest backbone's latency
EMPTY_X_RANGE = (0, 100)  # ms, before any backbone is measured
NO_DATASET = "Load a dataset first (step 1)."
NOTHING_CHOSEN = "Tick at least one backbone to compare."


class ComparePlot(QWidget):
    """Accuracy (with its spread) against latency at batch 1, one labelled point a
    backbone; a click on a point says which (``point_clicked``)."""

    point_clicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.widget = pg.PlotWidget(background="w")
        self.plot = plot = self.widget.getPlotItem()
        plot.setLabel("bottom", "ms per picture, one at a time", color=TEXT_COLOUR)
        plot.setLabel("left", "accuracy (%)", color=TEXT_COLOUR)
        plot.setMenuEnabled(False)
        plot.hideButtons()
        for side in ("left", "bottom"):
            axis = plot.getAxis(side)
            axis.setTextPen(TEXT_COLOUR)
            axis.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
            axis.enableAutoSIPrefix(False)  # no "(x0.001)" on an empty plot's units
        empty = np.zeros(0)
        self.errors = pg.ErrorBarItem(x=empty, y=empty, top=empty, bottom=empty, pen=ERROR_PEN)
        self.points = pg.ScatterPlotItem(size=11, pen=pg.mkPen("w"), hoverable=True)
        plot.addItem(self.errors)
        plot.addItem(self.points)
        self.labels: dict[str, pg.TextItem] = {}  # by backbone
        self._drawn: tuple[tuple[BackboneScore, ...], str | None] = ((), None)
        self.points.sigClicked.connect(self._on_points_clicked)
        self._show_units()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.widget)

    def show_scores(self, scores: list[BackboneScore], selected: str | None) -> None:
        """Draws what changed only: a comparison's progress calls this for each backbone
        measured and again for the selection, in the same turn of the event loop, while
        its worker thread competes for Python's lock."""
        if (tuple(scores), selected) == self._drawn:
            return
        self._drawn = (tuple(scores), selected)
        x = np.array([s.latency_ms_b1 for s in scores], dtype=np.float64)
        y = np.array([100 * s.accuracy for s in scores], dtype=np.float64)
        spread = np.array([100 * s.accuracy_std for s in scores], dtype=np.float64)
        top, bottom = np.minimum(spread, 100 - y), np.minimum(spread, y)  # within 0-100 %
        self.errors.setData(x=x, y=y, top=top, bottom=bottom)
        brushes = [SELECTED_BRUSH if s.backbone == selected else POINT_BRUSH for s in scores]
        self.points.setData(
            x=x, y=y, brush=[pg.mkBrush(b) for b in brushes], data=[s.backbone for s in scores]
        )
        self._place_labels(scores)
        if not len(scores):
            self._show_units()
            return
        self.plot.setXRange(0, float(x.max()) * LABEL_ROOM, padding=0)  # room for names
        low, high = float((y - bottom).min()), float((y + top).max())
        self.plot.setYRange(max(low - 1, 0), min(high + 1, 100), padding=0.05)

    def _show_units(self) -> None:
        """Plain axes until there is something to show."""
        self.plot.setXRange(*EMPTY_X_RANGE, padding=0)
        self.plot.setYRange(0, 100, padding=0.04)  # the top label whole

    def _place_labels(self, scores: list[BackboneScore]) -> None:
        """A name beside each point: kept ones move, gone ones are removed."""
        names = {s.backbone for s in scores}
        for name in [name for name in self.labels if name not in names]:
            self.plot.removeItem(self.labels.pop(name))
        for score in scores:
            label = self.labels.get(score.backbone)
            if label is None:
                label = pg.TextItem(score.backbone, color=TEXT_COLOUR, anchor=(0, 1))
                self.labels[score.backbone] = label
                self.plot.addItem(label)
            label.setPos(score.latency_ms_b1, 100 * score.accuracy)

    @property
    def shown(self) -> list[str]:
        """The backbones drawn, in the order drawn (for tests and scripted checks)."""
        return [str(point.data()) for point in self.points.points()]

    @Slot(object, object, object)
    def _on_points_clicked(self, _: object, points: list[pg.SpotItem], __: object) -> None:
        if len(points):
            self.point_clicked.emit(str(points[0].data()))


class CompareView(QWidget):
    compare_requested = Signal()
    running_changed = Signal(bool)
    use_requested = Signal(str)  # a backbone's registry name
    comparison_ended = Signal(bool)  # True when it ended with figures to show

    def __init__(self, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.task: Task | None = None
        self.comparison: Comparison | None = None
        self._editable = True

        explanation = QLabel(
            "Measures on your own pictures, for each ticked backbone, how accurate a head "
            "trained on its pretrained features is (cross-validated), how fast it runs "
            "here, and how large it is. Its features are kept, so the backbone you choose "
            "starts training at once."
        )
        explanation.setWordWrap(True)
        self.backbone_list = QListWidget()
        self.backbone_list.setMaximumHeight(120)
        self.backbone_list.setToolTip(
            "Ticked at first: every backbone whose weights are on this computer. Others "
            "are downloaded when compared."
        )
        self.per_class = QSpinBox()
        self.per_class.setRange(2, 100_000)
        self.per_class.setValue(DEFAULT_PER_CLASS)
        self.per_class.setPrefix("at most ")
        self.per_class.setSuffix(" pictures per class")
        self.per_class.setToolTip("A stratified sample: fewer pictures compare sooner.")
        self.compare_button = QPushButton("Compare")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.progress = QProgressBar()
        self.progress.hide()
        self.status = QLabel()
        self.status.setWordWrap(True)
        # Two lines held: the log's lines and the summary then leave the plot in place.
        self.status.setMinimumHeight(2 * self.status.fontMetrics().lineSpacing())

        self.model = CompareModel(self)
        self.sorted = QSortFilterProxyModel(self)
        self.sorted.setSourceModel(self.model)
        self.sorted.setSortRole(SORT_ROLE)
        self.table = QTableView()
        self.table.setModel(self.sorted)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(ACCURACY, Qt.SortOrder.DescendingOrder)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.plot = ComparePlot()
        self.plot.setMinimumHeight(160)
        self.use_button = QPushButton("Use this backbone")
        self.use_button.setEnabled(False)
        self.use_button.setToolTip("Choose it in the backbone list; its layers show next")

        self._lay_out(explanation)
        self.compare_button.clicked.connect(self.compare_requested)
        self.cancel_button.clicked.connect(self._on_cancel_button_clicked)
        self.use_button.clicked.connect(self._on_use_button_clicked)
        self.plot.point_clicked.connect(self.select_backbone)
        self.table.selectionModel().selectionChanged.connect(self._refresh)

    def _lay_out(self, explanation: QLabel) -> None:
        controls = QHBoxLayout()
        controls.addWidget(self.per_class)
        controls.addWidget(self.compare_button)
        controls.addWidget(self.cancel_button)
        # In the buttons' row, the bar leaves the plot's size alone as it comes and goes
        # (a resized plot is drawn anew, axes and all, as the comparison starts).
        controls.addWidget(self.progress, stretch=1)
        controls.addStretch(0)  # keeps the buttons on the left while the bar is hidden
        results = QSplitter(Qt.Orientation.Vertical)
        results.addWidget(self.plot)
        results.addWidget(self.table)
        layout = QVBoxLayout(self)
        layout.addWidget(explanation)
        layout.addWidget(self.backbone_list)
        layout.addLayout(controls)
        layout.addWidget(self.status)
        layout.addWidget(results, stretch=1)
        layout.addWidget(self.use_button, alignment=Qt.AlignmentFlag.AlignRight)

    # --- the backbones to compare ------------------------------------------------------------
    def set_backbones(self, infos: list[BackboneInfo]) -> None:
        """List the registry's backbones, those at hand without a network first and
        ticked; the others say that they download. timm's ~1,600 models are listed once
        their weights are on this computer (choosing one in the backbone list fetches
        them): all of them would bury the others in this short list."""
        self.backbone_list.clear()
        listed = [
            info
            for info in infos
            if not info.name.startswith(TIMM_PREFIX) or info.weights in OFFLINE_WEIGHTS
        ]
        ordered = sorted(listed, key=lambda info: info.weights not in OFFLINE_WEIGHTS)
        for info in ordered:
            offline = info.weights in OFFLINE_WEIGHTS
            size = f", {info.weights_size_mb:.0f} MB" if info.weights_size_mb else ""
            text = info.name if offline else f"{info.name} (downloads{size})"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, info.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if offline else Qt.CheckState.Unchecked)
            self.backbone_list.addItem(item)

    def chosen_backbones(self) -> list[str]:
        items = (self.backbone_list.item(row) for row in range(self.backbone_list.count()))
        return [
            str(item.data(Qt.ItemDataRole.UserRole))
            for item in items
            if item.checkState() == Qt.CheckState.Checked
        ]

    def set_chosen(self, names: list[str]) -> None:
        for row in range(self.backbone_list.count()):
            item = self.backbone_list.item(row)
            ticked = item.data(Qt.ItemDataRole.UserRole) in names
            item.setCheckState(Qt.CheckState.Checked if ticked else Qt.CheckState.Unchecked)

    # --- running -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.task is not None and self.task.running

    def start(self, recipe: Recipe | None, dataset: DatasetReport | None) -> None:
        """Compare the ticked backbones with ``recipe``'s seed, device, precision and
        batch size on ``dataset``'s pictures."""
        from ...engine.compare import BackboneComparison
        from ...engine.errors import UserFacingError
        from ..workers.training import threads_leaving_one_core

        if self.running:
            return
        if not self._editable:
            self.show_unavailable("A run is training (step 3)…")
            return
        if recipe is None or dataset is None:
            self.show_unavailable(NO_DATASET)
            return
        if dataset.errors:
            self.show_unavailable(f"{dataset.errors[0]} (step 1)")
            return
        names = self.chosen_backbones()
        if not names:
            self.show_unavailable(NOTHING_CHOSEN)
            return
        threads, per_class = threads_leaving_one_core(), self.per_class.value()
        try:
            comparison = BackboneComparison(recipe, names, per_class, dataset, cpu_threads=threads)
        except UserFacingError as error:
            self.show_unavailable(str(error))
            return
        self.reset()
        job = EventsJob(comparison.events, comparison.cancel)
        self.task = task = self.runner.start(job, "compare backbones")
        task.progressed.connect(self._on_task_progressed)
        task.succeeded.connect(self._on_task_succeeded)
        task.failed.connect(self._on_task_failed)
        task.cancelled.connect(self._on_task_cancelled)
        self._set_running(True)
        show_starting(self.progress)

    def reset(self) -> None:
        """Forget the comparison (and stop one going): what it measured has changed."""
        if self.task is not None:
            self.task.discard()
            self.task = None
            self._set_running(False)
        self.comparison = None
        self.model.set_scores([])
        self._refresh()
        self.status.setText("")
        self.status.setToolTip("")

    def show_unavailable(self, reason: str) -> None:
        """Compare was pressed but nothing can be compared yet: the request ends here."""
        self.status.setText(reason)
        self.comparison_ended.emit(False)

    def set_editable(self, editable: bool) -> None:
        """Off while a run trains: no comparison starts, no backbone is swapped."""
        self._editable = editable
        for widget in (self.compare_button, self.backbone_list, self.per_class):
            widget.setEnabled(editable and not self.running)
        self._refresh()

    def _set_running(self, running: bool) -> None:
        for widget in (self.compare_button, self.backbone_list, self.per_class):
            widget.setEnabled(not running and self._editable)
        self.cancel_button.setVisible(running)
        self.cancel_button.setEnabled(True)
        self.progress.setVisible(running)
        self.running_changed.emit(running)

    @Slot(list)
    def _on_task_progressed(self, events: list[object]) -> None:
        from ...engine.compare import BackboneCompared

        show_stages(self.progress, self.status, events)
        measured = [event.score for event in events if isinstance(event, BackboneCompared)]
        for score in measured:
            self.model.add_score(score)
        if measured:
            self._refresh()
            if not self.table.selectionModel().hasSelection():
                self.select_best()

    @Slot(object)
    def _on_task_succeeded(self, comparison: Comparison | None) -> None:
        if comparison is None:
            self._ended("Comparison stopped.")
            return
        self._ended("")
        self.show_comparison(comparison)
        self.comparison_ended.emit(bool(comparison.scores))

    @Slot(str, str)
    def _on_task_failed(self, message: str, details: str) -> None:
        self._ended(f"Could not compare: {message}", details)

    @Slot()
    def _on_task_cancelled(self) -> None:
        self._ended("Comparison stopped.")

    def _ended(self, status: str, details: str = "") -> None:
        """The task is over; a status means it ended without figures."""
        self.task = None
        self._set_running(False)
        if status:
            self.status.setText(status)
            self.status.setToolTip(details)
            self.comparison_ended.emit(False)

    @Slot()
    def _on_cancel_button_clicked(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.cancel_button.setEnabled(False)
        self.progress.setFormat("Stopping…")

    # --- results -----------------------------------------------------------------------------
    def show_comparison(self, comparison: Comparison) -> None:
        self.comparison = comparison
        self.model.set_scores(comparison.scores)
        self.status.setText(comparison.summary())
        self.status.setToolTip("")
        self._refresh()
        self.select_best()

    def select_best(self) -> None:
        best = min(self.model.scores, key=lambda s: (-s.accuracy, s.latency_ms_b1), default=None)
        if best is not None:
            self.select_backbone(best.backbone)

    @Slot(str)
    def select_backbone(self, name: str) -> None:
        row = self.model.row_of(name)
        if row is None:
            return
        index = self.sorted.mapFromSource(self.model.index(row, 0))
        flags = (
            QItemSelectionModel.SelectionFlag.ClearAndSelect
            | QItemSelectionModel.SelectionFlag.Rows
        )
        self.table.selectionModel().select(index, flags)
        self.table.scrollTo(index)

    @property
    def selected_backbone(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return str(rows[0].data(NAME_ROLE)) if rows else None

    @Slot()
    def _refresh(self) -> None:
        """The plot and the Use button follow the rows and the selection."""
        selected = self.selected_backbone
        self.plot.show_scores(self.model.scores, selected)
        self.use_button.setEnabled(selected is not None and self._editable)
        self.use_button.setText(f"Use {selected}" if selected else "Use this backbone")

    @Slot()
    def _on_use_button_clicked(self) -> None:
        selected = self.selected_backbone
        if selected is not None and self._editable:
            self.use_requested.emit(selected)
