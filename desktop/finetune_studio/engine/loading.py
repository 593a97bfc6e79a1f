"""Engine layer: torch datasets and loaders over a ``DatasetReport``'s samples.

A picture that vanished or broke after the dataset was inspected is skipped, not
fatal: the dataset returns a ``LoadFailure`` in its place and the collate function
drops it from the batch, handing the failure on so the trainer can count it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .inspection import Sample
from .images import ImageProblem, load_for_model
from .preprocessing import Preprocessing


@dataclass(frozen=True)
class LoadFailure:
    path: str
    reason: str


Item = tuple[torch.Tensor, int, int] | LoadFailure  # (picture, label, dataset index)


class ImageDataset(Dataset[Item]):
    """Pictures decoded at the size the model needs, then transformed.

    ``decoded`` holds pictures decoded ahead of time (see ``decode_pictures``); the
    rest are decoded on demand, the same way.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable[[Any], torch.Tensor],
        preprocessing: Preprocessing,
        decoded: dict[int, Image.Image] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.preprocessing = preprocessing
        self.short_side = preprocessing.resize_size
        self.interpolation = preprocessing.interpolation
        self.decoded = decoded or {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Item:
        sample = self.samples[index]
        image = self.decoded.get(index)
        if image is None:
            try:
                image = load_for_model(sample.path, self.short_side, self.interpolation)
            except ImageProblem as problem:
                return LoadFailure(sample.path, str(problem))
        return self.transform(image), sample.label, index


def decode_pictures(
    samples: Sequence[Sample],
    preprocessing: Preprocessing,
    budget_bytes: int,
    decoded: dict[int, Image.Image],
    cancel: threading.Event | None = None,
) -> Iterator[tuple[int, int]]:
    """Decode pictures once, in parallel, into ``decoded``, keeping as many as fit in
    ``budget_bytes``. Yields (done, total) about a hundred times.

    Pillow releases the GIL while decoding and resizing, so threads scale.
    """

    def decode(index: int) -> tuple[int, Image.Image | None]:
        if cancel is not None and cancel.is_set():
            return index, None
        try:
            image = load_for_model(
                samples[index].path, preprocessing.resize_size, preprocessing.interpolation
            )
        except ImageProblem:
            return index, None  # reported when the loader meets it
        return index, image

    used = 0
    step = max(1, len(samples) // 100)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        for done, (index, image) in enumerate(pool.map(decode, range(len(samples))), start=1):
            size = image.width * image.height * 3 if image is not None else 0
            if image is not None and used + size <= budget_bytes:
                decoded[index] = image
                used += size
            if done % step == 0 or done == len(samples):
                yield done, len(samples)


@dataclass
class Batch:
    images: torch.Tensor | None  # pictures, or cached features
    labels: torch.Tensor | None
    failures: list[LoadFailure]
    indices: list[int] = field(default_factory=list)  # dataset index of each row


def collate(items: list[Item]) -> Batch:
    good = [item for item in items if not isinstance(item, LoadFailure)]
    failures = [item for item in items if isinstance(item, LoadFailure)]
    if not good:
        return Batch(None, None, failures)
    return Batch(
        torch.stack([image for image, _, _ in good]),
        torch.tensor([label for _, label, _ in good], dtype=torch.long),
        failures,
        [index for _, _, index in good],
    )


def default_workers() -> int:
    """Leave one core to the training step and the user's desktop."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def drops_last(count: int, batch_size: int) -> bool:
    """A final training batch of one breaks trainable BatchNorm: drop it in that case only."""
    return count > batch_size and count % batch_size == 1


def make_loader(
    dataset: ImageDataset,
    batch_size: int,
    shuffle: bool,
    workers: int,
    seed: int,
    pin_memory: bool = False,
) -> DataLoader[Item]:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=collate,
        generator=generator,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        drop_last=shuffle and drops_last(len(dataset), batch_size),
    )
