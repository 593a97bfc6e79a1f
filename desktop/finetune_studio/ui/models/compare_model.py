"""UI layer: the backbone comparison as a table, one row a backbone.

Cells show the figures as a person reads them (``93.3 %``, ``12.4 ms``, ``4.7 M``);
``SORT_ROLE`` gives the plain numbers, so a ``QSortFilterProxyModel`` sorts by value,
and ``NAME_ROLE`` the backbone's registry name on every cell of its row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel

if TYPE_CHECKING:
    from ...engine.compare import BackboneScore

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


class CompareModel(QStandardItemModel):
    """Qt's item model holds the cells, so painting and sorting the table run no Python
    (a comparison's worker thread holds Python's lock much of the time)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.scores: list[BackboneScore] = []
        for section, column in enumerate(COLUMNS):
            header = QStandardItem(column.header)
            if column.tooltip:
                header.setToolTip(column.tooltip)
            self.setHorizontalHeaderItem(section, header)

    def set_scores(self, scores: Sequence[BackboneScore]) -> None:
        self.setRowCount(0)
        self.scores = []
        for score in scores:
            self.add_score(score)

    def add_score(self, score: BackboneScore) -> None:
        """One more backbone measured (or measured again: its row is replaced)."""
        cells = [_cell(score, column, section) for section, column in enumerate(COLUMNS)]
        row = self.row_of(score.backbone)
        if row is None:
            self.scores.append(score)
            self.appendRow(cells)
            return
        self.scores[row] = score
        for section, cell in enumerate(cells):
            self.setItem(row, section, cell)

    def row_of(self, backbone: str) -> int | None:
        return next((r for r, s in enumerate(self.scores) if s.backbone == backbone), None)


def _cell(score: BackboneScore, column: Column, section: int) -> QStandardItem:
    cell = QStandardItem(column.shown(score))
    cell.setData(column.value(score), SORT_ROLE)
    cell.setData(score.backbone, NAME_ROLE)
    cell.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    if section > 0:  # figures
        cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return cell
