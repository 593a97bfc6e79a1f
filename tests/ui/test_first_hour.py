"""Issue 15, the first hour: no dead ends, no run whose inputs change under it,
figures that agree, and the keyboard (driven through the real window, offscreen)."""

from __future__ import annotations

import os

from helpers import drop_paths, load, start_training
from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import QApplication

from finetune_studio.ui.main_window import DATA_TAB, MODEL_TAB, RESULTS_TAB, TRAIN_TAB
from support.tiny import make_colour_dataset


def start_reason(window) -> str:
    label = window.train_panel.start_reason
    return label.text() if label.isVisibleTo(window.train_panel) else ""


def choose_device(window, value: str) -> None:
    combo = window.train_panel.device
    combo.setCurrentIndex(combo.findData(value))


def drawn_points(window, curve: str) -> int:
    x, _ = window.train_panel.plots.curves[curve].getData()
    return 0 if x is None else len(x)


# --- item 2: dead ends ----------------------------------------------------------------------
def test_a_class_with_no_usable_pictures_disables_start_and_says_why(
    qtbot, window, colour_dataset, tmp_path
):
    load(qtbot, window, colour_dataset)  # a good folder first: Start is enabled
    assert window.train_panel.start_button.isEnabled()
    folder = make_colour_dataset(tmp_path / "colours")
    (folder / "empty").mkdir()
    (folder / "empty" / "broken.png").write_bytes(b"")
    with qtbot.waitSignal(
        window.data_panel.loading_changed, check_params_cb=lambda loading: not loading
    ):
        window.data_panel.load_folder(folder)

    assert not window.train_panel.start_button.isEnabled()
    assert "'empty' has no usable pictures" in start_reason(window)
    assert not window.start_action.isEnabled()


def test_no_network_loaded_disables_start_and_a_working_backbone_enables_it(
    qtbot, window, colour_dataset, monkeypatch
):
    from finetune_studio.engine import backbones
    from finetune_studio.engine.errors import WeightsError

    load(qtbot, window, colour_dataset)
    assert window.train_panel.start_button.isEnabled() and start_reason(window) == ""
    real_build = backbones.build_model

    def failing(*args, **kwargs):
        raise WeightsError("The download failed: no connection.")

    monkeypatch.setattr(backbones, "build_model", failing)
    panel = window.model_panel
    with qtbot.waitSignal(panel.busy_changed, check_params_cb=lambda busy: not busy):
        panel.rebuild()
    assert "No network loaded" in panel.layers.summary.text()
    assert not window.train_panel.start_button.isEnabled()
    assert "No network loaded" in start_reason(window)

    monkeypatch.setattr(backbones, "build_model", real_build)
    with qtbot.waitSignal(panel.model_ready, timeout=30_000):
        panel.rebuild()
    assert window.train_panel.start_button.isEnabled() and start_reason(window) == ""


def test_devices_this_computer_lacks_are_greyed_out_and_block_start(qtbot, window, colour_dataset):
    load(qtbot, window, colour_dataset)
    window.train_panel.set_available_devices(("cpu",))  # as on a computer without GPUs
    combo = window.train_panel.device
    model = combo.model()
    assert isinstance(model, QStandardItemModel)
    enabled = {combo.itemData(row): model.item(row).isEnabled() for row in range(combo.count())}
    assert enabled == {"auto": True, "cpu": True, "cuda": False, "mps": False}

    choose_device(window, "cuda")  # a project or the settings may still ask for it
    assert not window.train_panel.start_button.isEnabled()
    assert "has no NVIDIA GPU (CUDA)" in start_reason(window)
    assert not window.start_training()
    assert not window.training.running

    choose_device(window, "cpu")
    assert window.train_panel.start_button.isEnabled() and start_reason(window) == ""


def test_a_start_that_fails_keeps_the_previous_runs_curves_log_and_results(
    qtbot, window, colour_dataset, monkeypatch
):
    from finetune_studio.engine import training
    from finetune_studio.engine.errors import RecipeError

    start_training(qtbot, window, colour_dataset, epochs=1)
    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        pass
    panel = window.train_panel
    qtbot.waitUntil(lambda: drawn_points(window, "train_loss") > 0)
    log, progress = panel.log.toPlainText(), panel.progress.text()
    result = window.results_panel.result
    assert result is not None and "Done" in progress

    def failing(self):
        raise RecipeError("CUDA was requested, but this machine has no usable CUDA GPU.")
        yield  # a generator, like the real one

    monkeypatch.setattr(training.Trainer, "events", failing)
    with qtbot.waitSignal(window.training_finished, timeout=30_000) as finished:
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)

    assert finished.args == [False]
    assert "no usable CUDA GPU" in panel.banner.text
    assert drawn_points(window, "train_loss") > 0
    assert panel.log.toPlainText().startswith(log)
    assert panel.progress.text() == progress
    assert window.results_panel.result is result


# --- item 4: a run's inputs are locked while it runs --------------------------------------------
def test_nothing_that_changes_a_runs_inputs_works_during_the_run(
    qtbot, window, colour_dataset, tmp_path
):
    other = make_colour_dataset(tmp_path / "other")
    start_training(qtbot, window, colour_dataset, epochs=5000)
    window.model_panel.set_preset("none")
    root = window.data_panel.report.root
    zone = window.data_panel.drop_zone

    locked = [window.open_dataset_action, window.open_project_action, window.start_action]
    assert not any(action.isEnabled() for action in locked)
    widgets = [
        zone.open_button,
        zone.sample_button,
        zone.recent,
        window.model_panel.backbone_view,
        window.model_panel.weights_combo,
    ]
    assert not any(widget.isEnabled() for widget in widgets)
    drop_paths(window, [other])
    assert window.data_panel.report.root == root and not window.data_panel.loading
    assert "stop it before" in window.statusBar().currentMessage()
    assert not window.open_project(tmp_path / "project.json")

    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        qtbot.mouseClick(window.train_panel.stop_button, Qt.MouseButton.LeftButton)
    assert all(action.isEnabled() for action in locked)
    assert all(widget.isEnabled() for widget in widgets)


# --- item 9: figures that agree ---------------------------------------------------------------
def test_the_status_bar_describes_the_computer_even_after_a_run_set_torch_threads(qtbot, settings):
    import torch
    from helpers import open_window

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # what a run on this process leaves behind
    try:
        window = open_window(qtbot, settings)
        cores = os.cpu_count() or 1
        text = window.device_label.text()
        assert text.endswith(" on this computer")
        if "CPU" in text:
            assert f"({cores} core" in text
        assert "leaves one CPU core" in window.device_label.toolTip()
        window.close()
    finally:
        torch.set_num_threads(before)


def test_the_log_says_why_a_cpu_run_counts_fewer_threads(qtbot, window, colour_dataset):
    choose_device(window, "cpu")
    start_training(qtbot, window, colour_dataset, epochs=1)
    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        pass
    log = window.train_panel.log.toPlainText()
    assert "leaves a core to the window" in log and "status bar" in log
    assert "Device: CPU" in log


def test_parameter_counts_say_which_head_they_include(qtbot, window, colour_dataset):
    load(qtbot, window, colour_dataset)
    summary = window.model_panel.layers.summary.text()
    assert "with your head for 3 classes" in summary and "with its ImageNet head" in summary
    header = window.model_panel.backbone_filter
    assert "ImageNet" in header.headerData(1, Qt.Orientation.Horizontal)
    tooltip = header.headerData(1, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert "ImageNet head" in tooltip


def test_counts_of_one_read_in_the_singular(window):
    patience = window.train_panel.patience
    patience.setValue(1)
    assert patience.text() == "1 epoch"
    patience.setValue(3)
    assert patience.text() == "3 epochs"
    gradual = window.model_panel.layers.gradual_epochs
    gradual.setValue(1)
    assert gradual.text() == "1 epoch, then the checked layers"


# --- item 12: the keyboard ---------------------------------------------------------------------
def activate(qtbot, window) -> None:
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)


def test_ctrl_1_to_4_switch_steps(qtbot, window):
    activate(qtbot, window)
    for key, tab in (
        (Qt.Key.Key_3, TRAIN_TAB),
        (Qt.Key.Key_2, MODEL_TAB),
        (Qt.Key.Key_4, RESULTS_TAB),
        (Qt.Key.Key_1, DATA_TAB),
    ):
        qtbot.keyClick(window, key, Qt.KeyboardModifier.ControlModifier)
        assert window.tabs.currentIndex() == tab


def test_ctrl_enter_starts_training_and_escape_stops_it(qtbot, window, colour_dataset):
    load(qtbot, window, colour_dataset)
    window.train_panel.epochs.setValue(5000)
    window.train_panel.batch_size.setValue(4)
    window.model_panel.set_preset("none")
    activate(qtbot, window)
    qtbot.keyClick(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert window.training.running
    assert window.tabs.currentIndex() == TRAIN_TAB

    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert not window.training.running


def test_the_focus_ring_is_drawn_when_tabbing(qtbot, window, colour_dataset):
    load(qtbot, window, colour_dataset)
    window.tabs.setCurrentIndex(TRAIN_TAB)
    activate(qtbot, window)
    button = window.train_panel.start_button
    unfocused = button.grab().toImage()
    window.train_panel.patience.setFocus(Qt.FocusReason.OtherFocusReason)
    # Tab on until the Start button has the focus, as a keyboard user would.
    for _ in range(30):
        if QApplication.focusWidget() is button:
            break
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
    assert button.hasFocus()
    assert button.grab().toImage() != unfocused
