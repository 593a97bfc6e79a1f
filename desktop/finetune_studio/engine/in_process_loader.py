"""Engine layer: batches of pictures already in memory, made in the calling process
exactly as loader worker processes would make them.

Once every picture is decoded (the run's own check kept them, or they were decoded
up front), what is left per picture is a crop, a flip and a conversion to floats:
about 1 ms, some 2 % of a full fine-tuning step on a 2-core CPU. There a worker
process only costs: the fork server's import of torch (seconds of CPU, taken from the
dataset check it overlaps), a start per loader and epoch, and a process that takes a
core from the step's threads in the middle of a step.

The same numbers either way: a worker seeds torch's generator with the loader's base
seed plus its index, and the workers make the batches in turn (round robin).
``InProcessLoader`` keeps one such generator state per worker it stands in for and
swaps it in around each batch, so the augmentation, and with it a run's results, do
not change (torchvision's transforms draw from torch's generator only; checked in
tests/engine/test_speed_paths.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

import torch
from torch.utils.data import DataLoader

T = TypeVar("T")

MAX_COMPUTE_THREADS = 2
"""Up to this many compute threads a worker process competes with the step for a
core; with more, the transforms' milliseconds would lengthen every step instead."""


def loads_in_process(device: torch.device) -> bool:
    """Whether decoded pictures are better transformed in the training process: on a
    CPU that computes the step with few threads."""
    return device.type == "cpu" and torch.get_num_threads() <= MAX_COMPUTE_THREADS


class InProcessLoader(DataLoader[T]):
    """A loader without worker processes (``num_workers=0``) whose batches are those
    ``as_workers`` workers would make, random augmentation included."""

    def __init__(self, *args: Any, as_workers: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.num_workers:
            raise ValueError("an InProcessLoader makes its batches without workers")
        self.as_workers = max(1, as_workers)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        batches = super().__iter__()
        # Drawn from the loader's generator by every iterator, with or without workers.
        base_seed = int(batches._base_seed)
        states = [seeded_state(base_seed + worker) for worker in range(self.as_workers)]
        return _in_turns(batches, states)


def seeded_state(seed: int) -> torch.Tensor:
    """The state of torch's CPU generator after ``torch.manual_seed(seed)``, as a
    worker process sets it."""
    return torch.Generator().manual_seed(seed).get_state()


_END = object()


def _in_turns(batches: Iterator[Any], states: list[torch.Tensor]) -> Iterator[Any]:
    """Each batch made under its worker's generator state, the caller's own state
    restored around it (a model's dropout keeps drawing from it)."""
    turn = 0
    while True:
        slot = turn % len(states)
        outside = torch.get_rng_state()
        torch.set_rng_state(states[slot])
        try:
            batch = next(batches, _END)
        finally:
            states[slot] = torch.get_rng_state()
            torch.set_rng_state(outside)
        if batch is _END:
            return
        yield batch
        turn += 1
