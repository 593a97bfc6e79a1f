"""Engine layer: where a run stands, the best model so far, and the run as a checkpoint.

The best model is kept as a complete copy of everything the run has changed: every
parameter that has been trainable at any moment of the run, and every buffer.
Parameters that have never trained are still the pretrained ones and need no copy
(which matters for large backbones). When gradual unfreezing makes more parameters
trainable, their values at that moment (still pretrained) join the best copy, so
restoring it can never mix the best epoch's head with a later epoch's backbone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from ..errors import UserFacingError
from ..evaluation import Evaluation
from ..events import EpochEnd
from ..review.records import Predictions

Snapshot = dict[str, torch.Tensor]


class ResumeMismatchError(UserFacingError):
    """The checkpoint belongs to a dataset whose classes have since changed."""


def _cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu", copy=True)


@dataclass
class BestSoFar:
    epoch: int | None = None
    monitored: float = math.inf  # validation loss, or training loss without validation
    state: Snapshot | None = None
    evaluation: Evaluation | None = None  # the best model's own validation evaluation


class RunState:
    """The mutable progress of one run; the trainer owns it, a checkpoint restores it."""

    def __init__(self, class_names: tuple[str, ...]) -> None:
        self.class_names = class_names
        self.epochs_done = 0
        self.history: list[EpochEnd] = []
        self.best = BestSoFar()
        self.epochs_without_gain = 0
        self.accumulation = 1  # slices per batch; doubles when memory runs out
        self.touched: set[str] = set()  # parameters that have been trainable in this run

    def note_trainable(self, model: nn.Module) -> None:
        """Call after every change of which parameters train (before they train)."""
        for name, parameter in model.named_parameters():
            if parameter.requires_grad and name not in self.touched:
                self.touched.add(name)
                if self.best.state is not None:
                    self.best.state[name] = _cpu_copy(parameter)  # not trained yet

    def changed_state(self, model: nn.Module) -> Snapshot:
        """A copy of everything this run can have changed so far."""
        state = {name: _cpu_copy(p) for name, p in model.named_parameters() if name in self.touched}
        state.update({name: _cpu_copy(b) for name, b in model.named_buffers()})
        return state

    def record(
        self, model: nn.Module, epoch: int, monitored: float, evaluation: Evaluation | None
    ) -> bool:
        """Note a finished epoch; True (and a copy of the model) when it is the best."""
        self.epochs_done = epoch
        if monitored < self.best.monitored:
            self.best = BestSoFar(epoch, monitored, self.changed_state(model), evaluation)
            self.epochs_without_gain = 0
            return True
        self.epochs_without_gain += 1
        return False

    def restore_best(self, model: nn.Module) -> None:
        """Load the best epoch's model; every changed parameter is in the copy."""
        if self.best.state is None:
            return
        missing = self.touched - set(self.best.state)
        if missing:  # a bug, not bad input: never hand back a model of mixed epochs
            raise RuntimeError(f"best-model copy lacks {sorted(missing)[:3]}")
        model.load_state_dict(self.best.state, strict=False)

    # --- checkpoint ----------------------------------------------------------------------
    def to_checkpoint(self, model: nn.Module) -> dict[str, Any]:
        """Plain values and tensors only: read back with ``weights_only=True``."""
        best = self.best
        return {
            "class_names": list(self.class_names),
            "epoch": self.epochs_done,
            "model": self.changed_state(model),
            "touched": sorted(self.touched),
            "history": [asdict(event) for event in self.history],
            "best_epoch": best.epoch,
            "best_monitored": best.monitored,
            "best_state": best.state,
            "best_evaluation": _evaluation_state(best.evaluation),
            "epochs_without_gain": self.epochs_without_gain,
            "accumulation": self.accumulation,
        }

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any], class_names: tuple[str, ...]) -> RunState:
        """The state a checkpoint describes, refused if the dataset's classes changed."""
        require_same_classes(tuple(saved["class_names"]), class_names)
        state = cls(class_names)
        state.epochs_done = int(saved["epoch"])
        state.touched = set(saved["touched"])
        state.history = [EpochEnd(**event) for event in saved["history"]]
        evaluation = saved["best_evaluation"]
        state.best = BestSoFar(
            saved["best_epoch"],
            float(saved["best_monitored"]),
            saved["best_state"],
            _evaluation_from_state(evaluation),
        )
        state.epochs_without_gain = int(saved["epochs_without_gain"])
        state.accumulation = int(saved["accumulation"])
        return state


def require_same_classes(saved: tuple[str, ...], now: tuple[str, ...]) -> None:
    """A head trained on other classes must not be resumed onto these: its outputs
    would silently mean different things."""
    if saved == now:
        return
    missing = [name for name in saved if name not in now]
    new = [name for name in now if name not in saved]
    changes = []
    if missing:
        changes.append(f"no longer in the dataset: {', '.join(missing)}")
    if new:
        changes.append(f"new in the dataset: {', '.join(new)}")
    if not changes:
        changes.append("the same names in a different order")
    raise ResumeMismatchError(
        f"Cannot resume: the dataset's classes changed since the checkpoint was written "
        f"({'; '.join(changes)}). The model learned {len(saved)} classes "
        f"({', '.join(saved)}); start a new run to train on the classes the folder has now."
    )


def _evaluation_state(evaluation: Evaluation | None) -> dict[str, Any] | None:
    """The evaluation as ``torch.load(weights_only=True)`` reads it back: plain
    values, with the per-picture predictions as tensors."""
    if evaluation is None:
        return None
    figures = asdict(replace(evaluation, predictions=None))
    kept = evaluation.predictions
    if kept is not None:
        figures["predictions"] = {
            "paths": list(kept.paths),
            "true": torch.from_numpy(kept.true),
            "probabilities": torch.from_numpy(kept.probabilities),
            "loss": torch.from_numpy(kept.loss),
        }
    return figures


def _evaluation_from_state(saved: dict[str, Any] | None) -> Evaluation | None:
    if not saved:
        return None
    kept = saved.pop("predictions", None)
    predictions = None
    if kept is not None:
        predictions = Predictions(
            tuple(kept["paths"]),
            kept["true"].numpy(),
            kept["probabilities"].numpy(),
            kept["loss"].numpy(),
        )
    return Evaluation(**saved, predictions=predictions)
