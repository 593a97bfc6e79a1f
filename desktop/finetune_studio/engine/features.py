"""Engine layer: train the head on cached features when everything below it is frozen.

With the backbone frozen (the default "head only"), the network up to the head is a
fixed function of each picture. Running it once per picture, instead of once per
picture per epoch, is most of the speed a desktop user can get.

The cut is made at the *head block*: the head plus the parameter-free modules just
before it in the same ``nn.Sequential`` (EfficientNet's and MobileNet's dropout),
so those still act during training exactly as without the cache. The cache is only
used when that makes no difference: no trainable parameter and no active dropout
or stochastic depth outside the head block.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from .devices import autocast
from .loading import Batch, LoadFailure, drops_last

_STOCHASTIC = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


@dataclass(frozen=True)
class FeatureSplit:
    capture_path: str  # the module whose *input* is cached
    head_block_paths: tuple[str, ...]  # modules run on the cached features, in order

    def head_block(self, model: nn.Module) -> nn.Module:
        modules = [model.get_submodule(p) for p in self.head_block_paths]
        return modules[0] if len(modules) == 1 else nn.Sequential(*modules)


def find_feature_split(model: nn.Module, head_path: str) -> FeatureSplit:
    parent_path, _, name = head_path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    if not isinstance(parent, nn.Sequential):
        return FeatureSplit(head_path, (head_path,))
    names = [child for child, _ in parent.named_children()]
    start = names.index(name)
    while start > 0 and not any(True for _ in parent.get_submodule(names[start - 1]).parameters()):
        start -= 1
    paths = tuple(
        f"{parent_path}.{n}" if parent_path else n for n in names[start : names.index(name) + 1]
    )
    return FeatureSplit(paths[0], paths)


def _is_stochastic(module: nn.Module) -> bool:
    probability = getattr(module, "p", 0.0)
    if isinstance(module, _STOCHASTIC):
        return module.training and probability > 0
    return type(module).__name__ == "StochasticDepth" and module.training and probability > 0


def cache_blocker(model: nn.Module, split: FeatureSplit) -> str | None:
    """Why cached features would change the run, or None when they would not.

    Call with the model in its training state (after ``hold_frozen_modules``).
    """
    inside = set(split.head_block_paths)

    def in_head_block(name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in inside)

    for name, parameter in model.named_parameters():
        if parameter.requires_grad and not in_head_block(name):
            return "layers other than the head are trainable"
    for name, module in model.named_modules():
        if not in_head_block(name) and _is_stochastic(module):
            return f"{name} ({type(module).__name__}) is active outside the head"
    return None


@dataclass
class Extracted:
    features: dict[int, torch.Tensor]  # dataset index -> feature
    failures: list[LoadFailure]


class _Captured(Exception):
    """Raised by the hook to stop the forward pass once the features are in hand."""


def extract_features(
    model: nn.Module,
    split: FeatureSplit,
    loader: DataLoader[object],
    device: torch.device,
    channels_last: bool,
    cancel: threading.Event | None = None,
    amp_dtype: torch.dtype | None = None,
) -> Generator[tuple[int, int], None, Extracted]:
    """Run the frozen network over ``loader`` (unshuffled) and keep the head block's
    input. Yields (done, total) after each batch; returns the features of the pictures
    that loaded, and the failures."""
    captured: list[torch.Tensor] = []

    def hook(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        captured.append(inputs[0].detach().float().cpu())
        raise _Captured

    handle = model.get_submodule(split.capture_path).register_forward_pre_hook(hook)
    was_training = model.training
    model.eval()
    indices: list[int] = []
    failures: list[LoadFailure] = []
    done, total = 0, len(loader.dataset)  # type: ignore[arg-type]
    batch: Batch
    try:
        for batch in loader:
            if cancel is not None and cancel.is_set():
                break
            done += len(batch.failures) + len(batch.indices)
            failures += batch.failures
            if batch.images is not None and batch.labels is not None:
                images = batch.images.to(device, non_blocking=True)
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                with (
                    torch.inference_mode(),
                    autocast(device, amp_dtype),
                    contextlib.suppress(_Captured),
                ):
                    model(images)
                indices += batch.indices
            yield done, total
    finally:
        handle.remove()
        model.train(was_training)
    features = torch.cat(captured) if captured else torch.empty(0)
    return Extracted(dict(zip(indices, features)), failures)


def feature_batches(
    features: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    shuffle: bool,
    seed: int,
) -> DataLoader[object]:
    """Batches of cached features, in the same order a picture loader with the same
    seed would give; a batch's ``indices`` are rows of ``features``."""
    from torch.utils.data import TensorDataset

    def collate(items: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> Batch:
        return Batch(
            torch.stack([f for f, _, _ in items]),
            torch.stack([y for _, y, _ in items]),
            [],
            [int(row) for _, _, row in items],
        )

    return DataLoader(
        TensorDataset(features, labels, torch.arange(len(labels))),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=collate,
        drop_last=shuffle and drops_last(len(labels), batch_size),
    )
