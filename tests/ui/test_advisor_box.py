"""Issue 16, "How much should I train?" in the Model step: measured with progress and
Cancel, shown plan by plan, and applied to the layer tree in one click."""

from __future__ import annotations

from helpers import load
from PySide6.QtCore import Qt

from finetune_studio.engine.advice import Advice, PlanEstimate
from finetune_studio.ui.main_window import MODEL_TAB

PLAN_ROWS = ["The head alone", "The last block", "The last two blocks", "Everything"]


def open_model_step(qtbot, window, dataset) -> None:
    load(qtbot, window, dataset)
    window.tabs.setCurrentIndex(MODEL_TAB)
    window.train_panel.epochs.setValue(3)  # short trials


def rows(box) -> list[str]:
    model = box.table_model
    return [model.item(row, 0).text() for row in range(model.rowCount())]


def test_measuring_shows_every_plan_and_blocks_training_meanwhile(qtbot, window, colour_dataset):
    open_model_step(qtbot, window, colour_dataset)
    box = window.model_panel.advisor
    box.budget.setCurrentIndex(0)
    qtbot.mouseClick(box.measure_button, Qt.MouseButton.LeftButton)
    assert box.running and box.cancel_button.isVisible()
    assert not window.start_action.isEnabled()
    assert "Measuring" in (window.start_blocker() or "")
    qtbot.waitUntil(lambda: not box.running, timeout=120_000)
    assert box.advice is not None
    assert rows(box) == PLAN_ROWS
    assert box.apply_button.isVisible()
    assert box.apply_button.text().startswith("Use: ")
    assert window.start_action.isEnabled()


def test_cancel_stops_the_measurement_and_keeps_the_plan(qtbot, window, colour_dataset):
    open_model_step(qtbot, window, colour_dataset)
    box = window.model_panel.advisor
    before = window.recipe().freeze
    qtbot.mouseClick(box.measure_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(box.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not box.running, timeout=60_000)
    assert box.advice is None and not box.apply_button.isVisible()
    assert "stopped" in box.verdict.text()
    assert window.recipe().freeze == before


def test_the_recommendation_is_applied_to_the_layer_tree_in_one_click(
    qtbot, window, colour_dataset
):
    open_model_step(qtbot, window, colour_dataset)
    box = window.model_panel.advisor
    advice = Advice(
        backbone="tiny_cnn",
        recommended_freeze="last:2",
        plans=(
            PlanEstimate("head", 0.80, 5.0, "solved"),
            PlanEstimate("last:1", 0.88, 40.0, "3 epochs on the sample"),
            PlanEstimate("last:2", 0.95, 50.0, "3 epochs on the sample"),
            PlanEstimate("none", None, 400.0, "not measured"),
        ),
        sample_train=72,
        sample_val=18,
        seconds=30.0,
    )
    box.show_advice(advice)
    assert rows(box) == PLAN_ROWS
    assert box.table_model.item(2, 0).font().bold()  # the recommended row
    assert box.table_model.item(3, 1).text() == "not measured"
    assert box.apply_button.text() == "Use: the last two blocks"
    qtbot.mouseClick(box.apply_button, Qt.MouseButton.LeftButton)
    assert window.recipe().freeze.preset == "last:2"


def test_advice_is_forgotten_when_the_network_changes(qtbot, window, colour_dataset):
    open_model_step(qtbot, window, colour_dataset)
    box = window.model_panel.advisor
    qtbot.mouseClick(box.measure_button, Qt.MouseButton.LeftButton)
    window.model_panel.rebuild()  # another backbone, weights or class count
    assert not box.running
    qtbot.waitUntil(lambda: window.model_panel.ready, timeout=30_000)
    assert box.advice is None and not box.apply_button.isVisible()
    assert window.start_action.isEnabled()


def test_measuring_before_a_dataset_says_what_is_missing(qtbot, window):
    window.tabs.setCurrentIndex(MODEL_TAB)
    box = window.model_panel.advisor
    qtbot.mouseClick(box.measure_button, Qt.MouseButton.LeftButton)
    assert not box.running
    assert "dataset" in box.verdict.text()
