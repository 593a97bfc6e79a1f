"""Issue 12, the learning-rate finder: a ramp on the real recipe's run, fastai's valley
suggestion, and a run put back bit for bit afterwards (tiny backbone)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from finetune_studio.engine.events import Log
from finetune_studio.engine.freezing import FreezePlan, GradualUnfreeze
from finetune_studio.engine.lr_find import (
    GRADUAL_NOTE,
    SOLVED_HEAD_NOTE,
    LrFinder,
    LrFinding,
    RampSettings,
    RampStep,
    find_lr,
    suggest,
    valley,
)
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.training import Trainer
from finetune_studio.engine.training.checkpoint import random_states
from finetune_studio.engine.training.run import Run
from support.runs import drain
from support.tiny import tiny_recipe_for


def typical_curve() -> tuple[list[float], list[float]]:
    """Flat while the rate is too small, falling, a bump, falling, then diverging."""
    lrs = [1e-7 * 10 ** (i / 10) for i in range(60)]
    losses = [2.0] * 15 + [2.0 - 0.05 * i for i in range(25)]
    losses[27] += 0.2  # a bump on the way down does not end the valley
    losses += [losses[-1] + 0.1 * i**2 for i in range(1, 21)]
    return lrs, losses


def test_valley_picks_the_middle_of_the_longest_fall() -> None:
    """fastai's rule: a third plus a sixth of the way along the longest fall."""
    lrs, losses = typical_curve()
    index = valley(lrs, losses)
    falling = range(15, 40)
    assert index in falling
    assert index - 15 == pytest.approx((1 / 3 + 1 / 6) * len(falling), abs=1)
    rng = torch.Generator().manual_seed(0)
    for _ in range(20):  # noise does not move it off the fall
        noisy = [loss + 0.05 * float(torch.rand(1, generator=rng)) for loss in losses]
        assert valley(lrs, noisy) in falling


def test_a_short_dip_does_not_outweigh_a_long_fall() -> None:
    lrs = [1e-6 * 10 ** (i / 10) for i in range(50)]
    dip = [3.0, 2.0, 3.0]  # falls once, at once
    fall = [3.0 - 0.05 * i for i in range(1, 41)]
    index = valley(lrs, [3.0] * 4 + dip + fall + [3.0] * 3)
    assert index == pytest.approx(7 + 40 / 2, abs=3)  # about the middle of the long fall


def test_suggest_leaves_out_the_warm_up_and_the_divergence() -> None:
    lrs, losses = typical_curve()
    index = suggest(lrs, losses, planned_steps=100)
    assert index == 10 + valley(lrs[10:-5], losses[10:-5])
    assert suggest(lrs[:14], losses[:14], planned_steps=100) is None  # too short


def set_up(recipe) -> tuple[Trainer, Run]:
    trainer = Trainer(recipe, feature_store=None)
    _, run = drain(trainer.set_up())
    return trainer, run


def everything(run: Run) -> dict[str, object]:
    """Every tensor and flag a ramp could change, copied."""
    model, optimizer = run.model, run.optimization[0]
    optimizer_state = optimizer.state_dict()
    return {
        "model": {k: v.clone() for k, v in model.state_dict().items()},
        "grads": {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None},
        "modes": {k: m.training for k, m in model.named_modules()},
        "optimizer_state": {
            (i, k): v.clone()
            for i, state in optimizer_state["state"].items()
            for k, v in state.items()
        },
        "groups": [
            {k: v for k, v in group.items() if k != "params"}
            for group in optimizer_state["param_groups"]
        ],
        "random": random_states(run.data.generators()),
        "accumulation": run.state.accumulation,
    }


def assert_identical(left: object, right: object, where: str = "") -> None:
    if isinstance(left, torch.Tensor):
        assert isinstance(right, torch.Tensor), where
        assert left.dtype == right.dtype and torch.equal(left, right), where
    elif isinstance(left, dict):
        assert isinstance(right, dict) and left.keys() == right.keys(), where
        for key in left:
            assert_identical(left[key], right[key], f"{where}.{key}")
    elif isinstance(left, (list, tuple)):
        assert isinstance(right, (list, tuple)) and len(left) == len(right), where
        for i, (a, b) in enumerate(zip(left, right)):
            assert_identical(a, b, f"{where}[{i}]")
    else:
        assert left == right, where


def trained_once(trainer: Trainer, run: Run) -> None:
    """One real training step first: the optimizer has state, the model gradients."""
    optimizer = run.optimization[0]
    batch = next(iter(run.data.train_loader(1)))
    drain(trainer.train_batch(run, optimizer, batch))


RESTORED_RUNS = {
    "last block on pictures, BatchNorm trained, augmented": {
        "freeze": FreezePlan("last:1"),
        "train_batchnorm": True,
        "augmentation": "light",
        "lr_multipliers": {"features.5": 0.1},
    },
    "head on cached features": {"freeze": FreezePlan("head")},
}


@pytest.mark.parametrize("changes", RESTORED_RUNS.values(), ids=RESTORED_RUNS.keys())
def test_after_the_ramp_every_tensor_of_the_run_is_bit_identical(
    colour_dataset: Path, changes: dict[str, object]
) -> None:
    trainer, run = set_up(tiny_recipe_for(colour_dataset, **changes))
    trained_once(trainer, run)
    before = everything(run)
    seen: list[dict[str, torch.Tensor]] = []

    def midway() -> Iterator[object]:
        for event in find_lr(trainer, run, RampSettings(steps=12)):
            if isinstance(event, RampStep) and event.step == 12:
                seen.append({k: v.clone() for k, v in run.model.state_dict().items()})
            yield event

    events = list(midway())
    assert sum(isinstance(e, RampStep) for e in events) == 12
    changed = [k for k, v in seen[0].items() if not torch.equal(v, before["model"][k])]  # type: ignore[index]
    assert changed, "the ramp trained nothing: the restore would not be tested"
    assert_identical(everything(run), before)


def test_cancelling_the_ramp_also_restores_the_run(colour_dataset: Path) -> None:
    trainer, run = set_up(tiny_recipe_for(colour_dataset, freeze=FreezePlan("last:1")))
    trained_once(trainer, run)
    before = everything(run)
    ramp = find_lr(trainer, run, RampSettings(steps=50))
    for event in ramp:
        if isinstance(event, RampStep) and event.step == 5:
            trainer.cancel()
    _, finding = drain(ramp)
    assert finding is None
    assert_identical(everything(run), before)


def test_frozen_batchnorm_statistics_stay_put_and_multipliers_scale_the_ramp(
    colour_dataset: Path,
) -> None:
    recipe = tiny_recipe_for(
        colour_dataset, freeze=FreezePlan("last:1"), lr_multipliers={"features.5": 0.1}
    )
    trainer, run = set_up(recipe)
    frozen_stats = run.model.features[0][1].running_mean.clone()
    optimizer = run.optimization[0]
    rates_before = [g["lr"] for g in optimizer.param_groups]
    rates: list[dict[float, float]] = []
    stepping = trainer.train_batch

    def spying_step(run, optimizer, batch):  # the groups' rates as each step runs
        rates.append({g["lr_multiplier"]: g["lr"] for g in optimizer.param_groups})
        assert torch.equal(run.model.features[0][1].running_mean, frozen_stats)
        assert not run.model.features[0].training  # held in eval: frozen
        return (yield from stepping(run, optimizer, batch))

    trainer.train_batch = spying_step  # type: ignore[method-assign]
    _, finding = drain(find_lr(trainer, run, RampSettings(steps=10)))
    assert len(rates) == 10
    for step_rates, lr in zip(rates, finding.lrs):
        assert step_rates[1.0] == pytest.approx(lr)
        assert step_rates[0.1] == pytest.approx(lr * 0.1)
    assert [g["lr"] for g in optimizer.param_groups] == rates_before  # the recipe's again


def find(recipe, **settings: object) -> tuple[list[object], LrFinding]:
    finder = LrFinder(recipe, feature_store=None, settings=RampSettings(**settings))  # type: ignore[arg-type]
    events, finding = drain(finder.events())
    assert finding is not None
    return events, finding


def test_the_ramp_is_exponential_and_stops_once_the_loss_diverges(colour_dataset: Path) -> None:
    recipe = tiny_recipe_for(colour_dataset, optimizer="sgd", freeze=FreezePlan("none"))
    _, finding = find(recipe, start_lr=1e-4, end_lr=1e6, steps=100)
    assert finding.diverged and len(finding.lrs) < 100
    ratios = [b / a for a, b in zip(finding.lrs, finding.lrs[1:])]
    assert ratios == pytest.approx([10 ** (10 / 99)] * len(ratios))
    assert finding.losses[-1] > 4 * min(finding.losses)


def test_a_solved_head_says_the_rate_is_unused_and_still_ramps_the_optimizer(
    colour_dataset: Path,
) -> None:
    events, finding = find(tiny_recipe_for(colour_dataset, head_fit="optimum"), steps=30)
    assert not finding.lr_used and SOLVED_HEAD_NOTE in finding.notes
    assert any(isinstance(e, Log) and e.message == SOLVED_HEAD_NOTE for e in events)
    assert len(finding.lrs) == 30 and finding.suggested_lr is not None
    _, by_epochs = find(tiny_recipe_for(colour_dataset, head_fit="epochs"), steps=30)
    assert by_epochs.lr_used and not by_epochs.notes
    assert by_epochs.lrs == finding.lrs


def test_gradual_unfreezing_ramps_its_first_phase_and_says_so(colour_dataset: Path) -> None:
    recipe = tiny_recipe_for(
        colour_dataset, freeze=FreezePlan("last:1"), gradual_unfreeze=GradualUnfreeze(1), epochs=2
    )
    finder = LrFinder(recipe, feature_store=None, settings=RampSettings(steps=20))
    training: set[str] = set()
    stepping = finder.trainer.train_batch

    def spying_step(run, optimizer, batch):  # what trains as each step runs
        training.update(n for n, p in run.model.named_parameters() if p.requires_grad)
        return (yield from stepping(run, optimizer, batch))

    finder.trainer.train_batch = spying_step  # type: ignore[method-assign]
    _, finding = drain(finder.events())
    assert GRADUAL_NOTE in finding.notes and finding.lr_used
    assert training == {"fc.weight", "fc.bias"}  # the head, as in the first epochs


def accuracy_at(dataset: Path, lr: float) -> float:
    recipe = tiny_recipe_for(dataset, lr=lr, epochs=4, seed=1)
    _, result = drain(Trainer(recipe, feature_store=None).events())
    return result.evaluation.accuracy


def test_training_at_the_suggested_rate_does_at_least_as_well_as_the_default(
    tmp_path: Path,
) -> None:
    from support.tiny import make_colour_dataset

    dataset = make_colour_dataset(tmp_path / "colours", per_class=20)
    _, finding = find(tiny_recipe_for(dataset, seed=1))
    assert finding.suggested_lr is not None
    default_lr = Recipe(dataset=str(dataset)).lr
    assert finding.suggested_lr != default_lr
    assert accuracy_at(dataset, finding.suggested_lr) >= accuracy_at(dataset, default_lr)
