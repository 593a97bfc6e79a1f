"""UI layer: grid lines for a pyqtgraph plot, drawn by one cheap item in its view.

pyqtgraph's own grid (``PlotItem.showGrid``) stretches every axis's tick marks
across the plot, so each axis paints, caches and redraws a plot-sized picture
whenever its range moves. On this project's 2-core machine that was two thirds of
the training curves' first paint (35 ms of the GUI thread's CPU with it, 12 ms
without), the worst stall of the window while a run starts. This item draws the
same lines (the axes' major and minor ticks, as faint as pyqtgraph draws them) in
one call, and works them out again only when the view's range or size changes.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QLineF, QRectF
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QStyleOptionGraphicsItem, QWidget

GRID_GREY = 150  # pyqtgraph's default axis colour, which its grid lines are drawn in
MINOR_FADE = 3  # pyqtgraph draws minor grid lines a third as opaque as major ones


class PlotGrid(pg.GraphicsObject):  # type: ignore[misc]  # pyqtgraph: no hints
    """Vertical lines at the bottom axis's ticks and horizontal lines at the left
    axis's, behind the plot's curves. ``alpha`` is the major lines' opacity (0-1)."""

    def __init__(self, plot: pg.PlotItem, alpha: float) -> None:
        super().__init__()
        self._plot = plot
        self._view: pg.ViewBox = plot.getViewBox()
        major = QColor(GRID_GREY, GRID_GREY, GRID_GREY, round(255 * alpha))
        minor = QColor(major)
        minor.setAlpha(round(255 * alpha / MINOR_FADE))
        self._pens = [QPen(major, 0), QPen(minor, 0)]  # width 0: one pixel at any zoom
        self._lines: list[list[QLineF]] = [[], []]  # major, minor
        self._bounds = QRectF()
        self.setZValue(-1000)  # behind every curve
        self._view.addItem(self, ignoreBounds=True)
        self._view.sigRangeChanged.connect(self._on_view_changed)
        self._view.sigResized.connect(self._on_view_changed)
        self._on_view_changed()

    def _on_view_changed(self, *_: object) -> None:
        self.prepareGeometryChange()
        (left, right), (bottom, top) = self._view.viewRange()
        self._bounds = QRectF(left, bottom, right - left, top - bottom)
        size = self._view.size()
        self._lines = [[], []]
        for axis, low, high, pixels, vertical in (
            ("bottom", left, right, size.width(), True),
            ("left", bottom, top, size.height(), False),
        ):
            if pixels <= 0 or high <= low:
                continue
            levels = self._plot.getAxis(axis).tickValues(low, high, pixels)
            for level, (_, values) in enumerate(levels[: len(self._lines)]):
                for value in values:
                    self._lines[level].append(
                        QLineF(value, bottom, value, top)
                        if vertical
                        else QLineF(left, value, right, value)
                    )
        self.update()

    def boundingRect(self) -> QRectF:
        return self._bounds

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        for pen, lines in zip(self._pens, self._lines, strict=True):
            painter.setPen(pen)
            painter.drawLines(lines)

    @property
    def lines(self) -> list[list[QLineF]]:
        """The major and the minor lines, in the view's coordinates."""
        return self._lines
