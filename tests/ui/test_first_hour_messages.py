"""Issue 15, the first hour, items 5, 7, 11 and 14: messages that clear with their
cause, the augmentation a head-only run skips, the drop zone and the charts at the
window's minimum size, and the Advanced options (driven through the real window)."""

from __future__ import annotations

from pathlib import Path

from helpers import load
from PySide6.QtCore import QMimeData, QPoint, QPointF, QRectF, QSettings, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragLeaveEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFormLayout, QWidget

from finetune_studio.ui.main_window import MINIMUM_SIZE, MODEL_TAB, TRAIN_TAB, MainWindow
from finetune_studio.ui.widgets.banner import Banner
from finetune_studio.ui.widgets.dataset_panel import ENGINE_SOURCE
from support.tiny import make_colour_dataset


def wait_checked(qtbot, window, folder: Path) -> None:
    """Check a folder through the Data step, whatever the outcome."""
    with qtbot.waitSignal(
        window.data_panel.loading_changed,
        timeout=30_000,
        check_params_cb=lambda loading: not loading,
    ):
        window.data_panel.load_folder(folder)


def folder_with_an_empty_class(root: Path) -> Path:
    folder = make_colour_dataset(root)
    (folder / "empty").mkdir()
    (folder / "empty" / "broken.png").write_bytes(b"")
    return folder


def fail_the_next_run(monkeypatch, message: str) -> None:
    from finetune_studio.engine import training
    from finetune_studio.engine.errors import RecipeError

    def failing(self):
        raise RecipeError(message)
        yield  # a generator, like the real one

    monkeypatch.setattr(training.Trainer, "events", failing)


def choose(combo, value: str) -> None:
    combo.setCurrentIndex(combo.findData(value))


def click(qtbot, button) -> None:
    """Click as a user does: once the button is laid out where it can be seen."""
    qtbot.waitUntil(lambda: button.isVisible() and button.height() > 0)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


# --- item 5: a banner clears when its cause is fixed ------------------------------------------
def test_an_empty_class_message_clears_once_a_good_folder_is_checked(
    qtbot, window, colour_dataset, tmp_path
):
    panel = window.data_panel
    wait_checked(qtbot, window, folder_with_an_empty_class(tmp_path / "bad"))
    assert "'empty' has no usable pictures" in panel.banner.text

    load(qtbot, window, colour_dataset)

    assert panel.banner.text == "" and not panel.banner.isVisible()
    assert window.train_panel.start_button.isEnabled()


def test_a_dropped_file_warning_clears_with_the_next_folder(
    qtbot, window, colour_dataset, tmp_path
):
    from helpers import drop_paths

    (tmp_path / "notes.txt").write_text("hello")
    drop_paths(window, [tmp_path / "notes.txt"])
    assert "That is a file" in window.data_panel.banner.text

    load(qtbot, window, colour_dataset)

    assert window.data_panel.banner.text == ""


def test_a_message_whose_cause_remains_survives_a_folder_check(qtbot, window, colour_dataset):
    window._on_engine_task_failed("torchvision is broken", "Traceback: ...")
    banner = window.data_panel.banner
    assert banner.message(ENGINE_SOURCE) is not None

    wait_checked(qtbot, window, colour_dataset / "missing")
    assert "engine could not start" in banner.text and "does not exist" in banner.text

    wait_checked(qtbot, window, colour_dataset)  # the folder is fine; the engine is not
    assert banner.text == "The training engine could not start: torchvision is broken"
    assert banner.level == "error" and banner.details == "Traceback: ..."


def test_a_project_message_clears_when_a_project_opens(qtbot, window, colour_dataset, tmp_path):
    from finetune_studio.engine.recipe import Recipe

    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    assert not window.open_project(broken)
    assert "not valid JSON" in window.data_panel.banner.text

    good = tmp_path / "good.json"
    Recipe(dataset=str(colour_dataset), backbone=window.model_panel.backbone).save(good)
    with qtbot.waitSignal(window.data_panel.dataset_loaded, timeout=30_000):
        assert window.open_project(good)
    assert window.data_panel.banner.text == ""


def test_a_failed_runs_message_clears_when_its_inputs_change_or_a_run_starts(
    qtbot, window, colour_dataset, monkeypatch
):
    load(qtbot, window, colour_dataset)
    panel = window.train_panel
    fail_the_next_run(monkeypatch, "CUDA was requested, but this machine has no usable CUDA GPU.")
    with qtbot.waitSignal(window.training_finished, timeout=30_000):
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert "no usable CUDA GPU" in panel.banner.text

    choose(panel.device, "cpu")  # what the message asked for
    assert panel.banner.text == ""

    with qtbot.waitSignal(window.training_finished, timeout=30_000):
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert "no usable CUDA GPU" in panel.banner.text
    window.model_panel.set_preset("none")  # the Model step changes what trains
    assert panel.banner.text == ""


def test_an_invalid_setting_message_stays_until_the_setting_is_fixed(qtbot, window, colour_dataset):
    load(qtbot, window, colour_dataset)
    layers, panel = window.model_panel.layers, window.train_panel
    layers.gradual.setChecked(True)
    layers.gradual_epochs.setValue(3)
    panel.epochs.setValue(3)
    assert not window.start_training()
    assert "gradual unfreezing needs" in panel.banner.text

    panel.batch_size.setValue(16)  # another setting: the message still applies
    assert "gradual unfreezing needs" in panel.banner.text
    panel.epochs.setValue(4)
    assert panel.banner.text == ""


def test_messages_of_different_causes_stack_and_clear_one_by_one(qtbot):
    host = QWidget()
    qtbot.addWidget(host)
    banner = Banner(host)
    host.show()
    banner.show_warning("Some pictures are tiny.", source="folder")
    banner.show_error("The engine could not start.", "Traceback", source="engine")
    assert banner.text == "Some pictures are tiny.\nThe engine could not start."
    assert banner.level == "error" and banner.details == "Traceback"

    banner.show_warning("Other pictures are tiny.", source="folder")  # replaces its own
    assert banner.text == "Other pictures are tiny.\nThe engine could not start."
    banner.clear("engine")
    assert banner.text == "Other pictures are tiny." and banner.level == "warning"

    banner.show_info("Saved.", source="project")
    row = banner._rows["folder"]
    qtbot.mouseClick(row.close_button, Qt.MouseButton.LeftButton)  # the user's ✕
    assert banner.text == "Saved."
    banner.clear()
    assert banner.text == "" and not banner.isVisible()


# --- item 7: the augmentation a head-only run does not get -------------------------------------
def note_text(window) -> str:
    return window.train_panel.augmentation_note.text


def test_a_head_only_run_says_beside_augmentation_that_pictures_are_not_augmented(
    qtbot, window, colour_dataset
):
    load(qtbot, window, colour_dataset)  # "head only" by default
    panel = window.train_panel
    assert "pictures are not augmented" in note_text(window)

    choose(panel.augmentation, "none")  # nothing to skip
    assert note_text(window) == ""
    choose(panel.augmentation, "standard")
    assert "pictures are not augmented" in note_text(window)

    window.tabs.setCurrentIndex(TRAIN_TAB)
    click(qtbot, panel.augmentation_note.copies_button)
    assert panel.augmented_copies.value() == 4 and note_text(window) == ""
    assert window.recipe().cached_views == 5


def test_the_note_follows_the_freeze_plan_live(qtbot, window, colour_dataset):
    load(qtbot, window, colour_dataset)
    layers = window.model_panel.layers
    assert note_text(window) != ""

    window.model_panel.set_preset("last:1")
    assert note_text(window) == ""
    window.model_panel.set_preset("head")
    assert note_text(window) != ""
    layers.gradual.setChecked(True)  # the run trains more than the head after a while
    assert note_text(window) == ""
    layers.gradual.setChecked(False)
    fc = layers.tree_model.index_of(layers.tree["features.5"])  # a tick in the tree
    layers.tree_model.setData(fc, Qt.CheckState.Checked.value, Qt.ItemDataRole.CheckStateRole)
    assert note_text(window) == ""


def test_train_the_last_block_too_shows_the_layer_tree_with_the_block_ticked(
    qtbot, window, colour_dataset
):
    load(qtbot, window, colour_dataset)
    window.tabs.setCurrentIndex(TRAIN_TAB)
    note = window.train_panel.augmentation_note
    click(qtbot, note.more_button)

    assert window.tabs.currentIndex() == MODEL_TAB
    assert window.recipe().freeze.preset == "last:1"
    assert note_text(window) == ""


def test_the_note_agrees_with_what_the_run_does(qtbot, window, colour_dataset):
    load(qtbot, window, colour_dataset)
    panel = window.train_panel
    panel.epochs.setValue(1)
    panel.batch_size.setValue(4)
    assert note_text(window) != ""
    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert "cached features of each picture, without augmentation" in panel.log.toPlainText()

    window.model_panel.set_preset("last:1")
    assert note_text(window) == ""
    with qtbot.waitSignal(window.training_finished, timeout=60_000):
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert "Running the whole network every epoch" in panel.log.toPlainText()


# --- item 11: the drop zone, and the charts at the minimum size --------------------------------
def drag(window, kind, point: QPoint, paths: list[Path]):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    buttons, keys = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    action = Qt.DropAction.CopyAction
    if kind is QDropEvent:
        event = QDropEvent(QPointF(point), action, mime, buttons, keys)
    else:
        event = kind(point, action, mime, buttons, keys)
    QApplication.sendEvent(window, event)
    return event


def background(widget: QWidget) -> tuple[int, int, int]:
    """The colour inside the zone's border, where no label or button is."""
    colour = widget.grab().toImage().pixelColor(8, widget.height() // 2)
    return colour.red(), colour.green(), colour.blue()


def test_the_drop_zone_lights_up_while_a_folder_is_dragged_over_it(
    qtbot, window, colour_dataset, tmp_path
):
    zone = window.data_panel.drop_zone
    idle = background(zone)
    over = zone.mapTo(window, zone.rect().center())
    outside = window.data_panel.summary.mapTo(window, QPoint(5, 5))

    assert drag(window, QDragEnterEvent, over, [colour_dataset]).isAccepted()
    assert zone.highlighted and background(zone) != idle
    assert zone.hint.text() == "Release to check this folder"

    drag(window, QDragMoveEvent, outside, [colour_dataset])
    assert not zone.highlighted and background(zone) == idle
    drag(window, QDragMoveEvent, over, [colour_dataset])
    assert zone.highlighted
    QApplication.sendEvent(window, QDragLeaveEvent())  # the drag left the window
    assert not zone.highlighted

    (tmp_path / "notes.txt").write_text("hello")
    drag(window, QDragEnterEvent, over, [tmp_path / "notes.txt"])
    assert zone.highlighted and "That is a file" in zone.hint.text()
    with qtbot.waitSignal(window.data_panel.dataset_loaded, timeout=30_000):
        drag(window, QDragMoveEvent, over, [colour_dataset])
        drag(window, QDropEvent, over, [colour_dataset])
    assert not zone.highlighted and background(zone) == idle


def scene_rect(item) -> QRectF:
    return item.mapRectToScene(item.boundingRect())


def test_at_the_minimum_size_the_charts_legend_and_axes_fit_without_overlap(
    qtbot, window, colour_dataset
):
    load(qtbot, window, colour_dataset)
    window.tabs.setCurrentIndex(TRAIN_TAB)
    window.train_panel.advanced.set_open(True)
    window.resize(100, 100)  # the window refuses to get smaller than its minimum
    qtbot.waitUntil(lambda: window.width() == MINIMUM_SIZE[0])
    assert (window.width(), window.height()) == MINIMUM_SIZE
    plots = window.train_panel.plots
    QApplication.processEvents()

    view = QRectF(plots.viewport().rect())
    legend = scene_rect(plots.legend)
    assert view.contains(legend)
    for plot in (plots.loss_plot, plots.acc_plot, plots.lr_plot):
        assert view.contains(scene_rect(plot)), "a chart is cut off"
        assert not legend.intersects(scene_rect(plot.vb)), "the legend covers a chart"
        for side in ("left", "bottom"):
            axis = plot.getAxis(side)
            assert axis.isVisible() and view.contains(scene_rect(axis))
    assert plots.loss_plot.vb.height() > 120  # the curves have room
    start = window.train_panel.start_button  # Start stays in view, settings scroll
    assert start.isVisible() and start.mapTo(window, QPoint(0, start.height())).y() < 600

    window.tabs.setCurrentIndex(MODEL_TAB)  # the layer tree stays in view too
    assert window.model_panel.layers.layer_view.height() > 150


def test_the_legend_wraps_rather_than_overflowing_a_narrow_chart_area(qtbot):
    from finetune_studio.ui.widgets.training_plots import TrainingPlots

    plots = TrainingPlots()
    qtbot.addWidget(plots)
    plots.show()
    for width, columns in ((1200, 4), (380, 2), (200, 1)):
        plots.resize(width, 400)
        QApplication.processEvents()
        assert plots.legend.columnCount == columns, width


# --- item 14: the rarely changed options under Advanced ---------------------------------------
def advanced_values(recipe) -> dict[str, object]:
    keys = ("schedule", "warmup_fraction", "weight_decay", "label_smoothing", "workers")
    return {key: getattr(recipe, key) for key in keys}


def test_advanced_options_start_closed_with_working_defaults(qtbot, window, colour_dataset):
    from finetune_studio.engine.recipe import Recipe

    load(qtbot, window, colour_dataset)
    advanced = window.train_panel.advanced
    window.tabs.setCurrentIndex(TRAIN_TAB)
    assert not advanced.schedule.isVisible() and not advanced.workers.isVisible()
    assert advanced.toggle.text() == "Advanced"

    default = Recipe(dataset=str(colour_dataset))
    fresh = window.train_panel.update_recipe(default)
    assert fresh == default  # every option in view and under Advanced: the defaults

    qtbot.mouseClick(advanced.toggle, Qt.MouseButton.LeftButton)
    assert advanced.schedule.isVisible() and advanced.label_smoothing.isVisible()


def test_advanced_options_round_trip_a_recipe_and_say_how_many_differ(
    qtbot, window, colour_dataset
):
    from finetune_studio.engine.recipe import Recipe

    panel, advanced = window.train_panel, window.train_panel.advanced
    custom = Recipe(
        dataset=str(colour_dataset),
        schedule="onecycle",
        warmup_fraction=0.25,
        weight_decay=0.05,
        label_smoothing=0.0,
        workers=0,
    )
    panel.show_recipe(custom)
    assert advanced.toggle.text() == "Advanced · 5 changed from the defaults"
    assert panel.update_recipe(custom) == custom

    advanced.set_open(True)
    advanced.label_smoothing.setValue(0.2)
    edited = panel.update_recipe(custom)
    assert advanced_values(edited) == {**advanced_values(custom), "label_smoothing": 0.2}

    qtbot.mouseClick(advanced.defaults_button, Qt.MouseButton.LeftButton)
    assert advanced.toggle.text() == "Advanced"
    default = Recipe(dataset=str(colour_dataset))
    assert advanced_values(panel.update_recipe(custom)) == advanced_values(default)


def test_advanced_values_and_the_expander_state_are_remembered(qtbot, settings, tmp_path):
    window = MainWindow(settings)
    qtbot.addWidget(window)
    window.confirm_stop_training = lambda: True
    advanced = window.train_panel.advanced
    advanced.set_open(True)
    advanced.workers.setValue(0)
    advanced.weight_decay.setValue(0.05)
    window.close()

    again = MainWindow(QSettings(settings.fileName(), QSettings.Format.IniFormat))
    qtbot.addWidget(again)
    restored = again.train_panel.advanced
    assert restored.is_open() and restored.workers.text() == "0"
    assert restored.fields()["workers"] == 0 and restored.fields()["weight_decay"] == 0.05
    restored.workers.setValue(-1)
    assert restored.workers.text() == "automatic" and restored.fields()["workers"] is None
    again.close()


def test_every_training_option_explains_itself_in_a_tooltip(window):
    panel = window.train_panel
    forms = [panel.settings_box.layout(), panel.advanced.body.layout()]
    not_options = (panel.augmentation_note, panel.advanced, panel.advanced.defaults_button)
    checked = []
    for form in forms:
        assert isinstance(form, QFormLayout)
        for row in range(form.rowCount()):
            field = form.itemAt(row, QFormLayout.ItemRole.FieldRole)
            widget = field.widget() if field is not None else None
            if widget is None or widget in not_options:
                continue
            label = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
            name = label.widget().text() if label is not None else widget.text()
            assert widget.toolTip(), f"no tooltip on {name!r}"
            if label is not None:  # hovering the name explains it too
                assert label.widget().toolTip() == widget.toolTip(), name
            checked.append(name)
    assert len(checked) == 14, checked  # 9 in view (with mixed precision), 5 under Advanced
