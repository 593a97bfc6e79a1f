"""Engine layer: one optimizer step on a batch, surviving out-of-memory errors.

When memory runs out, the step is retried with the batch split into twice as many
slices whose gradients accumulate, so the effective batch (and the results' scale)
stays the same; the number of slices is part of the run state and is checkpointed.
"""

from __future__ import annotations

import math
from collections.abc import Generator

import torch
from torch import nn

from ..devices import autocast
from ..errors import UserFacingError
from ..events import Log
from .state import RunState


class Stepper:
    def __init__(
        self,
        forward: nn.Module,
        criterion: nn.Module,
        scaler: torch.amp.GradScaler,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        state: RunState,
    ) -> None:
        self.forward, self.criterion, self.scaler = forward, criterion, scaler
        self.device, self.amp_dtype, self.state = device, amp_dtype, state

    def step(
        self, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, labels: torch.Tensor
    ) -> Generator[Log, None, tuple[float, int]]:
        """One optimizer step; yields a warning each time it has to shrink. Returns the
        batch's mean loss and its number of correct predictions."""
        while True:
            try:
                return self._accumulate(optimizer, inputs, labels)
            except torch.OutOfMemoryError:
                yield self._shrink(optimizer, len(labels))

    def _accumulate(
        self, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, labels: torch.Tensor
    ) -> tuple[float, int]:
        slices = self.state.accumulation
        optimizer.zero_grad(set_to_none=True)
        loss_total, correct = 0.0, 0
        for part, part_labels in zip(inputs.chunk(slices), labels.chunk(slices)):
            with autocast(self.device, self.amp_dtype):
                logits = self.forward(part)
                share = len(part_labels) / len(labels)
                loss = self.criterion(logits.float(), part_labels) * share
            self.scaler.scale(loss).backward()
            loss_total += loss.item()
            correct += int((logits.argmax(1) == part_labels).sum())
        self.scaler.step(optimizer)
        self.scaler.update()
        return loss_total, correct

    def _shrink(self, optimizer: torch.optim.Optimizer, batch_size: int) -> Log:
        optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if math.ceil(batch_size / self.state.accumulation) <= 1:
            raise UserFacingError(
                "Out of memory even with one picture per step. Choose a smaller backbone, "
                "freeze more layers, or train on the CPU."
            )
        self.state.accumulation *= 2
        per_step = math.ceil(batch_size / self.state.accumulation)
        return Log(
            f"Out of {self.device.type.upper()} memory: continuing with {per_step} pictures "
            f"per step, {self.state.accumulation} steps per batch of {batch_size}.",
            "warning",
        )
