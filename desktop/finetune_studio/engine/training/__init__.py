"""Engine layer: training, as a generator of events that returns the best model.

The parts: ``trainer`` (the run's course), ``run`` (what a run is made of, and the
checks before it), ``data`` (features or pictures),
``phases`` (freeze plans and optimizers over the epochs), ``stepper`` (one step,
surviving out-of-memory), ``state`` (progress and the best model, as a checkpoint),
``callbacks`` (checkpointing, early stopping), ``checkpoint`` (the file itself).
"""

from __future__ import annotations

from .result import TrainingResult
from .run import TrainingListener, class_weights, preflight, seed_everything
from .state import ResumeMismatchError
from .trainer import DECODE_BUDGET_BYTES, Trainer, fit

__all__ = [
    "DECODE_BUDGET_BYTES",
    "ResumeMismatchError",
    "Trainer",
    "TrainingListener",
    "TrainingResult",
    "class_weights",
    "fit",
    "preflight",
    "seed_everything",
]
