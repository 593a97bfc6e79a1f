"""The Runs step: every run the window trains is kept (finished, stopped or failed) and
listed; several runs' curves overlaid, two recipes compared field by field, a run run
again, opened, exported or deleted (after a question, never touching an export)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from helpers import load, start_training
from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence

from finetune_studio.engine.events import EpochEnd
from finetune_studio.engine.export import METADATA_FILE, load_model_folder, save_model_folder
from finetune_studio.engine.freezing import FreezePlan
from finetune_studio.engine.runs import RUN_FILE, RunListing, RunRecord, RunStore
from finetune_studio.ui.main_window import RESULTS_TAB, RUNS_TAB, MainWindow
from finetune_studio.ui.models.runs_model import (
    ACCURACY,
    OUTCOME,
    PLAN,
    TIME,
    duration_in_words,
)
from finetune_studio.ui.widgets.runs_view import MAX_OVERLAID, RunsView
from support.tiny import tiny_recipe_for

STARTED = datetime(2026, 3, 14, 9, 26, 53, tzinfo=timezone.utc)


def epoch(number: int, val_acc: float, val_loss: float) -> EpochEnd:
    return EpochEnd(number, 3, 1.0, 0.5, val_loss, val_acc, 0.01, 0.2, is_best=False)


def kept_runs(root: Path, count: int = 3) -> list[RunRecord]:
    """Runs kept as records (no training): recipes that differ, curves that differ."""
    store = RunStore(root)
    for number in range(count):
        recipe = tiny_recipe_for(
            root.parent / "pictures", epochs=3, lr=0.01 * (number + 1),
            freeze=FreezePlan("head" if number == 0 else f"last:{number}"),
        )  # fmt: skip
        history = [epoch(e, 0.3 + 0.1 * e + 0.05 * number, 1.5 - 0.2 * e) for e in (1, 2, 3)]
        store.save_failed(recipe, history, STARTED + timedelta(minutes=number), "Stopped.")
    return store.runs()


@pytest.fixture
def view(qtbot, tmp_path: Path) -> RunsView:
    widget = RunsView()
    qtbot.addWidget(widget)
    widget.show_listing(RunListing(tuple(kept_runs(tmp_path / "runs"))), "here")
    return widget


def texts(model, column: int) -> list[str]:
    return [model.index(row, column).data() for row in range(model.rowCount())]


def test_the_runs_model_passes_the_qt_model_tester(qtmodeltester, view: RunsView) -> None:
    qtmodeltester.check(view.model)
    qtmodeltester.check(view.sorted_model)


def test_runs_are_listed_newest_first_with_plan_accuracy_and_outcome(view: RunsView) -> None:
    shown = view.sorted_model
    assert texts(shown, PLAN) == ["last 2 blocks + head", "last 1 block + head", "head only"]
    assert texts(shown, ACCURACY) == ["70.0%", "65.0%", "60.0%"]
    assert texts(shown, OUTCOME) == ["failed"] * 3
    view.table.sortByColumn(ACCURACY, Qt.SortOrder.AscendingOrder)
    assert texts(shown, ACCURACY) == ["60.0%", "65.0%", "70.0%"]


def test_selected_runs_overlay_their_curves_and_two_show_their_recipe_difference(
    view: RunsView,
) -> None:
    view.select_rows([0, 2])

    assert len(view.curves.accuracy.listDataItems()) == 2
    assert len(view.curves.loss.listDataItems()) == 2
    assert len(view.curves.legend.items) == 2
    colours = {item.opts["pen"].color().name() for item in view.curves.accuracy.listDataItems()}
    assert len(colours) == 2  # one colour per run
    newest = view.curves.accuracy.listDataItems()[0].getData()
    assert list(newest[0]) == [1, 2, 3]
    assert list(newest[1]) == pytest.approx([0.5, 0.6, 0.7])
    diff = {row[0]: row[1:] for row in view.diff_model.rows}
    assert diff == {"freeze.preset": ("last:2", "head"), "lr": ("0.03", "0.01")}

    view.select_rows([0, 1, 2])
    assert len(view.curves.accuracy.listDataItems()) == 3
    assert view.diff_model.rowCount() == 0  # a difference is between two runs


def test_selecting_more_runs_than_colours_draws_the_first_ones_and_says_so(
    qtbot, tmp_path: Path
) -> None:
    view = RunsView()
    qtbot.addWidget(view)
    view.show_listing(RunListing(tuple(kept_runs(tmp_path / "runs", MAX_OVERLAID + 2))), "here")

    view.table.selectAll()

    assert len(view.selected_records()) == MAX_OVERLAID + 2
    assert len(view.curves.accuracy.listDataItems()) == MAX_OVERLAID
    assert view.overlay_note.isVisibleTo(view)
    assert f"first {MAX_OVERLAID} of the {MAX_OVERLAID + 2}" in view.overlay_note.text()


def test_a_failed_run_can_be_run_again_but_not_opened_or_exported(view: RunsView) -> None:
    view.select_rows([0])
    assert view.run_again_button.isEnabled()
    assert not view.open_button.isEnabled() and not view.export_button.isEnabled()
    view.select_rows([0, 1])
    assert not view.run_again_button.isEnabled() and view.delete_button.isEnabled()


def test_deleting_asks_first(qtbot, view: RunsView) -> None:
    view.select_rows([1])
    view.confirm_delete = lambda records: False
    with qtbot.assertNotEmitted(view.delete_requested):
        view.delete_button.click()
    view.confirm_delete = lambda records: True
    with qtbot.waitSignal(view.delete_requested) as asked:
        view.delete_button.click()
    assert [r.id for r in asked.args[0]] == [view.selected_records()[0].id]


def test_unreadable_runs_are_skipped_with_a_note(qtbot, tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    kept_runs(store.root, 1)
    (store.root / "broken").mkdir()
    (store.root / "broken" / RUN_FILE).write_text("{not json")
    view = RunsView()
    qtbot.addWidget(view)

    view.show_listing(store.listing(), str(store.root))

    assert view.model.rowCount() == 1
    assert "Skipped 1 folder" in view.store_label.text()
    assert "broken: run.json is damaged" in view.store_label.text()


# --- in the window ---------------------------------------------------------------------


def show_runs(qtbot, window: MainWindow) -> None:
    with qtbot.waitSignal(window.runs.listed, timeout=30_000):
        window.tabs.setCurrentIndex(RUNS_TAB)


def train(qtbot, window: MainWindow, dataset: Path, epochs: int) -> RunRecord:
    start_training(qtbot, window, dataset, epochs=epochs)
    with qtbot.waitSignal(window.keeper.kept, timeout=120_000) as kept:
        pass
    return kept.args[0]


@pytest.fixture
def runs_window(window: MainWindow, tmp_path: Path) -> MainWindow:
    window.keeper.app_root = tmp_path / "app-runs"  # this test's runs only
    window.model_panel.set_preset("none")  # epochs of batches: curves per epoch
    return window


def test_the_runs_step_is_the_fifth_and_ctrl_5_shows_it(runs_window: MainWindow) -> None:
    assert runs_window.tabs.tabText(RUNS_TAB) == "5  Runs"
    action = runs_window.step_actions[RUNS_TAB]
    assert action.shortcut() == QKeySequence("Ctrl+5")
    action.trigger()
    assert runs_window.tabs.currentWidget() is runs_window.runs_view


def test_every_run_is_kept_and_an_older_one_exports_through_the_results_step(
    qtbot, runs_window: MainWindow, colour_dataset: Path, tmp_path: Path
) -> None:
    window = runs_window
    older = train(qtbot, window, colour_dataset, epochs=1)
    newer = train(qtbot, window, colour_dataset, epochs=2)
    show_runs(qtbot, window)
    view = window.runs_view
    assert [r.folder for r in view.model.records] == [newer.folder, older.folder]
    view.select_rows([0, 1])
    assert {row[0]: row[1:] for row in view.diff_model.rows}["epochs"] == ("2", "1")
    assert len(view.curves.accuracy.listDataItems()) == 2

    exported = tmp_path / "older-export"
    panel = window.results_panel
    panel.choose_export_folder = lambda: panel.export_to(exported, ())
    view.select_rows([1])
    with qtbot.waitSignal(panel.exported, timeout=60_000):
        view.export_button.click()

    assert window.tabs.currentIndex() == RESULTS_TAB
    assert "opened from the Runs step" in panel.summary.text()
    metadata = json.loads((exported / METADATA_FILE).read_text())
    assert metadata["recipe"]["epochs"] == 1  # the older run's model, not the latest
    assert load_model_folder(exported).class_names == older.class_names


def test_a_stopped_run_and_a_failed_run_are_kept_too(
    qtbot, runs_window: MainWindow, colour_dataset: Path, monkeypatch
) -> None:
    window = runs_window
    start_training(qtbot, window, colour_dataset, epochs=500)
    qtbot.waitUntil(lambda: window.train_panel.plots.series["val_loss"].size >= 1, timeout=60_000)
    with qtbot.waitSignal(window.keeper.kept, timeout=60_000):
        window.train_panel.stop_button.click()

    from finetune_studio.engine.training import trainer

    def broken_network(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the network could not be built")

    monkeypatch.setattr(trainer, "build_model", broken_network)
    with qtbot.waitSignal(window.keeper.kept, timeout=60_000) as kept_failure:
        window.start_training()
    failed: RunRecord = kept_failure.args[0]

    show_runs(qtbot, window)
    outcomes = texts(window.runs_view.sorted_model, OUTCOME)
    assert outcomes == ["failed", "stopped by you"]
    assert "the network could not be built" in (failed.failure or "")
    assert failed.recipe.epochs == 500 and failed.recipe.dataset == str(colour_dataset)


def test_run_again_trains_that_runs_recipe(
    qtbot, runs_window: MainWindow, colour_dataset: Path, tmp_path: Path
) -> None:
    window = runs_window
    recipe = tiny_recipe_for(colour_dataset, epochs=2, lr=0.02, freeze=FreezePlan("last:1"))
    RunStore(window.keeper.app_root).save_failed(recipe, [], STARTED, "Out of memory.")
    load(qtbot, window, colour_dataset)
    window.train_panel.epochs.setValue(7)
    show_runs(qtbot, window)

    window.runs_view.select_rows([0])
    with qtbot.waitSignal(window.training.running_changed, timeout=60_000):
        window.runs_view.run_again_button.click()
    with qtbot.waitSignal(window.keeper.kept, timeout=120_000) as kept:
        pass

    again: RunRecord = kept.args[0]
    assert again.recipe.epochs == 2 and again.recipe.lr == pytest.approx(0.02)
    assert again.recipe.freeze == recipe.freeze
    assert window.train_panel.epochs.value() == 2  # the window shows the recipe it ran


def test_a_run_whose_dataset_is_gone_is_not_run_again_and_the_window_keeps_its_folder(
    qtbot, runs_window: MainWindow, colour_dataset: Path, tmp_path: Path
) -> None:
    window = runs_window
    gone = tiny_recipe_for(tmp_path / "moved-away", epochs=2)
    RunStore(window.keeper.app_root).save_failed(gone, [], STARTED, "Stopped.")
    load(qtbot, window, colour_dataset)
    show_runs(qtbot, window)

    window.runs_view.select_rows([0])
    window.runs_view.run_again_button.click()

    assert not window.training.running
    assert "no longer there" in window.runs_view.banner.text
    assert window.data_panel.report is not None
    assert Path(window.data_panel.report.root) == colour_dataset


def test_deleting_runs_in_the_window_leaves_exports_elsewhere(
    qtbot, runs_window: MainWindow, colour_dataset: Path, tmp_path: Path
) -> None:
    window = runs_window
    record = train(qtbot, window, colour_dataset, epochs=1)
    assert window.results_panel.result is not None
    export = save_model_folder(window.results_panel.result, tmp_path / "my-export")
    before = {p.name: p.read_bytes() for p in export.iterdir()}
    show_runs(qtbot, window)
    window.runs_view.select_rows([0])
    window.runs_view.confirm_delete = lambda records: True

    with qtbot.waitSignal(window.runs.deleted, timeout=30_000):
        window.runs_view.delete_button.click()
    qtbot.waitUntil(lambda: window.runs_view.model.rowCount() == 0, timeout=30_000)

    assert not record.folder.exists()
    assert {p.name: p.read_bytes() for p in export.iterdir()} == before
    # The model on screen now lives only in the window: quitting asks about it.
    assert window.work_at_risk()


def test_step_runs_for_a_screenshot_overlays_the_newest_runs(
    qtbot, runs_window: MainWindow, tmp_path: Path
) -> None:
    from finetune_studio.ui.app import RUNS_COMPARED, ScriptedRun, parse_args

    window = runs_window
    kept_runs(window.keeper.app_root, RUNS_COMPARED + 1)
    scripted = ScriptedRun(window, parse_args(["--step", "runs"]))

    with qtbot.waitSignal(window.runs.listed, timeout=30_000):
        scripted.finish()

    assert window.tabs.currentWidget() is window.runs_view
    qtbot.waitUntil(lambda: len(window.runs_view.selected_records()) == RUNS_COMPARED)
    assert len(window.runs_view.curves.legend.items) == RUNS_COMPARED
    assert scripted.exit_code == 0


def test_the_time_column_says_how_long_each_run_took() -> None:
    assert [duration_in_words(s) for s in (42.4, 185, 3725)] == ["42 s", "3 min 05 s", "1 h 02 min"]


def test_runs_sort_by_how_long_they_took(view: RunsView) -> None:
    """The fixture's runs started a minute apart and were kept together: the newest
    took the least time."""
    view.table.sortByColumn(TIME, Qt.SortOrder.AscendingOrder)
    assert texts(view.sorted_model, PLAN) == [
        "last 2 blocks + head",
        "last 1 block + head",
        "head only",
    ]


def test_the_legend_takes_as_many_columns_as_its_labels_fit(qtbot, tmp_path: Path) -> None:
    """Three long labels in one row pushed the loss plot out of a narrow view."""
    from finetune_studio.ui.widgets.runs_view import RunCurves

    curves = RunCurves()
    qtbot.addWidget(curves)
    records = kept_runs(tmp_path / "runs")
    curves.resize(300, 400)
    curves.show_runs(records)
    assert curves.legend.columnCount == 1
    curves.resize(2000, 400)
    curves.show_runs(records)
    assert curves.legend.columnCount == 3
