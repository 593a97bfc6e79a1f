"""Engine layer: what a training run is made of, before and while it runs.

The checks and seeding before a run, the live objects one run shares between its
epochs (``Run``), one epoch's training tally, and the listener protocol through
which the CLI and tests can follow a run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ..backbones import BackboneSpec, get_spec
from ..devices import autocast_dtype, resolve_device
from ..errors import DatasetError, WeightsError
from ..events import BatchEnd, EpochEnd, FitEnd, Log, StageProgress
from ..inspection import DatasetReport
from ..parameters import ParameterTree
from ..recipe import Recipe
from .checkpoint import restore_random_states
from .data import RunData
from .phases import Optimization, Phase
from .state import RunState
from .stepper import Stepper


class TrainingListener(Protocol):
    """What the trainer tells whoever drives it (the CLI, a Qt worker, a test)."""

    def batch_ended(self, event: BatchEnd) -> None: ...
    def epoch_ended(self, event: EpochEnd) -> None: ...
    def stage_progressed(self, event: StageProgress) -> None: ...
    def log(self, event: Log) -> None: ...
    def finished(self, event: FitEnd) -> None: ...
    def failed(self, error: BaseException) -> None: ...


def preflight(recipe: Recipe) -> None:
    """Cheap checks of a recipe's inputs, so a typo fails in a second, not after a scan."""
    get_spec(recipe.backbone)
    if recipe.weights not in ("default", "none") and not Path(recipe.weights).is_file():
        raise WeightsError(f"The weights file {recipe.weights} does not exist.")
    dataset = Path(recipe.dataset).expanduser()
    if not dataset.is_dir():
        what = "is not a folder" if dataset.exists() else "does not exist"
        raise DatasetError(f"The dataset folder {dataset} {what}.")
    resolve_device(recipe.device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def compute_set_up(
    recipe: Recipe, cpu_threads: int | None
) -> tuple[torch.device, torch.dtype | None]:
    """What a run or a measurement does first: check the recipe, take its threads
    and seed, and pick the device and the mixed-precision type."""
    preflight(recipe)
    if cpu_threads:
        torch.set_num_threads(cpu_threads)
    seed_everything(recipe.seed)
    device = resolve_device(recipe.device)
    return device, autocast_dtype(device, recipe.mixed_precision)


def class_weights(counts: list[int]) -> torch.Tensor:
    """Inverse-frequency weights, mean 1 over the classes that have pictures."""
    present = [c for c in counts if c > 0]
    total = sum(present)
    return torch.tensor(
        [total / (len(present) * c) if c else 0.0 for c in counts], dtype=torch.float32
    )


@dataclass(frozen=True)
class EpochTally:
    """A finished epoch's training side."""

    loss: float
    accuracy: float
    seconds: float
    lr: float


@dataclass
class Run:
    """One run's live objects, set up once and shared by its epochs."""

    model: nn.Module
    spec: BackboneSpec
    head_path: str
    report: DatasetReport
    tree: ParameterTree
    device: torch.device
    amp_dtype: torch.dtype | None
    data: RunData
    stepper: Stepper
    scaler: torch.amp.GradScaler
    state: RunState
    phases: tuple[Phase, ...]
    phase: Phase
    optimization: Optimization
    stopped_early: bool = False

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.report.classes

    def resume_from(self, saved: dict[str, object]) -> None:
        """Continue where a checkpoint left off: model, optimizer, schedule, gradient
        scaler and random generators as they were after its last epoch."""
        self.model.load_state_dict(saved["model"], strict=False)  # type: ignore[arg-type]
        optimizer, scheduler = self.optimization
        optimizer.load_state_dict(saved["optimizer"])  # type: ignore[arg-type]
        scheduler.load_state_dict(saved["scheduler"])  # type: ignore[arg-type]
        self.scaler.load_state_dict(saved["scaler"])  # type: ignore[arg-type]
        restore_random_states(saved["random"], self.data.generators())  # type: ignore[arg-type]
