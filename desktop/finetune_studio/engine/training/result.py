"""Engine layer: what a finished training run hands back.

``Trainer.events()`` returns a ``TrainingResult`` as its generator value; the model
in it is exactly the best epoch's model, and ``evaluation`` is that model's own
validation evaluation, so every number reported for the run describes the model
that is exported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..backbones import BackboneSpec
from ..calibration import Calibration
from ..evaluation import Evaluation
from ..events import EpochEnd
from ..preprocessing import Preprocessing
from ..recipe import Recipe


@dataclass
class TrainingResult:
    """The outcome of a run: the best model (on the CPU, in eval mode) and its numbers."""

    model: nn.Module
    spec: BackboneSpec
    head_path: str
    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    recipe: Recipe
    history: list[EpochEnd] = field(default_factory=list)
    best_epoch: int | None = None
    evaluation: Evaluation | None = None
    cancelled: bool = False
    stopped_early: bool = False
    calibration: Calibration = field(default_factory=Calibration)  # identity until fitted

    @property
    def unit(self) -> str:
        """What ``best_epoch`` counts: epochs, or iterations of a head's solver."""
        return self.history[-1].unit if self.history else "epoch"

    def metrics(self) -> dict[str, object]:
        final = self.evaluation
        return {
            "best_epoch": self.best_epoch,
            "epochs_completed": len(self.history),
            "val_acc": final.accuracy if final and final.images else None,
            "val_loss": final.loss if final and final.images else None,
            "per_class_val_acc": dict(zip(self.class_names, final.per_class_accuracy))
            if final
            else {},
            "confusion": final.confusion if final else None,
            "cancelled": self.cancelled,
            "stopped_early": self.stopped_early,
        }
