"""The window, driven through its real widgets (offscreen)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from helpers import check_indicator_position, drop_paths, load, start_training
from PySide6.QtCore import Qt, QTimer

from finetune_studio.ui.main_window import RESULTS_TAB, MainWindow
from support.tiny import TINY


def test_dropping_a_folder_on_the_window_loads_the_dataset(qtbot, window, colour_dataset):
    with qtbot.waitSignal(window.data_panel.dataset_loaded, timeout=30_000) as loaded:
        drop_paths(window, [colour_dataset])

    assert loaded.args[0].classes == ("blue", "green", "red")
    model = window.data_panel.classes_model
    assert [model.index(r, 0).data() for r in range(model.rowCount())] == ["blue", "green", "red"]
    assert model.index(0, 0).data(Qt.ItemDataRole.DecorationRole) is not None  # a thumbnail
    assert "36 pictures" in window.data_panel.summary.text()
    qtbot.waitUntil(lambda: window.train_panel.start_button.isEnabled())
    assert str(colour_dataset) in window.data_panel.recent_folders()


def test_bad_input_shows_what_to_do_and_the_window_stays_usable(
    qtbot, window, tmp_path, colour_dataset
):
    (tmp_path / "notes.txt").write_text("hello")
    drop_paths(window, [tmp_path / "notes.txt"])
    assert "Drop a folder" in window.data_panel.banner.text

    with qtbot.waitSignal(
        window.data_panel.loading_changed,
        timeout=30_000,
        check_params_cb=lambda loading: not loading,
    ):
        window.data_panel.load_folder(tmp_path / "missing")
    assert "does not exist" in window.data_panel.banner.text

    (colour_dataset / "red" / "broken.png").write_bytes(b"")
    load(qtbot, window, colour_dataset)
    skipped = window.data_panel.skipped_model
    assert skipped.rowCount() == 1 and skipped.index(0, 1).data() == "empty file"


def test_tree_check_boxes_freeze_layers_and_show_partial_state(qtbot, window, colour_dataset):
    load(qtbot, window, colour_dataset)
    panel = window.model_panel.layers
    view, model = panel.layer_view, panel.tree_model
    features = model.index_of(panel.tree["features"])
    conv = model.index_of(panel.tree["features.0"])
    view.expand(features)
    view.scrollTo(conv)
    parameter = panel.built.model.features[0][0].weight
    assert not parameter.requires_grad  # "head only" by default
    before = panel.summary.text()

    qtbot.mouseClick(
        view.viewport(), Qt.MouseButton.LeftButton, pos=check_indicator_position(view, conv)
    )

    assert parameter.requires_grad
    assert conv.data(Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Checked
    assert features.data(Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.PartiallyChecked
    assert panel.summary.text() != before and panel.summary.text().startswith("Trainable: ")
    assert panel.plan.overrides == (("features.0", True),)

    qtbot.mouseClick(
        view.viewport(), Qt.MouseButton.LeftButton, pos=check_indicator_position(view, conv)
    )
    assert not parameter.requires_grad
    assert features.data(Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Unchecked

    qtbot.mouseClick(panel.all_button, Qt.MouseButton.LeftButton)
    assert features.data(Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Checked
    assert "(100.00%)" in panel.summary.text()


def test_item_models_pass_the_qt_model_tester(qtmodeltester, window, colour_dataset, qtbot):
    load(qtbot, window, colour_dataset)
    qtmodeltester.check(window.model_panel.layers.tree_model)
    qtmodeltester.check(window.model_panel.backbone_filter)
    qtmodeltester.check(window.data_panel.classes_model)


def test_training_streams_to_the_plots_and_stop_keeps_the_best_model(qtbot, window, colour_dataset):
    window.model_panel.set_preset("none")  # epochs of batches (a head alone is solved)
    start_training(qtbot, window, colour_dataset, epochs=500)
    plots = window.train_panel.plots
    qtbot.waitUntil(lambda: plots.series["val_loss"].size >= 2, timeout=60_000)
    qtbot.waitUntil(
        lambda: (
            plots.curves["batch_loss"].getData()[0] is not None
            and len(plots.curves["batch_loss"].getData()[0]) > 0
        ),
        timeout=30_000,
    )
    assert window.train_panel.progress.value() > 0
    assert "Epoch" in window.train_panel.progress.text()

    with qtbot.waitSignal(window.training_finished, timeout=30_000):
        qtbot.mouseClick(window.train_panel.stop_button, Qt.MouseButton.LeftButton)

    result = window.training.last_result
    assert result is not None and result.cancelled and 2 <= len(result.history) < 500
    assert window.train_panel.progress.text().startswith(
        f"Stopped after {len(result.history)} epochs"
    )
    assert window.results_panel.result is result
    assert window.train_panel.start_button.isEnabled()


def test_training_runs_off_the_gui_thread_and_every_batch_reaches_the_plots_once(
    qtbot, window, colour_dataset, monkeypatch
):
    # What keeps the window responsive, asserted without timing it (timings belong to
    # tests/benchmarks/bench_responsiveness.py, the bundling rule to test_workers.py):
    # every training step runs outside the GUI thread, each batch reaches the GUI
    # thread exactly once and in order, and the GUI's event loop turns during the run.
    from finetune_studio.engine.training.stepper import Stepper

    step_threads: set[int] = set()
    real_step = Stepper.step

    def recording_step(self, *args, **kwargs):
        step_threads.add(threading.get_ident())
        return (yield from real_step(self, *args, **kwargs))

    monkeypatch.setattr(Stepper, "step", recording_step)
    batches: list[tuple[int, int]] = []
    window.training.batches_arrived.connect(
        lambda events: batches.extend((e.epoch, e.batch) for e in events)
    )
    turned_while_training: list[bool] = []
    timer = QTimer()
    timer.setInterval(0)
    timer.timeout.connect(lambda: turned_while_training.append(window.training.running))
    window.model_panel.set_preset("none")  # every layer trains: no cached features
    start_training(qtbot, window, colour_dataset, epochs=3)
    timer.start()
    with qtbot.waitSignal(window.training_finished, timeout=120_000):
        pass
    timer.stop()

    assert step_threads and threading.get_ident() not in step_threads
    per_epoch = -(-len(window.data_panel.report.train) // 4)  # batch size 4, rounded up
    expected = [(epoch, batch) for epoch in (1, 2, 3) for batch in range(1, per_epoch + 1)]
    assert batches == expected
    assert any(turned_while_training)


def test_results_show_the_confusion_matrix_predictions_and_export(
    qtbot, window, colour_dataset, tmp_path
):
    start_training(qtbot, window, colour_dataset, epochs=4)
    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        pass
    assert window.tabs.currentIndex() == RESULTS_TAB
    panel = window.results_panel
    assert panel.confusion_model.rowCount() == 3
    assert sum(sum(row) for row in panel.confusion_model.counts) == 6
    assert panel.per_class_model.rowCount() == 3
    assert "Validation accuracy" in panel.summary.text()

    drop_paths(window, [colour_dataset / "red" / "red_000.png", colour_dataset / "blue"])
    qtbot.waitUntil(lambda: panel.predictions.count() == 13, timeout=30_000)
    texts = [panel.predictions.item(i).text() for i in range(13)]
    assert all(len(text.splitlines()) == 5 for text in texts)  # name, answer, top 3
    assert texts[0].startswith("red_000.png")  # in the order they were dropped
    drop_paths(window, [colour_dataset / "green" / "green_000.png"])
    qtbot.waitUntil(lambda: panel.predictions.count() == 14, timeout=30_000)
    assert panel.predictions.item(0).text().startswith("green_000.png")  # the newest on top
    assert panel.predictions.item(1).text().startswith("red_000.png")

    out = tmp_path / "exported"
    panel.torchscript.setChecked(True)
    with qtbot.waitSignal(panel.exported, timeout=60_000):
        panel.export_to(out)
    from finetune_studio.engine.export import load_model_folder

    loaded = load_model_folder(out)
    assert loaded.class_names == ("blue", "green", "red")
    assert (out / "model.torchscript.pt").is_file()
    assert str(out) in panel.export_status.text()

    panel.confirm_overwrite = lambda folder: False  # the user says "no"
    stamp = (out / "model.json").read_text()
    panel.export_to(out)
    assert (out / "model.json").read_text() == stamp


def test_an_export_error_is_shown_and_nothing_is_left_behind(
    qtbot, window, colour_dataset, tmp_path
):
    start_training(qtbot, window, colour_dataset, epochs=1)
    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        pass
    holiday = tmp_path / "holiday"
    holiday.mkdir()
    (holiday / "photo.jpg").write_bytes(b"precious")
    with qtbot.waitSignal(window.results_panel.export_failed, timeout=30_000):
        window.results_panel.export_to(holiday)
    assert "not a Finetune Studio export" in window.results_panel.banner.text
    assert sorted(p.name for p in holiday.iterdir()) == ["photo.jpg"]


def test_closing_during_training_asks_then_stops_cleanly(qtbot, window, colour_dataset):
    window.model_panel.set_preset("none")  # a run of many epochs, not a solved head
    start_training(qtbot, window, colour_dataset, epochs=5000)
    qtbot.waitUntil(lambda: window.train_panel.plots.series["batch_loss"].size > 0, timeout=60_000)
    asked: list[bool] = []

    window.confirm_stop_training = lambda: asked.append(True) or False
    window.close()
    assert asked and window.isVisible() and window.training.running

    window.confirm_stop_training = lambda: True
    window.close()
    assert not window.isVisible()
    qtbot.waitUntil(lambda: not window.training.running, timeout=30_000)


def test_a_project_restores_the_setup_including_the_tree(
    qtbot, window, colour_dataset, tmp_path, settings
):
    load(qtbot, window, colour_dataset)
    panel = window.model_panel.layers
    panel.set_preset("last:1")
    index = panel.tree_model.index_of(panel.tree["features.0.0"])
    panel.tree_model.setData(index, Qt.CheckState.Checked.value, Qt.ItemDataRole.CheckStateRole)
    lr_index = panel.tree_model.index_of(panel.tree["features"], 4)
    assert panel.tree_model.setData(lr_index, 0.1, Qt.ItemDataRole.EditRole)
    window.train_panel.epochs.setValue(7)
    window.save_project(tmp_path / "project.json")

    other = MainWindow(settings)
    qtbot.addWidget(other)
    with qtbot.waitSignal(other.engine_ready, timeout=30_000):
        other.start_engine()
    with qtbot.waitSignal(other.data_panel.dataset_loaded, timeout=30_000):
        other.open_project(tmp_path / "project.json")
    qtbot.waitUntil(
        lambda: other.model_panel.ready and other.model_panel.num_classes == 3, timeout=30_000
    )

    restored = other.model_panel.layers
    assert restored.plan == panel.plan
    assert restored.multipliers == {"features": 0.1}
    assert other.train_panel.epochs.value() == 7
    for path in ("features.0.0", "features.3", "features.5", "fc"):
        assert restored.tree[path].state() == panel.tree[path].state(), path
    other.close()


def test_settings_persist_between_sessions(qtbot, window, settings):
    window.train_panel.epochs.setValue(13)
    window.train_panel.lr.setValue(0.0025)
    window.close()

    again = MainWindow(settings)
    qtbot.addWidget(again)
    assert again.train_panel.epochs.value() == 13
    assert again.train_panel.lr.value() == pytest.approx(0.0025)
    assert settings.value("model/backbone") == TINY
    again.close()


def test_augmented_copies_reach_the_head_only_run_and_are_remembered(
    qtbot, window, colour_dataset, settings
):
    panel = window.train_panel
    panel.augmentation.setCurrentIndex(panel.augmentation.findData("none"))
    assert not panel.augmented_copies.isEnabled()  # copies of unaugmented pictures: useless
    panel.augmentation.setCurrentIndex(panel.augmentation.findData("light"))
    assert panel.augmented_copies.isEnabled()
    panel.augmented_copies.setValue(2)

    start_training(qtbot, window, colour_dataset, epochs=1)
    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        pass
    log = panel.log.toPlainText()
    assert "cached features (3 view(s) per picture)" in log
    window.close()

    again = MainWindow(settings)
    qtbot.addWidget(again)
    assert again.train_panel.augmented_copies.value() == 2
    again.close()


def test_about_names_the_versions_and_the_device_in_use(window):
    import torch

    from finetune_studio.engine.devices import resolve_device

    text = window.about_text()
    assert f"PyTorch {torch.__version__}" in text and "PySide6" in text
    # Whatever this machine has: a GPU's name, or the CPU's thread count at start-up.
    kind = {"cuda": "CUDA: ", "mps": "Apple GPU (MPS)", "cpu": "CPU ("}
    device = window.device_label.text()
    assert device.startswith(kind[resolve_device("auto").type])
    assert f"Device: {device}" in text
    assert window.windowIcon().isNull() is False


def test_try_a_sample_dataset_draws_and_loads_it(qtbot, window, tmp_path, monkeypatch):
    from PySide6.QtCore import QStandardPaths

    monkeypatch.setattr(QStandardPaths, "writableLocation", lambda location: str(tmp_path))
    with qtbot.waitSignal(window.data_panel.dataset_loaded, timeout=60_000) as loaded:
        qtbot.mouseClick(window.data_panel.drop_zone.sample_button, Qt.MouseButton.LeftButton)
    assert len(loaded.args[0].classes) == 6
    assert (tmp_path / "sample-shapes" / "star").is_dir()


def test_a_crash_in_the_worker_is_shown_and_a_new_run_can_start(
    qtbot, window, colour_dataset, monkeypatch
):
    from finetune_studio.engine import training
    from finetune_studio.engine.events import Log

    real_events = training.Trainer.events

    def crashing(self):
        yield Log("about to fail")
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(training.Trainer, "events", crashing)
    load(qtbot, window, colour_dataset)
    with qtbot.waitSignal(window.training_finished, timeout=30_000) as finished:
        qtbot.mouseClick(window.train_panel.start_button, Qt.MouseButton.LeftButton)
    assert finished.args == [False]
    banner = window.train_panel.banner
    assert "simulated failure" in banner.text and "RuntimeError" in banner.details
    assert window.train_panel.start_button.isEnabled()

    monkeypatch.setattr(training.Trainer, "events", real_events)
    window.train_panel.epochs.setValue(1)
    with qtbot.waitSignal(window.training_finished, timeout=60_000) as finished:
        qtbot.mouseClick(window.train_panel.start_button, Qt.MouseButton.LeftButton)
    result = window.results_panel.result
    assert finished.args == [True] and result is not None
    steps = len(result.history)  # a head fitted to its optimum reports each iteration
    done = f"Done: {steps} iteration{'s' if steps > 1 else ''} in "
    assert window.train_panel.progress.text().startswith(done)


def test_a_weights_file_that_would_run_code_is_refused_in_the_window(qtbot, window, tmp_path):
    import torch

    marker = tmp_path / "pwned"

    class RunsCode:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.pt"
    torch.save({"weight": RunsCode()}, evil)
    panel = window.model_panel
    panel.set_weights(str(evil))
    qtbot.waitUntil(lambda: panel.banner.text != "", timeout=30_000)

    assert "could run code" in panel.banner.text
    assert not marker.exists()
    qtbot.waitUntil(lambda: not panel.runner.busy, timeout=10_000)


def test_a_head_only_run_shows_its_fit_converging_in_iterations(qtbot, window, colour_dataset):
    start_training(qtbot, window, colour_dataset, epochs=10)
    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        pass

    log = window.train_panel.log.toPlainText()
    assert "Fitting the head to its optimum" in log
    assert "Iteration 1:" in log and "Epoch 1/" not in log
    assert "iterations in" in window.train_panel.progress.format()


def test_skipped_files_read_as_paths_inside_the_dataset(qtbot, window, colour_dataset, monkeypatch):
    from PySide6.QtGui import QDesktopServices

    broken = colour_dataset / "red" / "scans" / "broken.png"
    broken.parent.mkdir()
    broken.write_bytes(b"")
    load(qtbot, window, colour_dataset)

    skipped, view = window.data_panel.skipped_model, window.data_panel.skipped_view
    assert skipped.index(0, 0).data() == "red/scans/broken.png"
    assert skipped.index(0, 0).data(Qt.ItemDataRole.ToolTipRole) == str(broken)
    opened: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()))
    window.tabs.setCurrentIndex(0)
    cell = view.visualRect(skipped.index(0, 0)).center()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=cell)
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=cell)
    assert opened == [str(broken)]


def test_predictions_name_enough_of_the_path_to_tell_pictures_apart(
    qtbot, window, colour_dataset, tmp_path
):
    picture = (colour_dataset / "red" / "red_000.png").read_bytes()
    for folder in ("monday", "tuesday/cam", "wednesday/cam"):
        (tmp_path / "drops" / folder).mkdir(parents=True)
    (tmp_path / "drops" / "monday" / "0005.png").write_bytes(picture)
    (tmp_path / "drops" / "tuesday" / "cam" / "0005.png").write_bytes(picture)
    (tmp_path / "drops" / "wednesday" / "cam" / "0005.png").write_bytes(picture)
    start_training(qtbot, window, colour_dataset, epochs=1)
    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        pass
    panel = window.results_panel

    def headings() -> list[str]:
        return [
            panel.predictions.item(i).text().splitlines()[0]
            for i in range(panel.predictions.count())
        ]

    drop_paths(window, [tmp_path / "drops" / "monday" / "0005.png"])
    qtbot.waitUntil(lambda: panel.predictions.count() == 1, timeout=30_000)
    assert headings() == ["0005.png"]  # alone, the name is enough
    drop_paths(window, [tmp_path / "drops" / "tuesday", tmp_path / "drops" / "wednesday"])
    qtbot.waitUntil(lambda: panel.predictions.count() == 3, timeout=30_000)
    assert headings() == ["tuesday/cam/0005.png", "wednesday/cam/0005.png", "monday/0005.png"]


def test_the_sample_dataset_folder_does_not_repeat_the_app_name(
    qtbot, window, tmp_path, monkeypatch
):
    from PySide6.QtCore import QStandardPaths

    from finetune_studio.engine import sample_data

    app_data = tmp_path / "Finetune Studio" / "Finetune Studio"  # Qt's, for this app's names
    monkeypatch.setattr(QStandardPaths, "writableLocation", lambda location: str(app_data))
    small = sample_data.generate_sample_dataset
    monkeypatch.setattr(
        sample_data, "generate_sample_dataset", lambda folder, **kw: small(folder, 3, 32, **kw)
    )
    with qtbot.waitSignal(window.data_panel.dataset_loaded, timeout=60_000):
        qtbot.mouseClick(window.data_panel.drop_zone.sample_button, Qt.MouseButton.LeftButton)
    assert window.data_panel.recent_folders()[0] == str(
        tmp_path / "Finetune Studio" / "sample-shapes"
    )
