"""Engine layer: what the advisor reports, and how it recommends a plan."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

CLOSE_ENOUGH = 0.01
"""A plan this close to the best estimate is as good, at the least (see ``tolerance``)."""


@dataclass(frozen=True)
class PlanEstimate:
    freeze: str  # a freeze preset: head, last:N, none
    estimated_accuracy: float | None  # None: not measured within the budget
    estimated_seconds: float  # a run of the recipe on the whole dataset, on this device
    note: str = ""  # how it was measured, or why it was not

    def to_dict(self) -> dict[str, Any]:
        return {
            "freeze": self.freeze,
            "estimated_accuracy": self.estimated_accuracy,
            "estimated_seconds": round(self.estimated_seconds, 1),
            "note": self.note,
        }


@dataclass(frozen=True)
class Advice:
    """The plans from the least trained to the most, and the one to use."""

    backbone: str
    recommended_freeze: str
    plans: tuple[PlanEstimate, ...]
    sample_train: int  # pictures the estimates were measured on
    sample_val: int
    seconds: float  # what the measurement took

    def to_dict(self) -> dict[str, Any]:
        return {
            "recommended_freeze": self.recommended_freeze,
            "plans": [plan.to_dict() for plan in self.plans],
            "backbone": self.backbone,
            "sample": {"train": self.sample_train, "val": self.sample_val},
            "seconds": round(self.seconds, 1),
        }

    def plan(self, freeze: str) -> PlanEstimate | None:
        return next((p for p in self.plans if p.freeze == freeze), None)


def tolerance(best: float, validation_pictures: int) -> float:
    """How far below the best estimate a plan is as good: a point, or the sample's
    own precision when it is coarser (about two standard errors of the best
    accuracy; one picture of 18 is already 5.6 points)."""
    spread = 1.96 * math.sqrt(best * (1 - best) / max(validation_pictures, 1))
    return max(CLOSE_ENOUGH, spread)


def recommend(plans: tuple[PlanEstimate, ...], validation_pictures: int) -> str:
    """The first plan whose estimate is within ``tolerance`` of the best one.

    Plans come from the least trained to the most (head, last:1, last:2, none), which
    is also their order of cost: each one runs everything the one before it runs, and
    more. That order, rather than the estimated seconds, decides between plans that
    are as good, because timings of small networks are noisy.
    """
    measured = [p for p in plans if p.estimated_accuracy is not None]
    if not measured:
        return "head"
    best = max(p.estimated_accuracy or 0.0 for p in measured)
    floor = best - tolerance(best, validation_pictures)
    return next(p.freeze for p in measured if (p.estimated_accuracy or 0.0) >= floor)
