"""UI layer: the heatmap task of one picture, as a ``TaskRunner`` job, and its colouring.

The heatmaps for the predicted and the true class come from one call of the engine's
``review.heatmaps.explain``, run off the GUI thread; they are coloured here too, so
the picture viewer only wraps finished pixels in images and switches between them.

A training picture opened from the suspects (an ``OutOfFoldRecord``) has no
evaluation: its record's prediction is a cross-validated head's. The heatmaps are
the trained model's, so the job also hands back that model's own probabilities, from
which the viewer takes its prediction for the heading and the "Predicted" heatmap.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg

from ...engine.review.records import PictureRecord
from ..models.picture_records_model import OutOfFoldRecord
from .tasks import ProgressFn

if TYPE_CHECKING:
    from ...engine.training import TrainingResult

COLOUR_MAP = "turbo"


@dataclass(frozen=True)
class Heatmaps:
    """What the task hands back: the model's view of the picture (H x W x 3 uint8),
    each class's heatmap already coloured (H x W x 4 uint8, transparent where the
    class found nothing), and the model's own probabilities for the picture."""

    picture: np.ndarray
    overlays: dict[int, np.ndarray]
    layer: str
    probabilities: tuple[float, ...]

    @property
    def predicted(self) -> int:
        """The class the model itself predicts."""
        return max(range(len(self.probabilities)), key=self.probabilities.__getitem__)


def colour_lookup() -> np.ndarray:
    """256 RGBA colours from cold to hot (pyqtgraph's copy of the turbo map)."""
    lookup: np.ndarray = pg.colormap.get(COLOUR_MAP).getLookupTable(0.0, 1.0, 256, alpha=True)
    return lookup


class PictureExplanation:
    """A task's function: heatmaps of the predicted and the true class, coloured.

    An out-of-fold record's ``predicted`` is not the model's, so for it only the given
    class is asked for first; the model's own prediction, known from that pass's
    probabilities, gets its heatmap from a second pass when it is another class."""

    def __init__(self, result: TrainingResult, record: PictureRecord) -> None:
        self.result, self.record = result, record

    def classes(self) -> list[int]:
        record = self.record
        predicted = () if isinstance(record, OutOfFoldRecord) else (record.predicted,)
        return list(dict.fromkeys(c for c in (*predicted, record.true) if c >= 0))

    def __call__(self, progress: ProgressFn, cancel: threading.Event) -> Heatmaps:
        from ...engine.review.heatmaps import explain

        result, path = self.result, self.record.path
        explanation = explain(
            result.model, result.head_path, result.preprocessing, path, self.classes()
        )
        maps = dict(explanation.maps)
        probabilities = explanation.probabilities
        predicted = max(range(len(probabilities)), key=probabilities.__getitem__)
        cross_validated = isinstance(self.record, OutOfFoldRecord)
        if cross_validated and predicted not in maps and not cancel.is_set():
            more = explain(result.model, result.head_path, result.preprocessing, path, [predicted])
            maps.update(more.maps)
        lookup = colour_lookup()
        overlays = {}
        for index, heat in maps.items():
            levels = np.clip(np.rint(heat * 255), 0, 255).astype(np.uint8)
            rgba = lookup[levels]
            rgba[..., 3] = levels  # the cooler, the more transparent
            overlays[index] = np.ascontiguousarray(rgba)
        return Heatmaps(explanation.picture, overlays, explanation.layer, probabilities)
