"""UI layer: the kept runs as a table (the Runs step), one row per ``RunRecord``.

Everything shown comes from the records (``run.json``), never from a model folder, so
a store of hundreds of runs lists at once. Sorting goes through a
``QSortFilterProxyModel`` on ``SORT_ROLE``: dates, numbers and words each sort as
what they are, and a run with no accuracy sorts below every run with one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt

if TYPE_CHECKING:
    from ...engine.runs import RunRecord

Index = QModelIndex | QPersistentModelIndex
COLUMNS = ("Started", "Backbone", "Freeze plan", "Epochs", "Best val. accuracy", "Time", "Outcome")
STARTED, BACKBONE, PLAN, EPOCHS, ACCURACY, TIME, OUTCOME = range(len(COLUMNS))
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
RECORD_ROLE = Qt.ItemDataRole.UserRole + 2


def started_in_words(record: RunRecord) -> str:
    return record.started.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration_in_words(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``: to the second only while it matters."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, second = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {second:02d} s"
    hours, minute = divmod(minutes, 60)
    return f"{hours} h {minute:02d} min"


def epochs_in_words(record: RunRecord) -> str:
    """Epochs done of those planned; a solved head counts its solver's iterations."""
    done = len(record.history)
    if record.history and record.history[-1].unit != "epoch":
        return f"head solved ({done} {record.history[-1].unit}s)"
    return f"{done} of {record.recipe.epochs}"


class RunsModel(QAbstractTableModel):
    """Read-only rows of runs, in the order given (the store's: newest first)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.records: list[RunRecord] = []
        self._plans: list[str] = []  # each row's freeze plan in words, computed once

    def set_records(self, records: Sequence[RunRecord]) -> None:
        from ...engine.recipe_diff import freeze_in_words

        self.beginResetModel()
        self.records = list(records)
        self._plans = [freeze_in_words(record.recipe) for record in self.records]
        self.endResetModel()

    def record(self, row: int) -> RunRecord:
        return self.records[row]

    def row_of(self, folder: object) -> int:
        """The row of the run kept in ``folder``; -1 when none."""
        return next((i for i, r in enumerate(self.records) if r.folder == folder), -1)

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.records)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        record, column = self.records[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(record, index.row(), column)
        if role == SORT_ROLE:
            return self._sort_key(record, index.row(), column)
        if role == RECORD_ROLE:
            return record
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(record)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (EPOCHS, ACCURACY, TIME):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _text(self, record: RunRecord, row: int, column: int) -> str:
        if column == STARTED:
            return started_in_words(record)
        if column == BACKBONE:
            return record.backbone
        if column == PLAN:
            return self._plans[row]
        if column == EPOCHS:
            return epochs_in_words(record)
        if column == ACCURACY:
            accuracy = record.best_accuracy
            return "" if accuracy is None else f"{accuracy:.1%}"
        if column == TIME:
            duration = record.duration
            return "—" if duration is None else duration_in_words(duration)
        return record.outcome

    def _sort_key(self, record: RunRecord, row: int, column: int) -> object:
        if column == STARTED:
            return record.started.timestamp()
        if column == EPOCHS:
            return float(len(record.history))
        if column == ACCURACY:
            accuracy = record.best_accuracy
            return -1.0 if accuracy is None else accuracy
        if column == TIME:
            return -1.0 if record.duration is None else record.duration
        return self._text(record, row, column).casefold()

    @staticmethod
    def _tooltip(record: RunRecord) -> str:
        lines = [f"{record.recipe.dataset}", f"Kept in {record.folder}"]
        if record.failure is not None:
            lines.append(f"Failed: {record.failure}")
        return "\n".join(lines)
