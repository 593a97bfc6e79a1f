"""Engine layer: a learning-rate finder that ramps the run a recipe would make.

The rate grows exponentially, one optimizer step per batch, over at most
``RampSettings.steps`` steps (fastai's ``lr_find``: 1e-7 to 10 in 100 steps). The run
is the trainer's own (``Trainer.set_up``): the freeze plan or first phase, the
per-layer multipliers (each group steps at the ramp's rate times its multiplier),
BatchNorm held in eval where frozen, and cached features when only the head trains.
The loss is smoothed as fastai smooths it, the ramp stops once the smoothed loss
passes four times its best, and everything the ramp changed (trainable parameters,
buffers, module modes, the optimizer, the gradient scaler, the random generators)
is put back exactly afterwards, also after a cancel or an error (``find_lr``).

A head-only run on cached features with ``head_fit = "optimum"`` solves its head
and never uses the learning rate: the finder then says so, and ramps the optimizer
path the run would take with ``head_fit = "epochs"``.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from .events import Event, Log, StageProgress
from .feature_store import FeatureStore
from .freezing import hold_frozen_modules
from .inspection import DatasetReport
from .recipe import Recipe
from .training.checkpoint import random_states, restore_random_states
from .training.run import Run
from .training.trainer import Trainer

STAGE = "Trying learning rates"
SMOOTHING = 0.98  # fastai's Recorder: exponential moving average, bias-corrected
DIVERGENCE = 4.0  # stop once the smoothed loss exceeds this many times its best
SOLVED_HEAD_NOTE = (
    "This recipe solves the head to its optimum (head_fit optimum) and does not use "
    "the learning rate. The rates shown are for training the head by epochs "
    "(head_fit epochs) or for training more than the head."
)

GRADUAL_NOTE = (
    "With gradual unfreezing the ramp trains what the first epochs train (the head); "
    "the same rate then applies to the layers unfrozen later."
)


@dataclass(frozen=True)
class RampSettings:
    start_lr: float = 1e-7
    end_lr: float = 10.0
    steps: int = 100

    def rate(self, step: int) -> float:
        """The base rate (multiplier 1) of step ``step`` (0-based)."""
        fraction = step / max(self.steps - 1, 1)
        return float(self.start_lr * (self.end_lr / self.start_lr) ** fraction)


@dataclass(frozen=True)
class RampStep:
    """One step of the ramp, for a live curve."""

    step: int  # 1-based
    steps: int
    lr: float
    loss: float  # smoothed


@dataclass(frozen=True)
class LrFinding:
    lrs: tuple[float, ...]  # the base rate of each step (groups use it x their multiplier)
    losses: tuple[float, ...]  # the smoothed loss after each step
    suggested_lr: float | None  # None when the ramp was too short to suggest one
    suggestion_index: int | None  # into ``lrs``
    diverged: bool  # the ramp stopped because the loss diverged
    lr_used: bool = True  # False: the recipe solves its head and ignores the rate
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The CLI's JSON: ``{"suggested_lr", "lrs", "losses"}``."""
        return {
            "suggested_lr": self.suggested_lr,
            "lrs": list(self.lrs),
            "losses": list(self.losses),
        }


def valley(lrs: Sequence[float], losses: Sequence[float]) -> int:
    """fastai's "valley" suggestion: the index of the rate to use.

    The valley is the longest stretch over which the loss keeps falling, measured as
    the longest strictly decreasing subsequence of the smoothed losses (so a small
    bump on the way down does not cut it short). It ends where the loss stops
    falling and starts to turn, and is taken to start that many steps earlier. The
    suggestion lies a third plus a sixth of its length past the start, about the
    middle of the fall on the log-rate axis: where the loss still falls fast, and
    well short of the turn. This is fastai's ``valley`` step for step, including
    how it tracks the start; where it is often described as "two thirds" along, the
    arithmetic (1/3 + 1/6 of the stretch) is kept as fastai has it.
    """
    count = len(losses)
    if count != len(lrs) or count == 0:
        raise ValueError("valley needs as many losses as rates, at least one")
    longest = [1] * count  # length of the longest decreasing run ending at i
    start, end = 0, 0
    for i in range(1, count):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
            if longest[end] < longest[i]:
                end = i
                start = end - longest[end]
    sections = (end - start) / 3
    return start + int(sections) + int(sections / 2)


def suggest(lrs: Sequence[float], losses: Sequence[float], planned_steps: int) -> int | None:
    """The suggested step, chosen as fastai's ``lr_find`` does: the first tenth of the
    planned steps (still warming up the average) and the last five (the divergence)
    are left out before ``valley`` looks. None when nothing is left."""
    first, last = planned_steps // 10, len(losses) - 5
    if last - first < 2:
        return None
    return first + valley(lrs[first:last], losses[first:last])


@dataclass
class RunSnapshot:
    """Everything a ramp can change in a run, copied before it starts."""

    parameters: dict[str, torch.Tensor]
    gradients: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    training: dict[str, bool]
    optimizer: dict[str, Any]
    scaler: dict[str, Any]
    random: dict[str, Any]
    accumulation: int

    @classmethod
    def take(cls, run: Run) -> RunSnapshot:
        model, optimizer = run.model, run.optimization[0]
        return cls(
            parameters={
                name: p.detach().clone()
                for name, p in model.named_parameters()
                if p.requires_grad  # frozen ones cannot change: no copy of the backbone
            },
            gradients={
                name: p.grad.detach().clone()
                for name, p in model.named_parameters()
                if p.grad is not None
            },
            buffers={name: b.detach().clone() for name, b in model.named_buffers()},
            training={name: m.training for name, m in model.named_modules()},
            optimizer=copy.deepcopy(optimizer.state_dict()),  # its tensors are live
            scaler=copy.deepcopy(run.scaler.state_dict()),
            random=random_states(run.data.generators()),
            accumulation=run.state.accumulation,
        )

    def restore(self, run: Run) -> None:
        """Copy the values back into the same tensors (whoever holds them sees it)."""
        model, optimizer = run.model, run.optimization[0]
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                saved_grad = self.gradients.get(name)
                parameter.grad = None if saved_grad is None else saved_grad.clone()
                if name in self.parameters:
                    parameter.copy_(self.parameters[name])
            for name, buffer in model.named_buffers():
                buffer.copy_(self.buffers[name])
        for name, module in model.named_modules():
            module.training = self.training[name]
        optimizer.load_state_dict(self.optimizer)
        if run.scaler.is_enabled():
            run.scaler.load_state_dict(self.scaler)
        restore_random_states(self.random, run.data.generators())
        run.state.accumulation = self.accumulation


class _Smoother:
    """fastai's smoothed loss: a bias-corrected exponential moving average."""

    def __init__(self) -> None:
        self.average, self.count, self.best = 0.0, 0, math.inf

    def add(self, loss: float) -> float:
        self.count += 1
        self.average = SMOOTHING * self.average + (1 - SMOOTHING) * loss
        smooth = self.average / (1 - SMOOTHING**self.count)
        self.best = min(self.best, smooth)
        return smooth

    def diverged(self, smooth: float) -> bool:
        return not math.isfinite(smooth) or smooth > DIVERGENCE * self.best


def find_lr(
    trainer: Trainer, run: Run, settings: RampSettings | None = None
) -> Generator[Event | RampStep, None, LrFinding | None]:
    """Ramp ``run`` (set up by ``trainer``) and put it back exactly as it was; the
    finding, or None when ``trainer`` was cancelled."""
    settings = settings or RampSettings()
    snapshot = RunSnapshot.take(run)
    try:
        return (yield from _ramp(trainer, run, settings))
    finally:
        snapshot.restore(run)


def _set_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = rate * group.get("lr_multiplier", 1.0)


def _ramp(
    trainer: Trainer, run: Run, settings: RampSettings
) -> Generator[Event | RampStep, None, LrFinding | None]:
    optimizer = run.optimization[0]
    run.model.train()
    hold_frozen_modules(run.model)
    smoother = _Smoother()
    lrs: list[float] = []
    losses: list[float] = []
    diverged, epoch = False, 1
    while len(lrs) < settings.steps and not diverged:
        stepped_this_pass = False
        for batch in run.data.train_loader(epoch):
            if trainer.cancel_token.is_set():
                return None
            rate = settings.rate(len(lrs))
            _set_rate(optimizer, rate)
            stepped = yield from trainer.train_batch(run, optimizer, batch)
            if stepped is None:
                continue
            stepped_this_pass = True
            smooth = smoother.add(stepped[0])
            diverged = smoother.diverged(smooth)
            if not math.isfinite(smooth):
                break
            lrs.append(rate)
            losses.append(smooth)
            yield RampStep(len(lrs), settings.steps, rate, smooth)
            yield StageProgress(STAGE, len(lrs), settings.steps)
            if diverged or len(lrs) >= settings.steps:
                break
        if not stepped_this_pass:
            break  # no batch of this pass loaded: another pass would not either
        epoch += 1
    if trainer.cancel_token.is_set():
        return None
    index = suggest(lrs, losses, settings.steps)
    return LrFinding(
        lrs=tuple(lrs),
        losses=tuple(losses),
        suggested_lr=lrs[index] if index is not None else None,
        suggestion_index=index,
        diverged=diverged,
    )


class LrFinder:
    """The finder for a recipe: sets the run up as training would, ramps it, and
    returns an ``LrFinding`` (None when cancelled). A cancellable engine task like the
    advisor: ``events()`` in a worker or the CLI, ``cancel()`` from anywhere."""

    def __init__(
        self,
        recipe: Recipe,
        dataset: DatasetReport | None = None,
        cpu_threads: int | None = None,
        feature_store: FeatureStore | Literal["default"] | None = "default",
        settings: RampSettings | None = None,
    ) -> None:
        self.recipe = recipe
        self.settings = settings or RampSettings()
        self.trainer = Trainer(
            recipe, dataset, cpu_threads=cpu_threads, feature_store=feature_store
        )

    @property
    def cancel_token(self) -> threading.Event:
        return self.trainer.cancel_token

    def cancel(self) -> None:
        self.trainer.cancel()

    def events(self) -> Generator[Event | RampStep, None, LrFinding | None]:
        run = yield from self.trainer.set_up()
        if self.cancel_token.is_set():
            return None
        notes: list[str] = []
        solved = self.trainer.head_to_solve(run) is not None
        if solved:
            notes.append(SOLVED_HEAD_NOTE)
        if self.recipe.gradual_unfreeze is not None:
            notes.append(GRADUAL_NOTE)
        for note in notes:
            yield Log(note, "warning")
        finding = yield from find_lr(self.trainer, run, self.settings)
        if finding is None:
            return None
        yield Log(_summary(finding))
        return LrFinding(
            finding.lrs,
            finding.losses,
            finding.suggested_lr,
            finding.suggestion_index,
            finding.diverged,
            lr_used=not solved,
            notes=tuple(notes),
        )


def _summary(finding: LrFinding) -> str:
    steps = len(finding.lrs)
    if not steps:
        return "No training step could be made: no picture loaded."
    how = "the loss diverged there" if finding.diverged else "the last planned rate"
    said = f"{steps} steps from {finding.lrs[0]:.1e} to {finding.lrs[-1]:.1e} ({how})"
    if finding.suggested_lr is None:
        return f"{said}; too few steps to suggest a rate."
    return f"{said}; suggested learning rate {finding.suggested_lr:.2e}."
