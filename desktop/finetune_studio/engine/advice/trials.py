"""Engine layer: short trial runs of one freeze plan on a sample.

A trial trains what the plan unfreezes with the recipe's optimizer, learning rate,
schedule and loss, from the same fresh head a real run starts from, and keeps the
best validation accuracy of its epochs, as a real run keeps its best epoch. Inputs
are the sample's activations where the plan cuts the network (computed once), or
its pictures when everything trains. Nothing is augmented: the same for every plan.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..devices import autocast, synchronize
from ..freezing import hold_frozen_modules
from ..optim import make_optimizer, make_scheduler
from ..recipe import Recipe

Inputs = tuple[torch.Tensor, ...]
Batches = Callable[[bool], Iterable[tuple[Inputs, torch.Tensor]]]
"""Called with ``shuffle``; gives (inputs, labels) batches on the device."""

STORE_DTYPE = torch.float16  # activations kept in half the memory; trained in float32


@dataclass
class Activations:
    """A sample's values at one cut: one stacked tensor per value, and the labels."""

    values: list[torch.Tensor]
    labels: torch.Tensor

    def batches(self, size: int, seed: int, device: torch.device) -> Batches:
        shuffler = torch.Generator().manual_seed(seed)  # a new order every epoch, seeded

        def batches(shuffle: bool) -> Iterable[tuple[Inputs, torch.Tensor]]:
            count = len(self.labels)
            order = torch.randperm(count, generator=shuffler) if shuffle else torch.arange(count)
            for start in range(0, count, size):
                rows = order[start : start + size]
                if shuffle and len(rows) < 2 < count:
                    continue  # BatchNorm cannot train on one picture
                inputs = tuple(v[rows].to(device, torch.float32) for v in self.values)
                yield inputs, self.labels[rows].to(device)

        return batches


@dataclass(frozen=True)
class TrialOutcome:
    accuracy: float  # best validation accuracy over the epochs
    epochs: int


@dataclass
class Trial:
    """Trains ``network`` (parameters already frozen by the plan) for ``epochs``."""

    network: nn.Module
    recipe: Recipe
    device: torch.device
    amp_dtype: torch.dtype | None
    class_weights: torch.Tensor | None
    cancel: threading.Event

    def time_step(self, inputs: Inputs, labels: torch.Tensor) -> float:
        """Seconds per picture of one training step, measured on one batch; the
        network's state is left as it was."""
        saved = {k: v.clone() for k, v in self.network.state_dict().items()}
        optimizer = self._optimizer()
        self._train_mode()
        self._step(optimizer, inputs, labels)  # the first step pays for allocations
        synchronize(self.device)  # GPU work is queued: time it done, not launched
        started = time.perf_counter()
        self._step(optimizer, inputs, labels)
        synchronize(self.device)
        seconds = (time.perf_counter() - started) / len(labels)
        self.network.load_state_dict(saved)
        return seconds

    def run(
        self, train: Batches, val: Batches, epochs: int, steps_per_epoch: int, deadline: float
    ) -> Generator[tuple[int, int], None, TrialOutcome | None]:
        """Yields (epochs done, epochs). Stops early when cancelled or past ``deadline``
        (a ``time.perf_counter()`` value), with the epochs done so far; None when no
        epoch ended."""
        optimizer = self._optimizer()
        warmup = round(self.recipe.warmup_fraction * steps_per_epoch * epochs)
        scheduler = make_scheduler(
            optimizer, self.recipe.schedule, steps_per_epoch * epochs, warmup
        )
        best: float | None = None
        for epoch in range(1, epochs + 1):
            self._train_mode()
            for inputs, labels in train(True):
                if self.cancel.is_set() or time.perf_counter() > deadline:
                    return _outcome(best, epoch - 1)
                self._step(optimizer, inputs, labels)
                scheduler.step()
            accuracy = self.accuracy(val)
            best = accuracy if best is None else max(best, accuracy)
            yield epoch, epochs
        return _outcome(best, epochs)

    def accuracy(self, batches: Batches) -> float:
        self.network.eval()
        correct, total = 0, 0
        with torch.inference_mode(), autocast(self.device, self.amp_dtype):
            for inputs, labels in batches(False):
                correct += int((self.network(*inputs).argmax(1) == labels).sum())
                total += len(labels)
        return correct / max(total, 1)

    def _optimizer(self) -> torch.optim.Optimizer:
        recipe = self.recipe
        return make_optimizer(
            self.network, recipe.optimizer, recipe.lr, recipe.weight_decay, recipe.lr_multipliers
        )

    def _train_mode(self) -> None:
        self.network.train()
        hold_frozen_modules(self.network)

    def _step(self, optimizer: torch.optim.Optimizer, inputs: Inputs, labels: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp_dtype):
            logits = self.network(*inputs)
        loss = nn.functional.cross_entropy(
            logits.float(),
            labels,
            weight=self.class_weights,
            label_smoothing=self.recipe.label_smoothing,
        )
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()


def _outcome(best: float | None, epochs: int) -> TrialOutcome | None:
    return None if best is None else TrialOutcome(best, epochs)


def stack_rows(rows: Sequence[Sequence[torch.Tensor]]) -> list[torch.Tensor]:
    """Per-batch tuples of values, concatenated value by value."""
    return [torch.cat([row[i] for row in rows]) for i in range(len(rows[0]))]
