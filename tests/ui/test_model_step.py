"""Issue 15, the Model step: messages that go with their cause (item 5), no network
shown that will not train (item 6), learning-rate multipliers where the nearest
setting wins, overrides in bold, and tooltips (item 8). Driven through the real
window, offscreen."""

from __future__ import annotations

import socket

import pytest
from helpers import check_indicator_position, load, open_window
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QLineEdit

from finetune_studio.ui.main_window import MODEL_TAB
from finetune_studio.ui.models.parameter_tree_model import LR, NAME, TRAINABLE
from support.tiny import TINY

OFFLINE = "tiny_offline"


def open_model_step(qtbot, window, dataset) -> None:
    load(qtbot, window, dataset)
    window.tabs.setCurrentIndex(MODEL_TAB)


def closed_port_url() -> str:
    """An address that refuses connections: a download from it fails at once, as
    one does without a network."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/tiny-offline-0123abcd.pth"


@pytest.fixture
def offline_window(qtbot, settings):
    """A window whose backbone list holds one whose weights cannot be downloaded."""
    from finetune_studio.engine.backbones import register_backbone, unregister_backbone
    from finetune_studio.ui.workers.tasks import background_threads_running
    from support.tiny import tiny_spec

    register_backbone(tiny_spec(OFFLINE, weights_url=closed_port_url()))
    try:
        window = open_window(qtbot, settings)
        yield window
        window.close()
        qtbot.waitUntil(lambda: background_threads_running() == 0, timeout=30_000)
    finally:
        unregister_backbone(OFFLINE)


def click_backbone(qtbot, panel, name: str) -> None:
    """Click a row of the backbone list, as a user does."""
    from finetune_studio.ui.models.backbone_model import NAME_ROLE

    view = panel.backbone_view
    model = view.model()
    match = model.match(
        model.index(0, 0),
        NAME_ROLE,
        name,
        1,
        Qt.MatchFlag.MatchExactly | Qt.MatchFlag.MatchRecursive,
    )[0]
    view.expand(match.parent())
    view.scrollTo(match)
    qtbot.mouseClick(
        view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(match).center()
    )


def fail_to_load(qtbot, panel, name: str) -> None:
    with qtbot.waitSignal(
        panel.busy_changed, check_params_cb=lambda busy: not busy, timeout=30_000
    ):
        click_backbone(qtbot, panel, name)


def start_reason(window) -> str:
    label = window.train_panel.start_reason
    return label.text() if label.isVisibleTo(window.train_panel) else ""


def shows_no_network(layers) -> bool:
    return (
        layers.placeholder.isVisible()
        and not layers.layer_view.isVisible()
        and layers.layer_view.model() is None
    )


# --- items 5 and 6: a failed load ------------------------------------------------------------
def test_a_failed_download_shows_an_empty_tree_with_the_reason_and_blocks_start(
    qtbot, offline_window, colour_dataset
):
    window = offline_window
    open_model_step(qtbot, window, colour_dataset)
    panel, layers = window.model_panel, window.model_panel.layers
    assert layers.layer_view.isVisible() and not layers.placeholder.isVisible()

    fail_to_load(qtbot, panel, OFFLINE)

    assert panel.banner.level == "error" and "Could not download" in panel.banner.text
    assert shows_no_network(layers)  # not the previous network, greyed out
    assert "No network loaded" in layers.placeholder.text()
    assert "Could not download" in layers.placeholder.text()
    assert not layers.head_button.isEnabled() and not layers.all_button.isEnabled()
    assert not window.train_panel.start_button.isEnabled()
    assert "No network loaded" in start_reason(window)


def test_the_tree_stays_empty_after_the_window_unlocks(qtbot, offline_window, colour_dataset):
    window = offline_window
    """A run locks and then unlocks the step: the unlock must not bring a network back
    that will not train."""
    open_model_step(qtbot, window, colour_dataset)
    panel = window.model_panel
    fail_to_load(qtbot, panel, OFFLINE)

    panel.set_editable(False)
    panel.set_editable(True)

    assert shows_no_network(panel.layers)
    assert not panel.layers.head_button.isEnabled()


def test_choosing_a_backbone_that_loads_clears_the_error_and_the_start_blocker(
    qtbot, offline_window, colour_dataset
):
    window = offline_window
    open_model_step(qtbot, window, colour_dataset)
    panel = window.model_panel
    fail_to_load(qtbot, panel, OFFLINE)
    assert panel.banner.text and panel.unavailable

    with qtbot.waitSignal(panel.model_ready, timeout=30_000):
        click_backbone(qtbot, panel, TINY)  # bundled weights: loads without a network

    assert panel.banner.text == "" and not panel.banner.isVisible()
    assert panel.unavailable is None and window.start_blocker() is None
    assert window.train_panel.start_button.isEnabled() and start_reason(window) == ""
    layers = panel.layers
    assert layers.layer_view.isVisible() and not layers.placeholder.isVisible()
    assert [layers.tree_model.index(r, 0).data() for r in range(3)] == ["features", "pool", "fc"]


def test_clicking_the_row_that_failed_tries_it_again(qtbot, offline_window, colour_dataset):
    window = offline_window
    open_model_step(qtbot, window, colour_dataset)
    panel = window.model_panel
    fail_to_load(qtbot, panel, OFFLINE)

    with qtbot.waitSignal(panel.busy_changed, check_params_cb=lambda busy: busy):
        click_backbone(qtbot, panel, OFFLINE)  # already the current row
    qtbot.waitUntil(lambda: panel.build_task is None, timeout=30_000)
    assert "Could not download" in panel.banner.text  # it failed again, and says so


def test_an_unknown_backbone_in_a_project_shows_no_network_until_one_is_chosen(
    qtbot, window, colour_dataset
):
    open_model_step(qtbot, window, colour_dataset)
    panel = window.model_panel
    recipe = window.recipe()

    panel.show_recipe(recipe.replace(backbone="no_such_network"))

    assert "Unknown backbone 'no_such_network'" in panel.banner.text
    assert shows_no_network(panel.layers)
    assert not window.train_panel.start_button.isEnabled()

    with qtbot.waitSignal(panel.model_ready, timeout=30_000):
        click_backbone(qtbot, panel, TINY)
    assert panel.banner.text == "" and window.start_blocker() is None


def test_a_plan_that_did_not_fit_is_noted_until_the_user_chooses_one(qtbot, window, colour_dataset):
    from finetune_studio.engine.freezing import FreezePlan

    open_model_step(qtbot, window, colour_dataset)
    panel = window.model_panel
    recipe = window.recipe()
    foreign = FreezePlan("head").with_override("layer4.1.conv2", True)  # a ResNet's layer

    with qtbot.waitSignal(panel.model_ready, timeout=30_000):
        panel.show_recipe(recipe.replace(freeze=foreign))
    assert panel.banner.level == "warning" and "layer4.1.conv2" in panel.banner.text

    qtbot.mouseClick(panel.layers.all_button, Qt.MouseButton.LeftButton)

    assert panel.banner.text == ""

    with qtbot.waitSignal(panel.model_ready, timeout=30_000):
        panel.show_recipe(recipe.replace(freeze=foreign))
    assert "layer4.1.conv2" in panel.banner.text
    panel.set_preset("last:1")  # a plan chosen whole: the advisor's, the Train step's fix
    assert panel.banner.text == ""


# --- item 8: learning-rate multipliers -------------------------------------------------------
def edit_multiplier(qtbot, layers, path: str, text: str) -> str:
    """Double-click the row's multiplier cell, type ``text`` and press Enter; returns the
    editor's placeholder (what an empty cell means)."""
    view, model = layers.layer_view, layers.tree_model
    index = model.index_of(layers.tree[path], LR)
    view.scrollTo(index)
    position = view.visualRect(index).center()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=position)
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=position)
    editors = [e for e in view.viewport().findChildren(QLineEdit) if e.isVisible()]
    assert len(editors) == 1
    editor = editors[0]
    editor.selectAll()
    qtbot.keyClick(editor, Qt.Key.Key_Delete)
    qtbot.keyClicks(editor, text)
    placeholder = editor.placeholderText()
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    # The delegate commits and closes its editor in a queued call.
    qtbot.waitUntil(lambda: view.state() != QAbstractItemView.State.EditingState)
    return placeholder


def shown_multiplier(layers, path: str) -> str:
    return layers.tree_model.index_of(layers.tree[path], LR).data()


def is_bold(layers, path: str, column: int) -> bool:
    font = layers.tree_model.index_of(layers.tree[path], column).data(Qt.ItemDataRole.FontRole)
    return font is not None and font.bold()


def expand_features(layers) -> None:
    layers.layer_view.expand(layers.tree_model.index_of(layers.tree["features"]))


def test_a_parents_multiplier_keeps_the_one_a_child_has_and_the_run_uses_both(
    qtbot, window, colour_dataset
):
    from finetune_studio.engine.backbones import build_model
    from finetune_studio.engine.freezing import FreezePlan, apply_freeze_plan
    from finetune_studio.engine.optim import make_optimizer

    open_model_step(qtbot, window, colour_dataset)
    layers = window.model_panel.layers
    expand_features(layers)

    edit_multiplier(qtbot, layers, "features.5", "0.5")  # the child first
    edit_multiplier(qtbot, layers, "features", "0.1")  # then the block around it

    assert shown_multiplier(layers, "features.5") == "0.5"
    assert shown_multiplier(layers, "features.4") == "0.1"
    assert shown_multiplier(layers, "fc") == "1"
    recipe = window.recipe()
    assert recipe.lr_multipliers == {"features.5": 0.5, "features": 0.1}
    # What the run gets: the optimizer the engine builds from this recipe.
    built = build_model(TINY, 3)
    apply_freeze_plan(built.model, built.head_path, FreezePlan("none"))
    optimizer = make_optimizer(built.model, "adamw", recipe.lr, 0.0, recipe.lr_multipliers)
    lrs = {n: group["lr"] for group in optimizer.param_groups for n in group["names"]}
    assert lrs["features.5.0.weight"] == pytest.approx(recipe.lr * 0.5)
    assert lrs["features.4.0.weight"] == pytest.approx(recipe.lr * 0.1)


def test_an_empty_multiplier_follows_the_row_above_again(qtbot, window, colour_dataset):
    open_model_step(qtbot, window, colour_dataset)
    layers = window.model_panel.layers
    expand_features(layers)
    edit_multiplier(qtbot, layers, "features", "0.1")
    edit_multiplier(qtbot, layers, "features.5", "0.5")

    placeholder = edit_multiplier(qtbot, layers, "features.5", "")

    assert placeholder == "0.1 (from the row above)"
    assert shown_multiplier(layers, "features.5") == "0.1"
    assert not is_bold(layers, "features.5", LR)
    assert window.recipe().lr_multipliers == {"features": 0.1}


def test_small_multipliers_can_be_typed(qtbot, window, colour_dataset):
    """Qt's default editor for a float rounds to two decimals: 0.001 became 0."""
    open_model_step(qtbot, window, colour_dataset)
    layers = window.model_panel.layers

    edit_multiplier(qtbot, layers, "features", "0.001")

    assert window.recipe().lr_multipliers == {"features": 0.001}
    assert shown_multiplier(layers, "features") == "0.001"


def test_rows_with_their_own_settings_are_bold(qtbot, window, colour_dataset, qtmodeltester):
    open_model_step(qtbot, window, colour_dataset)
    layers = window.model_panel.layers
    view, model = layers.layer_view, layers.tree_model
    expand_features(layers)
    assert not any(is_bold(layers, p, NAME) for p in ("features", "features.4", "fc"))

    edit_multiplier(qtbot, layers, "features.4", "0.5")
    conv = model.index_of(layers.tree["features.2"])
    qtbot.mouseClick(
        view.viewport(), Qt.MouseButton.LeftButton, pos=check_indicator_position(view, conv)
    )

    assert is_bold(layers, "features.4", NAME) and is_bold(layers, "features.4", LR)
    assert not is_bold(layers, "features.4", TRAINABLE)
    assert is_bold(layers, "features.2", NAME) and is_bold(layers, "features.2", TRAINABLE)
    assert not is_bold(layers, "features.2", LR)
    assert not is_bold(layers, "features.3", NAME)  # follows the preset and its block
    tooltip = model.index_of(layers.tree["features.4.0"], NAME).data(Qt.ItemDataRole.ToolTipRole)
    assert "LR × 0.5: from features.4" in tooltip
    qtmodeltester.check(model)

    qtbot.mouseClick(layers.head_button, Qt.MouseButton.LeftButton)  # a preset replaces clicks
    assert not is_bold(layers, "features.2", NAME)
    assert is_bold(layers, "features.4", LR)  # a multiplier is not part of the preset


# --- item 8: tooltips ------------------------------------------------------------------------
def test_the_tree_columns_and_the_options_explain_themselves(qtbot, window, colour_dataset):
    open_model_step(qtbot, window, colour_dataset)
    layers = window.model_panel.layers
    header = layers.layer_view.model()
    tips = [
        header.headerData(c, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
        for c in range(header.columnCount())
    ]

    assert all(tips)
    assert "nearest setting wins" in tips[LR] and "empty" in tips[LR]
    assert "head" in layers.gradual.toolTip() and layers.gradual_epochs.toolTip()
    assert "BatchNorm" in layers.train_batchnorm.toolTip()


def test_a_scripted_run_whose_network_cannot_load_ends_with_1(
    qtbot, settings, colour_dataset, capsys
):
    """It used to wait for the network forever."""
    from finetune_studio.engine.backbones import register_backbone, unregister_backbone
    from finetune_studio.ui.app import ScriptedRun, parse_args
    from finetune_studio.ui.main_window import MainWindow
    from finetune_studio.ui.workers.tasks import background_threads_running
    from support.tiny import tiny_spec

    register_backbone(tiny_spec(OFFLINE, weights_url=closed_port_url()))
    try:
        window = MainWindow(settings)
        qtbot.addWidget(window)
        run = ScriptedRun(
            window, parse_args(["--dataset", str(colour_dataset), "--backbone", OFFLINE])
        )
        window.show()
        window.start_engine()
        qtbot.waitUntil(lambda: run.exit_code is not None, timeout=60_000)
        assert run.exit_code == 1
        assert "Could not download" in capsys.readouterr().err
        window.close()
        qtbot.waitUntil(lambda: background_threads_running() == 0, timeout=30_000)
    finally:
        unregister_backbone(OFFLINE)


# --- Issue 12: "Compare backbones" in the Model step ----------------------------------------
SECOND = "tiny_second"


@pytest.fixture
def compare_window(qtbot, settings):
    """A window whose backbone list holds a second tiny backbone to compare with."""
    from finetune_studio.engine.backbones import register_backbone, unregister_backbone
    from finetune_studio.ui.workers.tasks import background_threads_running
    from support.tiny import tiny_spec

    register_backbone(tiny_spec(SECOND))
    try:
        window = open_window(qtbot, settings)
        yield window
        window.close()
        qtbot.waitUntil(lambda: background_threads_running() == 0, timeout=30_000)
    finally:
        unregister_backbone(SECOND)


def test_use_this_backbone_chooses_it_pretrained_and_shows_its_layers(
    qtbot, compare_window, colour_dataset
):
    from finetune_studio.engine.compare import BackboneScore, Comparison
    from finetune_studio.ui.models.backbone_model import NAME_ROLE

    window = compare_window
    open_model_step(qtbot, window, colour_dataset)
    panel = window.model_panel
    with qtbot.waitSignal(panel.model_ready, timeout=30_000):
        panel.set_weights("none")
    panel.side_tabs.setCurrentWidget(panel.compare)
    scores = (
        BackboneScore(TINY, 0.90, 0.02, 0.4, 0.3, 32_256, None),
        BackboneScore(SECOND, 0.97, 0.01, 0.5, 0.3, 32_256, None),
    )
    panel.compare.show_comparison(Comparison(scores, (), 36, 50, 5, "cpu", 1, 3.0))
    assert panel.compare.use_button.text() == f"Use {SECOND}"  # the most accurate

    qtbot.mouseClick(panel.compare.use_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.ready and panel.backbone == SECOND, timeout=30_000)
    assert panel.side_tabs.currentWidget() is panel.layers
    assert panel.backbone_view.currentIndex().data(NAME_ROLE) == SECOND
    recipe = window.recipe()
    assert (recipe.backbone, recipe.weights) == (SECOND, "default")  # as it was measured


def test_a_comparison_blocks_training_and_the_chosen_backbone_trains_from_its_features(
    qtbot, compare_window, colour_dataset
):
    window = compare_window
    open_model_step(qtbot, window, colour_dataset)
    compare = window.model_panel.compare
    compare.set_chosen([TINY, SECOND])
    compare.per_class.setValue(4)
    with qtbot.waitSignal(compare.comparison_ended, timeout=120_000) as ended:
        qtbot.mouseClick(compare.compare_button, Qt.MouseButton.LeftButton)
        assert compare.running and not window.start_action.isEnabled()
        assert "Comparing backbones" in (window.start_blocker() or "")
    assert ended.args == [True]
    assert sorted(compare.plot.shown) == sorted([TINY, SECOND])
    assert window.start_action.isEnabled()

    compare.select_backbone(SECOND)
    qtbot.mouseClick(compare.use_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.model_panel.ready, timeout=30_000)
    window.train_panel.epochs.setValue(1)
    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        qtbot.mouseClick(window.train_panel.start_button, Qt.MouseButton.LeftButton)
        assert not compare.compare_button.isEnabled() and not compare.use_button.isEnabled()
    assert window.results_panel.result.recipe.backbone == SECOND
    assert "Computing features: 12 of 36 from the cache." in window.train_panel.log.toPlainText()
    assert compare.compare_button.isEnabled()


def test_another_dataset_forgets_the_comparison(qtbot, window, colour_dataset, tmp_path):
    from finetune_studio.engine.compare import BackboneScore, Comparison
    from support.tiny import make_colour_dataset

    open_model_step(qtbot, window, colour_dataset)
    compare = window.model_panel.compare
    score = BackboneScore(TINY, 0.9, 0.02, 0.4, 0.3, 32_256, None)
    compare.show_comparison(Comparison((score,), (), 36, 50, 5, "cpu", 1, 3.0))
    load(qtbot, window, make_colour_dataset(tmp_path / "other", per_class=5))
    assert compare.comparison is None and compare.plot.shown == []
    assert not compare.use_button.isEnabled()


@pytest.mark.qt_log_ignore("This plugin does not support raise")  # offscreen: shown again
def test_a_comparison_waits_while_the_learning_rate_finder_ramps(
    qtbot, compare_window, colour_dataset
):
    """Timed beside a ramp, the backbones' latencies would be the ramp's too."""
    window = compare_window
    open_model_step(qtbot, window, colour_dataset)
    finder = window.train_panel.lr_finder
    qtbot.mouseClick(window.train_panel.settings_box.find_lr_button, Qt.MouseButton.LeftButton)
    assert finder.running
    compare = window.model_panel.compare
    qtbot.mouseClick(compare.compare_button, Qt.MouseButton.LeftButton)
    assert not compare.running
    assert "Finding the learning rate" in compare.status.text()
    finder.cancel()
    qtbot.waitUntil(lambda: not finder.running, timeout=60_000)
