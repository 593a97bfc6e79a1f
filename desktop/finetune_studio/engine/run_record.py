"""Engine layer: one kept run's record, ``run.json``: what a run was and how it went,
read without loading its model (``runs.py`` keeps and lists them).

Every value read back is checked for its type: a record that parses as JSON but holds
text where a number belongs is damaged, and listed as such, rather than breaking a
view that draws it later.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .evaluation import Evaluation
from .events import EpochEnd
from .recipe import Recipe
from .training import TrainingResult

RUN_FORMAT = "finetune-studio-run"
RUN_FORMAT_VERSION = 1
RUN_FILE = "run.json"
MODEL_FOLDER = "model"


@dataclass(frozen=True)
class RunRecord:
    """What a run was and how it went, read without loading its model."""

    folder: Path
    started: datetime
    recipe: Recipe
    backbone: str
    class_names: tuple[str, ...]
    history: tuple[EpochEnd, ...]
    best_epoch: int | None
    evaluation: Evaluation | None
    cancelled: bool
    stopped_early: bool
    failure: str | None = None  # the error that ended a failed run; it has no model
    seconds: float | None = None  # start to kept; None for runs kept before it was recorded

    @property
    def duration(self) -> float | None:
        """How long the run took, in seconds: start to kept, or for older runs the time
        their epochs measured (which leaves out checking pictures and features); None
        for an older run without epochs (a solved head counts solver iterations)."""
        if self.seconds is not None:
            return self.seconds
        if not self.history or self.history[-1].unit != "epoch":
            return None
        return sum(epoch.seconds for epoch in self.history)

    @property
    def id(self) -> str:
        return self.folder.name

    @property
    def model_folder(self) -> Path:
        return self.folder / MODEL_FOLDER

    @property
    def has_model(self) -> bool:
        return self.failure is None

    @property
    def best_accuracy(self) -> float | None:
        """The kept model's validation accuracy; for a run without one (failed, or no
        final evaluation), the best an epoch measured."""
        if self.evaluation is not None and self.evaluation.images:
            return self.evaluation.accuracy
        measured = [epoch.val_acc for epoch in self.history if epoch.val_acc is not None]
        return max(measured) if measured else None

    @property
    def outcome(self) -> str:
        """How the run ended, in a word or two."""
        if self.failure is not None:
            return "failed"
        if self.stopped_early:
            return "stopped early"
        return "stopped by you" if self.cancelled else "finished"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RUN_FORMAT,
            "format_version": RUN_FORMAT_VERSION,
            "started": self.started.isoformat(timespec="seconds"),
            "recipe": self.recipe.to_dict(),
            "backbone": self.backbone,
            "class_names": list(self.class_names),
            "history": [dataclasses.asdict(epoch) for epoch in self.history],
            "best_epoch": self.best_epoch,
            "evaluation": _evaluation_figures(self.evaluation),
            "cancelled": self.cancelled,
            "stopped_early": self.stopped_early,
            "failure": self.failure,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, folder: Path, data: dict[str, Any]) -> RunRecord:
        evaluation = data.get("evaluation")
        return cls(
            folder=folder,
            started=local_time(datetime.fromisoformat(data["started"])),
            recipe=Recipe.from_dict(data["recipe"]),
            backbone=str(data["backbone"]),
            class_names=tuple(data["class_names"]),
            history=tuple(_epoch_from_dict(epoch) for epoch in data["history"]),
            best_epoch=data.get("best_epoch"),
            evaluation=_evaluation_from_dict(evaluation) if evaluation else None,
            cancelled=bool(data.get("cancelled", False)),
            stopped_early=bool(data.get("stopped_early", False)),
            failure=str(data["failure"]) if data.get("failure") is not None else None,
            seconds=_finite(data["seconds"]) if data.get("seconds") is not None else None,
        )

    @classmethod
    def of(
        cls, result: TrainingResult, folder: Path, started: datetime, seconds: float | None
    ) -> RunRecord:
        return cls(
            folder=folder,
            started=started,
            recipe=result.recipe,
            backbone=result.spec.name,
            class_names=result.class_names,
            history=tuple(result.history),
            best_epoch=result.best_epoch,
            evaluation=_figures_only(result.evaluation),  # as run.json keeps it
            cancelled=result.cancelled,
            stopped_early=result.stopped_early,
            seconds=seconds,
        )


def _finite(value: object) -> float:
    """A number from run.json; anything else (text, NaN, infinity) makes the record
    damaged (ValueError), listed as such, rather than breaking the Runs view later."""
    number = float(value)  # type: ignore[arg-type]  # TypeError too: also "damaged"
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    return number


def _optional_finite(value: object) -> float | None:
    return None if value is None else _finite(value)


def _epoch_from_dict(data: dict[str, Any]) -> EpochEnd:
    return EpochEnd(
        epoch=int(data["epoch"]),
        epochs=int(data["epochs"]),
        train_loss=_finite(data["train_loss"]),
        train_acc=_finite(data["train_acc"]),
        val_loss=_optional_finite(data.get("val_loss")),
        val_acc=_optional_finite(data.get("val_acc")),
        lr=_finite(data["lr"]),
        seconds=_finite(data["seconds"]),
        is_best=bool(data["is_best"]),
        unit=str(data.get("unit", "epoch")),
    )


def _evaluation_from_dict(data: dict[str, Any]) -> Evaluation:
    return Evaluation(
        loss=_finite(data["loss"]),
        accuracy=_finite(data["accuracy"]),
        images=int(data["images"]),
        confusion=[[int(count) for count in row] for row in data.get("confusion", [])],
        failures=[str(failure) for failure in data.get("failures", [])],
    )


def _evaluation_figures(evaluation: Evaluation | None) -> dict[str, Any] | None:
    figures = _figures_only(evaluation)
    return None if figures is None else dataclasses.asdict(figures) | {"predictions": None}


def _figures_only(evaluation: Evaluation | None) -> Evaluation | None:
    """The evaluation as ``run.json`` keeps it: its figures, without the confusion
    matrix (in the model folder's ``model.json``) and the per-picture predictions (its
    ``predictions.csv``). A 1,000-class matrix made run.json 10 MB and listing 100
    such runs took 10 s; ``RunStore.load`` reads both back. Runs kept before this
    carry their matrix in run.json, and it is used."""
    if evaluation is None:
        return None
    return dataclasses.replace(evaluation, confusion=[], predictions=None)


def seconds_since(started: datetime) -> float:
    return max((datetime.now(timezone.utc) - local_time(started)).total_seconds(), 0.0)


def local_time(moment: datetime) -> datetime:
    """With its time zone (a naive time is this computer's), so runs sort by instant."""
    return moment if moment.tzinfo is not None else moment.astimezone()
