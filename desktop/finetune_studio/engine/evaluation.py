"""Engine layer: loss, accuracy and the confusion matrix on a data loader.

``evaluation_steps`` is a cancellable generator: it yields ``(done, total)``
batches and returns the ``Evaluation``. Given the pictures' paths, it also keeps what
the model made of each picture (``review.records.Predictions``), which the model
folder stores as ``predictions.csv`` and the Results step's gallery shows.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional
from torch.utils.data import DataLoader

from .devices import autocast
from .loading import Batch
from .review.records import Predictions


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    images: int
    confusion: list[list[int]]  # confusion[true][predicted]
    failures: list[str] = field(default_factory=list)
    predictions: Predictions | None = field(default=None, compare=False)

    @property
    def per_class_accuracy(self) -> list[float | None]:
        return [row[i] / sum(row) if sum(row) else None for i, row in enumerate(self.confusion)]


def forward_within_memory(
    model: nn.Module, images: torch.Tensor, device: torch.device, amp_dtype: torch.dtype | None
) -> torch.Tensor:
    """Logits for a batch, split into ever smaller slices if memory runs out."""
    slices = 1
    while True:
        try:
            with autocast(device, amp_dtype):
                return torch.cat([model(part).float() for part in images.chunk(slices)])
        except torch.OutOfMemoryError:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if slices >= len(images):
                raise
            slices *= 2


def evaluation_steps(
    model: nn.Module,
    loader: DataLoader[object],
    device: torch.device,
    num_classes: int,
    criterion: nn.Module | None = None,
    channels_last: bool = False,
    cancel: threading.Event | None = None,
    amp_dtype: torch.dtype | None = None,
    paths: Sequence[str] | None = None,
) -> Generator[tuple[int, int], None, Evaluation]:
    """Evaluate batch by batch, yielding ``(batches done, batches)``; a cancel ends it
    early with what was seen so far. ``paths[i]`` names the picture a batch calls
    index ``i``; with them the evaluation keeps every picture's prediction."""
    was_training = model.training
    model.eval()
    criterion = criterion or nn.CrossEntropyLoss()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss_sum, seen = 0.0, 0
    failures: list[str] = []
    kept = _Kept() if paths is not None else None
    batch: Batch
    for index, batch in enumerate(loader, start=1):
        if cancel is not None and cancel.is_set():
            break
        failures += [f.path for f in batch.failures]
        if batch.images is not None and batch.labels is not None:
            with torch.inference_mode():
                logits = _logits(model, batch.images, device, channels_last, amp_dtype)
                labels = batch.labels.to(device)
                loss_sum += float(criterion(logits, labels)) * len(labels)
            seen += len(labels)
            if kept is not None and paths is not None:
                kept.add(logits, batch.labels, [paths[i] for i in batch.indices])
            predicted = logits.argmax(1).cpu()
            confusion.index_put_(
                (batch.labels, predicted), torch.ones_like(predicted), accumulate=True
            )
        yield index, len(loader)
    model.train(was_training)
    correct = int(confusion.diagonal().sum())
    return Evaluation(
        loss=loss_sum / seen if seen else float("nan"),
        accuracy=correct / seen if seen else float("nan"),
        images=seen,
        confusion=confusion.tolist(),
        failures=failures,
        predictions=kept.predictions(num_classes) if kept is not None else None,
    )


class _Kept:
    """Per-picture log-probabilities, gathered batch by batch."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.true: list[torch.Tensor] = []
        self.log_p: list[torch.Tensor] = []

    def add(self, logits: torch.Tensor, labels: torch.Tensor, paths: list[str]) -> None:
        self.paths += [os.path.abspath(path) for path in paths]  # valid from any folder
        self.true.append(labels.cpu())
        self.log_p.append(functional.log_softmax(logits.float(), dim=1).cpu())

    def predictions(self, classes: int) -> Predictions:
        if not self.paths:
            return Predictions.empty(classes)
        return Predictions.from_log_probabilities(
            self.paths, torch.cat(self.true).numpy(), torch.cat(self.log_p).numpy()
        )


def _logits(
    model: nn.Module,
    images: torch.Tensor,
    device: torch.device,
    channels_last: bool,
    amp_dtype: torch.dtype | None,
) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return forward_within_memory(model, images, device, amp_dtype)
