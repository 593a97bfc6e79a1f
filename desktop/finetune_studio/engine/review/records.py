"""Engine layer: one record per evaluated picture, the source every review view reads.

An evaluation keeps a ``PictureRecord`` for each picture it saw; the model folder
stores those of the validation pictures as ``predictions.csv``; the gallery, its
filters, the CLI's ``review`` and the CSV export all read the same records.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PREDICTIONS_FILE = "predictions.csv"
LOW_CONFIDENCE = 0.6  # below this the model's own top probability counts as unsure
CSV_COLUMNS = ("path", "true", "predicted", "confidence", "loss")  # then one per class


@dataclass(frozen=True)
class PictureRecord:
    """What the model made of one picture. ``true`` is -1 for a class it never saw."""

    path: str
    true: int
    predicted: int
    probabilities: tuple[float, ...]
    loss: float  # -log p(true class); nan when the true class is unknown to the model

    @property
    def confidence(self) -> float:
        return self.probabilities[self.predicted]

    @property
    def correct(self) -> bool:
        return self.true == self.predicted

    def to_dict(self, class_names: Sequence[str]) -> dict[str, object]:
        """The public per-picture form: ``{"path", "true", "predicted", "confidence",
        "loss"}`` with class names, as the CLI's ``review --json`` prints it."""
        return {
            "path": self.path,
            "true": class_names[self.true] if self.true >= 0 else None,
            "predicted": class_names[self.predicted],
            "confidence": self.confidence,
            "loss": None if math.isnan(self.loss) else self.loss,
        }


@dataclass(frozen=True, eq=False)
class Predictions:
    """The records of many pictures, held as arrays (one row a picture) so that an
    evaluation of 20,000 pictures over 1,000 classes keeps 80 MB, not millions of
    Python floats; ``records()`` makes the per-picture form when a view asks."""

    paths: tuple[str, ...]
    true: np.ndarray  # (n,) int64; -1 for a class the model does not know
    probabilities: np.ndarray  # (n, classes) float32
    loss: np.ndarray  # (n,) float32: -log p(true class), nan where the class is unknown
    predicted: np.ndarray | None = None  # (n,) int64; None: the most probable class

    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def empty(cls, classes: int) -> Predictions:
        return cls(
            (), np.zeros(0, np.int64), np.zeros((0, classes), np.float32), np.zeros(0, np.float32)
        )

    @classmethod
    def from_log_probabilities(
        cls, paths: Sequence[str], true: np.ndarray, log_p: np.ndarray
    ) -> Predictions:
        """From log-probabilities (a log-softmax): the loss of a known class is exact
        even where its probability underflows to 0."""
        true = np.asarray(true, np.int64)
        known = true >= 0
        loss = np.full(len(true), np.nan, np.float32)
        loss[known] = -log_p[np.flatnonzero(known), true[known]]
        return cls(tuple(paths), true, np.exp(log_p).astype(np.float32), loss)

    def records(self) -> list[PictureRecord]:
        predicted = self.predicted if self.predicted is not None else self._most_probable()
        return [
            PictureRecord(path, int(true), int(best), tuple(row.tolist()), float(loss))
            for path, true, best, row, loss in zip(
                self.paths, self.true.tolist(), predicted.tolist(), self.probabilities,
                self.loss.tolist(),
            )
        ]  # fmt: skip

    def _most_probable(self) -> np.ndarray:
        return self.probabilities.argmax(1) if len(self) else np.zeros(0, np.int64)

    @classmethod
    def of(cls, records: Sequence[PictureRecord], classes: int) -> Predictions:
        probabilities = np.array([r.probabilities for r in records], np.float32)
        return cls(
            tuple(r.path for r in records),
            np.array([r.true for r in records], np.int64),
            probabilities.reshape(len(records), classes),
            np.array([r.loss for r in records], np.float32),
            np.array([r.predicted for r in records], np.int64),
        )


def records_to_csv(records: Iterable[PictureRecord], class_names: Sequence[str]) -> str:
    """``path, true, predicted, confidence, loss`` then one probability column per class."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *class_names])
    for record in records:
        row = record.to_dict(class_names)
        writer.writerow(
            [
                record.path,
                row["true"] or "",
                row["predicted"],
                f"{record.confidence:.9g}",
                "" if row["loss"] is None else f"{record.loss:.9g}",
                *(f"{p:.9g}" for p in record.probabilities),
            ]
        )
    return out.getvalue()


def read_records_csv(path: str | Path, class_names: Sequence[str]) -> list[PictureRecord]:
    """Records back from a ``predictions.csv`` written for these classes. Columns are
    read by position (a class may be called "path" or "true"); a file for other
    classes gives no records, and rows that do not fit (a hand-edited file) are
    skipped rather than failing a reopened run."""
    index = {name: i for i, name in enumerate(class_names)}
    fixed = len(CSV_COLUMNS)
    records: list[PictureRecord] = []
    with open(path, newline="", encoding="utf-8") as file:
        rows = csv.reader(file)
        header = next(rows, [])
        if header[:fixed] != list(CSV_COLUMNS) or header[fixed:] != list(class_names):
            return []
        for row in rows:
            try:
                file_path, true, predicted, _, loss = row[:fixed]
                probabilities = tuple(float(value) for value in row[fixed:])
                if len(probabilities) != len(class_names):
                    continue
                records.append(
                    PictureRecord(
                        file_path,
                        index.get(true, -1),
                        index[predicted],
                        probabilities,
                        float(loss) if loss else math.nan,
                    )
                )
            except (KeyError, ValueError):
                continue
    return records
