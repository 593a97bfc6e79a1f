"""Issue 12, "Compare backbones" as a view: the backbones to compare (those at hand
ticked), the comparison with progress and Cancel, the scatter and the sorted table,
and "Use this backbone"."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPointF, Qt

from finetune_studio.engine.backbones import BackboneInfo
from finetune_studio.engine.compare import BackboneScore, Comparison
from finetune_studio.engine.inspection import inspect_dataset
from finetune_studio.engine.recipe import Recipe
from finetune_studio.ui.models.compare_model import NAME_ROLE, CompareModel
from finetune_studio.ui.widgets.compare_view import CompareView
from finetune_studio.ui.workers.tasks import TaskRunner, background_threads_running
from support.tiny import TINY

SCORES = (
    BackboneScore("quick", 0.80, 0.02, 2.0, 1.0, 1_000_000, 4.0),
    BackboneScore("accurate", 0.95, 0.01, 30.0, 12.0, 20_000_000, 80.0),
    BackboneScore("middling", 0.90, 0.03, 8.0, 3.0, 5_000_000, None),
)


def info(name: str, weights: str, size_mb: float | None = None) -> BackboneInfo:
    return BackboneInfo(name, "Tiny", 1000, None, 32, weights, size_mb, False)


def comparison(scores: tuple[BackboneScore, ...] = SCORES) -> Comparison:
    return Comparison(scores, (), 90, 30, 5, "cpu", 1, 12.0)


@pytest.fixture
def view(qtbot):
    runner = TaskRunner()
    widget = CompareView(runner)
    qtbot.addWidget(widget)
    widget.resize(700, 600)
    widget.show()
    yield widget
    runner.shutdown(5)
    qtbot.waitUntil(lambda: background_threads_running() == 0, timeout=10_000)


def table_names(view: CompareView) -> list[str]:
    table = view.table.model()
    return [table.index(row, 0).data(NAME_ROLE) for row in range(table.rowCount())]


def test_the_table_model_is_a_sound_qt_model(qtmodeltester) -> None:
    model = CompareModel()
    model.add_score(SCORES[0])
    model.add_score(SCORES[1])
    model.add_score(BackboneScore("quick", 0.82, 0.02, 2.0, 1.0, 1_000_000, 4.0))  # again
    assert [s.backbone for s in model.scores] == ["quick", "accurate"]
    assert model.index(0, 1).data() == "82.0%"
    qtmodeltester.check(model)
    model.set_scores(SCORES)
    qtmodeltester.check(model)


def test_backbones_at_hand_are_ticked_and_the_others_say_they_download(view) -> None:
    view.set_backbones(
        [info("net_a", "download", 44.7), info("net_b", "bundled"), info("net_c", "cached")]
    )
    assert view.chosen_backbones() == ["net_b", "net_c"]
    texts = [view.backbone_list.item(row).text() for row in range(view.backbone_list.count())]
    assert texts[-1] == "net_a (downloads, 45 MB)"


def test_timm_models_are_listed_once_their_weights_are_here(view) -> None:
    """~1,600 timm models would bury the others in the short list."""
    view.set_backbones(
        [info("net_a", "download"), info("timm/big.x", "download"), info("timm/near.y", "cached")]
    )
    listed = [view.backbone_list.item(row).text() for row in range(view.backbone_list.count())]
    assert listed == ["timm/near.y", "net_a (downloads)"]


def test_the_table_sorts_by_accuracy_and_the_best_is_offered(view) -> None:
    view.show_comparison(comparison())
    assert table_names(view) == ["accurate", "middling", "quick"]
    assert view.selected_backbone == "accurate"
    assert view.use_button.isEnabled() and view.use_button.text() == "Use accurate"
    assert sorted(view.plot.shown) == ["accurate", "middling", "quick"]
    assert "on 90 of your pictures, 5-fold" in view.status.text()
    with_size = view.table.model().index(1, 6).data()
    assert with_size == "–"  # middling: size unknown


def test_each_point_keeps_one_name_beside_it_as_backbones_arrive_and_go(view) -> None:
    plot = view.plot
    plot.show_scores(list(SCORES[:2]), None)
    again = BackboneScore("quick", 0.85, 0.02, 3.0, 1.0, 1_000_000, 4.0)  # measured again
    plot.show_scores([again, SCORES[1]], "accurate")
    beside = {name: (label.pos().x(), label.pos().y()) for name, label in plot.labels.items()}
    assert beside == {"quick": (3.0, 85.0), "accurate": (30.0, 95.0)}
    names_in_plot = [item.toPlainText() for item in plot.plot.items if hasattr(item, "toPlainText")]
    assert sorted(names_in_plot) == ["accurate", "quick"]
    plot.show_scores([SCORES[1]], None)
    assert plot.shown == ["accurate"] and list(plot.labels) == ["accurate"]
    plot.show_scores([], None)
    assert plot.shown == [] and not [i for i in plot.plot.items if hasattr(i, "toPlainText")]


def test_clicking_a_point_selects_its_backbone_and_use_hands_it_on(qtbot, view) -> None:
    view.show_comparison(comparison())
    qtbot.waitExposed(view)
    plot = view.plot
    plot.plot.getViewBox().autoRange()
    quick = SCORES[0]
    scene = plot.plot.getViewBox().mapViewToScene(
        QPointF(quick.latency_ms_b1, 100 * quick.accuracy)
    )
    where = plot.widget.mapFromScene(scene)
    qtbot.mouseClick(plot.widget.viewport(), Qt.MouseButton.LeftButton, pos=where)
    assert view.selected_backbone == "quick"
    with qtbot.waitSignal(view.use_requested) as used:
        qtbot.mouseClick(view.use_button, Qt.MouseButton.LeftButton)
    assert used.args == ["quick"]


def test_a_comparison_runs_with_progress_and_shows_each_backbone(
    qtbot, view, colour_dataset: Path
) -> None:
    view.set_backbones([info(TINY, "bundled"), info("efficientnet_lite0", "bundled")])
    view.set_chosen([TINY])
    view.per_class.setValue(4)
    recipe = Recipe(dataset=str(colour_dataset), backbone=TINY, workers=0, device="cpu")
    report = inspect_dataset(str(colour_dataset), 0.2, 0)
    with qtbot.waitSignal(view.comparison_ended, timeout=120_000) as ended:
        view.start(recipe, report)
        assert view.running and view.cancel_button.isVisible()
        assert not view.compare_button.isEnabled()
    assert ended.args == [True]
    assert not view.running and not view.progress.isVisible()
    assert table_names(view) == [TINY] and view.plot.shown == [TINY]
    assert view.comparison is not None and view.comparison.pictures == 12
    assert view.use_button.text() == f"Use {TINY}"


def test_the_plot_stays_in_place_as_a_comparison_starts_and_ends(
    qtbot, view, colour_dataset: Path
) -> None:
    """The bar comes and goes beside the buttons: the plot is not moved (a moved plot
    is redrawn whole, as the comparison's thread starts)."""
    view.set_backbones([info(TINY, "bundled")])
    view.per_class.setValue(4)
    recipe = Recipe(dataset=str(colour_dataset), backbone=TINY, workers=0, device="cpu")
    report = inspect_dataset(str(colour_dataset), 0.2, 0)
    qtbot.wait(20)  # laid out
    before = view.plot.geometry()
    with qtbot.waitSignal(view.comparison_ended, timeout=120_000):
        view.start(recipe, report)
        qtbot.wait(20)
        assert view.progress.isVisible() and view.plot.geometry() == before
    qtbot.wait(20)
    assert not view.progress.isVisible() and view.plot.geometry() == before


def test_cancel_stops_the_comparison(qtbot, view, colour_dataset: Path) -> None:
    view.set_backbones([info(TINY, "bundled")])
    recipe = Recipe(dataset=str(colour_dataset), backbone=TINY, workers=0, device="cpu")
    report = inspect_dataset(str(colour_dataset), 0.2, 0)
    with qtbot.waitSignal(view.comparison_ended, timeout=60_000) as ended:
        view.start(recipe, report)
        qtbot.mouseClick(view.cancel_button, Qt.MouseButton.LeftButton)
    assert ended.args == [False]
    assert "stopped" in view.status.text()
    assert view.comparison is None and view.compare_button.isEnabled()


def test_nothing_starts_without_pictures_or_a_ticked_backbone_or_while_training(
    view, colour_dataset: Path
) -> None:
    view.set_backbones([info(TINY, "bundled")])
    view.start(None, None)
    assert not view.running and view.status.text() == "Load a dataset first (step 1)."
    recipe = Recipe(dataset=str(colour_dataset), backbone=TINY, workers=0, device="cpu")
    report = inspect_dataset(str(colour_dataset), 0.2, 0)
    view.set_chosen([])
    view.start(recipe, report)
    assert not view.running and "Tick at least one" in view.status.text()

    view.show_comparison(comparison())
    view.set_editable(False)  # a run is training
    assert not view.compare_button.isEnabled() and not view.use_button.isEnabled()
    view.set_chosen([TINY])
    view.start(recipe, report)
    assert not view.running
    view.set_editable(True)
    assert view.compare_button.isEnabled() and view.use_button.isEnabled()


def test_the_default_cap_is_the_engines() -> None:
    from finetune_studio.engine import compare
    from finetune_studio.ui.widgets import compare_view

    assert compare_view.DEFAULT_PER_CLASS == compare.DEFAULT_PER_CLASS
    assert compare_view.OFFLINE_WEIGHTS == compare.OFFLINE_WEIGHTS
