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
