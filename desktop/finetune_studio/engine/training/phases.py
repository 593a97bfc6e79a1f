"""Engine layer: a run as one or two phases, each with its own freeze plan and optimizer.

Without gradual unfreezing a run is one phase under the recipe's plan. With it, the
first ``head_epochs`` epochs train the head alone, then the recipe's plan (plus the
listed paths) takes over with a fresh optimizer and schedule for the epochs left.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..freezing import apply_freeze_plan, apply_preset, set_trainable
from ..optim import make_optimizer, make_scheduler
from ..recipe import Recipe

Optimization = tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]


@dataclass(frozen=True)
class Phase:
    first_epoch: int  # 1-based, inclusive
    last_epoch: int
    head_only: bool

    @property
    def epochs(self) -> int:
        return self.last_epoch - self.first_epoch + 1


def plan_phases(recipe: Recipe) -> tuple[Phase, ...]:
    if recipe.gradual_unfreeze is None:
        return (Phase(1, recipe.epochs, head_only=False),)
    switch = recipe.gradual_unfreeze.head_epochs
    return (Phase(1, switch, head_only=True), Phase(switch + 1, recipe.epochs, head_only=False))


def phase_of(phases: tuple[Phase, ...], epoch: int) -> Phase:
    return next(p for p in phases if p.first_epoch <= epoch <= p.last_epoch)


def apply_phase(model: nn.Module, head_path: str, recipe: Recipe, phase: Phase) -> None:
    """Set which parameters train in this phase."""
    if phase.head_only:
        apply_preset(model, head_path, "head")
        return
    apply_freeze_plan(model, head_path, recipe.freeze, recipe.train_batchnorm)
    if recipe.gradual_unfreeze is not None:
        for path in recipe.gradual_unfreeze.paths:
            set_trainable(model, path, True)


def build_optimization(
    model: nn.Module, recipe: Recipe, phase: Phase, steps_per_epoch: int
) -> Optimization:
    """An optimizer over the phase's trainable parameters and its schedule."""
    optimizer = make_optimizer(
        model, recipe.optimizer, recipe.lr, recipe.weight_decay, recipe.lr_multipliers
    )
    total_steps = steps_per_epoch * phase.epochs
    warmup = int(total_steps * recipe.warmup_fraction)
    return optimizer, make_scheduler(optimizer, recipe.schedule, total_steps, warmup)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate of the group with the largest multiplier (usually the head)."""
    return float(max(group["lr"] for group in optimizer.param_groups))
