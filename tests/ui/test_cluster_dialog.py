"""File > "Run on a cluster…": the dialog writes a bundle, can be stopped, and says
why it refuses (issue 14, hand-off to a cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import Gate
from PySide6.QtCore import Qt

from finetune_studio.engine.cluster import manifest as manifest_module
from finetune_studio.engine.recipe import Recipe
from finetune_studio.ui.widgets.cluster_dialog import STOPPED, ClusterDialog
from support.pictures import make_photo_dataset
from support.tiny import TINY


@pytest.fixture
def recipe(tmp_path: Path) -> Recipe:
    data = make_photo_dataset(tmp_path / "pets", per_class=3, size=48)
    return Recipe(dataset=str(data), backbone=TINY, batch_size=8)


@pytest.fixture
def dialog(qtbot, recipe: Recipe) -> ClusterDialog:
    dialog = ClusterDialog(recipe)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def test_the_dialog_writes_a_bundle_and_shows_the_launch_commands(
    qtbot, dialog: ClusterDialog, recipe: Recipe, tmp_path: Path
) -> None:
    assert dialog.destination.text() == str(tmp_path / "pets-cluster")
    dialog.nodes.setValue(2)
    dialog.gpus_per_node.setValue(4)
    assert "8 processes, 1 pictures each" in dialog.processes.text()

    with qtbot.waitSignal(dialog.written, timeout=30_000) as written:
        qtbot.mouseClick(dialog.write_button, Qt.MouseButton.LeftButton)

    folder = tmp_path / "pets-cluster"
    assert written.args[0].folder == str(folder)
    assert Recipe.load(folder / "recipe.json") == recipe.replace(dataset="data")
    assert "#SBATCH --nodes=2\n" in (folder / "slurm.sbatch").read_text()
    report = dialog.report.toPlainText()
    for command in ("bash torchrun.sh", "sbatch slurm.sbatch", "sky launch", "rsync -aL"):
        assert command in report
    qtbot.mouseClick(dialog.copy_button, Qt.MouseButton.LeftButton)
    from PySide6.QtGui import QGuiApplication

    assert "sbatch slurm.sbatch" in QGuiApplication.clipboard().text()


def test_cancel_while_hashing_writes_nothing(
    qtbot, dialog: ClusterDialog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    real_hash = manifest_module.file_sha256

    def held_hash(path: Path) -> str:
        gate.pass_through()
        return real_hash(path)

    monkeypatch.setattr(manifest_module, "file_sha256", held_hash)
    qtbot.mouseClick(dialog.write_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(gate.entered.is_set, timeout=30_000)

    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    gate.release.set()
    qtbot.waitUntil(lambda: not dialog.running, timeout=30_000)

    assert dialog.status.text() == STOPPED
    assert not (tmp_path / "pets-cluster").exists()
    assert dialog.write_button.isEnabled()


def test_a_folder_that_is_not_empty_is_refused_with_a_reason(
    qtbot, dialog: ClusterDialog, tmp_path: Path
) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    dialog.destination.setText(str(taken))

    qtbot.mouseClick(dialog.write_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.running, timeout=30_000)

    assert "is not empty" in dialog.status.text()
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]


def test_counts_that_do_not_divide_the_batch_are_flagged(dialog: ClusterDialog) -> None:
    dialog.gpus_per_node.setValue(3)

    assert "does not divide by 3" in dialog.processes.text()


def test_file_menu_opens_the_dialog_with_the_windows_recipe(qtbot, window, tmp_path: Path) -> None:
    from helpers import load

    data = make_photo_dataset(tmp_path / "birds", per_class=3, size=48)
    load(qtbot, window, data)
    window.cluster_action.trigger()
    dialog = window.findChild(ClusterDialog)
    assert dialog is not None and dialog.isVisible()
    assert dialog.destination.text() == str(tmp_path / "birds-cluster")
    dialog.close()


def test_file_menu_without_a_dataset_says_what_to_do_first(
    qtbot, window, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QMessageBox

    said: list[str] = []
    monkeypatch.setattr(QMessageBox, "information", lambda _parent, _title, text: said.append(text))
    window.cluster_action.trigger()
    assert said == ["Load a dataset first (step 1)."]
    assert window.findChild(ClusterDialog) is None
