"""Worker processes started afresh ("spawn": Windows, macOS, the frozen app)."""

from __future__ import annotations

import multiprocessing
import pickle
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path

import pytest
import torch

from finetune_studio.engine import diagnostics
from finetune_studio.engine.errors import WorkerProcessError
from finetune_studio.engine.inspection import inspect_dataset
from finetune_studio.engine.loading import ImageDataset, decode_pictures
from finetune_studio.engine.preprocessing import (
    AUGMENTATION_PRESETS,
    Preprocessing,
    train_transform,
)
from support.tiny import make_colour_dataset

PRE = Preprocessing(resize_size=36, crop_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)


def test_spawned_worker_processes_deliver_every_batch() -> None:
    diagnostics.check_worker_processes("spawn")


class _RefusingProcess(SpawnProcess):
    def start(self) -> None:
        raise OSError("simulated: the program cannot be started again")


class _RefusingContext(SpawnContext):
    Process = _RefusingProcess


def test_workers_that_cannot_start_are_reported_with_the_way_out(monkeypatch) -> None:
    monkeypatch.setattr(multiprocessing, "get_context", lambda method: _RefusingContext())
    with pytest.raises(WorkerProcessError) as raised:
        diagnostics.check_worker_processes("spawn", timeout_s=10)
    assert "cannot be started again" in str(raised.value)
    assert "--workers 0" in str(raised.value)


@pytest.mark.parametrize("augmentation", AUGMENTATION_PRESETS)
def test_the_training_dataset_survives_the_trip_to_a_spawned_worker(
    tmp_path: Path, augmentation: str
) -> None:
    # A spawned worker receives the dataset pickled; whether the decoded pictures travel
    # with it or are decoded again there, it must hand out the same tensors.
    report = inspect_dataset(make_colour_dataset(tmp_path, per_class=4))
    decoded: dict = {}
    list(decode_pictures(report.train, PRE, 1 << 30, decoded))
    dataset = ImageDataset(report.train, train_transform(PRE, augmentation), PRE, decoded)

    copy = pickle.loads(pickle.dumps(dataset))

    assert len(copy) == len(dataset) == len(report.train)
    for index in range(len(dataset)):
        torch.manual_seed(index)
        picture, label, _ = dataset[index]
        torch.manual_seed(index)
        copied_picture, copied_label, _ = copy[index]
        assert label == copied_label and torch.equal(picture, copied_picture)
