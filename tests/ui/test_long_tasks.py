"""Every long task in the window reports progress, can be cancelled, and never holds
the window open: a gate holds each task exactly where the test needs it."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import (
    Gate,
    GatedWeightsServer,
    copies_of_one_picture,
    load,
    open_window,
    start_training,
)
from PySide6.QtCore import Qt

from finetune_studio.engine import inspection
from finetune_studio.ui.workers.tasks import background_threads_running

MAX_CHECK_WORKERS = 8  # inspection.validate_images opens at most this many at once


@pytest.fixture
def big_folder(tmp_path: Path) -> Path:
    return copies_of_one_picture(tmp_path / "big", classes=2, per_class=200)


def hold_checks_in(folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Gate, list[Path]]:
    """Every picture of ``folder`` waits at the gate while it is opened."""
    gate, opened = Gate(times=10_000), []
    real = inspection.inspect_image

    def inspect_image(path: Path):
        if folder in Path(path).parents:
            opened.append(path)
            gate.pass_through()
        return real(path)

    monkeypatch.setattr(inspection, "inspect_image", inspect_image)
    return gate, opened


def wait_for_background_work(qtbot) -> None:
    qtbot.waitUntil(lambda: background_threads_running() == 0, timeout=30_000)


def test_a_newer_folder_check_stops_the_one_it_replaces(
    qtbot, window, big_folder, colour_dataset, monkeypatch
):
    gate, opened = hold_checks_in(big_folder, monkeypatch)
    window.data_panel.load_folder(big_folder)
    qtbot.waitUntil(gate.entered.is_set)

    with qtbot.waitSignal(window.data_panel.dataset_loaded, timeout=30_000) as loaded:
        window.data_panel.load_folder(colour_dataset)
    gate.release.set()
    wait_for_background_work(qtbot)

    assert loaded.args[0].root == str(colour_dataset)
    assert window.data_panel.report.root == str(colour_dataset)  # never the older one
    assert len(opened) <= MAX_CHECK_WORKERS  # of 400: the rest were never opened


def test_closing_the_window_during_a_folder_check_does_not_wait_for_it(
    qtbot, window, big_folder, monkeypatch
):
    gate, opened = hold_checks_in(big_folder, monkeypatch)
    window.data_panel.load_folder(big_folder)
    qtbot.waitUntil(gate.entered.is_set)
    assert window.data_panel.progress.isVisible() and window.data_panel.cancel_button.isVisible()

    window.close()

    assert not window.isVisible()
    assert background_threads_running() >= 1  # closed while a picture was still open
    gate.release.set()
    wait_for_background_work(qtbot)
    assert len(opened) <= MAX_CHECK_WORKERS


def test_cancel_stops_a_folder_check(qtbot, window, big_folder, monkeypatch):
    gate, opened = hold_checks_in(big_folder, monkeypatch)
    panel = window.data_panel
    panel.load_folder(big_folder)
    qtbot.waitUntil(gate.entered.is_set)

    with qtbot.waitSignal(panel.loading_changed, timeout=30_000):
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
        gate.release.set()

    assert panel.report is None and "Stopped checking" in panel.banner.text
    assert not panel.progress.isVisible()
    assert len(opened) <= MAX_CHECK_WORKERS


@pytest.fixture
def download_window(qtbot, settings):
    """A window whose backbone list holds ``tiny_download``, served by a held server."""
    from finetune_studio.engine.backbones import register_backbone, unregister_backbone
    from support.tiny import tiny_spec

    with GatedWeightsServer("tiny-download.pth", bytes(6 * 2**20), head=2 * 2**20) as server:
        register_backbone(tiny_spec("tiny_download", weights_url=server.url))
        try:
            window = open_window(qtbot, settings)
            yield window, server.gate
            window.close()
            server.gate.release.set()
            wait_for_background_work(qtbot)
        finally:
            unregister_backbone("tiny_download")


def start_download(qtbot, window) -> None:
    panel = window.model_panel
    assert panel.select_backbone("tiny_download")
    qtbot.waitUntil(
        lambda: panel.download_progress.text() == "Downloading weights… 2 of 6 MB",
        timeout=30_000,
    )
    assert panel.download_progress.value() == panel.download_progress.maximum() // 3


def nothing_downloaded() -> bool:
    from finetune_studio.engine.weights import hub_checkpoint_dir

    folder = hub_checkpoint_dir()
    return not folder.exists() or not any(folder.iterdir())


def test_a_weights_download_shows_progress_and_cancel_stops_it(qtbot, download_window):
    window, gate = download_window
    panel = window.model_panel
    start_download(qtbot, window)

    qtbot.mouseClick(panel.cancel_download, Qt.MouseButton.LeftButton)
    gate.release.set()  # the next chunk arrives; the download sees the cancel

    qtbot.waitUntil(lambda: "Download cancelled" in panel.banner.text, timeout=30_000)
    assert not panel.download_progress.isVisible()
    wait_for_background_work(qtbot)
    assert nothing_downloaded()  # no half-written weights left in torch's cache


def test_closing_the_window_during_a_download_does_not_wait_for_it(qtbot, download_window):
    window, gate = download_window
    start_download(qtbot, window)

    window.close()

    assert not window.isVisible()
    assert background_threads_running() >= 1  # closed while the download was held
    gate.release.set()
    wait_for_background_work(qtbot)
    assert nothing_downloaded()


def hold_first_training_step(monkeypatch: pytest.MonkeyPatch) -> tuple[Gate, list[int]]:
    from finetune_studio.engine.training.stepper import Stepper

    gate, steps = Gate(), []
    real_step = Stepper.step

    def step(self, *args, **kwargs):
        steps.append(1)
        gate.pass_through()
        return (yield from real_step(self, *args, **kwargs))

    monkeypatch.setattr(Stepper, "step", step)
    return gate, steps


def test_closing_during_training_aborts_the_run_without_waiting_for_its_batch(
    qtbot, window, colour_dataset, monkeypatch
):
    from finetune_studio.engine.training import Trainer

    gate, steps = hold_first_training_step(monkeypatch)
    evaluations: list[str | None] = []
    real_evaluate = Trainer.evaluate

    def evaluate(self, run, cancel, stage):
        evaluations.append(stage)
        return (yield from real_evaluate(self, run, cancel, stage))

    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    window.model_panel.set_preset("none")  # every layer trains: batches, not a solved head
    start_training(qtbot, window, colour_dataset, epochs=5000)
    qtbot.waitUntil(gate.entered.is_set, timeout=60_000)

    window.close()

    assert not window.isVisible()
    assert background_threads_running() >= 1  # closed during the batch
    gate.release.set()
    wait_for_background_work(qtbot)
    assert steps == [1]  # no batch after the one in progress
    assert evaluations == []  # and no evaluation after the stop: the window is gone


def test_the_evaluation_after_stop_shows_its_progress(qtbot, window, colour_dataset, monkeypatch):
    gate, _ = hold_first_training_step(monkeypatch)
    window.model_panel.set_preset("none")
    start_training(qtbot, window, colour_dataset, epochs=5000)
    qtbot.waitUntil(gate.entered.is_set, timeout=60_000)
    shown: list[tuple[str, int, int]] = []
    panel = window.train_panel
    window.training.stage_progressed.connect(  # after the panel's own slot: it has drawn
        lambda stage, done, total: shown.append((panel.progress.text(), done, total))
    )

    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
        assert panel.progress.text() == "Stopping after this batch…"
        gate.release.set()

    text, done, total = shown[-1]
    assert text == f"Evaluating the model… {total} of {total}" and done == total > 0
    result = window.results_panel.result
    assert result is not None and result.cancelled and result.history == []
    assert result.evaluation.images == len(window.data_panel.report.val)


def test_a_second_stop_skips_the_evaluation_that_follows_a_stop(
    qtbot, window, colour_dataset, monkeypatch
):
    gate, _ = hold_first_training_step(monkeypatch)
    window.model_panel.set_preset("none")
    start_training(qtbot, window, colour_dataset, epochs=5000)
    qtbot.waitUntil(gate.entered.is_set, timeout=60_000)
    panel = window.train_panel
    stages: list[str] = []
    window.training.stage_progressed.connect(lambda stage, done, total: stages.append(stage))

    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
        assert panel.stop_button.isEnabled() and panel.stop_button.text() == "Stop now"
        qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
        gate.release.set()

    assert "Evaluating the model" not in stages
    assert window.results_panel.result is not None
    assert panel.stop_button.text() == "Stop"


def test_the_layer_tree_stays_locked_when_its_network_arrives_during_a_run(
    qtbot, window, colour_dataset, tmp_path, monkeypatch
):
    from finetune_studio.engine import backbones
    from support.tiny import make_colour_dataset

    load(qtbot, window, colour_dataset)
    four = make_colour_dataset(
        tmp_path / "four",
        colours={"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200),
                 "grey": (128, 128, 128)},
    )  # fmt: skip
    gate, real_build = Gate(), backbones.build_model

    def build_model(name, classes, *args, **kwargs):
        if classes == 4:
            gate.pass_through()  # the preview for the new dataset is still on its way
        return real_build(name, classes, *args, **kwargs)

    monkeypatch.setattr(backbones, "build_model", build_model)
    with qtbot.waitSignal(window.data_panel.dataset_loaded, timeout=30_000):
        window.data_panel.load_folder(four)
    window.train_panel.epochs.setValue(5000)
    window.model_panel.set_preset("none")  # a run of many epochs, not a solved head
    qtbot.mouseClick(window.train_panel.start_button, Qt.MouseButton.LeftButton)
    assert window.training.running
    gate.release.set()
    qtbot.waitUntil(lambda: window.model_panel.ready, timeout=30_000)

    layers = window.model_panel.layers
    plan, states = layers.plan, check_states(layers)
    for index in every_index(layers.tree_model):
        click_check_box(qtbot, layers.layer_view, index)
    assert layers.plan == plan and check_states(layers) == states

    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        qtbot.mouseClick(window.train_panel.stop_button, Qt.MouseButton.LeftButton)
    click_check_box(qtbot, layers.layer_view, layers.tree_model.index_of(layers.tree["fc"]))
    assert layers.plan != plan  # unlocked after the run


def every_index(model):
    pending = [model.index(row, 0) for row in range(model.rowCount())]
    while pending:
        index = pending.pop()
        yield index
        pending += [model.index(row, 0, index) for row in range(model.rowCount(index))]


def check_states(layers) -> list[object]:
    return [i.data(Qt.ItemDataRole.CheckStateRole) for i in every_index(layers.tree_model)]


def click_check_box(qtbot, view, index) -> None:
    from helpers import check_indicator_position

    view.expandAll()
    view.scrollTo(index)
    qtbot.mouseClick(
        view.viewport(), Qt.MouseButton.LeftButton, pos=check_indicator_position(view, index)
    )


def test_predictions_show_progress_and_cancel_keeps_those_made(
    qtbot, window, colour_dataset, monkeypatch
):
    from finetune_studio.engine.predict import Predictor

    start_training(qtbot, window, colour_dataset, epochs=1)
    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        pass
    gate, calls, real_tensor_for = Gate(), [], Predictor.tensor_for

    def tensor_for(self, path):
        calls.append(path)
        if len(calls) == 20:
            gate.pass_through()
        return real_tensor_for(self, path)

    monkeypatch.setattr(Predictor, "tensor_for", tensor_for)
    panel, box = window.results_panel, window.results_panel.try_it
    panel.predict([str(colour_dataset)])  # 36 pictures
    qtbot.waitUntil(gate.entered.is_set, timeout=30_000)
    # 16 classified (one batch) of 36, counted twice: classifying, then previews.
    qtbot.waitUntil(lambda: box.prediction_progress.value() == 16, timeout=30_000)
    assert box.prediction_progress.maximum() == 72 and box.cancel_predictions.isVisible()

    with qtbot.waitSignal(panel.predictions_shown, timeout=30_000) as shown:
        qtbot.mouseClick(box.cancel_predictions, Qt.MouseButton.LeftButton)
        gate.release.set()

    assert shown.args == [20] and panel.predictions.count() == 20
    assert panel.banner.text == "Stopped: 20 pictures classified."
    assert not box.prediction_progress.isVisible()
    assert len(calls) == 20  # no picture was read after the cancel
