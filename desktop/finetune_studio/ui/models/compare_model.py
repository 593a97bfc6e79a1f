"""UI layer: the backbone comparison as a table, one row a backbone.

Cells show the figures as a person reads them (``93.3 %``, ``12.4 ms``, ``4.7 M``);
``SORT_ROLE`` gives the plain numbers, so a ``QSortFilterProxyModel`` sorts by value,
and ``NAME_ROLE`` the backbone's registry name on every cell of its row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt

if TYPE_CHECKING:
    from ...engine.compare import BackboneScore

Index = QModelIndex | QPersistentModelIndex
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
NAME_ROLE = Qt.ItemDataRole.UserRole + 2


def _size(score: BackboneScore) -> str:
    return "–" if score.size_mb is None else f"{score.size_mb:.1f} MB"


def _count(params: int) -> str:
    return f"{params / 1e6:.1f} M" if params >= 100_000 else f"{params / 1e3:.0f} k"


@dataclass(frozen=True)
class Column:
    header: str
    tooltip: str
    shown: Callable[[BackboneScore], str]
    value: Callable[[BackboneScore], object]  # what the column sorts by


COLUMNS = tuple(
    Column(*fields)
    for fields in (
        ("Backbone", "", lambda s: s.backbone, lambda s: s.backbone),
        (
            "Accuracy",
            "A linear head on the pretrained features, cross-validated on the sampled "
            "pictures: what a head-only run would reach, about.",
            lambda s: f"{s.accuracy:.1%}",
            lambda s: s.accuracy,
        ),
        (
            "±",
            "Standard deviation of the accuracy across the folds: differences smaller than "
            "this are noise.",
            lambda s: f"{s.accuracy_std:.1%}",
            lambda s: s.accuracy_std,
        ),
        (
            "Latency ×1",
            "Milliseconds per picture, one picture at a time, on this computer (float32).",
            lambda s: f"{s.latency_ms_b1:.1f} ms",
            lambda s: s.latency_ms_b1,
        ),
        (
            "Latency ×32",
            "Milliseconds per picture in batches of 32, on this computer (float32).",
            lambda s: f"{s.latency_ms_b32:.1f} ms",
            lambda s: s.latency_ms_b32,
        ),
        (
            "Params",
            "Parameters, with the ImageNet head (1,000 classes).",
            lambda s: _count(s.params),
            lambda s: s.params,
        ),
        (
            "Size",
            "The pretrained weights file.",
            _size,
            lambda s: -1.0 if s.size_mb is None else s.size_mb,
        ),
    )
)
ACCURACY = 1


class CompareModel(QAbstractTableModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.scores: list[BackboneScore] = []

    def set_scores(self, scores: Sequence[BackboneScore]) -> None:
        self.beginResetModel()
        self.scores = list(scores)
        self.endResetModel()

    def add_score(self, score: BackboneScore) -> None:
        """One more backbone measured (or measured again: its row is replaced)."""
        for row, shown in enumerate(self.scores):
            if shown.backbone == score.backbone:
                self.scores[row] = score
                last = self.index(row, len(COLUMNS) - 1)
                self.dataChanged.emit(self.index(row, 0), last)
                return
        self.beginInsertRows(QModelIndex(), len(self.scores), len(self.scores))
        self.scores.append(score)
        self.endInsertRows()

    def row_of(self, backbone: str) -> int | None:
        return next((r for r, s in enumerate(self.scores) if s.backbone == backbone), None)

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.scores)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        column = COLUMNS[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.header
        if role == Qt.ItemDataRole.ToolTipRole:
            return column.tooltip or None
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid() or index.row() >= len(self.scores):
            return None
        score = self.scores[index.row()]
        column = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.shown(score)
        if role == SORT_ROLE:
            return column.value(score)
        if role == NAME_ROLE:
            return score.backbone
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() > 0:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
