"""Calibrated confidence: the fitted temperature, the calibration error, "unknown"
below a threshold, and the calibration kept by a run, its model folder and the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from finetune_studio.cli import main
from finetune_studio.engine.calibration import (
    UNKNOWN,
    Calibration,
    calibrate,
    fit_temperature,
    negative_log_likelihood,
    reliability,
    scaled,
)
from finetune_studio.engine.export import load_model_folder, save_model_folder
from finetune_studio.engine.predict import Predictor
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.review.records import Predictions
from finetune_studio.engine.runs import RunStore
from finetune_studio.engine.training import Trainer, TrainingResult
from support.runs import drain


def over_confident(
    pictures: int = 4000, classes: int = 5, sharpening: float = 5.0
) -> tuple[Predictions, np.ndarray]:
    """Labels drawn from a calibrated generator's own probabilities, reported with the
    logits multiplied by ``sharpening``: the temperature that undoes it is the answer."""
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=1.5, size=(pictures, classes))
    calibrated = scaled(logits, 1.0)
    true = np.array([rng.choice(classes, p=row) for row in calibrated])
    sharp = scaled(logits * sharpening, 1.0).astype(np.float32)
    loss = -np.log(sharp[np.arange(pictures), true])
    return Predictions(tuple(map(str, range(pictures))), true, sharp, loss), calibrated


def test_the_fitted_temperature_undoes_over_confidence() -> None:
    predictions, _ = over_confident()
    calibration = calibrate(predictions)

    assert calibration.temperature == pytest.approx(5.0, rel=0.1)
    probabilities = predictions.probabilities.astype(np.float64)
    log_p = np.log(np.maximum(probabilities, 1e-30))
    after = scaled(log_p, calibration.temperature)
    assert negative_log_likelihood(after, predictions.true) < 0.8 * negative_log_likelihood(
        probabilities, predictions.true
    )
    assert calibration.ece_before is not None and calibration.ece_after is not None
    assert calibration.ece_before > 0.2 and calibration.ece_after < 0.04
    assert sum(count for *_, count in calibration.bins) == len(predictions)


def test_a_calibrated_model_keeps_its_temperature_near_one() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=1.5, size=(4000, 4))
    probabilities = scaled(logits, 1.0)
    true = np.array([rng.choice(4, p=row) for row in probabilities])

    assert fit_temperature(np.log(probabilities), true) == pytest.approx(1.0, abs=0.1)


def test_the_temperature_stays_within_its_bounds() -> None:
    always_right = np.log(np.array([[0.6, 0.4]] * 10_000))
    assert fit_temperature(always_right, np.zeros(10_000, np.int64)) == 0.05


def test_a_model_right_on_every_validation_picture_is_not_sharpened_without_limit() -> None:
    # The likelihood alone keeps improving towards T = 0: every picture 100 % sure.
    sure_and_right = np.log(np.array([[0.999, 0.001]] * 72))
    assert 0.7 < fit_temperature(sure_and_right, np.zeros(72, np.int64)) <= 1.0


def test_the_calibration_error_of_a_hand_made_example() -> None:
    # Two pictures at 0.95 confidence (one right) and two at 0.55 (both right): bins
    # (14/15, 1] and (8/15, 9/15]; error = 2/4 * |0.5 - 0.95| + 2/4 * |1.0 - 0.55|.
    probabilities = np.array([[0.95, 0.05], [0.05, 0.95], [0.55, 0.45], [0.45, 0.55]])
    true = np.array([0, 0, 0, 1])

    error, bins = reliability(probabilities, true)

    assert error == pytest.approx(0.5 * 0.45 + 0.5 * 0.45)
    assert bins == (
        pytest.approx((8 / 15, 0.55, 1.0, 2)),
        pytest.approx((14 / 15, 0.95, 0.5, 2)),
    )


def test_no_validation_pictures_leave_the_identity() -> None:
    empty = Predictions((), np.zeros(0, np.int64), np.zeros((0, 3), np.float32), np.zeros(0))

    assert calibrate(None) == Calibration()
    assert calibrate(empty) == Calibration()
    assert Calibration().ece_before is None


def test_calibration_softens_probabilities_but_keeps_every_ranking(
    trained: TrainingResult, colour_dataset: Path
) -> None:
    files = sorted(colour_dataset.rglob("*.png"))
    args = (trained.model, trained.class_names, trained.preprocessing)
    plain = Predictor(*args).predict(files, top_k=3)
    warm = Predictor(*args, calibration=Calibration(temperature=3.0)).predict(files, top_k=3)

    for before, after in zip(plain, warm):
        assert [c for c, _ in after.top] == [c for c, _ in before.top]
        assert after.top[0][1] <= before.top[0][1] + 1e-6
    assert any(a.top[0][1] < b.top[0][1] - 0.01 for a, b in zip(warm, plain))


def test_unknown_is_the_answer_exactly_below_the_threshold(
    trained: TrainingResult, colour_dataset: Path
) -> None:
    files = sorted(colour_dataset.rglob("*.png"))
    predictor = Predictor(trained.model, trained.class_names, trained.preprocessing)
    predictions = predictor.predict(files)
    threshold = float(np.median([p.top[0][1] for p in predictions]))

    for prediction in predictor.predict(files, threshold=threshold):
        assert prediction.confidence == prediction.top[0][1]
        below = prediction.top[0][1] < threshold
        assert prediction.answer == (UNKNOWN if below else prediction.top[0][0])
        assert prediction.with_threshold(0.0).answer == prediction.top[0][0]
    at_its_own = predictions[0].with_threshold(predictions[0].top[0][1])
    assert at_its_own.answer == predictions[0].top[0][0]  # at the threshold: still sure
    with pytest.raises(ValueError, match="from 0 to 1"):
        predictor.predict(files, threshold=math.nan)


def test_the_model_default_threshold_is_used_unless_one_is_given(
    trained: TrainingResult, colour_dataset: Path
) -> None:
    files = sorted(colour_dataset.rglob("*.png"))[:4]
    strict = Calibration(threshold=1.0)
    predictor = Predictor(trained.model, trained.class_names, trained.preprocessing, None, strict)

    assert {p.answer for p in predictor.predict(files)} == {UNKNOWN}
    assert UNKNOWN not in {p.answer for p in predictor.predict(files, threshold=0.0)}


@pytest.fixture
def trained(tiny_recipe: Recipe) -> TrainingResult:
    _, result = drain(Trainer(tiny_recipe).events())
    return result


def test_a_run_is_calibrated_and_keeps_it_in_its_folder_and_when_reopened(
    trained: TrainingResult, tmp_path: Path
) -> None:
    calibration = trained.calibration
    assert trained.evaluation is not None and trained.evaluation.images > 0
    assert calibration.ece_before is not None and calibration.ece_after is not None
    assert 0.05 <= calibration.temperature <= 20.0
    assert sum(count for *_, count in calibration.bins) == trained.evaluation.images

    trained.calibration = dataclasses.replace(calibration, threshold=0.7)
    loaded = load_model_folder(save_model_folder(trained, tmp_path / "model"))
    assert loaded.calibration == trained.calibration

    store = RunStore(tmp_path / "p.runs")
    record = store.save(trained, datetime.now())
    assert store.load(record).calibration == trained.calibration


def test_a_run_stopped_in_its_first_epoch_is_calibrated_on_what_it_evaluated(
    tiny_recipe: Recipe,
) -> None:
    from finetune_studio.engine.events import BatchEnd

    trainer = Trainer(tiny_recipe.replace(batch_size=4))
    stream = trainer.events()
    while True:
        try:
            event = next(stream)
        except StopIteration as finished:
            result: TrainingResult = finished.value
            break
        if isinstance(event, BatchEnd) and event.batch == 2:
            trainer.cancel()

    assert result.cancelled and not result.history
    assert result.evaluation is not None and result.evaluation.images > 0
    assert result.calibration.ece_after is not None
    assert sum(count for *_, count in result.calibration.bins) == result.evaluation.images


def test_a_run_without_validation_pictures_is_left_uncalibrated(tiny_recipe: Recipe) -> None:
    recipe = Recipe.from_dict({**tiny_recipe.to_dict(), "val_fraction": 0.0, "epochs": 1})

    _, result = drain(Trainer(recipe).events())

    assert result.calibration == Calibration()


@pytest.fixture
def model_folder(trained: TrainingResult, tmp_path: Path) -> Path:
    return save_model_folder(trained, tmp_path / "model")


def test_predict_json_items_hold_the_answer_its_confidence_and_the_ranking(
    model_folder: Path, colour_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (colour_dataset / "red" / "broken.png").write_bytes(b"not a picture")

    code = main(["predict", str(model_folder), str(colour_dataset / "red"), "--json"])

    assert code == 0
    items = json.loads(capsys.readouterr().out)
    [broken] = [item for item in items if "error" in item]
    assert broken == {
        "path": str(colour_dataset / "red" / "broken.png"),
        "class": None,
        "confidence": None,
        "top": [],
        "error": broken["error"],
    }
    for item in (item for item in items if "error" not in item):
        assert list(item) == ["path", "class", "confidence", "top"]
        assert item["class"] == item["top"][0]["class"]
        assert item["confidence"] == item["top"][0]["probability"]
        assert [list(entry) for entry in item["top"]] == [["class", "probability"]] * 3


def test_predict_threshold_answers_unknown_in_json_and_text(
    model_folder: Path, colour_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pictures = [str(colour_dataset / "red"), "--top-k", "2"]

    assert main(["predict", str(model_folder), *pictures, "--threshold", "1", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert {item["class"] for item in items} == {UNKNOWN}
    assert all(len(item["top"]) == 2 for item in items)

    assert main(["predict", str(model_folder), *pictures, "--threshold", "1"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.split(": ", 1)[1].startswith(f"{UNKNOWN}  (")  # the answer, then the list


@pytest.mark.parametrize("threshold", ["1.5", "-0.1", "nan", "half"])
def test_a_threshold_outside_0_to_1_is_bad_input(
    threshold: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(tmp_path), "x.png", "--threshold", threshold])

    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "probability from 0 to 1" in error
