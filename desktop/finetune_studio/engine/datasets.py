"""Engine layer: torch datasets and loaders over a ``DatasetReport``'s samples.

A picture that vanished or broke after the dataset was inspected is skipped, not
fatal: the dataset returns a ``LoadFailure`` in its place and the collate function
drops it from the batch, handing the failure on so the trainer can count it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .dataset import Sample
from .images import ImageProblem, load_rgb


@dataclass(frozen=True)
class LoadFailure:
    path: str
    reason: str


Item = tuple[torch.Tensor, int] | LoadFailure


class ImageDataset(Dataset[Item]):
    """Pictures decoded at the size the model needs, then transformed."""

    def __init__(
        self, samples: Sequence[Sample], transform: Callable[[Any], torch.Tensor], min_side: int
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Item:
        sample = self.samples[index]
        try:
            image = load_rgb(sample.path, self.min_side)
        except ImageProblem as problem:
            return LoadFailure(sample.path, str(problem))
        return self.transform(image), sample.label


@dataclass
class Batch:
    images: torch.Tensor | None
    labels: torch.Tensor | None
    failures: list[LoadFailure]


def collate(items: list[Item]) -> Batch:
    good = [item for item in items if not isinstance(item, LoadFailure)]
    failures = [item for item in items if isinstance(item, LoadFailure)]
    if not good:
        return Batch(None, None, failures)
    return Batch(
        torch.stack([image for image, _ in good]),
        torch.tensor([label for _, label in good], dtype=torch.long),
        failures,
    )


def default_workers() -> int:
    """Leave one core to the training step and the user's desktop."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def make_loader(
    dataset: ImageDataset,
    batch_size: int,
    shuffle: bool,
    workers: int,
    seed: int,
    pin_memory: bool = False,
) -> DataLoader[Item]:
    generator = torch.Generator().manual_seed(seed)
    # A final batch of one breaks trainable BatchNorm; drop it only in that case.
    drop_last = shuffle and len(dataset) > batch_size and len(dataset) % batch_size == 1
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=collate,
        generator=generator,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        drop_last=drop_last,
    )
