"""Per-picture records: every evaluation keeps what the model made of each picture,
the model folder keeps them as predictions.csv, and a reopened run has them back."""

from __future__ import annotations

import csv
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from finetune_studio.engine.export import save_model_folder
from finetune_studio.engine.freezing import FreezePlan
from finetune_studio.engine.inspection import inspect_dataset
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.review.records import PREDICTIONS_FILE, read_records_csv
from finetune_studio.engine.runs import RunStore
from finetune_studio.engine.training import Trainer, TrainingResult
from support.runs import drain


def train(recipe: Recipe) -> TrainingResult:
    _, result = drain(Trainer(recipe).events())
    return result


@pytest.mark.parametrize("freeze", ["none", "head"])  # pictures, then cached features
def test_every_validation_picture_has_a_record_that_agrees_with_the_confusion_matrix(
    tiny_recipe: Recipe, freeze: str
) -> None:
    result = train(tiny_recipe.replace(freeze=FreezePlan(freeze)))
    report = inspect_dataset(tiny_recipe.dataset, tiny_recipe.val_fraction, tiny_recipe.seed)
    evaluation = result.evaluation
    assert evaluation is not None and evaluation.predictions is not None
    records = evaluation.predictions.records()

    assert sorted(r.path for r in records) == sorted(s.path for s in report.val)
    given = {s.path: s.label for s in report.val}
    assert all(r.true == given[r.path] for r in records)
    confusion = np.zeros_like(np.array(evaluation.confusion))
    for record in records:
        confusion[record.true, record.predicted] += 1
        assert math.isclose(sum(record.probabilities), 1.0, rel_tol=1e-4)
        assert record.predicted == int(np.argmax(record.probabilities))
        assert math.isclose(record.loss, -math.log(record.probabilities[record.true]), rel_tol=1e-3)
    assert confusion.tolist() == evaluation.confusion
    mean_loss = sum(r.loss for r in records) / len(records)
    assert math.isclose(mean_loss, evaluation.loss, rel_tol=1e-3)


def test_the_model_folder_and_a_reopened_run_keep_the_records(
    tiny_recipe: Recipe, tmp_path: Path
) -> None:
    result = train(tiny_recipe)
    assert result.evaluation is not None and result.evaluation.predictions is not None
    expected = result.evaluation.predictions.records()

    folder = save_model_folder(result, tmp_path / "model")
    with open(folder / PREDICTIONS_FILE, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [row["path"] for row in rows] == [r.path for r in expected]
    names = result.class_names
    assert [row["true"] for row in rows] == [names[r.true] for r in expected]
    assert [row["predicted"] for row in rows] == [names[r.predicted] for r in expected]
    assert [float(row["confidence"]) for row in rows] == pytest.approx(
        [r.confidence for r in expected], abs=1e-6
    )
    assert read_records_csv(folder / PREDICTIONS_FILE, names)[0].path == expected[0].path

    store = RunStore(tmp_path / "p.runs")
    store.save(result, datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    [record] = store.runs()
    reopened = store.load(record).evaluation
    assert reopened is not None and reopened.predictions is not None
    again = reopened.predictions.records()
    assert [(r.path, r.true, r.predicted) for r in again] == [
        (r.path, r.true, r.predicted) for r in expected
    ]
    assert [r.confidence for r in again] == pytest.approx(
        [r.confidence for r in expected], abs=1e-5
    )


def test_class_names_that_look_like_columns_read_back_right(tmp_path: Path) -> None:
    from finetune_studio.engine.review.records import PictureRecord, records_to_csv

    names = ("true", "path", "loss")  # as a user might name folders
    records = [
        PictureRecord("/d/true/a.png", 0, 1, (0.2, 0.7, 0.1), 1.609438),
        PictureRecord("/d/loss/b.png", 2, 2, (0.05, 0.05, 0.9), 0.1053605),
    ]
    (tmp_path / "p.csv").write_text(records_to_csv(records, names), encoding="utf-8")
    again = read_records_csv(tmp_path / "p.csv", names)
    assert [(r.path, r.true, r.predicted) for r in again] == [
        (r.path, r.true, r.predicted) for r in records
    ]
    assert read_records_csv(tmp_path / "p.csv", ("a", "b", "c")) == []  # another model's


def test_recorded_paths_are_absolute_wherever_the_run_was_started(
    tiny_recipe: Recipe, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = Path(tiny_recipe.dataset)
    monkeypatch.chdir(dataset.parent)
    result = train(tiny_recipe.replace(dataset=dataset.name))  # a relative folder
    assert result.evaluation is not None and result.evaluation.predictions is not None
    paths = result.evaluation.predictions.paths
    assert paths and all(Path(p).is_absolute() and Path(p).exists() for p in paths)
