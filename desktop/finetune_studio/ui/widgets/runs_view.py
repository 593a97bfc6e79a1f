"""UI layer: step 5, every kept run: a table, the selected runs' curves overlaid, and
what differs between two recipes, field by field (``engine.recipe_diff``).

The view only shows and asks: its buttons emit requests (run again, open, export,
delete) that ``ui/runs_loop.py`` carries out with the window. Deleting asks first.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
    Slot,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..models.runs_model import RECORD_ROLE, SORT_ROLE, RunsModel
from ..models.table_models import RowsModel
from .banner import Banner
from .plot_grid import PlotGrid
from .training_plots import TEXT_COLOUR

if TYPE_CHECKING:
    from pathlib import Path

    from ...engine.runs import RunListing, RunRecord

NO_RUNS = "No runs yet: every run you train is kept here, with its recipe and curves."
SIZED_ROWS = 50
PICK_TWO = "Select two runs to see what differs between their recipes."
# One colour per run (matplotlib's tab10): distinct on white, in legend and curve alike.
PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip
WHOLE_EPOCH_TICKS = 20
MAX_OVERLAID = len(PALETTE)
"""Curves drawn at most: one distinct colour each, and drawing stays quick (ten runs
took ~0.1 s here; selecting a thousand would take seconds)."""


def run_label(record: RunRecord) -> str:
    """A run's name in a legend: when it started and what it trained; a solved head
    counts its solver's iterations on the epoch axis, and says so."""
    label = f"{record.started.astimezone():%d %b %H:%M:%S} · {record.backbone}"
    unit = record.history[-1].unit if record.history else "epoch"
    return label if unit == "epoch" else f"{label} ({unit}s)"


class RunCurves(pg.GraphicsLayoutWidget):  # type: ignore[misc]  # pyqtgraph: no hints
    """Validation accuracy and loss per epoch of several runs, one colour per run, with
    one legend row above both plots (a legend inside a plot covers its curves)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground("w")
        self.legend = pg.LegendItem(colCount=3, horSpacing=6, labelTextColor=TEXT_COLOUR)
        self.addItem(self.legend, row=0, col=0, colspan=2)
        self.accuracy = self.addPlot(row=1, col=0, title="Validation accuracy")
        self.loss = self.addPlot(row=1, col=1, title="Validation loss")
        for plot in (self.accuracy, self.loss):
            plot.setLabel("bottom", "epoch")
            PlotGrid(plot, alpha=0.2)  # kept by the plot's view
            for axis in ("left", "bottom"):
                plot.getAxis(axis).setTextPen(TEXT_COLOUR)
        self.accuracy.setLimits(yMin=-0.02, yMax=1.02)  # zoomed to the curves, within 0-1
        self.labels: list[str] = []

    def show_runs(self, records: list[RunRecord]) -> None:
        self.accuracy.clear()
        self.loss.clear()
        self.legend.clear()
        self.labels = []
        for number, record in enumerate(records):
            pen = pg.mkPen(PALETTE[number % len(PALETTE)], width=2)
            epochs = np.array([epoch.epoch for epoch in record.history], dtype=float)
            accuracy = _values([epoch.val_acc for epoch in record.history])
            loss = _values([epoch.val_loss for epoch in record.history])
            style = {"pen": pen, "symbol": "o", "symbolSize": 5, "symbolBrush": pen.color()}
            curve = self.accuracy.plot(epochs, accuracy, connect="finite", **style)
            self.loss.plot(epochs, loss, connect="finite", **style)
            label = run_label(record)
            self.legend.addItem(curve, label)
            self.labels.append(label)
        self.legend.setColumnCount(self._legend_columns())
        self._whole_epochs(max((len(r.history) for r in records), default=0))

    def _legend_columns(self) -> int:
        """As many legend columns as the longest label allows in this width, up to 3:
        three long labels in a row pushed the loss plot out of the view."""
        longest = max((len(label) for label in self.labels), default=0)
        entry = int(self.fontMetrics().averageCharWidth()) * longest + 40  # + line sample
        columns: int = int(self.width()) // max(entry, 1)
        return max(1, min(3, columns))

    def _whole_epochs(self, epochs: int) -> None:
        """A tick per epoch when they fit (no "2.5"); pyqtgraph's own beyond that."""
        for plot in (self.accuracy, self.loss):
            axis = plot.getAxis("bottom")
            if 0 < epochs <= WHOLE_EPOCH_TICKS:
                axis.setTickSpacing(major=1, minor=1)
            else:
                axis.setTickSpacing()


def _values(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


class RunsView(QWidget):
    run_again_requested = Signal(object)  # RunRecord
    open_requested = Signal(object)  # RunRecord: show it in the Results step
    export_requested = Signal(object)  # RunRecord: export it as the Results step does
    delete_requested = Signal(list)  # list[RunRecord], confirmed
    refresh_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.banner = Banner()
        self.store_label = QLabel(NO_RUNS)
        self.store_label.setWordWrap(True)
        self.store_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.model = RunsModel(self)
        self.sorted_model = QSortFilterProxyModel(self)
        self.sorted_model.setSourceModel(self.model)
        self.sorted_model.setSortRole(SORT_ROLE)
        self.table = QTableView()
        self.table.setModel(self.sorted_model)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # Column widths from the first rows only: measuring every row of a thousand
        # runs took most of a second on each listing.
        header.setResizeContentsPrecision(SIZED_ROWS)
        header.setStretchLastSection(True)
        self.curves = RunCurves()
        self.diff_model = RowsModel(["Field", "First run", "Second run"], self)
        self.diff_view = QTableView()
        self.diff_view.setModel(self.diff_model)
        self.diff_view.verticalHeader().hide()
        self.diff_view.horizontalHeader().setStretchLastSection(True)
        self.overlay_note = QLabel()
        self.diff_label = QLabel(PICK_TWO)
        self.diff_label.setWordWrap(True)
        self._build_layout(self._build_buttons())
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.table.doubleClicked.connect(self._on_table_double_clicked)
        self._on_selection_changed(QItemSelection(), QItemSelection())

    def _build_buttons(self) -> QHBoxLayout:
        self.run_again_button = QPushButton("Run again")
        self.run_again_button.setToolTip("Make this run's recipe the window's, and train it")
        self.open_button = QPushButton("Open in Results")
        self.open_button.setToolTip("Show this run's model and figures in step 4")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Export this run's model, as step 4's Export box does")
        self.delete_button = QPushButton("Delete…")
        self.delete_button.setToolTip(
            "Remove the selected runs from the runs folder (exports elsewhere stay)"
        )
        self.refresh_button = QPushButton("Refresh")
        buttons = QHBoxLayout()
        for button, slot in (
            (self.run_again_button, self._on_run_again_clicked),
            (self.open_button, self._on_open_clicked),
            (self.export_button, self._on_export_clicked),
            (self.delete_button, self._on_delete_clicked),
        ):
            button.clicked.connect(slot)
            buttons.addWidget(button)
        self.refresh_button.clicked.connect(self.refresh_requested)
        buttons.addWidget(self.refresh_button)
        buttons.addStretch(1)
        return buttons

    def _build_layout(self, buttons: QHBoxLayout) -> None:
        diff_box = QGroupBox("What differs between two runs")
        diff_layout = QVBoxLayout(diff_box)
        diff_layout.addWidget(self.diff_label)
        diff_layout.addWidget(self.diff_view, stretch=1)
        curves = QWidget()
        curves_layout = QVBoxLayout(curves)
        curves_layout.setContentsMargins(0, 0, 0, 0)
        curves_layout.addWidget(self.overlay_note)
        curves_layout.addWidget(self.curves, stretch=1)
        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(curves)
        lower.addWidget(diff_box)
        lower.setSizes([700, 400])
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(self.table)
        body.addWidget(lower)
        body.setSizes([300, 400])
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(self.store_label)
        layout.addLayout(buttons)
        layout.addWidget(body, stretch=1)

    # --- the list -------------------------------------------------------------------------
    def show_listing(self, listing: RunListing, where: str) -> None:
        """Show a store's runs; the runs selected before stay selected where they are
        still listed."""
        selected = {record.folder for record in self.selected_records()}
        self.model.set_records(listing.records)
        count = len(listing.records)
        where = html.escape(where)
        text = f"{count} run{'' if count == 1 else 's'} kept in {where}" if count else NO_RUNS
        if listing.skipped:
            names = html.escape("; ".join(f"{s.name}: {s.reason}" for s in listing.skipped[:3]))
            more = len(listing.skipped) - 3
            text += (
                f"<br>Skipped {len(listing.skipped)} folder(s) that hold no readable run "
                f"({names}{f'; and {more} more' if more > 0 else ''})."
            )
        self.store_label.setText(text)
        self.select_folders(selected)

    def select_folders(self, folders: set[Path]) -> None:
        source = self.model
        rows = [
            self.sorted_model.mapFromSource(source.index(row, 0)).row()
            for row in range(source.rowCount())
            if source.record(row).folder in folders
        ]
        self.select_rows(rows)

    def select_rows(self, rows: list[int]) -> None:
        """Select these rows as shown (sorted), as a ctrl-click on each would, in one
        change: the curves are drawn once."""
        selection = QItemSelection()
        for row in rows:
            index = self.sorted_model.index(row, 0)
            selection.select(index, index)
        flags = QItemSelectionModel.SelectionFlag
        self.table.selectionModel().select(selection, flags.ClearAndSelect | flags.Rows)

    def selected_records(self) -> list[RunRecord]:
        """The selected runs, in the order shown."""
        rows = sorted(index.row() for index in self.table.selectionModel().selectedRows())
        return [self.sorted_model.index(row, 0).data(RECORD_ROLE) for row in rows]

    @Slot(QItemSelection, QItemSelection)
    def _on_selection_changed(self, selected: QItemSelection, deselected: QItemSelection) -> None:
        records = self.selected_records()
        self.curves.show_runs(records[:MAX_OVERLAID])
        self.overlay_note.setVisible(len(records) > MAX_OVERLAID)
        self.overlay_note.setText(
            f"The curves show the first {MAX_OVERLAID} of the {len(records)} runs selected."
        )
        self._show_diff(records)
        one = records[0] if len(records) == 1 else None
        self.run_again_button.setEnabled(one is not None)
        for button in (self.open_button, self.export_button):
            button.setEnabled(one is not None and one.has_model)
        self.delete_button.setEnabled(bool(records))

    def _show_diff(self, records: list[RunRecord]) -> None:
        if len(records) != 2:
            self.diff_model.set_rows([])
            self.diff_label.setText(PICK_TWO)
            return
        from ...engine.recipe_diff import recipe_diff  # imports torch: not before it is loaded

        first, second = records
        differences = recipe_diff(first.recipe, second.recipe)
        self.diff_model.set_rows([(d.field, d.first, d.second) for d in differences])
        self.diff_label.setText(
            f"First: {run_label(first)}. Second: {run_label(second)}."
            + ("" if differences else " Their recipes are the same.")
        )

    # --- requests -------------------------------------------------------------------------
    def _single(self) -> RunRecord | None:
        records = self.selected_records()
        return records[0] if len(records) == 1 else None

    @Slot()
    def _on_run_again_clicked(self) -> None:
        if (record := self._single()) is not None:
            self.run_again_requested.emit(record)

    @Slot()
    def _on_open_clicked(self) -> None:
        if (record := self._single()) is not None and record.has_model:
            self.open_requested.emit(record)

    @Slot(QModelIndex)
    def _on_table_double_clicked(self, index: QModelIndex) -> None:
        self._on_open_clicked()

    @Slot()
    def _on_export_clicked(self) -> None:
        if (record := self._single()) is not None and record.has_model:
            self.export_requested.emit(record)

    @Slot()
    def _on_delete_clicked(self) -> None:
        records = self.selected_records()
        if records and self.confirm_delete(records):
            self.delete_requested.emit(records)

    def confirm_delete(self, records: list[RunRecord]) -> bool:
        count = len(records)
        what = f"the run from {run_label(records[0])}" if count == 1 else f"{count} runs"
        buttons = QMessageBox.StandardButton
        answer = QMessageBox.question(
            self,
            "Delete runs?",
            f"Delete {what}? Their records and kept models are removed from the runs "
            "folder. Models you exported elsewhere are not touched.",
            buttons.Yes | buttons.Cancel,
            buttons.Cancel,
        )
        return answer == buttons.Yes
