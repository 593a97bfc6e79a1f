"""UI layer: live training curves with pyqtgraph.

Points go into growable numpy buffers as they arrive; a 15 Hz timer redraws only
when something changed. Calling ``setData`` on every batch instead took ~40x the
GUI thread's time of these buffered redraws (measured on this project's 2-core
machine), enough to stall the window during a fast run.

Axis text dominates a repaint: with the axes cached as pixmaps and the x range
fixed to the run's epochs, a repaint of the three plots fell from 24 ms to 2.6 ms
(900x420 px, this project's 2-core CI machine, median of 20).

Axes are the rest of a repaint's cost (drawing their text took ~7 ms per axis here),
and pyqtgraph redraws an axis whenever its range moves. Auto-ranging the loss and the
learning rate moved their left axes on nearly every redraw, as each new batch set a new
minimum; their y ranges now run from 0 to a round figure above the largest value
(``nice_ceiling``), so an axis is redrawn only when a value passes that figure. Each
curve is also handed its points only when they changed: the per-epoch curves' markers
were rebuilt on every redraw for nothing. At a run's start, when the worker leaves the
GUI thread least of the CPU and of Python's lock, a fixed axis width and no unit
prefixes took the first epoch's repaint from ~12 to ~4 ms (``bench_responsiveness.py
--explain`` finds these).

One legend row above the plots serves both loss and accuracy (same colours): a
legend inside a plot covered its curves, and at the window's minimum size it
overflowed the plot, its names running over the axis with no line beside them.
The row wraps onto two lines (or four) when the widget is too narrow for one.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer, Slot
from PySide6.QtGui import QFontMetrics, QResizeEvent
from PySide6.QtWidgets import QGraphicsItem, QWidget

from .plot_grid import PlotGrid

REDRAW_INTERVAL_MS = 66
SMOOTHING = 0.9  # exponential moving average of the batch loss, bias-corrected
# pyqtgraph's default grey (150) on white is hard to read at the small sizes the
# window allows; this grey keeps the text secondary to the curves but legible.
TEXT_COLOUR = (80, 80, 80)
WIDE_TICK_LABEL = "0.00025"  # the left axes' width: as wide as this label
LEGEND_SPACING = 6  # px between a legend entry's line and its name, and between entries
LEGEND_GAP = "&nbsp;" * 4  # after each name, so the entries read as separate
LEGEND = {  # curve -> name; training and validation accuracy share these colours
    "batch_loss": "loss per batch",
    "smooth_loss": "smoothed",
    "train_loss": "training (per epoch)",
    "val_loss": "validation",
}


NICE_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)
Y_RANGED_PLOTS = {  # plot -> the curves its y range covers, from 0 (losses, rates >= 0)
    "loss": ("batch_loss", "smooth_loss", "train_loss", "val_loss"),
    "lr": ("lr",),
}


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5 and 5 times a power of ten that is >= ``value``."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    scale = 10.0 ** math.floor(math.log10(value))
    return next(step * scale for step in NICE_STEPS if step * scale >= value * (1 - 1e-9))


class Series:
    """An append-only (x, y) buffer that doubles its capacity when full, and the
    largest finite y so far."""

    def __init__(self, capacity: int = 256) -> None:
        self._data = np.empty((capacity, 2), dtype=np.float64)
        self.size = 0
        self.top = -math.inf

    def append(self, x: float, y: float) -> None:
        if self.size == len(self._data):
            self._data = np.concatenate([self._data, np.empty_like(self._data)])
        self._data[self.size] = (x, y)
        self.size += 1
        if math.isfinite(y) and y > self.top:
            self.top = y

    @property
    def x(self) -> np.ndarray:
        return self._data[: self.size, 0]

    @property
    def y(self) -> np.ndarray:
        return self._data[: self.size, 1]

    def clear(self) -> None:
        self.size = 0
        self.top = -math.inf


class TrainingPlots(pg.GraphicsLayoutWidget):  # type: ignore[misc]  # pyqtgraph: no hints
    """Loss (per batch, smoothed, and per epoch), accuracy, and learning rate."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground("w")
        pens = {
            "batch": pg.mkPen((160, 190, 230), width=1),
            "smooth": pg.mkPen((31, 119, 180), width=2),
            "train": pg.mkPen((31, 119, 180), width=2),
            "val": pg.mkPen((255, 127, 14), width=2),
            "lr": pg.mkPen((44, 160, 44), width=2),
        }
        self.grids: list[PlotGrid] = []
        self.legend = pg.LegendItem(
            colCount=len(LEGEND), horSpacing=LEGEND_SPACING, labelTextColor=TEXT_COLOUR
        )
        self.ci.addItem(self.legend, row=0, col=0, colspan=3)
        self.loss_plot = self._plot(0, "Loss")
        self.acc_plot = self._plot(1, "Accuracy")
        self.lr_plot = self._plot(2, "Learning rate")
        self.acc_plot.setYRange(0, 1)
        self.series = {
            name: Series()
            for name in (
                "batch_loss",
                "smooth_loss",
                "train_loss",
                "val_loss",
                "train_acc",
                "val_acc",
                "lr",
            )
        }
        symbol = {"symbol": "o", "symbolSize": 6}
        self.curves = {
            "batch_loss": self.loss_plot.plot(pen=pens["batch"]),
            "smooth_loss": self.loss_plot.plot(pen=pens["smooth"]),
            "train_loss": self.loss_plot.plot(
                pen=pens["train"], symbolBrush=(31, 119, 180), **symbol
            ),
            "val_loss": self.loss_plot.plot(pen=pens["val"], symbolBrush=(255, 127, 14), **symbol),
            "train_acc": self.acc_plot.plot(
                pen=pens["train"], symbolBrush=(31, 119, 180), **symbol
            ),
            "val_acc": self.acc_plot.plot(pen=pens["val"], symbolBrush=(255, 127, 14), **symbol),
            "lr": self.lr_plot.plot(pen=pens["lr"]),
        }
        for curve, name in LEGEND.items():
            self.legend.addItem(self.curves[curve], name + LEGEND_GAP)
        self._fit_legend()
        for curve in self.curves.values():
            curve.setClipToView(True)
            curve.setDownsampling(auto=True, method="peak")
        self._ranged_plots = {"loss": self.loss_plot, "lr": self.lr_plot}
        for plot in self._ranged_plots.values():
            plot.enableAutoRange(y=False)
        self.y_tops: dict[str, float] = {}  # plot -> the top of its y range
        self.x_top: float | None = None  # the fixed x range's top; None: auto-ranged
        self.x_unit = "epoch"
        self._drawn = dict.fromkeys(self.series, -1)  # points each curve was given
        self._average = 0.0
        self._batches = 0
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_INTERVAL_MS)
        self._timer.timeout.connect(self._on_timer_timeout)
        self._timer.start()

    def _legend_width(self, columns: int) -> float:
        """The legend's width laid out in ``columns`` entries per row."""
        entries: list[float] = [
            float(sample.boundingRect().width() + label.preferredWidth())
            for sample, label in self.legend.items
        ]
        widest = [max(entries[start::columns]) for start in range(min(columns, len(entries)))]
        return sum(widest) + LEGEND_SPACING * (2 * len(widest) - 1)

    def _fit_legend(self) -> None:
        """As many entries per row as the width allows: 4, 2 or 1."""
        available = self.viewport().width() - 40  # the layout's margins and spacing
        columns = next(
            (n for n in (len(LEGEND), 2) if self._legend_width(n) <= available),
            1,
        )
        self.legend.setColumnCount(columns)

    def resizeEvent(self, event: QResizeEvent) -> None:
        if hasattr(self, "legend"):  # pyqtgraph's constructor resizes before ours ran
            self._fit_legend()
        super().resizeEvent(event)

    def _plot(self, column: int, title: str) -> pg.PlotItem:
        plot = self.addPlot(row=1, col=column)
        plot.setTitle(title, color=TEXT_COLOUR)
        self.grids.append(PlotGrid(plot, alpha=0.25))
        plot.setLabel("bottom", "epoch", color=TEXT_COLOUR)  # see set_x_unit
        for side in ("left", "bottom"):
            axis = plot.getAxis(side)
            axis.setTextPen(TEXT_COLOUR)
            axis.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
            axis.enableAutoSIPrefix(False)  # plain numbers; no label rebuilt per range
        # A left axis sized to its labels re-lays out its whole plot whenever their
        # width changes; this one is as wide as a long label ("0.00025", "1.5e-05").
        left = plot.getAxis("left")
        font = left.style["tickFont"] or self.font()
        left.setWidth(QFontMetrics(font).horizontalAdvance(WIDE_TICK_LABEL) + 12)
        return plot

    @property
    def plots(self) -> tuple[pg.PlotItem, ...]:
        return self.loss_plot, self.acc_plot, self.lr_plot

    def clear_curves(self, epochs: int | None = None) -> None:
        """Empty the plots for a new run; a known length fixes the x axis to it."""
        for series in self.series.values():
            series.clear()
        self.x_top = float(epochs) if epochs else None
        for plot in self.plots:
            if epochs:
                plot.setXRange(0, epochs, padding=0.02)
                plot.enableAutoRange(x=False)
            else:
                plot.enableAutoRange(x=True)
        self.set_x_unit("epoch")
        self._average, self._batches = 0.0, 0
        self.y_tops.clear()
        self._drawn = dict.fromkeys(self.series, -1)
        self._dirty = True

    def expect_run(self, epochs: int) -> None:
        """A run is starting: empty plots take its x axis now, while the window is
        idle, rather than with its first batch. (Plots with curves keep them until the
        run's first batch: a run that fails to start leaves them as they were.)"""
        if not any(series.size for series in self.series.values()):
            self.clear_curves(epochs)

    def set_x_unit(self, unit: str) -> None:
        """What the x axis counts: epochs, or the head solver's iterations (whose
        third curve is the step its line search took, not a learning rate)."""
        if unit != self.x_unit:
            self.x_unit = unit
            for plot in self.plots:
                plot.setLabel("bottom", unit, color=TEXT_COLOUR)
            title = "Step size" if unit == "iteration" else "Learning rate"
            self.lr_plot.setTitle(title, color=TEXT_COLOUR)

    def add_batch(self, position: float, loss: float, lr: float) -> None:
        """``position`` is in epochs (epoch - 1 + batch / batches)."""
        self._average = SMOOTHING * self._average + (1 - SMOOTHING) * loss
        self._batches += 1
        smoothed = self._average / (1 - SMOOTHING**self._batches)  # no lag from a zero start
        self.series["batch_loss"].append(position, loss)
        self.series["smooth_loss"].append(position, smoothed)
        self.series["lr"].append(position, lr)
        self._dirty = True

    def add_epoch(
        self,
        epoch: int,
        train_loss: float,
        val_loss: float | None,
        train_acc: float,
        val_acc: float | None,
    ) -> None:
        self.series["train_loss"].append(epoch, train_loss)
        self.series["train_acc"].append(epoch, train_acc)
        if val_loss is not None and val_acc is not None:
            self.series["val_loss"].append(epoch, val_loss)
            self.series["val_acc"].append(epoch, val_acc)
        self._dirty = True

    @Slot()
    def _on_timer_timeout(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        for name, curve in self.curves.items():
            series = self.series[name]
            if self._drawn[name] != series.size:
                self._drawn[name] = series.size
                curve.setData(series.x, series.y)
        self._fit_x_range()
        self._fit_y_ranges()

    def _fit_x_range(self) -> None:
        """Widen a fixed x axis that the run has outgrown: the head solver's
        iterations can outnumber the recipe's epochs."""
        if self.x_top is None:
            return
        last = max((series.x[-1] for series in self.series.values() if series.size), default=0.0)
        if last > self.x_top:
            self.x_top = nice_ceiling(last)
            for plot in self.plots:
                plot.setXRange(0, self.x_top, padding=0.02)

    def _fit_y_ranges(self) -> None:
        """From 0 to a round figure above the largest value, moved only when a value
        passes it (or a new run starts)."""
        for plot_name, curve_names in Y_RANGED_PLOTS.items():
            top = max(self.series[name].top for name in curve_names)
            if top == -math.inf:
                continue
            ceiling = nice_ceiling(top)
            if self.y_tops.get(plot_name) != ceiling:
                self.y_tops[plot_name] = ceiling
                self._ranged_plots[plot_name].setYRange(0, ceiling, padding=0.02)
