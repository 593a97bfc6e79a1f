"""UI layer: the suspected wrong labels as a table (picture, labelled, probably,
suspicion, now), one row a suspect, most suspicious first.

A row is keyed by its picture's real path, so the journal's records (which hold
resolved paths) find it whatever way the dataset was opened (a link, ``~``, a
relative path). The "Now" column says where a repair put the picture; an undo clears
it, and a row with something there takes no further repair.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QIcon, QPixmap, QStandardItem, QStandardItemModel

if TYPE_CHECKING:
    from ...engine.review.journal import Action
    from ...engine.review.suspects import SuspectReport

COLUMNS = ("Picture", "Labelled", "Probably", "Suspicion", "Now")
PICTURE, NOW = 0, 4
PATH_ROLE = Qt.ItemDataRole.UserRole + 1  # the path as the search listed it
REAL_PATH_ROLE = Qt.ItemDataRole.UserRole + 2
SUGGESTED_CLASS_ROLE = Qt.ItemDataRole.UserRole + 3  # the suggested class's name


class SuspectsModel(QStandardItemModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(list(COLUMNS))

    def show_report(self, report: SuspectReport | None) -> None:
        self.removeRows(0, self.rowCount())
        if report is None:
            return
        names = report.class_names
        for suspect in report.suspects:
            picture = QStandardItem(Path(suspect.path).name)
            picture.setToolTip(suspect.path)
            picture.setData(suspect.path, PATH_ROLE)
            picture.setData(os.path.realpath(suspect.path), REAL_PATH_ROLE)
            picture.setData(names[suspect.suggested], SUGGESTED_CLASS_ROLE)
            self.appendRow(
                [
                    picture,
                    QStandardItem(names[suspect.given]),
                    QStandardItem(names[suspect.suggested]),
                    QStandardItem(f"{suspect.score:.0%}"),
                    QStandardItem(""),
                ]
            )

    def path(self, row: int) -> str:
        return str(self.item(row, PICTURE).data(PATH_ROLE))

    def suggested_class(self, row: int) -> str:
        return str(self.item(row, PICTURE).data(SUGGESTED_CLASS_ROLE))

    def is_moved(self, row: int) -> bool:
        return bool(self.item(row, NOW).text())

    def set_thumbnail(self, row: int, pixmap: QPixmap) -> None:
        self.item(row, PICTURE).setIcon(QIcon(pixmap))

    def rows_of(self, paths: set[str]) -> list[int]:
        return [row for row in range(self.rowCount()) if self.path(row) in paths]

    def mark(self, action: Action) -> None:
        """Show where ``action`` put each listed picture (an undo: back where it was)."""
        rows = {
            str(self.item(row, PICTURE).data(REAL_PATH_ROLE)): row for row in range(self.rowCount())
        }
        for move in action.moves:
            if action.kind == "undo":
                row, text = rows.get(os.path.realpath(move.destination)), ""
            else:
                row = rows.get(os.path.realpath(move.source))
                text = "excluded" if action.kind == "exclude" else f"in {action.to_class}"
            if row is not None:
                self.item(row, NOW).setText(text)
