"""Issue 11, "Find the wrong labels" and "Fix them in place, losing nothing" in the
window: the suspects search runs with progress, its list repairs the dataset through
the journal, Undo puts every byte back, and a refused move leaves nothing half-done."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from PySide6.QtCore import QItemSelectionModel, Qt

from finetune_studio.engine.freezing import FreezePlan
from finetune_studio.engine.recipe import Recipe
from finetune_studio.ui.widgets.suspects_panel import SuspectsPanel
from finetune_studio.ui.workers.tasks import TaskRunner, background_threads_running
from support.tiny import TINY, make_colour_dataset, misfile


def snapshot(root: Path) -> dict[str, str]:
    """Every picture by path below the dataset, with its bytes' hash."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".finetune-studio" not in p.parts
    }


@pytest.fixture
def mislabelled(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = make_colour_dataset(tmp_path / "colours", per_class=20)
    return root, misfile(root, [("red", "blue"), ("green", "red")])


@pytest.fixture
def panel(qtbot):
    runner = TaskRunner()
    widget = SuspectsPanel(runner)
    qtbot.addWidget(widget)
    widget.resize(900, 600)
    yield widget
    runner.shutdown(5)
    qtbot.waitUntil(lambda: background_threads_running() == 0, timeout=10_000)


def found(qtbot, panel: SuspectsPanel, root: Path) -> None:
    recipe = Recipe(
        dataset=str(root), backbone=TINY, workers=0, device="cpu", freeze=FreezePlan("head")
    )
    with qtbot.waitSignal(panel.suspects_found, timeout=120_000):
        panel.start(recipe, None)
        assert panel.running and panel.cancel_button.isVisibleTo(panel)
    assert not panel.running


def select(panel: SuspectsPanel, paths: set[str]) -> None:
    selection = panel.table.selectionModel()
    selection.clear()
    for row in range(panel.model.rowCount()):
        if panel.model.item(row, 0).data(Qt.ItemDataRole.UserRole + 1) in paths:
            flags = (
                QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
            )
            selection.select(panel.model.index(row, 0), flags)


def test_the_list_names_the_misfiled_pictures_and_moving_them_fixes_the_dataset(
    qtbot, panel, mislabelled
):
    root, moved = mislabelled
    before = snapshot(root)
    found(qtbot, panel, root)
    listed = [panel.model.item(r, 0).toolTip() for r in range(panel.model.rowCount())]
    assert set(moved) <= set(listed)
    assert f"({len(listed)})" in panel.title.text()
    assert not panel.retrain_button.isEnabled()

    select(panel, set(moved))
    with qtbot.waitSignal(panel.dataset_changed):
        qtbot.mouseClick(panel.move_suggested_button, Qt.MouseButton.LeftButton)
        assert not panel.undo_button.isEnabled()  # while the pictures move
    for path, real in moved.items():
        assert not Path(path).exists()
        assert (root / real / Path(path).name).exists()
    assert panel.retrain_button.isEnabled()
    assert "Undo" in panel.status.text()

    with qtbot.waitSignal(panel.repairs.finished):
        qtbot.mouseClick(panel.undo_button, Qt.MouseButton.LeftButton)  # one repair, one Undo
    assert snapshot(root) == before
    assert "Put back 2 picture(s)" in panel.status.text()
    assert {panel.model.item(r, 4).text() for r in range(panel.model.rowCount())} == {""}
    assert not panel.undo_button.isEnabled()  # the journal holds nothing more to undo


def test_excluded_pictures_leave_the_dataset_and_undo_brings_them_back(qtbot, panel, mislabelled):
    root, moved = mislabelled
    before = snapshot(root)
    found(qtbot, panel, root)
    select(panel, set(moved))
    with qtbot.waitSignal(panel.repairs.finished):
        qtbot.mouseClick(panel.exclude_button, Qt.MouseButton.LeftButton)
    assert not any(Path(path).exists() for path in moved)
    hidden = list((root / ".finetune-studio" / "excluded").rglob("*.png"))
    assert sorted(p.name for p in hidden) == sorted(Path(p).name for p in moved)
    assert {panel.model.item(r, 4).text() for r in range(panel.model.rowCount())} >= {"excluded"}

    with qtbot.waitSignal(panel.repairs.finished):
        panel.undo()
    assert snapshot(root) == before


def test_a_refused_move_says_why_and_moves_nothing(qtbot, panel, mislabelled, monkeypatch):
    root, moved = mislabelled
    before = snapshot(root)
    found(qtbot, panel, root)
    select(panel, set(moved))
    real_replace = os.replace
    calls = []

    def refuse_second(source, destination):  # the second picture's move fails
        calls.append(source)
        if len(calls) == 2:
            raise PermissionError(13, "Permission denied", str(source))
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", refuse_second)
    with qtbot.waitSignal(panel.repairs.finished):
        panel.move_selected_to("green")
    monkeypatch.undo()
    assert snapshot(root) == before
    assert "Nothing more was moved" in panel.status.text()
    assert not panel.retrain_button.isEnabled()


def test_a_dataset_opened_through_a_link_still_marks_what_moved(qtbot, panel, mislabelled):
    root, moved = mislabelled
    link = root.parent / "linked"
    link.symlink_to(root)
    found(qtbot, panel, link)
    listed = {panel.model.path(r) for r in range(panel.model.rowCount())}
    wanted = {p for p in listed if Path(p).name.startswith("moved_")}
    assert len(wanted) == len(moved)
    select(panel, wanted)
    with qtbot.waitSignal(panel.repairs.finished):
        panel.exclude_selected()
    marked = {panel.model.path(r) for r in range(panel.model.rowCount()) if panel.model.is_moved(r)}
    assert marked == wanted
    assert not panel.move_suggested_button.isEnabled()  # nothing left to move in the selection


def test_repairs_wait_while_a_run_trains(qtbot, panel, mislabelled):
    root, moved = mislabelled
    found(qtbot, panel, root)
    select(panel, set(moved))
    assert panel.exclude_button.isEnabled()
    panel.lock("A run is training on these pictures.")
    assert not panel.exclude_button.isEnabled() and not panel.find_button.isEnabled()
    panel.exclude_selected()  # refused, not queued
    assert all(Path(p).exists() for p in moved)
    panel.lock("")
    assert panel.exclude_button.isEnabled()
