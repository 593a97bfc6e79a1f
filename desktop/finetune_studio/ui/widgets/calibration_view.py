"""UI layer: how far the model's confidence can be trusted, in the Results step.

One sentence gives the expected calibration error before and after temperature
scaling (``engine.calibration``); a reliability diagram shows, per confidence bin of
the validation pictures, how often the model was right against how sure it was,
beside the diagonal a perfectly calibrated model would follow. A run without
validation pictures has nothing to measure, and says so instead.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGraphicsItem, QLabel, QVBoxLayout, QWidget

from ...engine.calibration import BINS, Calibration
from .training_plots import TEXT_COLOUR

NOT_MEASURED = "Confidence is not calibrated: the run had no validation pictures to measure it on."
BAR_BRUSH = (31, 119, 180, 150)
POINT_BRUSH = (255, 127, 14)
DIAGONAL_PEN = pg.mkPen((120, 120, 120), width=1, style=Qt.PenStyle.DashLine)
PLOT_HEIGHT = 170


def calibration_sentence(calibration: Calibration) -> str:
    if calibration.ece_before is None:
        return NOT_MEASURED
    return f"Confidence is calibrated: {calibration.summary()}."


class CalibrationView(QWidget):
    """The calibration error in words and the reliability diagram after calibration."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = QLabel(NOT_MEASURED)
        self.summary.setWordWrap(True)
        self.summary.setToolTip(
            "Expected calibration error: the gap between how sure the model is and how "
            "often it is right, averaged over the validation pictures. The temperature "
            "softens (above 1) or sharpens (below 1) every probability without changing "
            "which class comes first."
        )
        self.plot_widget = pg.PlotWidget(background="w")
        self.plot_widget.setFixedHeight(PLOT_HEIGHT)
        self.plot = self._reliability_plot(self.plot_widget.getPlotItem())
        self.bars = pg.BarGraphItem(x0=[], height=[], width=0.0, brush=BAR_BRUSH, pen=None)
        self.points = pg.ScatterPlotItem(size=6, brush=POINT_BRUSH, pen=None)
        self.plot.addItem(self.bars)
        self.plot.plot([0.0, 1.0], [0.0, 1.0], pen=DIAGONAL_PEN)
        self.plot.addItem(self.points)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addWidget(self.plot_widget)
        self.set_calibration(None)

    @staticmethod
    def _reliability_plot(plot: pg.PlotItem) -> pg.PlotItem:
        plot.setTitle("Reliability: accuracy per confidence bin (validation)", color=TEXT_COLOUR)
        plot.setLabel("bottom", "confidence", color=TEXT_COLOUR)
        plot.setLabel("left", "accuracy", color=TEXT_COLOUR)
        plot.setXRange(0, 1, padding=0.02)
        plot.setYRange(0, 1, padding=0.02)
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        plot.setMenuEnabled(False)
        for side in ("left", "bottom"):
            axis = plot.getAxis(side)
            axis.setTextPen(TEXT_COLOUR)
            axis.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        return plot

    def set_calibration(self, calibration: Calibration | None) -> None:
        """Show a run's calibration; None (no run) and an unmeasured one show the
        sentence alone."""
        measured = calibration is not None and calibration.ece_before is not None
        self.summary.setText(calibration_sentence(calibration) if calibration else NOT_MEASURED)
        self.summary.setVisible(calibration is not None)
        self.plot_widget.setVisible(measured)
        bins = np.array(calibration.bins if calibration else (), np.float64).reshape(-1, 4)
        self.bars.setOpts(x0=bins[:, 0], height=bins[:, 2], width=1.0 / BINS)
        self.points.setData(bins[:, 1], bins[:, 2])

    @property
    def bar_heights(self) -> list[float]:
        """The accuracy of each bin drawn (for tests and scripted checks)."""
        return [float(h) for h in self.bars.opts["height"]]
