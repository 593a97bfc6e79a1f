"""Opening a picture: it shows large, with heatmaps for the predicted and the true class,
computed in a task; the toggle and the opacity change what is painted."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import Gate
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QImage, QPixmap

from finetune_studio.engine.errors import UserFacingError
from finetune_studio.engine.review import heatmaps
from finetune_studio.engine.review.heatmaps import Explanation
from finetune_studio.engine.review.records import PictureRecord
from finetune_studio.ui.models.picture_records_model import OutOfFoldRecord
from finetune_studio.ui.widgets.picture_viewer import PictureViewer
from finetune_studio.ui.workers.tasks import TaskRunner, background_threads_running

GREY = 128
SIDE = 40


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from finetune_studio.engine.training import Trainer
    from support.runs import drain
    from support.tiny import make_colour_dataset, tiny_recipe_for

    dataset = make_colour_dataset(tmp_path_factory.mktemp("viewer") / "colours")
    recipe = tiny_recipe_for(dataset, epochs=1)
    _, result = drain(Trainer(recipe).events())
    return result


@pytest.fixture
def runner(qtbot):
    tasks = TaskRunner()
    yield tasks
    tasks.shutdown()
    qtbot.waitUntil(lambda: background_threads_running() == 0, timeout=30_000)


@pytest.fixture
def viewer(qtbot, runner):
    widget = PictureViewer(runner)
    qtbot.addWidget(widget)
    widget.resize(700, 460)
    widget.show()
    return widget


def a_mistake(trained) -> PictureRecord:
    """A validation picture whose true class is not the predicted one."""
    record = trained.evaluation.predictions.records()[0]
    true = (record.predicted + 1) % len(trained.class_names)
    return replace(record, true=true)


def wait_for_heatmaps(qtbot, viewer: PictureViewer) -> None:
    assert viewer.task is not None
    with qtbot.waitSignal(viewer.task.ended, timeout=30_000):
        pass


def test_real_heatmaps_for_the_predicted_and_the_true_class(qtbot, viewer, trained) -> None:
    record = a_mistake(trained)
    viewer.show_record(record, trained.class_names, trained)
    assert viewer.progress.isVisible() and not viewer.heatmap_toggle.isEnabled()
    wait_for_heatmaps(qtbot, viewer)

    assert viewer.heatmaps is not None
    assert set(viewer.heatmaps.overlays) == {record.predicted, record.true}
    crop = trained.preprocessing.crop_size
    assert isinstance(viewer.canvas.picture, QImage)
    assert (viewer.canvas.picture.width(), viewer.canvas.picture.height()) == (crop, crop)
    assert not viewer.progress.isVisible() and viewer.heatmap_toggle.isEnabled()
    with_heatmap = viewer.canvas.grab().toImage()
    viewer.heatmap_toggle.setChecked(False)
    assert viewer.canvas.grab().toImage() != with_heatmap
    names = trained.class_names
    assert viewer.heading.text().count(f"{names[record.true]} → {names[record.predicted]}")
    assert viewer.for_true.isVisible() and names[record.true] in viewer.for_true.text()


def test_a_training_suspect_is_headed_by_the_model_s_own_prediction(qtbot, viewer, trained) -> None:
    """A training picture's record from the suspects search holds a cross-validated
    head's prediction; the heading and the "Predicted" heatmap are the model's."""
    names = trained.class_names
    validation = set(trained.evaluation.predictions.paths)
    pictures = sorted(Path(trained.recipe.dataset).rglob("*.png"))
    path = next(str(p) for p in pictures if str(p) not in validation)
    given = names.index(Path(path).parent.name)
    own = heatmaps.explain(trained.model, trained.head_path, trained.preprocessing, path, [])
    model_says = int(np.argmax(own.probabilities))
    cross = next(c for c in range(len(names)) if c not in (given, model_says))
    probabilities = tuple(0.9 if c == cross else 0.05 for c in range(len(names)))
    record = OutOfFoldRecord(path, given, cross, probabilities, -math.log(probabilities[given]))

    viewer.show_record(record, names, trained)
    assert f"→ {names[cross]}" not in viewer.heading.text()  # not before the model says
    assert "training picture" in viewer.details.text()
    assert "cross-validation" in viewer.details.text()
    wait_for_heatmaps(qtbot, viewer)

    assert f"{names[given]} → {names[model_says]}" in viewer.heading.text()
    assert viewer.for_predicted.text().startswith(f"Predicted: {names[model_says]} (")
    assert viewer.chosen_class() == model_says
    assert viewer.heatmaps is not None and model_says in viewer.heatmaps.overlays
    assert viewer.for_true.isVisible() == (given != model_says)
    if given != model_says:
        assert viewer.for_true.text().startswith(f"Given: {names[given]} (")
        assert given in viewer.heatmaps.overlays
    assert f"the model predicts <b>{names[model_says]}</b>" in viewer.details.text()


# --- what is painted, with heatmaps the test draws --------------------------------------
def halves(path, classes) -> Explanation:
    """The predicted class (first) lights the left half, the true class the right."""
    left = np.zeros((SIDE, SIDE), np.float32)
    left[:, : SIDE // 2] = 1.0
    maps = {classes[0]: left, classes[-1]: left[:, ::-1].copy()}
    picture = np.full((SIDE, SIDE, 3), GREY, np.uint8)
    return Explanation(picture, maps, (0.2, 0.7, 0.1), "features.5")


@pytest.fixture
def drawn(monkeypatch):
    monkeypatch.setattr(
        heatmaps, "explain", lambda model, head, prep, path, classes: halves(path, classes)
    )


def record_for(trained) -> PictureRecord:
    path = trained.evaluation.predictions.records()[0].path
    return PictureRecord(path, 0, 1, (0.2, 0.7, 0.1), 1.6)


def colours(viewer: PictureViewer) -> tuple[QColor, QColor]:
    """The colour painted in the middle of the picture's left and right halves."""
    image = viewer.canvas.grab().toImage()
    target = viewer.canvas.target()
    y = target.center().y()
    left = image.pixelColor(target.left() + target.width() // 4, y)
    right = image.pixelColor(target.right() - target.width() // 4, y)
    return left, right


def distance_from_grey(colour: QColor) -> int:
    return sum(abs(value - GREY) for value in (colour.red(), colour.green(), colour.blue()))


def test_the_class_choice_toggle_and_opacity_change_what_is_painted(
    qtbot, viewer, trained, drawn
) -> None:
    viewer.show_record(record_for(trained), trained.class_names, trained)
    wait_for_heatmaps(qtbot, viewer)
    left, right = colours(viewer)
    assert distance_from_grey(left) > 30 and distance_from_grey(right) == 0  # predicted

    on_its_label = QPoint(30, viewer.for_true.height() // 2)
    qtbot.mouseClick(viewer.for_true, Qt.MouseButton.LeftButton, pos=on_its_label)
    left, right = colours(viewer)
    assert distance_from_grey(left) == 0 and distance_from_grey(right) > 30  # true

    viewer.heatmap_toggle.setChecked(False)
    assert [distance_from_grey(c) for c in colours(viewer)] == [0, 0]
    viewer.heatmap_toggle.setChecked(True)

    viewer.opacity.setValue(100)
    strong = distance_from_grey(colours(viewer)[1])
    viewer.opacity.setValue(20)
    faint = distance_from_grey(colours(viewer)[1])
    assert strong > faint > 0
    viewer.opacity.setValue(0)
    assert distance_from_grey(colours(viewer)[1]) == 0


def test_a_correct_picture_offers_one_heatmap(qtbot, viewer, trained, drawn) -> None:
    record = replace(record_for(trained), true=1)
    viewer.show_record(record, trained.class_names, trained)
    wait_for_heatmaps(qtbot, viewer)
    assert not viewer.for_true.isVisible()
    assert viewer.heatmaps is not None and set(viewer.heatmaps.overlays) == {1}


def test_closing_before_the_heatmaps_arrive_discards_them(
    qtbot, viewer, trained, monkeypatch
) -> None:
    gate = Gate()

    def held(model, head, prep, path, classes) -> Explanation:
        gate.pass_through()
        return halves(path, classes)

    monkeypatch.setattr(heatmaps, "explain", held)
    viewer.show_record(record_for(trained), trained.class_names, trained)
    task = viewer.task
    assert task is not None and gate.entered.wait(10)
    viewer.close()
    assert task.discarded and not viewer.computing and not viewer.progress.isVisible()
    with qtbot.waitSignal(task.ended, timeout=10_000):
        gate.release.set()
    assert viewer.heatmaps is None and viewer.canvas.overlay is None


def test_a_viewer_deleted_while_computing_is_no_trouble(qtbot, runner, trained, monkeypatch):
    gate = Gate()

    def held(model, head, prep, path, classes) -> Explanation:
        gate.pass_through()
        return halves(path, classes)

    monkeypatch.setattr(heatmaps, "explain", held)
    viewer = PictureViewer(runner)
    viewer.show_record(record_for(trained), trained.class_names, trained)
    task = viewer.task
    assert task is not None and gate.entered.wait(10)
    viewer.reject()
    viewer.deleteLater()
    qtbot.waitSignal(viewer.destroyed).wait()
    with qtbot.waitSignal(task.ended, timeout=10_000):
        gate.release.set()


def test_a_picture_that_cannot_be_explained_says_why_and_stays(
    qtbot, viewer, trained, monkeypatch
) -> None:
    def fails(model, head, prep, path, classes) -> Explanation:
        raise UserFacingError("Cannot show red_000.png: truncated.")

    monkeypatch.setattr(heatmaps, "explain", fails)
    preview = QImage(SIDE, SIDE, QImage.Format.Format_RGB888)
    preview.fill(QColor(10, 200, 10))
    viewer.show_record(record_for(trained), trained.class_names, trained, QPixmap(preview))
    wait_for_heatmaps(qtbot, viewer)
    assert viewer.status.text() == "No heatmap: Cannot show red_000.png: truncated."
    assert viewer.canvas.picture is not None and not viewer.heatmap_toggle.isEnabled()
    centre = viewer.canvas.grab().toImage().pixelColor(viewer.canvas.target().center())
    assert centre == QColor(10, 200, 10)


def test_opening_a_gallery_tile_in_the_results_step(qtbot, runner, trained) -> None:
    from finetune_studio.ui.widgets.results_panel import ResultsPanel

    panel = ResultsPanel(runner)
    qtbot.addWidget(panel)
    panel.resize(1100, 650)
    panel.set_result(trained)
    panel.show()
    view = panel.gallery.view
    view.setCurrentIndex(panel.gallery.model.index(2))
    qtbot.keyClick(view, Qt.Key.Key_Return)
    viewer = panel.viewer
    assert viewer is not None and viewer.isVisible()
    assert viewer.record == panel.gallery.shown_records()[2]
    wait_for_heatmaps(qtbot, viewer)
    assert viewer.heatmaps is not None

    qtbot.mouseClick(viewer.next_button, Qt.MouseButton.LeftButton)  # the next tile
    assert viewer.record == panel.gallery.shown_records()[3]
    assert view.currentIndex().row() == 3
    viewer.activateWindow()
    qtbot.waitUntil(viewer.isActiveWindow)
    with qtbot.waitSignal(viewer.step_requested):  # a button's shortcut clicks it animated
        qtbot.keyClick(viewer, Qt.Key.Key_Left)
    assert viewer.record == panel.gallery.shown_records()[2]
    viewer.close()
    view.setCurrentIndex(panel.gallery.model.index(0))
    qtbot.keyClick(view, Qt.Key.Key_Return)
    assert not viewer.previous_button.isEnabled() and viewer.next_button.isEnabled()
    wait_for_heatmaps(qtbot, viewer)

    viewer.close()
    path = panel.gallery.shown_records()[5].path
    assert panel.open_path(path) and viewer.record.path == path  # from the suspects list
    assert not panel.open_path("/nowhere/else.png")
    wait_for_heatmaps(qtbot, viewer)

    panel.set_result(None)  # another model: its pictures are not this one's
    assert not viewer.isVisible()
    panel.gallery.thumbnails.shutdown()


def test_stepping_quickly_computes_one_heatmap_at_a_time_and_ends_on_the_last(
    qtbot, runner, trained, monkeypatch
) -> None:
    """Holding → must not start a Grad-CAM per picture: while one runs, only the
    latest picture asked for waits, and the pictures stepped over are never computed."""
    from finetune_studio.ui.widgets.results_panel import ResultsPanel

    gate, asked = Gate(), []

    def held(model, head, prep, path, classes) -> Explanation:
        asked.append(path)
        gate.pass_through()  # the first one blocks until released
        return halves(path, classes)

    monkeypatch.setattr(heatmaps, "explain", held)
    panel = ResultsPanel(runner)
    qtbot.addWidget(panel)
    panel.set_result(trained)
    panel.show()
    shown = panel.gallery.shown_records()
    steps = min(6, len(shown) - 1)
    assert steps >= 3
    panel.open_record(shown[0])
    viewer = panel.viewer
    assert viewer is not None and gate.entered.wait(10)
    viewer.activateWindow()  # else each step raises it (offscreen Qt warns it cannot)
    qtbot.waitUntil(viewer.isActiveWindow)
    for _ in range(steps):
        qtbot.mouseClick(viewer.next_button, Qt.MouseButton.LeftButton)
    last = shown[steps]
    assert viewer.record == last and viewer.computing and viewer.progress.isVisible()
    assert asked == [shown[0].path]  # nothing more started while the first runs

    gate.release.set()
    qtbot.waitUntil(lambda: not viewer.computing, timeout=30_000)
    assert asked == [shown[0].path, last.path]
    names = trained.class_names
    assert viewer.heatmaps is not None and viewer.heatmap_toggle.isEnabled()
    assert f"{names[last.true]} → {names[last.predicted]}" in viewer.heading.text()
    qtbot.waitUntil(lambda: viewer.task is None)
    viewer.close()
    panel.gallery.thumbnails.shutdown()
