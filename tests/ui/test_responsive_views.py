"""The Data step at scale and the live curves: work on the GUI thread follows what is
on screen, not the number of pictures, and nothing shown is lost on the way."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QIcon

from finetune_studio.engine.inspection import DatasetReport, Sample, SkippedFile
from finetune_studio.ui.models.dataset_models import ClassesModel, SkippedFilesModel
from finetune_studio.ui.widgets.dataset_panel import CheckedFolder, DatasetPanel, FolderCheck
from finetune_studio.ui.widgets.training_plots import TrainingPlots, nice_ceiling
from finetune_studio.ui.workers.tasks import TaskRunner
from finetune_studio.ui.workers.thumbnails import ThumbnailLoader


@pytest.fixture
def panel(qtbot, tmp_path: Path) -> DatasetPanel:
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    widget = DatasetPanel(TaskRunner(), settings)
    qtbot.addWidget(widget)
    widget.resize(900, 600)
    widget.show()
    qtbot.waitExposed(widget)
    yield widget
    widget.thumbnails.shutdown()


def many_classes(root: Path, classes: int) -> CheckedFolder:
    """One small picture per class, each of its own colour."""
    samples = []
    for label in range(classes):
        path = root / f"class_{label:03d}" / "0.png"
        path.parent.mkdir(parents=True)
        Image.new("RGB", (24, 24), (label, 255 - label, 90)).save(path)
        samples.append(Sample(str(path), label))
    names = tuple(f"class_{label:03d}" for label in range(classes))
    report = DatasetReport(str(root), names, tuple(samples), (), (), "random")
    return CheckedFolder(report, ((1, 0),) * classes, tuple(s.path for s in samples))


def test_a_check_counts_each_class_and_picks_its_first_training_picture(colour_dataset):
    checked = FolderCheck(str(colour_dataset), 0.25, 0)(lambda done, total: None, threading.Event())

    report = checked.report
    assert checked.counts == tuple(zip(report.train_counts, report.val_counts))
    firsts = [next(s.path for s in report.train if s.label == label) for label in range(3)]
    assert list(checked.samples) == firsts


def test_ten_thousand_skipped_files_are_listed_and_only_the_rows_on_screen_are_named(
    panel, qtbot, tmp_path, monkeypatch
):
    import finetune_studio.engine.scan as scan

    root = tmp_path / "data"
    skipped = tuple(
        SkippedFile(str(root / "cats" / f"broken_{i:05d}.jpg"), "cannot be read")
        for i in range(10_000)
    )
    checked = many_classes(root, 2)
    named: list[str] = []
    real = scan.relative_name
    monkeypatch.setattr(scan, "relative_name", lambda p, r: named.append(p) or real(p, r))

    report = _with_skipped(checked.report, skipped)
    panel.show_report(CheckedFolder(report, checked.counts, checked.samples))
    panel.skipped_view.scrollToBottom()
    qtbot.waitUntil(lambda: str(root / "cats" / "broken_09999.jpg") in named)

    model = panel.skipped_model
    assert model.rowCount() == 10_000
    assert panel.skipped_label.text() == "Skipped files (10000)"
    last = model.index(9_999, 0)
    assert last.data() == "cats/broken_09999.jpg"
    assert last.data(Qt.ItemDataRole.ToolTipRole) == skipped[-1].path
    assert model.index(9_999, 1).data() == "cannot be read"
    assert len(set(named)) < 500  # the rows painted, not the 10,000


def _with_skipped(report: DatasetReport, skipped: tuple[SkippedFile, ...]) -> DatasetReport:
    from dataclasses import replace

    return replace(report, skipped=skipped)


def test_class_thumbnails_are_decoded_for_the_rows_on_screen_only(panel, qtbot, tmp_path):
    checked = many_classes(tmp_path / "data", 300)
    requested: list[str] = []
    loader = panel.thumbnails
    original = loader.request
    loader.request = lambda path: requested.append(path) or original(path)  # type: ignore[method-assign]

    panel.show_report(checked)
    model = panel.classes_model
    first = model.index(0, 0)
    qtbot.waitUntil(lambda: loader.thumbnail(checked.samples[0]) is not None, timeout=10_000)

    icon = first.data(Qt.ItemDataRole.DecorationRole)
    assert isinstance(icon, QIcon) and not icon.isNull()
    colour = icon.pixmap(8, 8).toImage().pixelColor(4, 4)
    assert (colour.red(), colour.green(), colour.blue()) == (0, 255, 90)  # class 0's own
    assert checked.samples[0] in requested
    assert checked.samples[-1] not in requested  # far below the fold: never decoded
    assert len(set(requested)) < 100


def test_a_class_without_a_readable_picture_shows_no_thumbnail(qtbot, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    loader = ThumbnailLoader(48)
    model = ClassesModel(loader)
    model.set_classes(("a", "b"), ((1, 0), (0, 0)), (str(broken), None))

    assert not model.index(0, 0).data(Qt.ItemDataRole.DecorationRole).isNull()  # a blank tile
    assert model.index(1, 0).data(Qt.ItemDataRole.DecorationRole).isNull()
    qtbot.waitUntil(lambda: loader.is_broken(str(broken)), timeout=10_000)
    assert model.index(0, 0).data(Qt.ItemDataRole.DecorationRole).isNull()
    loader.shutdown()


def test_the_data_step_models_pass_the_qt_model_tester(qtmodeltester, tmp_path):
    checked = many_classes(tmp_path / "data", 5)
    classes = ClassesModel(ThumbnailLoader(48))
    classes.set_classes(checked.report.classes, checked.counts, checked.samples)
    skipped = SkippedFilesModel()
    skipped.set_files([SkippedFile(str(tmp_path / "data" / "x.jpg"), "empty file")], str(tmp_path))
    qtmodeltester.check(classes)
    qtmodeltester.check(skipped)
    classes.thumbnails.shutdown()


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0.7, 1.0), (1.0, 1.0), (1.3, 2.0), (2.2, 2.5), (3.0, 5.0), (7.0, 10.0), (4e-4, 5e-4)],
)
def test_the_y_axis_ends_at_a_round_figure(value: float, ceiling: float) -> None:
    assert nice_ceiling(value) == pytest.approx(ceiling)


def test_the_loss_axis_holds_still_until_a_value_passes_its_top(qtbot):
    plots = TrainingPlots()
    qtbot.addWidget(plots)
    plots.clear_curves(epochs=2)
    for batch, loss in enumerate((1.8, 1.2, 0.9, 0.7), start=1):
        plots.add_batch(batch / 4, loss, 0.01)
        plots._on_timer_timeout()
        assert plots.loss_plot.viewRange()[1] == pytest.approx([-0.04, 2.04])

    plots.add_batch(1.25, 2.6, 0.01)  # a spike past the top: the axis makes room
    plots._on_timer_timeout()
    low, high = plots.loss_plot.viewRange()[1]
    assert low < 0 < 2.6 < high <= 5.2


def test_every_epoch_and_the_final_values_reach_the_curves(qtbot):
    plots = TrainingPlots()
    qtbot.addWidget(plots)
    plots.clear_curves(epochs=5)
    for epoch in range(1, 6):
        for batch in range(1, 4):
            plots.add_batch(epoch - 1 + batch / 3, 1 / (epoch + batch), 0.01 / epoch)
        plots.add_epoch(epoch, 1 / epoch, 1.1 / epoch, 0.5 + epoch / 20, 0.4 + epoch / 20)
        if epoch % 2:
            plots._on_timer_timeout()  # redraws fall between some epochs, not all
    plots._on_timer_timeout()

    x, y = plots.curves["val_acc"].getData()
    assert list(x) == [1, 2, 3, 4, 5]
    assert y[-1] == pytest.approx(0.65)
    x, y = plots.curves["batch_loss"].getData()
    assert len(x) == 15 and y[-1] == pytest.approx(1 / 8)
    assert plots.curves["lr"].getData()[1][-1] == pytest.approx(0.002)


def test_solver_iterations_past_the_recipes_epochs_stay_on_the_chart(qtbot):
    plots = TrainingPlots()
    qtbot.addWidget(plots)
    plots.clear_curves(epochs=6)
    plots.set_x_unit("iteration")  # the head solver reports iterations, up to its own limit
    for iteration in range(1, 9):
        plots.add_batch(iteration, 1 / iteration, 1.0)
        plots.add_epoch(iteration, 1 / iteration, 1.1 / iteration, 0.9, 0.8)
    plots._on_timer_timeout()

    assert plots.loss_plot.viewRange()[0][1] >= 8  # iterations 7 and 8 are not cut off
    assert plots.loss_plot.getAxis("bottom").labelText == "iteration"
    assert plots.lr_plot.titleLabel.text == "Step size"

    plots.clear_curves(epochs=6)  # the next run counts epochs again
    assert plots.loss_plot.getAxis("bottom").labelText == "epoch"
    assert plots.lr_plot.titleLabel.text == "Learning rate"
    assert plots.loss_plot.viewRange()[0][1] == pytest.approx(6.12)


def test_the_grid_lines_follow_the_labelled_ticks(qtbot):
    plots = TrainingPlots()
    plots.resize(900, 420)
    qtbot.addWidget(plots)
    plots.show()
    plots.clear_curves(epochs=4)
    plots.add_batch(0.5, 3.7, 0.01)
    plots._on_timer_timeout()

    grid = plots.grids[0]
    axis = plots.loss_plot.getAxis("left")
    (_, _), (low, high) = plots.loss_plot.viewRange()
    major_ticks = axis.tickValues(low, high, plots.loss_plot.vb.height())[0][1]
    horizontal = [line.y1() for line in grid.lines[0] if line.y1() == line.y2()]
    assert horizontal == pytest.approx(list(major_ticks))
    assert 0.0 in horizontal and 4.0 in horizontal  # the loss axis runs 0 to 5
    vertical = [line.x1() for line in grid.lines[0] if line.x1() == line.x2()]
    assert vertical == pytest.approx([0, 1, 2, 3, 4])

    plots.clear_curves(epochs=40)  # a longer run: the lines move with the labels
    plots._on_timer_timeout()
    vertical = [line.x1() for line in grid.lines[0] if line.x1() == line.x2()]
    assert vertical == pytest.approx([0, 10, 20, 30, 40])
    assert grid.zValue() < min(curve.zValue() for curve in plots.curves.values())


def test_a_folder_check_reaches_the_window_as_a_bounded_stream_of_progress(panel, qtbot, tmp_path):
    from finetune_studio.ui.workers.tasks import Progress

    for index in range(600):
        path = tmp_path / "data" / ("ab"[index % 2]) / f"{index:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (index % 256, 0, 0)).save(path)
    arrived: list[object] = []

    with qtbot.waitSignal(panel.dataset_loaded, timeout=60_000):
        panel.load_folder(tmp_path / "data")
        panel.task.progressed.connect(arrived.extend)

    progress = [event for event in arrived if isinstance(event, Progress)]
    assert progress[-1] == Progress(600, 600)
    assert len(progress) <= 110  # about a hundred steps, not one per picture
    assert panel.classes_model.rowCount() == 2


def test_a_progress_update_is_painted_with_the_next_frame_not_on_the_spot(qtbot):
    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtWidgets import QProgressBar

    from finetune_studio.ui.widgets.progress_value import set_bar_range, set_bar_value

    class PaintCounter(QObject):
        painted = 0

        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint:
                self.painted += 1
            return False

    bar = QProgressBar()
    qtbot.addWidget(bar)
    counter = PaintCounter()
    bar.installEventFilter(counter)
    bar.show()
    qtbot.waitUntil(lambda: counter.painted > 0)  # shown
    counter.painted = 0
    bar.setValue(10)  # Qt's own: painted before it returns
    assert counter.painted == 1

    set_bar_range(bar, 0, 1000)
    set_bar_value(bar, 500)
    assert counter.painted == 1 and bar.value() == 500
    qtbot.waitUntil(lambda: counter.painted == 2)  # the next frame shows it
