"""UI layer: the gallery's list of pictures, one row per ``PictureRecord``.

One flat list model does the selection (all pictures, one confusion-matrix cell, one
true or predicted class), the filter and the sort itself, rather than a
``QSortFilterProxyModel`` over every record: the rows shown are recomputed in one
pass of plain Python over the records' numbers (a few milliseconds for thousands),
and the view sees one reset instead of a proxy's per-row bookkeeping.

The numbers each row is filtered and sorted by are read off the records once, in
``set_records``; the records themselves are only asked for again when a row is shown,
so a caller may pass a lazy sequence.

Two kinds of record are listed. The evaluation's are what the trained model made of
the validation pictures: the confusion matrix counts them. The suspects search adds
its own records of suspects the evaluation never saw (training pictures): their
probabilities are out-of-fold ones, from a head cross-validated without the picture,
so their ``predicted`` is not the trained model's. They are held as
``OutOfFoldRecord`` (a ``PictureRecord`` that says so: the engine's record is shared
and stays as it is), which carries the difference to whoever a record is handed on
to (the picture viewer, the CSV export), and they are listed only under
``Show.SUSPECTS`` with no cell or class selected: a cell or a class is the
confusion matrix's, and lists its evaluated pictures and nothing else.
"""

from __future__ import annotations

import csv
import enum
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Qt

from ...engine.review.records import LOW_CONFIDENCE, PictureRecord, records_to_csv

Index = QModelIndex | QPersistentModelIndex
RECORD_ROLE = Qt.ItemDataRole.UserRole + 1
"""The row's ``PictureRecord``."""
SUGGESTED_ROLE = Qt.ItemDataRole.UserRole + 2
"""The class name suggested for a suspected wrong label, or None."""
UNKNOWN_CLASS = "?"
EVALUATION = "evaluation"
CROSS_VALIDATED = "cross-validated"


@dataclass(frozen=True)
class OutOfFoldRecord(PictureRecord):
    """A suspect's record from the suspects search, not from the evaluation: ``true``
    is the given label, ``probabilities`` (and so ``predicted``) come from a head
    cross-validated without this picture, not from the trained model, which trained
    on it. Never equal to a plain ``PictureRecord``."""

    @classmethod
    def of(cls, record: PictureRecord) -> OutOfFoldRecord:
        r = record
        return cls(r.path, r.true, r.predicted, r.probabilities, r.loss)


def source_of(record: PictureRecord) -> str:
    """Where a record's probabilities come from: the evaluation or cross-validation."""
    return CROSS_VALIDATED if isinstance(record, OutOfFoldRecord) else EVALUATION


SOURCE_COLUMN = "source"
FIXED_COLUMNS = 5  # path, true, predicted, confidence, loss: the source column follows


def listed_records_csv(records: Iterable[PictureRecord], class_names: Sequence[str]) -> str:
    """The engine's ``records_to_csv`` with a ``source`` column after ``loss`` (then
    the classes' probabilities, as there): "evaluation" for the trained model's own
    records, "cross-validated" for a training picture's out-of-fold one, whose
    prediction and confidence are not the model's. Written by re-reading the
    engine's text, so every other column stays exactly as the engine writes it."""
    records = list(records)
    rows = csv.reader(io.StringIO(records_to_csv(records, class_names), newline=""))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for number, row in enumerate(rows):
        source = SOURCE_COLUMN if number == 0 else source_of(records[number - 1])
        writer.writerow([*row[:FIXED_COLUMNS], source, *row[FIXED_COLUMNS:]])
    return out.getvalue()


class Show(enum.Enum):
    """Which of the selected pictures are listed."""

    ALL = "All pictures"
    MISCLASSIFIED = "Misclassified"
    LOW_CONFIDENCE = f"Low confidence (under {LOW_CONFIDENCE:.0%})"
    SUSPECTS = "Suspected wrong label"


class Order(enum.Enum):
    """How the listed pictures are sorted; ties keep the evaluation's order."""

    LOSS = "Highest loss first"
    CONFIDENCE_LOW = "Lowest confidence first"
    CONFIDENCE_HIGH = "Highest confidence first"


@dataclass(frozen=True)
class Selection:
    """Pictures of one true class, one predicted class, or both (a confusion cell);
    neither is every picture."""

    true: int | None = None
    predicted: int | None = None

    def matches(self, true: int, predicted: int) -> bool:
        return (self.true is None or self.true == true) and (
            self.predicted is None or self.predicted == predicted
        )


@dataclass(frozen=True)
class _Facts:
    """What a row is selected, filtered and sorted by, read once per record."""

    path: str
    true: int
    predicted: int
    confidence: float
    loss: float
    evaluated: bool  # False: an out-of-fold record, listed under Show.SUSPECTS only

    @classmethod
    def of(cls, record: PictureRecord, evaluated: bool = True) -> _Facts:
        r = record
        return cls(r.path, r.true, r.predicted, r.confidence, r.loss, evaluated)


def _loss_key(loss: float) -> float:
    return -math.inf if math.isnan(loss) else loss  # unknown losses sort last


class PictureRecordsModel(QAbstractListModel):
    """The records selected, filtered and sorted; ``DisplayRole`` is the tile's caption."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.class_names: tuple[str, ...] = ()
        self.selection = Selection()
        self.show = Show.ALL
        self.order = Order.LOSS
        self._records: Sequence[PictureRecord] = ()  # the evaluation's
        self._extra: list[OutOfFoldRecord] = []  # suspects' own, after them in ``_facts``
        self._facts: list[_Facts] = []
        self._suspects: dict[str, int] | None = None
        self._rows: list[int] = []  # indices into the records, in the order shown

    # --- what is listed -------------------------------------------------------------------
    def set_records(self, records: Sequence[PictureRecord], class_names: Sequence[str]) -> None:
        """New records (a new result): the selection, filter and sort stay as they are,
        except that suspects belong to the old records and are forgotten."""
        self._records = records
        self._extra = []
        self.class_names = tuple(class_names)
        self._facts = [_Facts.of(record) for record in records]
        self._suspects = None
        if self.show is Show.SUSPECTS:
            self.show = Show.ALL
        self._refresh()

    def set_selection(self, selection: Selection) -> None:
        self.selection = selection
        self._refresh()

    def set_show(self, show: Show) -> None:
        self.show = show
        self._refresh()

    def set_order(self, order: Order) -> None:
        self.order = order
        self._refresh()

    def set_suspects(
        self, suspects: Mapping[str, int] | None, records: Sequence[PictureRecord] = ()
    ) -> None:
        """``path -> suggested class index``; None when nobody has looked for them.

        ``records`` are the search's out-of-fold records; those of suspects the
        evaluation did not see (training pictures) are kept as ``OutOfFoldRecord`` and
        listed under ``Show.SUSPECTS`` with nothing selected only, so that the other
        choices, a cell and a class keep to the pictures the confusion matrix counts."""
        del self._facts[len(self._records) :]
        self._extra = []
        known = {facts.path for facts in self._facts}
        for record in records:
            if suspects is not None and record.path in suspects and record.path not in known:
                known.add(record.path)
                self._extra.append(OutOfFoldRecord.of(record))
                self._facts.append(_Facts.of(record, evaluated=False))
        self._suspects = None if suspects is None else dict(suspects)
        if self._suspects is None and self.show is Show.SUSPECTS:
            self.show = Show.ALL
        self._refresh()

    @property
    def has_records(self) -> bool:
        return len(self._records) > 0

    @property
    def has_suspects(self) -> bool:
        return self._suspects is not None

    def suspects_without_record(self) -> list[str]:
        """Suspects the gallery cannot show: no record holds their path."""
        known = {facts.path for facts in self._facts}
        return sorted(path for path in self._suspects or {} if path not in known)

    def count(self, show: Show) -> int:
        """How many of the selected pictures ``show`` would list."""
        return sum(1 for facts in self._facts if self._listed(facts, show))

    def selected_count(self) -> int:
        """The evaluated pictures of the selection, whatever the filter."""
        return self.count(Show.ALL)

    def record(self, row: int) -> PictureRecord:
        return self._record(self._rows[row])

    def record_for(self, path: str) -> PictureRecord | None:
        """The record of ``path``, listed or not (a suspect's own one included)."""
        index = next((i for i, facts in enumerate(self._facts) if facts.path == path), -1)
        return self._record(index) if index >= 0 else None

    def row_of(self, path: str) -> int:
        """The row listing ``path``, or -1."""
        return next((row for row, i in enumerate(self._rows) if self._facts[i].path == path), -1)

    def shown_records(self) -> list[PictureRecord]:
        """The records listed, in the order shown."""
        return [self._record(index) for index in self._rows]

    def _record(self, index: int) -> PictureRecord:
        evaluated = len(self._records)
        return self._records[index] if index < evaluated else self._extra[index - evaluated]

    def class_name(self, index: int) -> str:
        return self.class_names[index] if 0 <= index < len(self.class_names) else UNKNOWN_CLASS

    def suggested_name(self, path: str) -> str | None:
        suggested = (self._suspects or {}).get(path)
        return None if suggested is None else self.class_name(suggested)

    def _listed(self, facts: _Facts, show: Show) -> bool:
        if not facts.evaluated and (show is not Show.SUSPECTS or self.selection != Selection()):
            return False  # the model never evaluated it: no cell or class of its own
        if not self.selection.matches(facts.true, facts.predicted):
            return False
        if show is Show.MISCLASSIFIED:
            return facts.true != facts.predicted
        if show is Show.LOW_CONFIDENCE:
            return facts.confidence < LOW_CONFIDENCE
        if show is Show.SUSPECTS:
            return self._suspects is not None and facts.path in self._suspects
        return True

    def _refresh(self) -> None:
        rows = [i for i, facts in enumerate(self._facts) if self._listed(facts, self.show)]
        facts = self._facts
        if self.order is Order.LOSS:
            rows.sort(key=lambda i: _loss_key(facts[i].loss), reverse=True)
        elif self.order is Order.CONFIDENCE_LOW:
            rows.sort(key=lambda i: facts[i].confidence)
        else:
            rows.sort(key=lambda i: facts[i].confidence, reverse=True)
        self.beginResetModel()
        self._rows = rows
        self.endResetModel()

    # --- Qt's model -----------------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        facts = self._facts[self._rows[index.row()]]
        if role == Qt.ItemDataRole.DisplayRole:
            if not facts.evaluated:
                return self.cross_validated_caption(facts.true, self.suggested_name(facts.path))
            return self.caption(facts.true, facts.predicted)
        if role == RECORD_ROLE:
            return self.record(index.row())
        if role == SUGGESTED_ROLE:
            return self.suggested_name(facts.path)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(facts)
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def caption(self, true: int, predicted: int) -> str:
        return f"{self.class_name(true)} → {self.class_name(predicted)}"

    def cross_validated_caption(self, given: int, suggested: str | None) -> str:
        """An out-of-fold record's: no "→ predicted", which would read as the model's."""
        suggestion = "" if suggested is None else f" · suggested {suggested}"
        return f"given {self.class_name(given)}{suggestion} ({CROSS_VALIDATED})"

    def _tooltip(self, facts: _Facts) -> str:
        loss = "unknown" if math.isnan(facts.loss) else f"{facts.loss:.3f}"
        name = self.class_name
        if facts.evaluated:
            about = (
                f"True {name(facts.true)}, predicted {name(facts.predicted)}"
                f" ({facts.confidence:.1%}); loss {loss}"
            )
        else:
            about = (
                f"A training picture, given {name(facts.true)}: the model learned from it, "
                f"so it was not evaluated.\nCross-validated (by a head that never saw it): "
                f"{name(facts.predicted)} {facts.confidence:.1%}; loss {loss}"
            )
        lines = [facts.path, about]
        suggested = self.suggested_name(facts.path)
        if suggested is not None:
            lines.append(f"Suspected wrong label: perhaps {suggested}")
        return "\n".join(lines)
