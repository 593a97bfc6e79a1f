"""The Results step's gallery: every cell and class, filters, sort, CSV, thumbnails."""

from __future__ import annotations

import csv
import io
import math
import statistics
import time
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import Gate
from PIL import Image
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QFileDialog

from finetune_studio.engine.evaluation import Evaluation
from finetune_studio.engine.review.records import (
    LOW_CONFIDENCE,
    PictureRecord,
    Predictions,
    records_to_csv,
)
from finetune_studio.ui.models.picture_records_model import (
    RECORD_ROLE,
    SUGGESTED_ROLE,
    Order,
    OutOfFoldRecord,
    PictureRecordsModel,
    Selection,
    Show,
    listed_records_csv,
)
from finetune_studio.ui.widgets.gallery import OLD_RUN_HINT, SUSPECTS_HINT, Gallery, TileDelegate
from finetune_studio.ui.workers import thumbnails
from finetune_studio.ui.workers.thumbnails import ThumbnailLoader

NAMES = ("cat", "dog", "bird")


def png_bytes(colour: tuple[int, int, int] = (120, 30, 200), size: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, "PNG")
    return buffer.getvalue()


def make_records(folder: Path, count: int = 60, write: bool = True) -> list[PictureRecord]:
    """Records over every cell of a 3-class matrix, confidences from 0.34 to 0.98,
    each picture a small PNG on disk (one shared content: decoding is not the point)."""
    folder.mkdir(parents=True, exist_ok=True)
    content = png_bytes()
    records = []
    for i in range(count):
        true = i % 3
        predicted = (true + (i // 3) % 3) % 3 if i % 4 else true
        top = 0.34 + 0.64 * ((i * 37) % 101) / 100
        rest = (1 - top) / 2
        probabilities = tuple(top if c == predicted else rest for c in range(3))
        path = folder / f"{NAMES[true]}_{i:05d}.png"
        if write:
            path.write_bytes(content)
        records.append(
            PictureRecord(str(path), true, predicted, probabilities, -math.log(probabilities[true]))
        )
    return records


@pytest.fixture
def records(tmp_path: Path) -> list[PictureRecord]:
    return make_records(tmp_path / "pictures")


@pytest.fixture
def gallery(qtbot, records: list[PictureRecord]) -> Gallery:
    widget = Gallery()
    qtbot.addWidget(widget)
    widget.resize(720, 560)
    widget.set_records(records, NAMES)
    widget.show()
    yield widget
    widget.thumbnails.shutdown()


def paths(records: list[PictureRecord]) -> list[str]:
    return [record.path for record in records]


def training_suspect(folder: Path, given: int, cross_validated: int) -> PictureRecord:
    """What the suspects search makes of a training picture: out-of-fold probabilities,
    here most for ``cross_validated``, as a plain record (the search's own type)."""
    probabilities = tuple(0.9 if c == cross_validated else 0.05 for c in range(3))
    (record,) = make_records(folder, 1)
    loss = -math.log(probabilities[given])
    return replace(
        record, true=given, predicted=cross_validated, probabilities=probabilities, loss=loss
    )


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def test_the_model_passes_the_qt_model_tester(qtmodeltester, records) -> None:
    model = PictureRecordsModel()
    model.set_records(records, NAMES)
    qtmodeltester.check(model)
    model.set_selection(Selection(1, 2))
    model.set_show(Show.MISCLASSIFIED)
    qtmodeltester.check(model)


def test_a_cell_shows_exactly_its_pictures(gallery: Gallery, records) -> None:
    for true in range(3):
        for predicted in range(3):
            gallery.show_cell(true, predicted)
            expected = [r.path for r in records if r.true == true and r.predicted == predicted]
            assert sorted(paths(gallery.shown_records())) == sorted(expected)
            assert expected, "every cell holds pictures"
            assert gallery.caption.text() == (
                f"<b>True {NAMES[true]} → predicted {NAMES[predicted]} ({len(expected)})</b>"
            )


def test_a_class_shows_its_pictures_and_all_classes_come_back(gallery: Gallery, records) -> None:
    gallery.show_true_class(2)
    assert sorted(paths(gallery.shown_records())) == sorted(r.path for r in records if r.true == 2)
    gallery.show_predicted_class(0)
    assert {r.predicted for r in gallery.shown_records()} == {0}
    assert gallery.all_button.isEnabled()
    gallery.all_button.click()
    assert sorted(paths(gallery.shown_records())) == sorted(paths(records))
    assert not gallery.all_button.isEnabled()


def test_misclassified_and_low_confidence_filters(gallery: Gallery, records) -> None:
    gallery.show_true_class(1)
    gallery.set_show(Show.MISCLASSIFIED)
    expected = [r.path for r in records if r.true == 1 and r.true != r.predicted]
    assert sorted(paths(gallery.shown_records())) == sorted(expected)

    gallery.show_all()
    gallery.show_combo.setCurrentIndex(gallery.show_combo.findData(Show.LOW_CONFIDENCE))
    low = [r.path for r in records if r.confidence < LOW_CONFIDENCE]
    assert 0 < len(low) < len(records)
    assert sorted(paths(gallery.shown_records())) == sorted(low)
    assert gallery.show_combo.currentText() == f"{Show.LOW_CONFIDENCE.value} ({len(low)})"


def test_the_suspects_filter_waits_for_suspects_then_shows_exactly_them(
    gallery: Gallery, records, tmp_path
) -> None:
    entry = gallery.show_combo.model().item(gallery.show_combo.findData(Show.SUSPECTS))
    assert not entry.isEnabled()
    assert entry.toolTip() == SUSPECTS_HINT

    training_picture = make_records(tmp_path / "training", 1)[0]
    suspects = {records[4].path: 2, records[9].path: 0, training_picture.path: 1}
    gallery.set_suspects(suspects, [training_picture])

    assert entry.isEnabled()
    assert gallery.show_combo.currentData() is Show.SUSPECTS
    assert sorted(paths(gallery.shown_records())) == sorted(suspects)
    model = gallery.model
    suggested = {
        model.index(row).data(RECORD_ROLE).path: model.index(row).data(SUGGESTED_ROLE)
        for row in range(model.rowCount())
    }
    assert suggested == {path: NAMES[index] for path, index in suspects.items()}
    # The training picture is a suspect only: the other choices keep to validation.
    gallery.set_show(Show.ALL)
    assert sorted(paths(gallery.shown_records())) == sorted(paths(records))


@pytest.mark.parametrize(
    ("order", "key", "descending"),
    [
        (Order.LOSS, "loss", True),
        (Order.CONFIDENCE_LOW, "confidence", False),
        (Order.CONFIDENCE_HIGH, "confidence", True),
    ],
)
def test_sort_orders(gallery: Gallery, order: Order, key: str, descending: bool) -> None:
    gallery.order_combo.setCurrentIndex(gallery.order_combo.findData(order))
    values = [getattr(r, key) for r in gallery.shown_records()]
    assert values == sorted(values, reverse=descending)
    assert len(values) == 60


def test_export_writes_exactly_the_listed_records_in_order(
    qtbot, gallery: Gallery, tmp_path, monkeypatch
) -> None:
    gallery.show_true_class(0)
    gallery.set_show(Show.MISCLASSIFIED)
    gallery.set_order(Order.CONFIDENCE_LOW)
    target = tmp_path / "out" / "mistakes.csv"
    asked: list[str] = []

    def choose(suggested: str) -> str:
        asked.append(suggested)
        return str(target)

    monkeypatch.setattr(gallery, "ask_export_path", choose)
    with qtbot.waitSignal(gallery.exported) as written:
        qtbot.mouseClick(gallery.export_button, Qt.MouseButton.LeftButton)

    assert written.args == [str(target)]
    assert asked == ["true-cat-misclassified.csv"]
    listed = gallery.shown_records()
    assert listed and target.read_text(encoding="utf-8") == listed_records_csv(listed, NAMES)
    header, rows = read_csv(target)
    assert header == ["path", "true", "predicted", "confidence", "loss", "source", *NAMES]
    engine_rows = list(csv.DictReader(io.StringIO(records_to_csv(listed, NAMES))))
    assert [{k: v for k, v in row.items() if k != "source"} for row in rows] == engine_rows
    assert [row["path"] for row in rows] == paths(listed)
    assert {row["true"] for row in rows} == {"cat"}
    assert {row["source"] for row in rows} == {"evaluation"}
    assert [p.name for p in target.parent.iterdir()] == ["mistakes.csv"]  # no leftovers


def test_a_cell_under_the_suspects_filter_lists_exactly_its_evaluated_pictures(
    gallery: Gallery, records, tmp_path
) -> None:
    """A training suspect the cross-validated head calls cat → dog stays out of the
    confusion matrix's cat → dog cell: the cell's count is the matrix's."""
    cell = [r for r in records if r.true == 0 and r.predicted == 1]
    training = training_suspect(tmp_path / "training", given=0, cross_validated=1)
    gallery.set_suspects({**{r.path: 1 for r in cell}, training.path: 1}, [training])

    gallery.show_cell(0, 1)
    assert gallery.model.show is Show.SUSPECTS
    assert sorted(paths(gallery.shown_records())) == sorted(paths(cell))
    assert gallery.caption.text() == f"<b>True cat → predicted dog ({len(cell)})</b>"
    for select in (gallery.show_true_class, gallery.show_predicted_class):
        select(0 if select == gallery.show_true_class else 1)
        assert training.path not in paths(gallery.shown_records())
    gallery.show_all()
    assert sorted(paths(gallery.shown_records())) == sorted([*paths(cell), training.path])
    assert gallery.show_combo.currentText() == f"{Show.SUSPECTS.value} ({len(cell) + 1})"


def test_a_training_suspect_s_tile_says_given_and_cross_validated(
    gallery: Gallery, records, tmp_path
) -> None:
    """Not "cat → dog, 90 % confident": the trained model never said so."""
    training = training_suspect(tmp_path / "training", given=0, cross_validated=1)
    evaluated = records[5]
    gallery.set_suspects({training.path: 1, evaluated.path: 0}, [training])
    model, delegate = gallery.model, gallery.view.itemDelegate()
    assert isinstance(delegate, TileDelegate)
    palette = gallery.view.palette()

    tile = model.index(model.row_of(training.path))
    assert isinstance(tile.data(RECORD_ROLE), OutOfFoldRecord)
    assert tile.data(Qt.ItemDataRole.DisplayRole) == "given cat · suggested dog (cross-validated)"
    assert [text for text, _ in delegate.lines(tile, palette)] == [
        "given cat",
        "cross-validated",
        "suggested: dog",
    ]
    assert "training picture" in tile.data(Qt.ItemDataRole.ToolTipRole)
    assert isinstance(model.record_for(training.path), OutOfFoldRecord)

    tile = model.index(model.row_of(evaluated.path))
    assert type(tile.data(RECORD_ROLE)) is PictureRecord
    assert [text for text, _ in delegate.lines(tile, palette)] == [
        f"{NAMES[evaluated.true]} → {NAMES[evaluated.predicted]}",
        f"{evaluated.confidence:.0%} confident",
        "suggested: cat",
    ]


def test_the_csv_says_which_rows_are_cross_validated(
    qtbot, gallery: Gallery, records, tmp_path
) -> None:
    training = training_suspect(tmp_path / "training", given=2, cross_validated=0)
    gallery.set_suspects({records[4].path: 2, training.path: 0}, [training])
    target = tmp_path / "suspects.csv"
    with qtbot.waitSignal(gallery.exported):
        gallery.export_csv(target)

    header, rows = read_csv(target)
    assert header == ["path", "true", "predicted", "confidence", "loss", "source", *NAMES]
    sources = {row["path"]: row["source"] for row in rows}
    assert sources == {records[4].path: "evaluation", training.path: "cross-validated"}
    (row,) = [row for row in rows if row["path"] == training.path]
    assert (row["true"], row["predicted"]) == ("bird", "cat")
    assert float(row["confidence"]) == pytest.approx(0.9)


def test_export_failure_is_reported_and_writes_nothing(qtbot, gallery: Gallery, tmp_path) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    with qtbot.waitSignal(gallery.export_failed) as failed:
        gallery.export_csv(blocker / "list.csv")
    assert str(blocker) in failed.args[0]
    assert blocker.read_text() == "not a folder"


def test_the_save_dialog_asks_before_replacing_a_file(qtbot, gallery: Gallery) -> None:
    """Qt's own confirmation stays on, and ``.csv`` is added before it asks."""
    seen: list[QFileDialog] = []

    def inspect() -> None:
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, QFileDialog)
        seen.append(dialog)
        dialog.reject()

    QTimer.singleShot(0, inspect)
    assert gallery.ask_export_path("list.csv") == ""
    (dialog,) = seen
    assert not dialog.testOption(QFileDialog.Option.DontConfirmOverwrite)
    assert dialog.defaultSuffix() == "csv"
    assert dialog.acceptMode() == QFileDialog.AcceptMode.AcceptSave


def test_thumbnails_arrive_and_a_broken_file_gets_a_placeholder(
    qtbot, gallery: Gallery, records, tmp_path
) -> None:
    broken = tmp_path / "pictures" / "broken.png"
    broken.write_bytes(b"not a picture at all")
    missing = tmp_path / "pictures" / "gone.png"
    extra = [
        PictureRecord(str(broken), 0, 1, (0.001, 0.998, 0.001), -math.log(0.001)),
        PictureRecord(str(missing), 0, 1, (0.002, 0.997, 0.001), -math.log(0.002)),
    ]
    gallery.set_records([*extra, *records], NAMES)  # highest losses: the first tiles
    loader = gallery.thumbnails
    visible = [r.path for r in gallery.shown_records()[:6]]
    qtbot.waitUntil(lambda: all(not loader.is_pending(p) for p in visible), timeout=10_000)
    qtbot.waitUntil(lambda: loader.thumbnail(visible[2]) is not None, timeout=10_000)

    good = loader.thumbnail(visible[2])
    assert good is not None and good.width() == 40
    assert loader.is_broken(str(broken)) and loader.is_broken(str(missing))
    assert loader.thumbnail(str(broken)) is None
    assert gallery.shown_records()[0].path == str(broken)
    picture = gallery.view.viewport().grab().toImage()
    placeholder = gallery.view.palette().color(QPalette.ColorRole.AlternateBase)
    tile = gallery.view.visualRect(gallery.model.index(0))
    near_corner = (tile.center().x() - 60, tile.top() + 10)  # of the 128-pixel box
    assert picture.pixelColor(*near_corner) == placeholder


def test_a_decode_started_before_forget_is_not_cached_after_it(
    qtbot, tmp_path, monkeypatch
) -> None:
    """Pictures moved while a thumbnail was decoded: the old picture's decode, ending
    while the new one's is under way, must not become the path's thumbnail."""
    picture = tmp_path / "cat_00001.png"
    picture.write_bytes(png_bytes((200, 0, 0)))
    gates, reads = [Gate(), Gate()], []
    real_decode, real_hand_over = thumbnails.decode_thumbnail, ThumbnailLoader._decode
    handed_over: list[str] = []

    def decode(path: str, size: int) -> thumbnails.Pixels:
        pixels = real_decode(path, size)
        gate = gates[len(reads)]  # read in turn: the test lets the second start later
        reads.append(path)
        gate.pass_through()  # hold what was read
        return pixels

    def hand_over(loader: ThumbnailLoader, path: str, generation: int) -> None:
        real_hand_over(loader, path, generation)
        handed_over.append(path)

    monkeypatch.setattr(thumbnails, "decode_thumbnail", decode)
    monkeypatch.setattr(ThumbnailLoader, "_decode", hand_over)
    loader = ThumbnailLoader(workers=2)
    assert loader.thumbnail(str(picture)) is None
    assert gates[0].entered.wait(10)  # the red picture read
    picture.write_bytes(png_bytes((0, 0, 200)))  # moved away: a blue one has its path
    loader.forget()
    assert loader.thumbnail(str(picture)) is None  # its tile asks again
    assert gates[1].entered.wait(10)  # the blue picture read
    gates[0].release.set()
    qtbot.waitUntil(lambda: len(handed_over) == 1)  # red arrives first
    with qtbot.waitSignal(loader.thumbnails_arrived, timeout=10_000) as arrived:
        gates[1].release.set()

    assert arrived.args == [[str(picture)]]
    pixmap = loader.thumbnail(str(picture))
    assert pixmap is not None and pixmap.toImage().pixelColor(20, 20) == QColor(0, 0, 200)
    loader.shutdown()


def test_the_cache_keeps_to_its_budget() -> None:
    loader = ThumbnailLoader(cache_bytes=3 * 40 * 40 * 4)
    for number in range(5):
        loader._store(f"p{number}", (bytes(40 * 40 * 3), 40, 40))
    assert [path for path in loader._cache] == ["p2", "p3", "p4"]
    assert loader._cached_bytes == 3 * 40 * 40 * 4


def test_opening_a_tile_by_enter_or_double_click(qtbot, gallery: Gallery) -> None:
    view = gallery.view
    first = gallery.model.index(0)
    view.setCurrentIndex(first)
    with qtbot.waitSignal(gallery.record_opened) as opened:
        qtbot.keyClick(view, Qt.Key.Key_Return)
    assert opened.args == [gallery.shown_records()[0]]
    second = gallery.model.index(1)
    centre = view.visualRect(second).center()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=centre)  # QTest's double
    with qtbot.waitSignal(gallery.record_opened) as opened:  # click needs the press first
        qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    assert opened.args == [gallery.shown_records()[1]]
    view.selectionModel().select(second, view.selectionModel().SelectionFlag.ClearAndSelect)
    assert gallery.selected_records() == [gallery.shown_records()[1]]


def test_5000_pictures_scroll_and_only_visible_tiles_are_decoded(qtbot, tmp_path) -> None:
    """Virtualised: only the tiles on screen ask for thumbnails. The time of each scroll
    step is measured and printed, never asserted (tests/benchmarks/bench_gallery.py
    reports the figures)."""
    records = make_records(tmp_path / "many", 5000)
    widget = Gallery()
    qtbot.addWidget(widget)
    widget.resize(900, 700)
    widget.set_records(records, NAMES)
    widget.show()
    view, loader = widget.view, widget.thumbnails
    bar = view.verticalScrollBar()
    last = widget.model.index(widget.model.rowCount() - 1)
    qtbot.waitUntil(lambda: view.visualRect(last).isValid())  # laid out, in batches
    assert 3 * bar.singleStep() < bar.pageStep() / 2  # a wheel notch: a part of a screen
    qtbot.waitUntil(lambda: not loader.busy, timeout=10_000)
    on_screen = [
        r
        for row, r in enumerate(widget.shown_records()[:200])
        if view.viewport().rect().intersects(view.visualRect(widget.model.index(row)))
    ]
    assert on_screen and all(loader.thumbnail(r.path) is not None for r in on_screen)
    assert len(loader._cache) <= len(on_screen)  # nothing decoded off screen

    frames = []
    while bar.value() < bar.maximum():
        start = time.perf_counter()
        bar.setValue(bar.value() + bar.pageStep() // 2)
        QApplication.processEvents()
        frames.append(time.perf_counter() - start)
    assert view.viewport().rect().intersects(view.visualRect(last))
    print(
        f"{len(frames)} scroll steps: median {statistics.median(frames) * 1000:.1f} ms, "
        f"worst {max(frames) * 1000:.1f} ms"
    )
    widget.thumbnails.shutdown()


# --- in the Results step ------------------------------------------------------------------
@pytest.fixture
def panel(qtbot, records, trained):
    from finetune_studio.ui.widgets.results_panel import ResultsPanel
    from finetune_studio.ui.workers.tasks import TaskRunner

    runner = TaskRunner()
    widget = ResultsPanel(runner)
    qtbot.addWidget(widget)
    widget.resize(1200, 700)
    confusion = [[0] * 3 for _ in range(3)]
    for record in records:
        confusion[record.true][record.predicted] += 1
    evaluation = Evaluation(
        loss=1.0,
        accuracy=sum(confusion[i][i] for i in range(3)) / len(records),
        images=len(records),
        confusion=confusion,
        predictions=Predictions.of(records, 3),
    )
    widget.set_result(replace(trained, class_names=NAMES, evaluation=evaluation))
    widget.show()
    yield widget
    widget.gallery.thumbnails.shutdown()
    runner.shutdown()


@pytest.fixture
def trained(tiny_recipe):
    from finetune_studio.engine.training import Trainer
    from support.runs import drain

    _, result = drain(Trainer(tiny_recipe.replace(epochs=1)).events())
    return result


def test_clicking_a_confusion_cell_or_a_class_row_lists_its_pictures(qtbot, panel, records) -> None:
    panel.side_tabs.setCurrentIndex(1)
    view = panel.confusion_view
    cell = view.model().index(2, 1)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(cell).center())
    assert panel.side_tabs.currentWidget() is panel.gallery
    expected = sorted(r.path for r in records if r.true == 2 and r.predicted == 1)
    assert sorted(paths(panel.gallery.shown_records())) == expected

    rows = panel.per_class_view
    row = rows.model().index(1, 0)
    qtbot.mouseClick(rows.viewport(), Qt.MouseButton.LeftButton, pos=rows.visualRect(row).center())
    assert sorted(paths(panel.gallery.shown_records())) == sorted(
        r.path for r in records if r.true == 1
    )


def test_a_run_without_records_shows_why(qtbot, panel, trained) -> None:
    assert trained.evaluation is not None
    panel.set_result(replace(trained, evaluation=replace(trained.evaluation, predictions=None)))
    assert panel.gallery.model.rowCount() == 0
    assert panel.gallery.pages.currentWidget() is panel.gallery.hint
    assert panel.gallery.hint.text() == OLD_RUN_HINT
    assert not panel.gallery.export_button.isEnabled()


def test_dropped_pictures_show_the_try_it_tab(qtbot, panel, colour_dataset) -> None:
    assert panel.side_tabs.currentWidget() is panel.gallery
    with qtbot.waitSignal(panel.predictions_shown, timeout=30_000):
        panel.predict([str(next((colour_dataset / "red").iterdir()))])
    assert panel.side_tabs.currentWidget() is panel.try_it
    assert panel.predictions.count() == 1
