"""Long engine calls a window runs in the background: progress a window can afford,
and a cancel that stops the work between pictures."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from finetune_studio.engine import inspection
from finetune_studio.engine.inspection import (
    PROGRESS_STEPS,
    ScanCancelled,
    inspect_dataset,
    validate_images,
)
from finetune_studio.engine.predict import Predictor
from finetune_studio.engine.scan import scan_folder
from support.tiny import TINY_PREPROCESSING, TinyNet

WORKERS = 4


def test_checking_10000_pictures_reports_progress_about_100_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inspection, "inspect_image", lambda path: None)
    paths = [Path(f"picture_{i:05d}.png") for i in range(10_000)]
    reports: list[tuple[int, int]] = []

    good, skipped = validate_images(paths, lambda d, t: reports.append((d, t)), WORKERS)

    assert len(good) == 10_000 and skipped == []
    assert reports[0] == (0, 10_000) and reports[-1] == (10_000, 10_000)
    assert len(reports) <= PROGRESS_STEPS + 1
    assert [done for done, _ in reports] == sorted({done for done, _ in reports})


def test_a_cancelled_check_stops_opening_pictures_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cancel = threading.Event()
    opened: list[Path] = []
    lock = threading.Lock()

    def opening(path: Path) -> None:
        with lock:
            opened.append(path)
            if len(opened) == 50:
                cancel.set()  # the user picks another folder while picture 50 is opened

    monkeypatch.setattr(inspection, "inspect_image", opening)
    paths = [Path(f"picture_{i:05d}.png") for i in range(10_000)]

    with pytest.raises(ScanCancelled):
        validate_images(paths, workers=WORKERS, cancel=cancel)
    opened_when_it_returned = len(opened)

    # Only pictures already being opened (one per worker) finished; the 9,900 queued
    # checks returned without opening anything, and nothing runs on afterwards.
    assert opened_when_it_returned <= 50 + WORKERS
    assert len(opened) == opened_when_it_returned


def test_inspect_dataset_checks_cancel_while_walking_and_while_opening(
    colour_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ScanCancelled):
        scan_folder(colour_dataset, cancel)

    opened: list[Path] = []
    monkeypatch.setattr(inspection, "inspect_image", opened.append)
    with pytest.raises(ScanCancelled):
        inspect_dataset(colour_dataset, cancel=cancel)
    assert opened == []


def test_an_uncancelled_check_is_unchanged_by_the_cancel_token(colour_dataset: Path) -> None:
    plain = inspect_dataset(colour_dataset)
    with_token = inspect_dataset(colour_dataset, cancel=threading.Event())
    assert with_token == plain and len(plain.train) + len(plain.val) == 36


@pytest.fixture
def predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(TinyNet(3), ("blue", "green", "red"), TINY_PREPROCESSING)


def pictures(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/*.png"))


def test_predictions_report_progress_per_batch_and_end_at_the_total(
    predictor: Predictor, colour_dataset: Path
) -> None:
    paths = pictures(colour_dataset)
    reports: list[tuple[int, int]] = []

    predictions = predictor.predict(
        paths, batch_size=8, progress=lambda d, t: reports.append((d, t))
    )

    assert predictions == predictor.predict(paths, batch_size=8)
    assert reports == [(0, 36), (8, 36), (16, 36), (24, 36), (32, 36), (36, 36)]


def test_cancelled_predictions_return_those_made_so_far(
    predictor: Predictor, colour_dataset: Path
) -> None:
    paths = pictures(colour_dataset)
    cancel = threading.Event()
    reports: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        reports.append((done, total))
        if done >= 8:
            cancel.set()

    predictions = predictor.predict(paths, batch_size=4, progress=progress, cancel=cancel)

    assert [p.path for p in predictions] == [str(p) for p in paths[:8]]
    assert predictions == predictor.predict(paths[:8], batch_size=4)
    assert reports[-1] == (8, 36)
