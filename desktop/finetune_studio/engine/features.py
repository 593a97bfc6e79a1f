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

import threading
from collections import deque
from collections.abc import Generator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from .devices import autocast
from .feature_store import FeatureStore, StoredFeatures
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


MAX_STREAMS = 4
"""Batches computed at once on the CPU; each holds its own activations in memory."""


def cpu_streams(device: torch.device, threads: int) -> tuple[int, int]:
    """How the frozen pass splits the CPU threads: (batches at once, threads each).

    A convolution run on several threads waits for the slowest of them after every
    layer; while decoding workers (or any other program) take a core, one of those
    threads keeps stalling all the others. Whole batches on single threads share the
    cores without waiting for one another, and compute exactly the same numbers (a
    batch's result does not depend on how many threads computed it).
    """
    if device.type != "cpu" or threads < 2:
        return 1, max(1, threads)
    streams = min(MAX_STREAMS, threads)
    return streams, threads // streams


class _FrozenForward:
    """Runs the network on one batch up to the cut and returns the captured input;
    callable from several threads at once (the capture is per thread)."""

    def __init__(
        self,
        model: nn.Module,
        split: FeatureSplit,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        threads: int | None,
    ) -> None:
        self.model, self.device, self.amp_dtype, self.threads = model, device, amp_dtype, threads
        self._local = threading.local()
        module = model.get_submodule(split.capture_path)
        self.handle = module.register_forward_pre_hook(self._hook)

    def _hook(self, _: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self._local.captured = inputs[0].detach().float().cpu()
        raise _Captured

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.threads is not None:
            # OpenMP's thread count is per calling thread: set it where the work runs.
            torch.set_num_threads(self.threads)
        # Inference mode and autocast are per thread too: entered here, not by the caller.
        with torch.inference_mode(), autocast(self.device, self.amp_dtype):
            try:
                self.model(images)
            except _Captured:
                captured: torch.Tensor = self._local.captured
                del self._local.captured
                return captured
        raise RuntimeError("the network never reached the feature cut")


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
    that loaded, and the failures.

    On the CPU, batches are computed several at once on single threads
    (``cpu_streams``); the features are the same as one batch at a time.
    """
    threads = torch.get_num_threads()
    streams, per_stream = cpu_streams(device, threads)
    forward = _FrozenForward(model, split, device, amp_dtype, per_stream if streams > 1 else None)
    was_training = model.training
    model.eval()
    pool = ThreadPoolExecutor(streams, thread_name_prefix="features") if streams > 1 else None
    pending: deque[_Pending] = deque()
    kept = _Rows(len(loader.dataset))  # type: ignore[arg-type]
    failures: list[LoadFailure] = []
    done, total = 0, len(loader.dataset)  # type: ignore[arg-type]
    batch: Batch
    try:
        for batch in loader:
            if cancel is not None and cancel.is_set():
                break
            failures += batch.failures
            work: Future[torch.Tensor] | torch.Tensor | None = None
            if batch.images is not None and batch.labels is not None:
                images = batch.images.to(device, non_blocking=True)
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                work = pool.submit(forward, images) if pool else forward(images)
            pending.append(_Pending(work, batch.indices, len(batch.failures) + len(batch.indices)))
            if pool is not None and len(pending) <= streams:
                continue  # keep ``streams`` batches in flight
            done += pending.popleft().collect(kept)
            yield done, total
        while pending and not (cancel is not None and cancel.is_set()):
            done += pending.popleft().collect(kept)
            yield done, total
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(threads)
        forward.handle.remove()
        model.train(was_training)
    return Extracted(kept.by_index(), failures)


class _Rows:
    """Features in one buffer, filled batch by batch: no list of batches joined at the
    end, which held every feature twice at once (50,000 pictures of 1,280 floats: 2 x 256 MB)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.buffer: torch.Tensor | None = None
        self.indices: list[int] = []

    def add(self, features: torch.Tensor, indices: list[int]) -> None:
        if self.buffer is None:
            self.buffer = torch.empty((self.capacity, *features.shape[1:]), dtype=features.dtype)
        start = len(self.indices)
        self.buffer[start : start + len(features)] = features
        self.indices += indices

    def by_index(self) -> dict[int, torch.Tensor]:
        """Dataset index -> feature: views of the buffer."""
        if self.buffer is None:
            return {}
        return dict(zip(self.indices, self.buffer[: len(self.indices)]))


@dataclass
class _Pending:
    """A batch handed to the network, in loader order: its features (or the work that
    computes them; None when none of its pictures loaded), and which pictures."""

    work: Future[torch.Tensor] | torch.Tensor | None
    indices: list[int]
    pictures: int  # loaded and failed: what progress counts

    def collect(self, kept: _Rows) -> int:
        if self.work is not None:
            kept.add(
                self.work.result() if isinstance(self.work, Future) else self.work, self.indices
            )
        return self.pictures


def feature_batches(
    features: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    shuffle: bool,
    seed: int,
    rows: torch.Tensor | None = None,
) -> DataLoader[object]:
    """Batches of cached features, in the same order a picture loader with the same
    seed would give; a batch's ``indices`` are positions in ``labels``.

    With ``rows``, picture ``i``'s feature is ``features[rows[i]]``: ``features`` may
    then be a whole store file's memory-mapped matrix, read batch by batch, not
    copied (see ``FeatureTable``). Without, it is ``features[i]``."""
    from torch.utils.data import TensorDataset

    count = len(labels)
    where = rows if rows is not None else torch.arange(count)

    def collate(items: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> Batch:
        picked = torch.stack([row for row, _, _ in items])
        return Batch(
            features[picked],
            torch.stack([y for _, y, _ in items]),
            [],
            [int(position) for _, _, position in items],
        )

    return DataLoader(
        TensorDataset(where, labels, torch.arange(count)),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=collate,
        drop_last=shuffle and drops_last(count, batch_size),
    )


@dataclass(frozen=True)
class FeatureTable:
    """The features of a run's pictures that loaded, without a copy of them: row
    ``positions[i]`` of ``matrix`` is the feature of the picture at dataset index
    ``indices[i]``, whose label is ``labels[i]``. ``matrix`` is the feature store's
    memory-mapped file when it holds every one of them, else the features in memory."""

    matrix: torch.Tensor
    positions: torch.Tensor
    labels: torch.Tensor
    indices: list[int]

    def __len__(self) -> int:
        return len(self.indices)

    def subset(self, keep: torch.Tensor) -> FeatureTable:
        """The pictures where ``keep`` (a boolean mask over this table) is set."""
        chosen = [index for index, kept in zip(self.indices, keep.tolist()) if kept]
        return FeatureTable(self.matrix, self.positions[keep], self.labels[keep], chosen)

    def gathered(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels as plain tensors, one row per picture: a copy, for the
        solvers that need every feature at once (``head_fit``)."""
        return self.matrix[self.positions], self.labels

    def batches(self, batch_size: int, shuffle: bool, seed: int) -> DataLoader[object]:
        """Batches as ``feature_batches`` gives them, read from ``matrix`` as they go."""
        return feature_batches(self.matrix, self.labels, batch_size, shuffle, seed, self.positions)


def feature_table(
    keys: Sequence[str | None],
    labels: Sequence[int],
    computed: Mapping[int, torch.Tensor],
    stored: StoredFeatures | None,
    store: FeatureStore | None = None,
    model_key: str | None = None,
) -> FeatureTable:
    """The table of a run's pictures (by dataset index: ``keys[i]`` and ``labels[i]``)
    from the features it ``computed`` and those already ``stored``. With ``store`` and
    ``model_key``, the computed ones are saved first; when the store file then holds
    every picture the table maps it, so the computed copy can go. Otherwise (no store,
    over its budget, a picture without a file key, another run's save in between) the
    table holds the features in memory, as before there was a mapping."""
    if store is not None and model_key is not None and computed:
        fresh = {key: computed[i] for i, key in enumerate(keys) if key and i in computed}
        if store.save(model_key, fresh):
            reopened = store.open(model_key)
            wanted = [
                key
                for i, key in enumerate(keys)
                if i in computed or (stored and key in stored.rows)
            ]
            if reopened is not None and all(key in reopened.rows for key in wanted):
                stored = reopened  # else evicted or replaced meanwhile: keep what is in hand
    indices = [i for i, key in enumerate(keys) if i in computed or (stored and key in stored.rows)]
    label_tensor = torch.tensor([labels[i] for i in indices], dtype=torch.long)
    if stored is not None and all(keys[i] in stored.rows for i in indices):
        positions = torch.tensor([stored.rows[str(keys[i])] for i in indices], dtype=torch.long)
        return FeatureTable(stored.matrix, positions, label_tensor, indices)
    if not indices:
        return FeatureTable(torch.empty(0), torch.empty(0, dtype=torch.long), label_tensor, [])

    def feature(index: int) -> torch.Tensor:
        if index in computed or stored is None:
            return computed[index]
        return stored.matrix[stored.rows[str(keys[index])]]

    matrix = torch.stack([feature(i) for i in indices])
    return FeatureTable(matrix, torch.arange(len(indices)), label_tensor, indices)
