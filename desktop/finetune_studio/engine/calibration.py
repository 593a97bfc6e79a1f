"""Engine layer: calibrated confidence (temperature scaling) and the "unknown" answer.

A network's softmax is usually over-confident; one temperature ``T`` fitted on the
validation pictures (probabilities ``softmax(logits / T)``) makes "90 % sure" mean
right nine times in ten, without changing any prediction's ranking. A prediction
whose calibrated top probability is below the model's ``threshold`` is "unknown".

The model folder keeps this in ``model.json`` under ``"calibration"``
(``Calibration.to_dict``); every prediction (window, CLI, exported formats' own
scripts) uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

UNKNOWN = "unknown"
DEFAULT_THRESHOLD = 0.0  # answers "unknown" only when the user asks for a threshold


@dataclass(frozen=True)
class Calibration:
    temperature: float = 1.0
    threshold: float = DEFAULT_THRESHOLD
    ece_before: float | None = None  # expected calibration error on the validation pictures
    ece_after: float | None = None
    # Reliability diagram after calibration: per confidence bin (lower edge, mean
    # confidence, accuracy, pictures); empty when there were no validation pictures.
    bins: tuple[tuple[float, float, float, int], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "threshold": self.threshold,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "bins": [list(row) for row in self.bins],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Calibration:
        """A model folder's calibration; one written before calibration existed (or
        without validation pictures) is the identity: temperature 1, no threshold."""
        if not data:
            return cls()
        return cls(
            float(data.get("temperature", 1.0)),
            float(data.get("threshold", DEFAULT_THRESHOLD)),
            data.get("ece_before"),
            data.get("ece_after"),
            tuple((float(a), float(b), float(c), int(d)) for a, b, c, d in data.get("bins", [])),
        )
