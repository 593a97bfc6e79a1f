"""UI layer: the Data step's tables, adapters over a checked folder that do per row
only what a visible row needs.

At 50,000 pictures with 10,000 unreadable ones, building the skipped list's rows up
front (its names relative to the dataset, through ``pathlib``) took 260 ms of the GUI
thread in one go; here a row's name is made when the view paints it, so the cost
follows what is on screen, not the size of the folder. The classes' thumbnails are
asked of a ``ThumbnailLoader`` when their row is painted, decoded off the GUI thread;
until one arrives the row shows a blank tile of the same size, so rows keep their
height.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Slot,
)
from PySide6.QtGui import QColor, QIcon, QPixmap

from ..workers.thumbnails import ThumbnailLoader

if TYPE_CHECKING:
    from ...engine.inspection import SkippedFile

Index = QModelIndex | QPersistentModelIndex
RIGHT_ALIGNED = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
PLACEHOLDER_COLOUR = QColor(236, 236, 236)


class _HeadedTable(QAbstractTableModel):
    """A flat table whose columns are its ``HEADERS``."""

    HEADERS: tuple[str, ...] = ()

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        return None


class ClassesModel(_HeadedTable):
    """Class, training count, validation count; a thumbnail of one of its pictures."""

    HEADERS = ("Class", "Training", "Validation")

    def __init__(self, thumbnails: ThumbnailLoader, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.thumbnails = thumbnails
        self.classes: tuple[str, ...] = ()
        self.counts: tuple[tuple[int, int], ...] = ()
        self.samples: tuple[str | None, ...] = ()  # the picture shown for each class
        self._placeholder = _blank_icon(thumbnails.size, PLACEHOLDER_COLOUR)
        self._no_picture = QIcon()
        thumbnails.thumbnails_arrived.connect(self._on_thumbnails_arrived)

    def set_classes(
        self,
        classes: Sequence[str],
        counts: Sequence[tuple[int, int]],
        samples: Sequence[str | None],
    ) -> None:
        self.beginResetModel()
        self.classes, self.counts, self.samples = tuple(classes), tuple(counts), tuple(samples)
        self.endResetModel()

    def clear(self) -> None:
        self.set_classes((), (), ())

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.classes)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        row, column = index.row(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self.classes[row] if column == 0 else str(self.counts[row][column - 1])
        if role == Qt.ItemDataRole.UserRole:
            return self.classes[row] if column == 0 else self.counts[row][column - 1]
        if role == Qt.ItemDataRole.TextAlignmentRole and column > 0:
            return RIGHT_ALIGNED
        if role == Qt.ItemDataRole.DecorationRole and column == 0:
            return self._icon(row)
        return None

    def _icon(self, row: int) -> QIcon:
        sample = self.samples[row]
        if sample is None:
            return self._no_picture
        pixmap = self.thumbnails.thumbnail(sample)  # asks for it when not cached
        if pixmap is not None:
            return QIcon(pixmap)
        return self._no_picture if self.thumbnails.is_broken(sample) else self._placeholder

    @Slot(list)
    def _on_thumbnails_arrived(self, paths: list[str]) -> None:
        arrived = set(paths)
        rows = [row for row, sample in enumerate(self.samples) if sample in arrived]
        if rows:
            self.dataChanged.emit(
                self.index(min(rows), 0),
                self.index(max(rows), 0),
                [Qt.ItemDataRole.DecorationRole],
            )


class SkippedFilesModel(_HeadedTable):
    """The files a check skipped: the name inside the dataset, and why."""

    HEADERS = ("Skipped file", "Reason")

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.root = ""
        self.files: tuple[SkippedFile, ...] = ()

    def set_files(self, files: Sequence[SkippedFile], root: str) -> None:
        self.beginResetModel()
        self.files, self.root = tuple(files), root
        self.endResetModel()

    def clear(self) -> None:
        self.set_files((), "")

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.files)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        skipped = self.files[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._name(skipped.path) if index.column() == 0 else skipped.reason
        if role == Qt.ItemDataRole.ToolTipRole:
            return skipped.path
        return None

    def _name(self, path: str) -> str:
        from ...engine.scan import relative_name

        return relative_name(path, self.root)


def _blank_icon(size: int, colour: QColor) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(colour)
    return QIcon(pixmap)
