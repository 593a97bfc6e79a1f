"""UI layer: small read-only table models over plain engine data."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QIcon

Index = QModelIndex | QPersistentModelIndex


class RowsModel(QAbstractTableModel):
    """Rows of plain values; numbers are right-aligned, an optional icon per row."""

    def __init__(self, headers: Sequence[str], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.headers = list(headers)
        self.rows: list[tuple[object, ...]] = []
        self.icons: list[QIcon | None] = []
        self.tooltips: list[str | None] = []

    def set_rows(
        self,
        rows: Sequence[tuple[object, ...]],
        icons: Sequence[QIcon | None] = (),
        tooltips: Sequence[str | None] = (),
    ) -> None:
        self.beginResetModel()
        self.rows = [tuple(row) for row in rows]
        self.icons = list(icons) or [None] * len(self.rows)
        self.tooltips = list(tooltips) or [None] * len(self.rows)
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.headers)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.headers[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        value = self.rows[index.row()][index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            if isinstance(value, float):
                return f"{value:.1%}"
            return "" if value is None else str(value)
        if role == Qt.ItemDataRole.UserRole:
            return value
        if role == Qt.ItemDataRole.DecorationRole and index.column() == 0:
            return self.icons[index.row()]
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.tooltips[index.row()]
        if role == Qt.ItemDataRole.TextAlignmentRole and isinstance(value, (int, float)):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class ConfusionMatrixModel(QAbstractTableModel):
    """Counts, true class per row, predicted per column; shaded by each row's share."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.class_names: list[str] = []
        self.counts: list[list[int]] = []

    def set_matrix(self, class_names: Sequence[str], counts: Sequence[Sequence[int]]) -> None:
        self.beginResetModel()
        self.class_names = list(class_names)
        self.counts = [list(row) for row in counts]
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.counts)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.class_names)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        name = self.class_names[section]
        return f"→ {name}" if orientation == Qt.Orientation.Horizontal else name

    def share(self, row: int, column: int) -> float:
        total = sum(self.counts[row])
        return self.counts[row][column] / total if total else 0.0

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        row, column = index.row(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return str(self.counts[row][column])
        if role == Qt.ItemDataRole.BackgroundRole:
            share = self.share(row, column)
            good = row == column
            base = QColor(46, 160, 67) if good else QColor(218, 54, 51)
            base.setAlphaF(0.08 + 0.8 * share if self.counts[row][column] else 0.0)
            return QBrush(base)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return (
                f"{self.counts[row][column]} pictures of {self.class_names[row]} predicted "
                f"as {self.class_names[column]} ({self.share(row, column):.0%})"
            )
        return None
