"""Engine layer: optimizer parameter groups and learning-rate schedules.

Built after the freeze plan is applied, from trainable parameters only. Groups are
keyed by (learning-rate multiplier, decays?): biases, normalisation weights and
ViT's token/position embeddings get no weight decay, as in timm and fastai. A
parameter's multiplier is its nearest named ancestor's (``multiplier_for``), so a
layer's own multiplier survives one set later on the block around it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from .errors import RecipeError
from .parameters import multiplier_for

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "constant")
MIN_ONECYCLE_STEPS = 5
_NO_DECAY_NAMES = ("token", "pos_embed", "position", "relative_position")


def _decays(name: str, parameter: nn.Parameter) -> bool:
    return parameter.ndim > 1 and not any(token in name for token in _NO_DECAY_NAMES)


def parameter_groups(
    model: nn.Module, lr: float, weight_decay: float, multipliers: Mapping[str, float]
) -> list[dict[str, Any]]:
    groups: dict[tuple[float, bool], dict[str, Any]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        multiplier = multiplier_for(name, multipliers)
        if multiplier == 0:
            continue
        decays = _decays(name, parameter)
        group = groups.setdefault(
            (multiplier, decays),
            {
                "params": [],
                "names": [],
                "lr": lr * multiplier,
                "weight_decay": weight_decay if decays else 0.0,
                "lr_multiplier": multiplier,
            },
        )
        group["params"].append(parameter)
        group["names"].append(name)
    return list(groups.values())


def make_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    multipliers: Mapping[str, float],
) -> torch.optim.Optimizer:
    groups = parameter_groups(model, lr, weight_decay, multipliers)
    if not groups:
        raise RecipeError(
            "Nothing to train: every parameter is frozen. Unfreeze at least the head."
        )
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    raise RecipeError(f"Unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}.")


def make_scheduler(
    optimizer: torch.optim.Optimizer, name: str, total_steps: int, warmup_steps: int
) -> LRScheduler:
    """A per-batch schedule over ``total_steps`` with a linear warm-up."""
    total_steps = max(total_steps, 1)
    warmup_steps = min(max(warmup_steps, 0), total_steps - 1)
    if name == "onecycle" and total_steps >= MIN_ONECYCLE_STEPS:
        # OneCycleLR divides by the length of each of its two phases: keep both at
        # least two steps long (shorter runs fall back to cosine below).
        shortest = 2 / total_steps
        return OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=total_steps,
            pct_start=min(max(warmup_steps / total_steps, shortest), 1 - shortest),
            anneal_strategy="cos",
            cycle_momentum=isinstance(optimizer, torch.optim.SGD),
        )
    if name not in SCHEDULES:
        raise RecipeError(f"Unknown schedule {name!r}; use one of {', '.join(SCHEDULES)}.")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if name == "constant":
            return 1.0  # cosine, and onecycle runs too short for OneCycleLR
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return LambdaLR(optimizer, factor)
