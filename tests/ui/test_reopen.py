"""The window as the user left it: every run kept, a project reopened with its last
run, a question before work is lost, the last project offered at the next launch."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import load, open_window, start_training
from PySide6.QtCore import Qt

from finetune_studio.engine.export import load_model_folder
from finetune_studio.engine.recipe import Recipe
from finetune_studio.engine.runs import RunStore
from finetune_studio.ui.app import ScriptedRun, parse_args
from finetune_studio.ui.main_window import RESULTS_TAB, MainWindow
from finetune_studio.ui.workers.run_keeper import app_runs_folder
from finetune_studio.ui.workers.tasks import background_threads_running
from support.tiny import TINY


@pytest.fixture
def later(qtbot, settings):
    """Windows opened later in the test (the next launch), closed and waited for."""
    windows: list[MainWindow] = []

    def open_later(engine: bool = True) -> MainWindow:
        if engine:
            window = open_window(qtbot, settings)
        else:
            settings.setValue("model/backbone", TINY)
            window = MainWindow(settings)
            window.confirm_quit = lambda lost: "quit"
            qtbot.addWidget(window)
            window.show()
        windows.append(window)
        return window

    yield open_later
    for window in windows:
        window.close()
    qtbot.waitUntil(lambda: background_threads_running() == 0, timeout=30_000)


def train_and_keep(qtbot, window: MainWindow, dataset: Path) -> None:
    start_training(qtbot, window, dataset, epochs=2)
    with qtbot.waitSignals([window.training_finished, window.keeper.kept], timeout=120_000):
        pass


def rows(model) -> list[list[str]]:
    return [
        [model.index(row, column).data() for column in range(model.columnCount())]
        for row in range(model.rowCount())
    ]


def predict(qtbot, window: MainWindow, picture: Path) -> str:
    panel = window.results_panel
    with qtbot.waitSignal(panel.predictions_shown, timeout=30_000) as shown:
        panel.predict([str(picture)])
    assert shown.args == [1]
    return panel.predictions.item(0).text()


def recorded_questions(window: MainWindow, answer: str) -> list[list[str]]:
    asked: list[list[str]] = []

    def confirm_quit(lost: list[str]) -> str:
        asked.append(lost)
        return answer

    window.confirm_quit = confirm_quit
    return asked


@pytest.fixture
def project(colour_dataset: Path, tmp_path: Path) -> Path:
    path = tmp_path / "colours.json"
    Recipe(
        dataset=str(colour_dataset),
        backbone=TINY,
        epochs=2,
        batch_size=4,
        lr=0.05,
        workers=0,
        device="cpu",
        head_fit="epochs",
    ).save(path)
    return path


def open_project(qtbot, window: MainWindow, path: Path) -> None:
    with qtbot.waitSignal(window.data_panel.dataset_loaded, timeout=30_000):
        assert window.open_project(path)
    qtbot.waitUntil(lambda: window.model_panel.ready, timeout=30_000)


# --- a project reopens with its last run ------------------------------------------------------
def test_a_project_saved_after_training_reopens_with_the_same_results_and_model(
    qtbot, window, later, colour_dataset, tmp_path
):
    train_and_keep(qtbot, window, colour_dataset)
    picture = colour_dataset / "red" / "red_003.png"
    before = (
        rows(window.results_panel.per_class_model),
        window.results_panel.confusion_model.counts,
        predict(qtbot, window, picture),
    )
    project = tmp_path / "colours.json"
    with qtbot.waitSignal(window.keeper.kept, timeout=60_000):  # into colours.runs
        assert window.save_project(project)
    window.close()

    again = later()
    with qtbot.waitSignal(again.keeper.restored, timeout=60_000):
        assert again.open_project(project)

    panel = again.results_panel
    assert "reopened" in panel.summary.text()
    assert "Validation accuracy" in panel.summary.text()
    after = (
        rows(panel.per_class_model),
        panel.confusion_model.counts,
        predict(qtbot, again, picture),
    )
    assert after == before
    assert len(before[0]) == 3
    with qtbot.waitSignal(panel.exported, timeout=60_000):
        panel.export_to(tmp_path / "export")
    assert load_model_folder(tmp_path / "export").class_names == ("blue", "green", "red")


def test_a_run_in_an_open_project_is_kept_beside_it_and_the_command_line_reopens_it(
    qtbot, window, later, project, tmp_path
):
    open_project(qtbot, window, project)
    with qtbot.waitSignals([window.training_finished, window.keeper.kept], timeout=120_000):
        qtbot.mouseClick(window.train_panel.start_button, Qt.MouseButton.LeftButton)
    shown = rows(window.results_panel.per_class_model)
    window.close()

    [record] = RunStore(tmp_path / "colours.runs").runs()
    assert record.recipe == Recipe.load(project)
    assert RunStore(app_runs_folder()).runs() == []  # not among the runs without a project
    again = later(engine=False)
    picture = Path(Recipe.load(project).dataset) / "blue" / "blue_001.png"
    # Without --quit-when-done: QCoreApplication.exit() would end every later event loop.
    scripted = ScriptedRun(
        again, parse_args(["--project", str(project), "--predict", str(picture)])
    )
    again.start_engine()
    qtbot.waitUntil(lambda: scripted.exit_code is not None, timeout=60_000)

    assert scripted.exit_code == 0
    assert rows(again.results_panel.per_class_model) == shown
    assert again.results_panel.predictions.count() == 1


def test_a_project_without_runs_opens_with_empty_results(qtbot, window, project, colour_dataset):
    train_and_keep(qtbot, window, colour_dataset)  # a run on the same folder, no project
    with qtbot.waitSignal(window.keeper.restore_ended, timeout=30_000):
        open_project(qtbot, window, project)

    assert window.results_panel.result is None
    assert window.results_panel.per_class_model.rowCount() == 0
    assert not window.results_panel.export_button.isEnabled()


# --- quitting asks before losing work ---------------------------------------------------------
def test_quitting_right_after_a_run_asks_nothing_and_the_run_is_kept(qtbot, window, colour_dataset):
    asked = recorded_questions(window, "stay")
    start_training(qtbot, window, colour_dataset, epochs=1)
    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        pass
    accuracy = window.results_panel.result.evaluation.accuracy

    assert window.close()
    qtbot.waitUntil(lambda: background_threads_running() == 0, timeout=30_000)

    assert asked == []
    [record] = RunStore(app_runs_folder()).runs()
    assert record.evaluation.accuracy == accuracy


def train_where_the_run_cannot_be_kept(qtbot, window, colour_dataset, tmp_path) -> None:
    """Train once while a file stands where the app's runs folder would go."""
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the runs folder would go")
    window.keeper.app_root = blocker
    start_training(qtbot, window, colour_dataset, epochs=1)
    with qtbot.waitSignals([window.training_finished, window.keeper.keep_failed], timeout=60_000):
        pass


def test_a_model_that_could_not_be_kept_is_not_lost_without_asking(
    qtbot, window, colour_dataset, tmp_path
):
    train_where_the_run_cannot_be_kept(qtbot, window, colour_dataset, tmp_path)
    assert "could not be kept" in window.results_panel.banner.text
    asked = recorded_questions(window, "stay")

    assert not window.close()
    assert window.isVisible()
    [lost] = asked
    assert "trained model" in " ".join(lost)

    with qtbot.waitSignal(window.results_panel.exported, timeout=60_000):
        window.results_panel.export_to(tmp_path / "export")
    asked.clear()
    assert window.close()
    assert asked == []


def test_saving_a_project_keeps_a_run_the_app_folder_could_not_keep(
    qtbot, window, colour_dataset, tmp_path
):
    train_where_the_run_cannot_be_kept(qtbot, window, colour_dataset, tmp_path)

    with qtbot.waitSignal(window.keeper.kept, timeout=60_000):
        assert window.save_project(tmp_path / "colours.json")

    assert "could not be kept" not in window.results_panel.banner.text
    assert len(RunStore(tmp_path / "colours.runs").runs()) == 1
    assert window.work_at_risk() == []


def test_unsaved_project_changes_are_asked_about_and_can_be_saved(qtbot, window, later, project):
    open_project(qtbot, window, project)
    asked = recorded_questions(window, "stay")
    assert window.work_at_risk() == []

    window.train_panel.epochs.setValue(5)
    assert not window.close()
    assert asked == [["the changes to the project colours.json"]]

    asked = recorded_questions(window, "save")
    assert window.close()
    assert Recipe.load(project).epochs == 5

    again = later()
    open_project(qtbot, again, project)
    asked = recorded_questions(again, "stay")
    assert again.close()  # opened and left as it was: nothing to ask
    assert asked == []


def test_a_scripted_run_told_to_quit_asks_nothing(qtbot, later, project, monkeypatch):
    from finetune_studio.ui import app

    exits: list[int] = []
    monkeypatch.setattr(app.QCoreApplication, "exit", exits.append)  # would end the tests' loop
    window = later(engine=False)
    asked = recorded_questions(window, "stay")
    args = ["--project", str(project), "--epochs", "5", "--quit-when-done"]  # an unsaved change
    scripted = ScriptedRun(window, parse_args(args))
    window.start_engine()
    qtbot.waitUntil(lambda: scripted.exit_code is not None, timeout=60_000)

    assert exits == [0]
    assert asked == []
    assert not window.isVisible()


# --- the next launch offers the last project or dataset ---------------------------------------
def test_the_next_launch_offers_the_last_project(qtbot, window, later, project):
    open_project(qtbot, window, project)
    window.close()

    again = later()
    ScriptedRun(again, parse_args([]))
    bar = again.reopen_bar
    assert bar.isVisible()
    assert "colours.json" in bar.label.text()
    assert bar.reopen_button.text() == "Reopen colours.json"
    with qtbot.waitSignal(again.data_panel.dataset_loaded, timeout=30_000):
        qtbot.mouseClick(bar.reopen_button, Qt.MouseButton.LeftButton)

    assert not bar.isVisible()
    assert again.recipe() == Recipe.load(project)


def test_a_dataset_reopened_before_the_engine_has_loaded_brings_back_its_last_run(
    qtbot, window, later, colour_dataset
):
    train_and_keep(qtbot, window, colour_dataset)
    shown = rows(window.results_panel.per_class_model)
    window.close()

    again = later(engine=False)  # as at launch: the window is up, PyTorch still loading
    ScriptedRun(again, parse_args([]))
    assert again.reopen_bar.reopen_button.text() == "Reopen colours"
    qtbot.mouseClick(again.reopen_bar.reopen_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignals(
        [again.data_panel.dataset_loaded, again.keeper.restored], timeout=60_000
    ):
        again.start_engine()

    assert rows(again.results_panel.per_class_model) == shown
    assert again.results_panel.open_pictures.isEnabled()


def test_a_folder_or_project_on_the_command_line_replaces_the_offer(
    qtbot, window, later, project, colour_dataset
):
    load(qtbot, window, colour_dataset)
    window.close()

    for args in (["--dataset", str(colour_dataset)], ["--project", str(project)], []):
        again = later()
        ScriptedRun(again, parse_args(args))
        assert again.reopen_bar.isVisible() == (args == []), args


def test_the_offer_can_be_dismissed_and_is_not_made_for_a_project_that_is_gone(
    qtbot, window, later, project
):
    open_project(qtbot, window, project)
    window.close()

    again = later()
    ScriptedRun(again, parse_args([]))
    qtbot.mouseClick(again.reopen_bar.dismiss_button, Qt.MouseButton.LeftButton)
    assert not again.reopen_bar.isVisible()
    assert again.data_panel.report is None

    project.unlink()
    third = later()
    assert not third.offer_reopen()
    assert not third.reopen_bar.isVisible()


def test_results_of_a_reopened_run_show_in_the_results_step(qtbot, window, project, later):
    open_project(qtbot, window, project)
    with qtbot.waitSignals([window.training_finished, window.keeper.kept], timeout=120_000):
        window.start_training()
    assert window.tabs.currentIndex() == RESULTS_TAB
    window.close()

    again = later()
    with qtbot.waitSignal(again.keeper.restored, timeout=60_000):
        again.open_project(project)
    assert "Reopened the run" in again.statusBar().currentMessage()


def test_a_model_that_could_not_be_kept_is_not_replaced_without_asking(
    qtbot, window, colour_dataset, tmp_path
):
    train_where_the_run_cannot_be_kept(qtbot, window, colour_dataset, tmp_path)
    asked: list[str] = []

    def refuse(action: str) -> bool:
        asked.append(action)
        return False

    window.confirm_replace_model = refuse
    shown = window.results_panel.result
    assert not window.start_training()
    assert asked == ["Train again"] and not window.training.running
    assert window.results_panel.result is shown
    assert not window.open_project(tmp_path / "any.json")
    assert asked == ["Train again", "Open the project"]

    with qtbot.waitSignal(window.results_panel.exported, timeout=60_000):
        window.results_panel.export_to(tmp_path / "export")
    asked.clear()
    assert window.start_training()
    assert asked == []
    qtbot.waitUntil(lambda: not window.training.running, timeout=60_000)
