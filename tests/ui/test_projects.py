"""One recipe is the window's state: a project opened, edited, saved or trained keeps
every field it does not change, including those no widget shows."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from finetune_studio.engine.freezing import FreezePlan, GradualUnfreeze
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.training.trainer import Trainer
from finetune_studio.ui.app import ScriptedRun, parse_args
from finetune_studio.ui.main_window import MainWindow
from support.tiny import TINY


@pytest.fixture
def project(colour_dataset: Path, tmp_path: Path) -> Path:
    """A project file in which every field differs from its default."""
    recipe = Recipe(
        dataset=str(colour_dataset),
        backbone=TINY,
        weights="none",
        freeze=FreezePlan("last:1", (("features.0.0", True),)),
        lr_multipliers={"features": 0.5},
        gradual_unfreeze=GradualUnfreeze(2, ("features.3",)),
        train_batchnorm=True,
        epochs=4,
        batch_size=8,
        optimizer="sgd",
        lr=0.02,
        weight_decay=0.05,
        schedule="constant",
        warmup_fraction=0.2,
        label_smoothing=0.05,
        class_balanced=True,
        augmentation="standard",
        val_fraction=0.25,
        seed=7,
        device="cpu",
        mixed_precision=False,
        early_stopping_patience=3,
        workers=0,
        feature_cache=False,
        cached_views=3,
        head_fit="epochs",
    )
    defaults = Recipe(dataset="elsewhere")
    same = [
        f.name
        for f in dataclasses.fields(Recipe)
        if getattr(recipe, f.name) == getattr(defaults, f.name)
    ]
    assert same == [], f"give these fields a non-default value too: {same}"
    path = tmp_path / "project.json"
    recipe.save(path)
    return path


def open_and_wait(qtbot, window: MainWindow, path: Path) -> None:
    with qtbot.waitSignal(window.data_panel.dataset_loaded, timeout=30_000):
        assert window.open_project(path)
    qtbot.waitUntil(
        lambda: window.model_panel.ready and window.model_panel.num_classes == 3, timeout=30_000
    )


def field_by_field(path: Path) -> dict[str, object]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_a_project_opened_and_saved_in_the_window_is_identical_field_by_field(
    qtbot, window, project, tmp_path
):
    open_and_wait(qtbot, window, project)
    saved = tmp_path / "saved.json"
    assert window.save_project(saved)
    assert field_by_field(saved) == field_by_field(project)

    layers = window.model_panel.layers  # what the steps show is the project
    assert layers.tree["features.0.0"].state() == layers.tree["fc"].state()
    assert len(window.data_panel.report.val) == 9  # 3 of 12 per class: val_fraction 0.25
    assert "a random 75/25 split per class" in window.data_panel.summary.text()

    window.train_panel.epochs.setValue(6)  # an edit replaces its own field, nothing else
    assert window.save_project(saved)
    assert Recipe.load(saved) == Recipe.load(project).replace(epochs=6)


def test_a_run_from_an_opened_project_uses_every_one_of_its_values(
    qtbot, window, project, monkeypatch
):
    received = []
    real_init = Trainer.__init__

    def recording_init(self, recipe, dataset=None, *args, **kwargs):
        received.append((recipe, dataset))
        real_init(self, recipe, dataset, *args, **kwargs)

    monkeypatch.setattr(Trainer, "__init__", recording_init)
    open_and_wait(qtbot, window, project)

    with qtbot.waitSignal(window.training_finished, timeout=120_000) as finished:
        qtbot.mouseClick(window.train_panel.start_button, Qt.MouseButton.LeftButton)

    assert finished.args == [True], window.train_panel.banner.text
    [(recipe, dataset)] = received
    assert recipe == Recipe.load(project)
    assert len(dataset.val) == 9  # split as the project says, not 20% with seed 0


def test_the_scripted_flags_open_a_project_and_save_it_unchanged(
    qtbot, settings, project, tmp_path
):
    saved = tmp_path / "scripted.json"
    window = MainWindow(settings)
    qtbot.addWidget(window)
    # Without --quit-when-done: QCoreApplication.exit() would end every later event loop.
    scripted = ScriptedRun(
        window, parse_args(["--project", str(project), "--save-project", str(saved)])
    )
    window.show()
    window.start_engine()
    qtbot.waitUntil(lambda: scripted.exit_code is not None, timeout=60_000)

    assert scripted.exit_code == 0
    assert field_by_field(saved) == field_by_field(project)
    window.close()


def test_a_project_that_cannot_be_read_is_shown_and_fails_a_scripted_run(
    qtbot, settings, tmp_path, capsys
):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    window = MainWindow(settings)
    qtbot.addWidget(window)
    scripted = ScriptedRun(window, parse_args(["--project", str(broken)]))
    window.show()
    window.start_engine()
    qtbot.waitUntil(lambda: scripted.exit_code is not None, timeout=60_000)

    assert scripted.exit_code == 1
    assert "not valid JSON" in window.data_panel.banner.text
    assert "not valid JSON" in capsys.readouterr().err
    window.close()


def test_values_beyond_what_the_widgets_show_survive_open_and_save(
    qtbot, window, project, tmp_path
):
    extreme = Recipe.load(project).replace(
        epochs=150_000, lr=2.5e-7, early_stopping_patience=15_000, cached_views=64,
        weight_decay=1e-5, warmup_fraction=0.0625, label_smoothing=0.125,
    )  # fmt: skip
    extreme.save(project)
    open_and_wait(qtbot, window, project)
    saved = tmp_path / "saved.json"

    assert window.save_project(saved)

    assert field_by_field(saved) == field_by_field(project)


def test_a_project_whose_folder_is_gone_never_trains_on_the_folder_shown_before(
    qtbot, window, project, colour_dataset, tmp_path
):
    from helpers import load

    load(qtbot, window, colour_dataset)
    moved = Recipe.load(project).replace(dataset=str(tmp_path / "gone"))
    moved.save(project)

    window.open_project(project)
    qtbot.waitUntil(lambda: window.data_panel.banner.isVisible(), timeout=30_000)
    saved = tmp_path / "saved.json"

    assert not window.train_panel.start_button.isEnabled()
    assert not window.start_training()
    assert window.save_project(saved)
    assert field_by_field(saved) == field_by_field(project)


def test_an_advanced_value_the_user_edits_is_taken_as_shown(qtbot, window, project):
    Recipe.load(project).replace(weight_decay=1e-5).save(project)
    open_and_wait(qtbot, window, project)
    window.train_panel.advanced.weight_decay.setValue(0.02)
    assert window.recipe().weight_decay == 0.02
