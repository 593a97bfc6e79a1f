"""UI layer: the picture viewer's canvas, a picture with a heatmap laid over it.

The heatmap job hands back plain pixels (numpy arrays); ``image_of`` makes the
images painted here from them, in the GUI thread. The canvas keeps the picture and
the overlay apart, so hiding the heatmap or changing its opacity only repaints.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QImage, QPainter, QPaintEvent, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget

DEFAULT_OPACITY = 60  # percent


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
