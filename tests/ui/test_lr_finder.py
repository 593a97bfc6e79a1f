"""Issue 12, "Find learning rate" in the Train step: a task with progress and Cancel,
the loss drawn against the rate, the suggestion marked, "Use" fills the field, and
never while a run trains. The window's hook is set up here directly: the panel asks
(``lr_find_requested``) and the test answers with a recipe, as the window does."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from finetune_studio.engine.freezing import FreezePlan
from finetune_studio.ui.widgets.lr_finder import TRAINING_RUNS
from finetune_studio.ui.widgets.train_panel import FINDING_LR, TrainPanel
from finetune_studio.ui.workers.tasks import TaskRunner, background_threads_running
from support.tiny import tiny_recipe_for


@pytest.fixture
def panel(qtbot):
    runner = TaskRunner()
    panel = TrainPanel(runner)
    qtbot.addWidget(panel)
    panel.show()
    panel.show_start_blocker(None)  # the window's verdict: Start allowed
    yield panel
    panel.lr_finder.close()
    runner.shutdown(5.0)
    qtbot.waitUntil(lambda: background_threads_running() == 0, timeout=30_000)


def answer_with(panel: TrainPanel, recipe) -> None:
    """What the window does: answer the request with its recipe."""
    panel.lr_find_requested.connect(lambda: panel.find_lr(recipe, None))


def click(qtbot, button) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


@pytest.mark.qt_log_ignore("This plugin does not support raise")  # offscreen: shown again
def test_find_draws_the_curve_marks_the_suggestion_and_use_fills_the_field(
    qtbot, panel, colour_dataset: Path
) -> None:
    answer_with(panel, tiny_recipe_for(colour_dataset))
    requests: list[None] = []
    panel.lr_find_requested.connect(lambda: requests.append(None))
    finder = panel.lr_finder
    click(qtbot, panel.settings_box.find_lr_button)
    assert finder.isVisible() and finder.running
    assert finder.cancel_button.isVisible()
    click(qtbot, panel.settings_box.find_lr_button)  # again: the search going is shown
    assert len(requests) == 1
    assert not panel.start_button.isEnabled()
    assert panel.start_reason.text() == FINDING_LR
    qtbot.waitUntil(lambda: not finder.running, timeout=120_000)

    finding = finder.finding
    assert finding is not None and finding.suggested_lr is not None
    xs, ys = finder.curve.getData()
    assert len(xs) == len(finding.lrs) > 10
    assert [10**x for x in xs] == pytest.approx(list(finding.lrs))  # log x axis
    assert list(ys) == pytest.approx(list(finding.losses))
    marked_x, marked_y = finder.marker_point.getData()
    assert 10 ** marked_x[0] == pytest.approx(finding.suggested_lr)
    assert marked_y[0] == pytest.approx(finding.losses[finding.suggestion_index])
    assert finder.marker_line.value() == pytest.approx(math.log10(finding.suggested_lr))
    assert finder.use_button.isVisible()
    assert "Suggested" in finder.suggestion.text()
    assert panel.start_button.isEnabled()

    click(qtbot, finder.use_button)
    assert panel.lr.value() == pytest.approx(float(f"{finding.suggested_lr:.2g}"), rel=1e-3)
    recipe = panel.update_recipe(tiny_recipe_for(colour_dataset))
    assert recipe.lr == pytest.approx(panel.lr.value())


def test_cancel_stops_the_search_and_offers_nothing(qtbot, panel, colour_dataset) -> None:
    answer_with(panel, tiny_recipe_for(colour_dataset, freeze=FreezePlan("last:1")))
    finder = panel.lr_finder
    before = panel.lr.value()
    click(qtbot, panel.settings_box.find_lr_button)
    click(qtbot, finder.cancel_button)
    qtbot.waitUntil(lambda: not finder.running, timeout=60_000)
    assert finder.finding is None and not finder.use_button.isVisible()
    assert "Stopped" in finder.status.text()
    assert panel.lr.value() == before
    assert panel.start_button.isEnabled()


def test_a_solved_head_is_told_the_rate_goes_unused(qtbot, panel, colour_dataset) -> None:
    answer_with(panel, tiny_recipe_for(colour_dataset, head_fit="optimum"))
    finder = panel.lr_finder
    click(qtbot, panel.settings_box.find_lr_button)
    qtbot.waitUntil(lambda: not finder.running, timeout=120_000)
    assert finder.note.isVisible()
    assert "does not use the learning rate" in finder.note.text()
    assert finder.use_button.isVisible()  # for training the head by epochs


@pytest.mark.qt_log_ignore("This plugin does not support raise")  # offscreen: asked again
def test_no_search_while_a_run_trains(qtbot, panel, colour_dataset) -> None:
    answer_with(panel, tiny_recipe_for(colour_dataset, freeze=FreezePlan("last:1")))
    finder = panel.lr_finder
    click(qtbot, panel.settings_box.find_lr_button)
    assert finder.running
    panel.set_running(True)  # a run started (from the menu, say): the search stops
    qtbot.waitUntil(lambda: not finder.running, timeout=60_000)
    assert finder.finding is None
    assert not panel.start_button.isEnabled()  # the search ending does not free Start
    assert not panel.settings_box.find_lr_button.isEnabled()

    panel.find_lr(tiny_recipe_for(colour_dataset), None)  # asked anyway
    assert not finder.running and finder.status.text() == TRAINING_RUNS
    panel.set_running(False)
    assert panel.settings_box.find_lr_button.isEnabled()


def test_without_a_runner_find_is_not_offered(qtbot) -> None:
    panel = TrainPanel()
    qtbot.addWidget(panel)
    panel.show()
    assert not panel.settings_box.find_lr_button.isVisible()
    assert panel.lr.isVisible()


@pytest.mark.qt_log_ignore("This plugin does not support raise")  # offscreen: shown again
def test_in_the_window_the_finder_runs_the_window_recipe_blocks_start_and_use_sets_it(
    qtbot, window, colour_dataset: Path
) -> None:
    from helpers import load

    from finetune_studio.ui.main_window import TRAIN_TAB

    load(qtbot, window, colour_dataset)
    window.tabs.setCurrentIndex(TRAIN_TAB)
    finder = window.train_panel.lr_finder
    click(qtbot, window.train_panel.settings_box.find_lr_button)
    assert finder.running and not window.start_action.isEnabled()
    assert "Finding the learning rate" in (window.start_blocker() or "")
    qtbot.waitUntil(lambda: not finder.running, timeout=120_000)
    assert window.start_action.isEnabled()

    finding = finder.finding
    assert finding is not None and finding.suggested_lr is not None
    click(qtbot, finder.use_button)
    recipe = window.recipe()
    assert recipe is not None
    assert recipe.lr == pytest.approx(float(f"{finding.suggested_lr:.2g}"), rel=1e-3)


@pytest.mark.qt_log_ignore("This plugin does not support raise")  # offscreen: shown again
def test_use_refuses_a_rate_found_for_a_recipe_that_has_changed_since(
    qtbot, window, colour_dataset: Path
) -> None:
    from helpers import load

    load(qtbot, window, colour_dataset)
    panel, finder = window.train_panel, window.train_panel.lr_finder
    click(qtbot, panel.settings_box.find_lr_button)
    qtbot.waitUntil(lambda: not finder.running, timeout=120_000)
    assert finder.finding is not None and finder.finding.suggested_lr is not None
    before = panel.lr.value()
    panel.lr.setValue(0.05)  # the rate itself is what Use sets: no reason to refuse
    assert finder.changed_since_measured() == []

    panel.batch_size.setValue(panel.batch_size.value() // 2)
    click(qtbot, finder.use_button)
    assert panel.lr.value() == pytest.approx(0.05) != before
    assert "batch_size" in finder.status.text() and "find again" in finder.status.text()
