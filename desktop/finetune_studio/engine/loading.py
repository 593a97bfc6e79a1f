"""Engine layer: torch datasets and loaders over a ``DatasetReport``'s samples.

A picture that vanished or broke after the dataset was inspected is skipped, not
fatal: the dataset returns a ``LoadFailure`` in its place and the collate function
drops it from the batch, handing the failure on so the trainer can count it.

Worker processes are started with forkserver (spawn where there is none), never
forked from the calling process: the window and the CLI both run threads, and a fork
copies their locks in whatever state they are in (a rare "worker exited
unexpectedly" during a paint event). Those workers receive the dataset pickled, so
decoded pictures live in a few shared-memory tensors (``DecodedPictures``) that
cross to them as handles, not as copies.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from .images import MIN_SIDE, ImageProblem, inspect_image, load_for_model
from .in_process_loader import InProcessLoader
from .inspection import Sample
from .preprocessing import Preprocessing

CHECK_SIDE = MIN_SIDE * 8
"""The short side ``images.inspect_image`` decodes JPEGs at (at least)."""


@dataclass(frozen=True)
class LoadFailure:
    path: str
    reason: str


Item = tuple[torch.Tensor, int, int] | LoadFailure  # (picture, label, dataset index)


class DecodedPictures(MutableMapping[int, Image.Image]):
    """Decoded RGB pictures by dataset index, packed into a few large uint8 tensors.

    Why tensors: spawned and forkserver workers receive the dataset pickled, and torch
    sends a tensor to them as a shared-memory handle (``torch.multiprocessing``'s
    reductions) where Pillow pictures would be copied into every worker. Why a few
    large ones (chunks up to 64 MiB): each shared tensor costs a file descriptor per
    worker; one per picture would run out of them on a large dataset.
    """

    FIRST_CHUNK_BYTES = 1 << 20
    LARGEST_CHUNK_BYTES = 64 << 20

    def __init__(self) -> None:
        self._chunks: list[torch.Tensor] = []
        self._free = 0  # unused bytes at the end of the last chunk
        self._where: dict[int, tuple[int, int, int, int]] = {}  # chunk, offset, height, width

    def __len__(self) -> int:
        return len(self._where)

    def __iter__(self) -> Iterator[int]:
        return iter(self._where)

    def __contains__(self, index: object) -> bool:
        return index in self._where

    def __getitem__(self, index: int) -> Image.Image:
        chunk, offset, height, width = self._where[index]
        pixels = self._chunks[chunk][offset : offset + height * width * 3]
        return Image.fromarray(pixels.view(height, width, 3).numpy(), "RGB")

    def __setitem__(self, index: int, image: Image.Image) -> None:
        pixels = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        size = pixels.size
        if size > self._free:
            self._add_chunk(size)
        chunk = self._chunks[-1]
        offset = len(chunk) - self._free
        chunk[offset : offset + size].numpy()[:] = pixels.reshape(-1)
        self._free -= size
        self._where[index] = (len(self._chunks) - 1, offset, pixels.shape[0], pixels.shape[1])

    def __delitem__(self, index: int) -> None:
        del self._where[index]  # the bytes stay until the whole cache goes

    def _add_chunk(self, at_least: int) -> None:
        """A new chunk, twice the last one (up to the largest), so a small dataset does
        not reserve 64 MiB and a large one does not make thousands of chunks."""
        self._seal()
        previous = len(self._chunks[-1]) if self._chunks else self.FIRST_CHUNK_BYTES // 2
        size = max(at_least, min(2 * previous, self.LARGEST_CHUNK_BYTES))
        self._chunks.append(torch.empty(size, dtype=torch.uint8))
        self._free = size

    def _seal(self) -> None:
        """Give back the unused end of the last chunk; later pictures go to a new one."""
        if self._chunks and self._free:
            last = self._chunks[-1]
            self._chunks[-1] = last[: len(last) - self._free].clone()
            self._free = 0

    def view(self, positions: Mapping[int, int]) -> DecodedPictures:
        """The pictures at ``positions``' values, under its keys: the same memory, no copy."""
        self._seal()
        view = DecodedPictures()
        view._chunks = list(self._chunks)
        view._where = {new: self._where[old] for new, old in positions.items()}
        return view

    def share_memory(self) -> bool:
        """Move the pictures into shared memory, once, before workers start. False if
        the system refuses (a small /dev/shm): workers then get copies, as before."""
        self._seal()
        try:
            for chunk in self._chunks:
                chunk.share_memory_()  # type: ignore[no-untyped-call]
        except (RuntimeError, OSError):
            return False
        return True

    def __getstate__(self) -> dict[str, Any]:
        self._seal()
        return self.__dict__.copy()


class ImageDataset(Dataset[Item]):
    """Pictures decoded at the size the model needs, then transformed.

    ``decoded`` holds pictures decoded ahead of time (see ``decode_pictures``); the
    rest are decoded on demand, the same way. Any other mapping of pictures is packed
    into a ``DecodedPictures``, so what crosses to worker processes is always shared.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable[[Any], torch.Tensor],
        preprocessing: Preprocessing,
        decoded: Mapping[int, Image.Image] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.preprocessing = preprocessing
        self.short_side = preprocessing.resize_size
        self.interpolation = preprocessing.interpolation
        self.decoded = _as_decoded_pictures(decoded)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Item:
        sample = self.samples[index]
        if index in self.decoded:
            image = self.decoded[index]
        else:
            try:
                image = load_for_model(sample.path, self.short_side, self.interpolation)
            except ImageProblem as problem:
                return LoadFailure(sample.path, str(problem))
        return self.transform(image), sample.label, index


class PictureKeeper:
    """A run's check of its pictures that keeps each one as the model first sees it
    (``load_for_model``), within a memory budget, so the run does not open and decode
    every picture a second time. An ``inspection.PictureCheck``: called from the
    check's threads at once.

    It decodes at least as many pixels as ``inspect_image`` (at the model's size,
    never below the check's), so it rejects the same pictures; below that size the
    plain check runs first.
    """

    def __init__(self, preprocessing: Preprocessing, budget_bytes: int) -> None:
        self.preprocessing = preprocessing
        self._budget = budget_bytes
        self._used = 0
        self._pictures = DecodedPictures()
        self._position: dict[str, int] = {}  # path -> where in ``_pictures``
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> None:
        pre = self.preprocessing
        if pre.resize_size < CHECK_SIDE:
            inspect_image(path)
        image = load_for_model(path, pre.resize_size, pre.interpolation)
        size = image.width * image.height * 3
        with self._lock:
            if self._used + size <= self._budget:
                self._position[str(path)] = len(self._position)
                self._pictures[self._position[str(path)]] = image
                self._used += size

    def decoded(self, samples: Sequence[Sample]) -> DecodedPictures:
        """The kept pictures of ``samples``, by their positions in it (no copy)."""
        with self._lock:
            kept = {i: self._position.get(sample.path) for i, sample in enumerate(samples)}
            return self._pictures.view({i: at for i, at in kept.items() if at is not None})

    def forget(self) -> None:
        """Give the memory back once the run has what it needs."""
        with self._lock:
            self._pictures = DecodedPictures()
            self._position.clear()
            self._budget = self._used = 0


def _as_decoded_pictures(decoded: Mapping[int, Image.Image] | None) -> DecodedPictures:
    if isinstance(decoded, DecodedPictures):
        return decoded
    packed = DecodedPictures()
    for index, image in (decoded or {}).items():
        packed[index] = image
    return packed


def decode_pictures(
    samples: Sequence[Sample],
    preprocessing: Preprocessing,
    budget_bytes: int,
    decoded: MutableMapping[int, Image.Image],
    cancel: threading.Event | None = None,
) -> Iterator[tuple[int, int]]:
    """Decode pictures once, in parallel, into ``decoded`` (best a ``DecodedPictures``),
    until one no longer fits in ``budget_bytes``; the rest are decoded on demand.
    Yields (done, total) about a hundred times.

    Pillow releases the GIL while decoding and resizing, so threads scale. Once the
    budget is full, the remaining tasks return at once instead of decoding pictures
    only to throw them away.
    """
    full = threading.Event()

    def decode(index: int) -> tuple[int, Image.Image | None]:
        if full.is_set() or (cancel is not None and cancel.is_set()):
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
            if image is not None and not full.is_set():
                if used + size <= budget_bytes:
                    decoded[index] = image
                    used += size
                else:
                    full.set()
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


def worker_context() -> BaseContext:
    """How DataLoader workers start: forkserver where there is one (Linux, macOS), else
    spawn (Windows, and a frozen app, whose launcher handles spawn's re-entry).

    The fork server is itself started fresh and preloads torch and this module, so
    each worker forked from it starts in milliseconds, not in the seconds an import of
    torch takes under spawn.
    """
    frozen = bool(getattr(sys, "frozen", False))
    if frozen or "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    server = f"{__package__}.fork_server"  # ends it at once when the run ends
    context.set_forkserver_preload(["torch", "torchvision", __name__, server])
    return context


def start_worker_server() -> None:
    """Start the fork server now, without waiting for it.

    Its first start imports torch (about 3 s on two cores); called when a run begins,
    that happens while pictures are being decoded, not when the first loader waits.
    """
    if worker_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def make_loader(
    dataset: ImageDataset,
    batch_size: int,
    shuffle: bool,
    workers: int,
    seed: int,
    pin_memory: bool = False,
    sampler: Sampler[int] | Sequence[int] | None = None,
    in_process: bool = False,
) -> DataLoader[Item]:
    """Batches of ``dataset``; with ``workers`` > 0, read by worker processes started
    safely (``worker_context``), sharing the decoded pictures rather than copying them.

    Workers are not kept between epochs: a persistent worker's iterator skips the
    per-epoch seed draw from ``generator``, so from the second epoch on the shuffle
    would depend on the number of workers, and a resumed run (whose checkpoint holds
    the generator's state) would shuffle differently from an uninterrupted one.
    Restarting them from the fork server costs about 0.2 s per loader per epoch.

    A ``sampler`` (one process's share, under torchrun; a sequence of indices is
    read in its order) replaces ``shuffle``. With ``in_process`` and every picture
    decoded, no worker starts: the batches are made here, the same as ``workers``
    workers make them (``in_process_loader``).
    """
    generator = torch.Generator().manual_seed(seed)
    shown = len(dataset) if sampler is None else len(sampler)  # type: ignore[arg-type]
    drop_last = shuffle and drops_last(shown, batch_size)
    if in_process and sampler is None and workers > 0 and len(dataset.decoded) == len(dataset):
        return InProcessLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate,
            generator=generator, drop_last=drop_last, as_workers=workers,
        )  # fmt: skip
    context = None
    if workers > 0:
        context = worker_context()
        dataset.decoded.share_memory()
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else None,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        generator=generator,
        pin_memory=pin_memory,
        persistent_workers=False,
        drop_last=drop_last,
        multiprocessing_context=context,
    )
