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

    def __len__(self) -> int:
        return len(self.paths)

    def records(self) -> list[PictureRecord]:
        predicted = self.probabilities.argmax(1).tolist() if len(self) else []
        return [
            PictureRecord(path, int(true), int(best), tuple(row.tolist()), float(loss))
            for path, true, best, row, loss in zip(
                self.paths, self.true.tolist(), predicted, self.probabilities, self.loss.tolist()
            )
        ]

    @classmethod
    def of(cls, records: Sequence[PictureRecord], classes: int) -> Predictions:
        probabilities = np.array([r.probabilities for r in records], np.float32)
        return cls(
            tuple(r.path for r in records),
            np.array([r.true for r in records], np.int64),
            probabilities.reshape(len(records), classes),
            np.array([r.loss for r in records], np.float32),
        )


def records_to_csv(records: Iterable[PictureRecord], class_names: Sequence[str]) -> str:
    """``path, true, predicted, confidence, loss`` then one probability column per class."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "true", "predicted", "confidence", "loss", *class_names])
    for record in records:
        row = record.to_dict(class_names)
        writer.writerow(
            [
                record.path,
                row["true"] or "",
                row["predicted"],
                f"{record.confidence:.6f}",
                "" if row["loss"] is None else f"{record.loss:.6f}",
                *(f"{p:.6f}" for p in record.probabilities),
            ]
        )
    return out.getvalue()


def read_records_csv(path: str | Path, class_names: Sequence[str]) -> list[PictureRecord]:
    """Records back from a ``predictions.csv`` written for these classes; rows that do
    not fit (a hand-edited file) are skipped rather than failing a reopened run."""
    index = {name: i for i, name in enumerate(class_names)}
    records: list[PictureRecord] = []
    with open(path, newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            try:
                probabilities = tuple(float(row[name]) for name in class_names)
                records.append(
                    PictureRecord(
                        row["path"],
                        index.get(row["true"], -1),
                        index[row["predicted"]],
                        probabilities,
                        float(row["loss"]) if row["loss"] else math.nan,
                    )
                )
            except (KeyError, ValueError, TypeError):
                continue
    return records
