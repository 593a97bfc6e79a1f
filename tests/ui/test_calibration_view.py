"""Calibrated confidence in the Results step: the calibration error and reliability
diagram, and the Try it threshold that answers "unknown" without running the model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from finetune_studio.engine.calibration import UNKNOWN, Calibration
from finetune_studio.engine.training import TrainingResult
from finetune_studio.ui.widgets.calibration_view import NOT_MEASURED, CalibrationView
from finetune_studio.ui.widgets.try_it import PREDICTION_ROLE

MEASURED = Calibration(
    temperature=1.6,
    threshold=0.0,
    ece_before=0.081,
    ece_after=0.023,
    bins=((0.6, 0.63, 0.6, 10), (0.8, 0.85, 0.9, 30), (14 / 15, 0.97, 0.95, 60)),
)


@pytest.fixture
def view(qtbot) -> CalibrationView:
    widget = CalibrationView()
    qtbot.addWidget(widget)
    widget.show()
    return widget


def test_the_view_shows_the_error_before_and_after_and_the_bins(view: CalibrationView) -> None:
    view.set_calibration(MEASURED)

    assert view.summary.text() == (
        "Confidence is calibrated: expected calibration error 8.1% → 2.3% (temperature 1.60)."
    )
    assert view.plot_widget.isVisible()
    assert view.bar_heights == [0.6, 0.9, 0.95]


def test_a_run_without_validation_pictures_says_why_and_draws_nothing(
    view: CalibrationView,
) -> None:
    view.set_calibration(MEASURED)
    view.set_calibration(Calibration())

    assert view.summary.text() == NOT_MEASURED and view.summary.isVisible()
    assert not view.plot_widget.isVisible()
    assert view.bar_heights == []


@pytest.fixture
def trained(tiny_recipe) -> TrainingResult:
    from finetune_studio.engine.training import Trainer
    from support.runs import drain

    _, result = drain(Trainer(tiny_recipe.replace(epochs=1)).events())
    return result


@pytest.fixture
def box(qtbot, trained: TrainingResult):
    from finetune_studio.ui.widgets.banner import Banner
    from finetune_studio.ui.widgets.try_it import TryItBox
    from finetune_studio.ui.workers.tasks import TaskRunner

    runner = TaskRunner()
    widget = TryItBox(runner, Banner())
    qtbot.addWidget(widget)
    widget.resize(500, 700)
    widget.set_result(trained)
    widget.show()
    yield widget
    runner.shutdown()


def shown(box) -> list[tuple[float, str]]:
    """Each item's top probability and its answer line."""
    items = [box.predictions.item(row) for row in range(box.predictions.count())]
    return [(i.data(PREDICTION_ROLE).top[0][1], i.text().splitlines()[1]) for i in items]


def test_the_try_it_pane_shows_the_run_calibration(box, trained: TrainingResult) -> None:
    assert trained.calibration.ece_before is not None
    assert box.calibration_view.summary.text().startswith("Confidence is calibrated: ")
    assert box.threshold.value() == 0 and box.threshold_label.text() == "0%"


def test_the_slider_relabels_shown_pictures_and_sets_the_model_threshold(
    qtbot, box, trained: TrainingResult, colour_dataset: Path, monkeypatch
) -> None:
    from finetune_studio.engine.predict import Predictor

    with qtbot.waitSignal(box.predictions_shown, timeout=30_000):
        box.predict([str(colour_dataset)])
    before = shown(box)
    assert all(line != f"answer: {UNKNOWN}" for _, line in before)
    confidences = sorted(p for p, _ in before)
    threshold = round(confidences[len(confidences) // 2] * 100)  # about half below
    runs: list[object] = []
    monkeypatch.setattr(Predictor, "probabilities", lambda *a: runs.append(a))

    box.threshold.setFocus()
    box.threshold.setValue(threshold - 1)
    qtbot.keyClick(box.threshold, Qt.Key.Key_Right)  # as a user nudges it

    assert box.threshold_label.text() == f"{threshold}%"
    assert trained.calibration.threshold == pytest.approx(threshold / 100)
    after = shown(box)
    assert [p for p, _ in after] == [p for p, _ in before]  # the same probabilities
    for probability, line in after:
        unsure = probability < threshold / 100
        assert line.startswith(f"answer: {UNKNOWN} (under") == unsure
    assert any(line.startswith(f"answer: {UNKNOWN}") for _, line in after)
    assert not runs and not box.predicting  # nothing was classified again


def test_a_reopened_result_shows_its_own_threshold(
    box, trained: TrainingResult, colour_dataset: Path
) -> None:
    box.set_result(dataclasses.replace(trained, calibration=MEASURED))
    assert box.calibration_view.bar_heights == [0.6, 0.9, 0.95]

    strict = dataclasses.replace(trained, calibration=dataclasses.replace(MEASURED, threshold=0.35))
    box.set_result(strict)

    assert box.threshold.value() == 35
    assert strict.calibration.threshold == 0.35  # shown, not rounded or rewritten


def test_the_threshold_set_with_the_slider_is_exported_as_the_model_default(
    qtbot, trained: TrainingResult, tmp_path: Path
) -> None:
    from finetune_studio.engine.export import load_model_folder
    from finetune_studio.ui.widgets.results_panel import ResultsPanel
    from finetune_studio.ui.workers.tasks import TaskRunner

    runner = TaskRunner()
    panel = ResultsPanel(runner)
    qtbot.addWidget(panel)
    panel.set_result(trained)
    panel.try_it.threshold.setValue(40)
    with qtbot.waitSignal(panel.exported, timeout=60_000):
        panel.export_to(tmp_path / "model")
    runner.shutdown()

    assert load_model_folder(tmp_path / "model").calibration.threshold == 0.4
