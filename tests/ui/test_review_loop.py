"""Issue 11 in the whole window: find the wrong labels after a run, repair them in
place, undo with Ctrl+Z, and retrain the same recipe in one click, the pictures that
did not move coming from the feature cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import load, start_training
from PySide6.QtCore import QItemSelectionModel, Qt

from finetune_studio.ui.main_window import RESULTS_TAB
from support.tiny import make_colour_dataset, misfile

PATH_ROLE = Qt.ItemDataRole.UserRole + 1


@pytest.fixture
def mislabelled(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = make_colour_dataset(tmp_path / "colours", per_class=16)
    return root, misfile(root, [("red", "blue"), ("green", "red")])


def counts(window) -> dict[str, int]:
    report = window.data_panel.report
    return dict(
        zip(report.classes, (t + v for t, v in zip(report.train_counts, report.val_counts)))
    )


def test_find_repair_undo_and_retrain_in_the_window(qtbot, window, mislabelled):
    root, moved = mislabelled
    start_training(qtbot, window, root, epochs=1)
    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        pass
    before = counts(window)
    window.tabs.setCurrentIndex(RESULTS_TAB)
    panel = window.results_panel.suspects
    with qtbot.waitSignal(panel.suspects_found, timeout=120_000):
        qtbot.mouseClick(panel.find_button, Qt.MouseButton.LeftButton)
    gallery = window.results_panel.gallery
    assert set(moved) <= {r.path for r in gallery.shown_records()}  # the suspects filter

    selection = panel.table.selectionModel()
    for row in range(panel.model.rowCount()):
        if panel.model.item(row, 0).data(PATH_ROLE) in moved:
            flags = (
                QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
            )
            selection.select(panel.model.index(row, 0), flags)
    with qtbot.waitSignal(window.data_panel.dataset_loaded, timeout=30_000):  # re-checked
        qtbot.mouseClick(panel.move_suggested_button, Qt.MouseButton.LeftButton)
    repaired = counts(window)
    assert repaired == {
        "red": before["red"],
        "green": before["green"] + 1,
        "blue": before["blue"] - 1,
    }

    assert window.review.undo_action.isEnabled()
    with qtbot.waitSignal(window.data_panel.dataset_loaded, timeout=30_000):
        window.review.undo_action.trigger()  # Edit > Undo, Ctrl+Z
    assert counts(window) == before
    assert all(Path(path).exists() for path in moved)

    with qtbot.waitSignal(window.data_panel.dataset_loaded, timeout=30_000):
        panel.table.selectAll()
        panel.move_selected_to("green")
        assert not window.start_action.isEnabled()  # not while pictures move
    assert panel.retrain_button.isEnabled()
    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        qtbot.mouseClick(panel.retrain_button, Qt.MouseButton.LeftButton)
    assert not panel.retrain_button.isEnabled()
    log = window.train_panel.log.toPlainText()
    assert "from the cache" in log
    assert window.results_panel.result is not None
    assert window.results_panel.result.recipe.dataset == str(root)


def test_ctrl_z_undoes_a_repair_made_before_a_restart(qtbot, window, mislabelled):
    from finetune_studio.engine.review.journal import RepairJournal

    root, moved = mislabelled
    path, real = next(iter(moved.items()))
    RepairJournal(root).relabel([path], real)  # a repair of an earlier session, or the CLI
    assert not Path(path).exists()
    assert not window.review.undo_action.isEnabled()
    load(qtbot, window, root)
    assert window.review.undo_action.isEnabled()

    with qtbot.waitSignal(window.data_panel.dataset_loaded, timeout=30_000):  # re-checked
        window.review.undo_action.trigger()
    assert Path(path).exists()
    assert not window.review.undo_action.isEnabled()  # the journal holds nothing more
