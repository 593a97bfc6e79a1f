"""Loaders: worker processes that start safely, decoded pictures shared, not copied."""

from __future__ import annotations

import threading
import time
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import torch

from finetune_studio.engine import loading
from finetune_studio.engine.inspection import inspect_dataset
from finetune_studio.engine.loading import (
    DecodedPictures,
    ImageDataset,
    decode_pictures,
    make_loader,
)
from finetune_studio.engine.preprocessing import Preprocessing, eval_transform
from support.tiny import TINY_PREPROCESSING, make_colour_dataset

APP_LOCK = threading.Lock()
"""Stands for any lock of the app's other threads (Qt's, logging's, an allocator's)."""


class NeedsTheAppLock:
    """A transform that takes ``APP_LOCK``, as library code in a worker may."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def __call__(self, image: object) -> torch.Tensor:
        if not APP_LOCK.acquire(timeout=2):
            return torch.zeros(0)  # a forked copy of a lock another thread held
        APP_LOCK.release()
        return self.inner(image)  # type: ignore[operator]


def test_workers_start_safely_while_another_thread_holds_a_lock(tmp_path: Path) -> None:
    # A forked worker inherits every lock in the state it had at the fork, and the
    # thread that held it does not exist in the worker: the lock is held forever.
    report = inspect_dataset(make_colour_dataset(tmp_path, per_class=2))
    transform = NeedsTheAppLock(eval_transform(TINY_PREPROCESSING))
    dataset = ImageDataset(report.train, transform, TINY_PREPROCESSING)
    loader = make_loader(dataset, batch_size=len(dataset), shuffle=False, workers=1, seed=0)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with APP_LOCK:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        iterator = iter(loader)  # the worker starts while the lock is held
    finally:
        release.set()
        holder.join(10)
    batch = next(iterator)
    del iterator, loader

    assert batch.images is not None and batch.images.shape == (len(dataset), 3, 32, 32)


def decoded_dataset(tmp_path: Path, pre: Preprocessing) -> ImageDataset:
    report = inspect_dataset(make_colour_dataset(tmp_path, per_class=4, size=160))
    decoded = DecodedPictures()
    list(decode_pictures(report.train, pre, 1 << 30, decoded))
    return ImageDataset(report.train, eval_transform(pre), pre, decoded)


def test_decoded_pictures_cross_to_workers_without_being_copied(tmp_path: Path) -> None:
    pre = Preprocessing(128, 112, (0.5,) * 3, (0.25,) * 3)
    dataset = decoded_dataset(tmp_path, pre)
    pictures = len(dataset.decoded) * 128 * 128 * 3
    assert len(dataset.decoded) == len(dataset) and pictures > 300_000

    loader = make_loader(dataset, batch_size=4, shuffle=False, workers=1, seed=0)
    sent = len(ForkingPickler.dumps(dataset))  # what each worker receives
    assert sent < pictures / 20

    from_workers = torch.cat([batch.images for batch in loader])
    dataset.decoded.share_memory()
    from_here = torch.stack([dataset[i][0] for i in range(len(dataset))])
    assert torch.equal(from_workers, from_here)


def test_decoded_pictures_are_the_pictures_decoded_on_demand(tmp_path: Path) -> None:
    report = inspect_dataset(make_colour_dataset(tmp_path, per_class=3))
    decoded = DecodedPictures()
    list(decode_pictures(report.train, TINY_PREPROCESSING, 1 << 30, decoded))
    on_demand = ImageDataset(report.train, eval_transform(TINY_PREPROCESSING), TINY_PREPROCESSING)
    from_cache = ImageDataset(
        report.train, eval_transform(TINY_PREPROCESSING), TINY_PREPROCESSING, decoded
    )
    for index in range(len(on_demand)):
        assert torch.equal(on_demand[index][0], from_cache[index][0])


def test_decoding_stops_once_the_budget_is_full(tmp_path: Path, monkeypatch) -> None:
    report = inspect_dataset(make_colour_dataset(tmp_path, per_class=70, size=36))
    calls: list[str] = []
    real_load = loading.load_for_model

    def counted(path: object, *args: object) -> object:
        calls.append(str(path))
        time.sleep(0.01)  # a picture takes a while to decode
        return real_load(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(loading, "load_for_model", counted)
    decoded = DecodedPictures()
    one_picture = 36 * 36 * 3
    progress = list(decode_pictures(report.train, TINY_PREPROCESSING, 3 * one_picture, decoded))

    assert len(decoded) == 3
    assert progress[-1] == (len(report.train), len(report.train))  # still reports the end
    assert len(calls) < len(report.train) // 2  # not every picture decoded and dropped
