"""Engine layer: what a trained model makes of every picture of a class-per-folder
dataset, as per-picture records (the CLI's ``review``).

The dataset need not be the one the model was trained on: its classes are matched
to the model's by name, and a picture of a class the model does not know keeps its
folder's name with ``true`` set to -1 (no loss, never correct).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional

from ..errors import DatasetError
from ..evaluation import forward_within_memory
from ..export import LoadedModel
from ..inspection import Sample, inspect_dataset
from ..loading import Batch, ImageDataset, default_workers, make_loader
from ..preprocessing import eval_transform
from .records import Predictions

BATCH_SIZE = 32


@dataclass(frozen=True)
class Review:
    predictions: Predictions  # ``true`` indexes the model's classes, -1 if it has none
    folder_classes: tuple[str, ...]  # each picture's class folder, by name
    unreadable: tuple[str, ...]  # pictures skipped: not pictures, or broken


def review_steps(
    loaded: LoadedModel,
    dataset: str | Path,
    cancel: threading.Event | None = None,
    workers: int | None = None,
) -> Generator[tuple[int, int], None, Review | None]:
    """Classify every usable picture of ``dataset``, yielding (batches done, batches);
    None when cancelled."""
    report = inspect_dataset(dataset, 0.2, 0, min_classes=1)
    if not report.train and not report.val:
        raise DatasetError(f"No usable pictures in {report.root}.")
    index = {name: i for i, name in enumerate(loaded.class_names)}
    samples = [
        Sample(os.path.abspath(s.path), index.get(report.classes[s.label], -1))
        for s in (*report.train, *report.val)
    ]
    folder_of = {
        os.path.abspath(s.path): report.classes[s.label] for s in (*report.train, *report.val)
    }
    pre = loaded.preprocessing
    dataset_of = ImageDataset(samples, eval_transform(pre), pre)
    loader = make_loader(
        dataset_of, BATCH_SIZE, False, default_workers() if workers is None else workers, 0
    )
    model = loaded.model.eval()
    device = next(model.parameters()).device
    paths: list[str] = []
    true: list[torch.Tensor] = []
    log_p: list[torch.Tensor] = []
    unreadable = [s.path for s in report.skipped]
    batch: Batch
    for done, batch in enumerate(loader, start=1):
        if cancel is not None and cancel.is_set():
            return None
        unreadable += [failure.path for failure in batch.failures]
        if batch.images is not None and batch.labels is not None:
            with torch.inference_mode():
                logits = forward_within_memory(model, batch.images.to(device), device, None)
            log_p.append(functional.log_softmax(logits.float(), 1).cpu())
            true.append(batch.labels)
            paths += [samples[i].path for i in batch.indices]
        yield done, len(loader)
    return Review(
        _predictions(paths, true, log_p, len(loaded.class_names)),
        tuple(folder_of[p] for p in paths),
        tuple(unreadable),
    )


def _predictions(
    paths: list[str], true: list[torch.Tensor], log_p: list[torch.Tensor], classes: int
) -> Predictions:
    if not paths:
        return Predictions.empty(classes)
    return Predictions.from_log_probabilities(
        paths, torch.cat(true).numpy(), torch.cat(log_p).numpy()
    )
