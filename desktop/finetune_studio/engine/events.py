"""Engine layer: the events a training run yields, small and immutable.

Only Python numbers and strings: these cross threads (and Qt signals) as they are.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TypeVar

Value = TypeVar("Value")

UNITS = ("epoch", "iteration")
"""What one ``EpochEnd`` stands for: an epoch of the optimizer, or one iteration of
the solver that fits a head to its optimum (one pass over the cached features; the
count is then a cap, and the fit usually ends well before it)."""


@dataclass(frozen=True)
class BatchEnd:
    epoch: int  # 1-based
    epochs: int
    batch: int  # 1-based
    batches: int
    loss: float
    lr: float
    unit: str = "epoch"  # see UNITS


@dataclass(frozen=True)
class EpochEnd:
    epoch: int
    epochs: int
    train_loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    lr: float
    seconds: float
    is_best: bool
    unit: str = "epoch"  # see UNITS

    def to_metrics(self) -> dict[str, float | int | None]:
        """The line written to ``metrics.jsonl``."""
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "train_acc": self.train_acc,
            "val_loss": self.val_loss,
            "val_acc": self.val_acc,
            "lr": self.lr,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class Log:
    message: str
    level: str = "info"  # "info" or "warning"


@dataclass(frozen=True)
class StageProgress:
    """Work before or between epochs: decoding pictures, computing cached features."""

    stage: str
    done: int
    total: int


@dataclass(frozen=True)
class FitEnd:
    cancelled: bool
    stopped_early: bool
    epochs_completed: int
    best_epoch: int | None
    val_acc: float | None
    val_loss: float | None
    unit: str = "epoch"  # see UNITS


Event = BatchEnd | EpochEnd | StageProgress | Log | FitEnd


def as_stage_progress(
    work: Generator[tuple[int, int], None, Value], stage: str | None
) -> Generator[StageProgress, None, Value]:
    """Drive a generator of ``(done, total)`` steps, reporting each as a
    ``StageProgress`` of ``stage`` (silently when ``stage`` is None); returns what the
    generator returns."""
    while True:
        try:
            done, total = next(work)
        except StopIteration as finished:
            value: Value = finished.value
            return value
        if stage is not None:
            yield StageProgress(stage, done, total)
