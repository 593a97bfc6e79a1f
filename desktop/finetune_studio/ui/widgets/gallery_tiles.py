"""UI layer: the gallery's tiles, how one is painted and how the view scrolls them.

A tile is a thumbnail with a line or three under it: "cat → dog" and the
confidence for an evaluated picture, "given cat" and "cross-validated" for a
training picture that only the suspects search saw (an ``OutOfFoldRecord``; its
record's prediction is not the trained model's verdict), and the suggested class of
a suspect. Every tile has the same size, so the gallery's list view lays out
thousands of them without measuring each.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from ...engine.review.records import PictureRecord
from ..models.picture_records_model import (
    RECORD_ROLE,
    SUGGESTED_ROLE,
    OutOfFoldRecord,
    PictureRecordsModel,
)
from ..workers.thumbnails import THUMBNAIL_SIZE, ThumbnailLoader

Index = QModelIndex | QPersistentModelIndex
PADDING = 6
CORRECT = QColor(26, 127, 55)
WRONG = QColor(190, 30, 45)
SUGGESTION = QColor(154, 103, 0)


class TileDelegate(QStyledItemDelegate):
    """Paints a tile: thumbnail (or a placeholder), true → predicted, confidence, and
    the suggested class of a suspect; a training picture's (out-of-fold) tile says
    "given", "cross-validated" and the suggestion instead. Every tile has the same
    size (the view lays out thousands without asking each one)."""

    def __init__(self, thumbnails: ThumbnailLoader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.thumbnails = thumbnails

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        model = index.model()
        suspects = isinstance(model, PictureRecordsModel) and model.has_suspects
        lines = (3 if suspects else 2) * option.fontMetrics.height()
        return QSize(THUMBNAIL_SIZE + 2 * PADDING, THUMBNAIL_SIZE + lines + 3 * PADDING)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        record = index.data(RECORD_ROLE)
        if not isinstance(record, PictureRecord):
            return
        painter.save()
        style = option.widget.style() if option.widget else None
        if style is not None:  # the selection and hover background, as the style draws it
            panel = QStyleOptionViewItem(option)
            style.drawPrimitive(
                QStyle.PrimitiveElement.PE_PanelItemViewItem, panel, painter, option.widget
            )
        rect = option.rect.adjusted(PADDING, PADDING, -PADDING, -PADDING)
        picture = QRect(rect.left(), rect.top(), rect.width(), THUMBNAIL_SIZE)
        self._paint_thumbnail(painter, option, picture, record.path)
        line = option.fontMetrics.height()
        text = QRect(rect.left(), picture.bottom() + PADDING, rect.width(), line)
        for words, colour in self.lines(index, option.palette):
            self._paint_line(painter, option, text, words, colour)
            text.translate(0, line)
        painter.restore()

    def lines(self, index: Index, palette: QPalette) -> list[tuple[str, QColor]]:
        """The text under a tile's picture, a line each, with its colour."""
        record = index.data(RECORD_ROLE)
        muted = palette.color(QPalette.ColorRole.PlaceholderText)
        model = index.model()
        if isinstance(record, OutOfFoldRecord) and isinstance(model, PictureRecordsModel):
            given = f"given {model.class_name(record.true)}"
            lines = [(given, palette.color(QPalette.ColorRole.Text)), ("cross-validated", muted)]
        elif isinstance(record, PictureRecord):
            caption = str(index.data(Qt.ItemDataRole.DisplayRole))
            lines = [
                (caption, CORRECT if record.correct else WRONG),
                (f"{record.confidence:.0%} confident", muted),
            ]
        else:
            return []
        suggested = index.data(SUGGESTED_ROLE)
        if suggested:
            lines.append((f"suggested: {suggested}", SUGGESTION))
        return lines

    def _paint_thumbnail(
        self, painter: QPainter, option: QStyleOptionViewItem, area: QRect, path: str
    ) -> None:
        pixmap = self.thumbnails.thumbnail(path)
        if pixmap is not None:
            size = pixmap.size().scaled(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(area.center())
            painter.drawPixmap(target, pixmap)
            return
        box = QRect(0, 0, THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        box.moveCenter(area.center())
        painter.fillRect(box, option.palette.color(QPalette.ColorRole.AlternateBase))
        if self.thumbnails.is_broken(path):
            painter.setPen(option.palette.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, "Cannot open\nthis file")

    @staticmethod
    def _paint_line(
        painter: QPainter, option: QStyleOptionViewItem, rect: QRect, text: str, colour: QColor
    ) -> None:
        painter.setPen(colour)
        elided = option.fontMetrics.elidedText(text, Qt.TextElideMode.ElideRight, rect.width())
        painter.drawText(
            rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter, elided
        )


class TileView(QListView):
    """A list view in icon mode whose mouse wheel moves a third of a tile a line (a
    wheel notch scrolls three lines): QListView's own line, a whole row of tiles, made
    one notch jump about a screen."""

    def updateGeometries(self) -> None:
        super().updateGeometries()
        tile = self.sizeHintForIndex(self.model().index(0, 0)) if self.model() else QSize()
        if tile.isValid():
            self.verticalScrollBar().setSingleStep(max(1, tile.height() // 3))
