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

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .review.records import Predictions

UNKNOWN = "unknown"
DEFAULT_THRESHOLD = 0.0  # answers "unknown" only when the user asks for a threshold
BINS = 15  # equal-width confidence bins of the expected calibration error
TEMPERATURE_RANGE = (0.05, 20.0)
PRIOR_WIDTH = 1.0  # standard deviation of log T in the fit's prior (see fit_temperature)
_SEARCH_STEPS = 40  # bisection halvings of log T's range (6): far below any useful precision
_FLOOR = float(np.finfo(np.float32).tiny)  # a probability that underflowed to 0 was at most this


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

    def summary(self) -> str:
        """The figures in one phrase, for the log and the Results step."""
        if self.ece_before is None or self.ece_after is None:
            return f"temperature {self.temperature:.2f} (not measured: no validation pictures)"
        return (
            f"expected calibration error {self.ece_before:.1%} → {self.ece_after:.1%} "
            f"(temperature {self.temperature:.2f})"
        )


Bin = tuple[float, float, float, int]


def answer(top_class: str, confidence: float, threshold: float) -> str:
    """The top class, or ``UNKNOWN`` when its calibrated probability is below the
    threshold (a picture exactly at the threshold keeps its class)."""
    return UNKNOWN if confidence < threshold else top_class


def check_threshold(threshold: float) -> float:
    """A probability in [0, 1], or ``ValueError`` in words a user can act on."""
    if not 0.0 <= threshold <= 1.0:  # NaN fails both comparisons
        raise ValueError(f"The threshold must be a probability from 0 to 1, not {threshold}.")
    return threshold


def scaled(log_probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: the same as ``softmax(logits / T)``, because ``log p`` is
    the logits less a per-picture constant (their log-sum-exp), which softmax ignores."""
    z = log_probabilities / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def reliability(
    probabilities: np.ndarray, true: np.ndarray, bins: int = BINS
) -> tuple[float, tuple[Bin, ...]]:
    """The expected calibration error and its non-empty bins.

    Each picture falls in the bin ``(k/bins, (k+1)/bins]`` of its top probability (the
    lowest bin also takes 0); the error is the mean over bins of |accuracy - mean
    confidence|, each bin weighted by its share of the pictures."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == true
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    error, kept = 0.0, []
    for k in range(bins):
        members = index == k
        count = int(members.sum())
        if count == 0:
            continue
        mean_confidence = float(confidence[members].mean())
        accuracy = float(correct[members].mean())
        error += count / len(true) * abs(accuracy - mean_confidence)
        kept.append((k / bins, mean_confidence, accuracy, count))
    return error, tuple(kept)


def fit_temperature(log_probabilities: np.ndarray, true: np.ndarray) -> float:
    """The temperature in ``TEMPERATURE_RANGE`` that best explains the pictures: the
    minimum of the summed negative log-likelihood of ``softmax(log p / T)`` plus
    ``(log T)² / (2 PRIOR_WIDTH²)``, a log-normal prior centred on 1.

    The prior is worth about one picture: it decides only when the pictures cannot.
    When every validation picture is right, the likelihood keeps improving as T goes
    to 0 (sharper and sharper), which would make the model surer of everything,
    pictures of no class included; the prior keeps such a model near T = 1.

    Over ``u = log T`` the objective's slope is ``-Σ(E_p[z] - z_true) / T + u / PRIOR_WIDTH²``;
    the likelihood's part changes sign once (the likelihood is convex in 1/T), so the
    slope is negative below both its optimum and 1, positive above both, and bisection
    on its sign finds the minimum between them (or the bound it lies beyond)."""
    z = log_probabilities.astype(np.float64)
    z_true = z[np.arange(len(true)), true]

    def slope(u: float) -> float:
        p = scaled(z, math.exp(u))
        return float(-((p * z).sum(axis=1) - z_true).sum() * math.exp(-u) + u / PRIOR_WIDTH**2)

    low, high = math.log(TEMPERATURE_RANGE[0]), math.log(TEMPERATURE_RANGE[1])
    if slope(high) <= 0:  # still too sharp at the hottest temperature allowed
        return TEMPERATURE_RANGE[1]
    if slope(low) >= 0:
        return TEMPERATURE_RANGE[0]
    for _ in range(_SEARCH_STEPS):
        middle = (low + high) / 2
        if slope(middle) < 0:  # sharper than the optimum: warm up
            low = middle
        else:
            high = middle
    return math.exp((low + high) / 2)


def negative_log_likelihood(probabilities: np.ndarray, true: np.ndarray) -> float:
    picked = probabilities[np.arange(len(true)), true]
    return float(-np.log(np.maximum(picked, np.finfo(np.float64).tiny)).mean())


def calibrate(predictions: Predictions | None, threshold: float = DEFAULT_THRESHOLD) -> Calibration:
    """Temperature scaling fitted on an evaluation's per-picture probabilities (those of
    classes the model knows); the identity, without error figures, when there are none."""
    if predictions is None:
        return Calibration(threshold=threshold)
    known = predictions.true >= 0
    true = predictions.true[known]
    if len(true) == 0:
        return Calibration(threshold=threshold)
    probabilities = predictions.probabilities[known].astype(np.float64)
    log_p = np.log(np.maximum(probabilities, _FLOOR))
    temperature = fit_temperature(log_p, true)
    before, _ = reliability(probabilities, true)
    after, bins = reliability(scaled(log_p, temperature), true)
    return Calibration(temperature, threshold, before, after, bins)
