"""Optimizer groups (discriminative learning rates) and schedules."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from finetune_studio.engine.backbones import build_model
from finetune_studio.engine.errors import RecipeError
from finetune_studio.engine.freezing import FreezePlan, apply_freeze_plan
from finetune_studio.engine.optim import make_optimizer, make_scheduler
from finetune_studio.engine.parameters import multiplier_for
from support.tiny import TINY


def test_groups_per_multiplier_hold_only_trainable_parameters() -> None:
    built = build_model(TINY, 3)
    apply_freeze_plan(
        built.model, built.head_path, FreezePlan("head").with_override("features.5", True)
    )
    multipliers = {"features": 0.1, "features.5.1": 0.5}
    optimizer = make_optimizer(built.model, "adamw", 0.01, 0.05, multipliers)

    by_name = {name: group for group in optimizer.param_groups for name in group["names"]}
    assert set(by_name) == {
        "fc.weight",
        "fc.bias",
        "features.5.0.weight",
        "features.5.1.weight",
        "features.5.1.bias",
    }
    assert by_name["fc.weight"]["lr"] == pytest.approx(0.01)
    assert by_name["features.5.0.weight"]["lr"] == pytest.approx(0.001)
    assert by_name["features.5.1.weight"]["lr"] == pytest.approx(0.005)
    # No weight decay on biases and normalisation weights.
    assert by_name["fc.weight"]["weight_decay"] == 0.05
    assert by_name["fc.bias"]["weight_decay"] == 0.0
    assert by_name["features.5.1.weight"]["weight_decay"] == 0.0
    for group in optimizer.param_groups:
        assert len({multiplier_for(n, multipliers) for n in group["names"]}) == 1


def test_everything_frozen_is_a_clear_error() -> None:
    built = build_model(TINY, 3)
    built.model.requires_grad_(False)
    with pytest.raises(RecipeError, match="Nothing to train"):
        make_optimizer(built.model, "sgd", 0.1, 0.0, {})


def lr_curve(schedule: str, steps: int = 20, warmup: int = 4) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(optimizer, schedule, steps, warmup)
    values = []
    for _ in range(steps):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def test_cosine_warms_up_linearly_then_follows_a_half_cosine() -> None:
    curve = lr_curve("cosine")  # 20 steps, 4 of warm-up
    warmup = [(step + 1) / 5 for step in range(4)]
    decay = [0.5 * (1 + math.cos(math.pi * step / 16)) for step in range(16)]
    assert curve == pytest.approx(warmup + decay)
    assert all(a >= b for a, b in itertools.pairwise(curve[4:]))


def test_one_cycle_peaks_after_warmup() -> None:
    curve = lr_curve("onecycle")
    assert max(curve) == pytest.approx(1.0)
    assert curve.index(max(curve)) == 3  # the 4th step: warm-up is 20% of 20 steps
    assert curve[-1] < 0.01


@pytest.mark.parametrize("total_steps", range(1, 12))
def test_onecycle_runs_however_few_steps_a_phase_has(total_steps: int) -> None:
    # Gradual unfreezing on a small dataset gives phases of a handful of steps.
    model = nn.Linear(3, 2)
    optimizer = make_optimizer(model, "adamw", 0.1, 0.0, {})
    scheduler = make_scheduler(optimizer, "onecycle", total_steps, warmup_steps=1)
    rates = []
    for _ in range(total_steps):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert all(math.isfinite(rate) and rate >= 0 for rate in rates)
    assert max(rates) <= 0.1 + 1e-9
