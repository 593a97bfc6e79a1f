"""UI layer: every evaluated picture as a tile (true → predicted, confidence).

The Results step shows here the pictures of a confusion-matrix cell or a class, with
a filter (all, misclassified, low confidence, suspected wrong label) and a sort (loss,
confidence). The list view is virtualised: uniform tiles laid out in batches, and
only the tiles on screen are painted, so only they ask for thumbnails
(``ThumbnailLoader`` decodes them off the GUI thread).

Suspects that are training pictures have no evaluation, only the suspects search's
cross-validated probabilities (``OutOfFoldRecord``): their tiles say "given cat,
cross-validated, suggested dog" rather than "cat → dog, 97 % confident", which would
read as the trained model's verdict, and the CSV export says which rows they are.

How a tile is painted, and how the view scrolls through them, is ``gallery_tiles.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from PySide6.QtCore import QModelIndex, Qt, Signal, Slot
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListView,
    QPushButton,
    QStackedLayout,
    QVBoxLayout,
    QWidget,
)

from ...engine.review.records import PictureRecord
from ..models.picture_records_model import (
    Order,
    PictureRecordsModel,
    Selection,
    Show,
    listed_records_csv,
)
from ..workers.thumbnails import ThumbnailLoader
from .gallery_tiles import TileDelegate, TileView

SUSPECTS_HINT = (
    "No suspects yet: look for suspected wrong labels first. The search checks every "
    "picture against a model that never trained on it."
)
NO_RECORDS_HINT = "Train a model to see its validation pictures here."
OLD_RUN_HINT = (
    "This run kept no per-picture results (it is older than the gallery). "
    "Train again to see every validation picture here."
)


class Gallery(QWidget):
    """The pictures of a selection, filtered and sorted; Enter or a double-click
    opens one (``record_opened``)."""

    record_opened = Signal(object)  # PictureRecord
    exported = Signal(str)  # the CSV file written
    export_failed = Signal(str)  # the message to show

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = PictureRecordsModel(self)
        self.thumbnails = ThumbnailLoader(parent=self)
        self._empty_hint = NO_RECORDS_HINT

        self.caption = QLabel()
        self.all_button = QPushButton("All classes")
        self.all_button.setToolTip("Show the pictures of every class again")
        self.show_combo = QComboBox()
        for show in Show:
            self.show_combo.addItem(show.value, show)
        self.order_combo = QComboBox()
        for order in Order:
            self.order_combo.addItem(order.value, order)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("Save the pictures listed here, in this order, as CSV")
        self.view = TileView()
        self._set_up_view()
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)

        top = QHBoxLayout()
        top.addWidget(self.caption, stretch=1)
        top.addWidget(self.all_button)
        filters = QHBoxLayout()
        filters.addWidget(QLabel("Show:"))
        filters.addWidget(self.show_combo, stretch=1)
        filters.addWidget(QLabel("Sort:"))
        filters.addWidget(self.order_combo, stretch=1)
        filters.addWidget(self.export_button)
        self.pages = QStackedLayout()
        self.pages.addWidget(self.view)
        self.pages.addWidget(self.hint)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addLayout(filters)
        layout.addLayout(self.pages, stretch=1)

        self.all_button.clicked.connect(self.show_all)
        self.show_combo.currentIndexChanged.connect(self._on_show_combo_changed)
        self.order_combo.currentIndexChanged.connect(self._on_order_combo_changed)
        self.export_button.clicked.connect(self.choose_export_file)
        self.view.activated.connect(self._on_view_activated)
        self.thumbnails.thumbnails_arrived.connect(self._on_thumbnails_arrived)
        self.model.modelReset.connect(self._on_model_reset)
        self._on_model_reset()

    def _set_up_view(self) -> None:
        view = self.view
        view.setModel(self.model)
        view.setItemDelegate(TileDelegate(self.thumbnails, view))
        view.setViewMode(QListView.ViewMode.IconMode)
        view.setMovement(QListView.Movement.Static)
        view.setResizeMode(QListView.ResizeMode.Adjust)
        view.setUniformItemSizes(True)  # one size for all: no per-tile measuring
        view.setLayoutMode(QListView.LayoutMode.Batched)
        view.setBatchSize(500)
        view.setSpacing(4)
        view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)

    # --- what is shown --------------------------------------------------------------------
    def set_records(
        self,
        records: Sequence[PictureRecord],
        class_names: Sequence[str],
        empty_hint: str = NO_RECORDS_HINT,
    ) -> None:
        """A new evaluation's pictures, all classes; ``empty_hint`` says why there are
        none, if there are none."""
        self._empty_hint = empty_hint
        self.model.selection = Selection()
        self.model.set_records(records, class_names)

    def set_suspects(
        self, suspects: Mapping[str, int] | None, records: Sequence[PictureRecord] = ()
    ) -> None:
        """Suspected wrong labels, ``path -> suggested class index``, and list them.
        ``records`` adds what the search made of suspects the evaluation did not see
        (training pictures: cross-validated records, listed under this filter with all
        classes only, never in a cell or a class); a suspect with no record anywhere
        cannot be shown (``model.suspects_without_record()`` lists them). None forgets
        them."""
        self.model.set_suspects(suspects, records)
        if suspects is not None:
            self.set_show(Show.SUSPECTS)

    @Slot()
    def show_all(self) -> None:
        self.select(Selection())

    def show_cell(self, true: int, predicted: int) -> None:
        self.select(Selection(true, predicted))

    def show_true_class(self, true: int) -> None:
        self.select(Selection(true=true))

    def show_predicted_class(self, predicted: int) -> None:
        self.select(Selection(predicted=predicted))

    def select(self, selection: Selection) -> None:
        self.model.set_selection(selection)

    def set_show(self, show: Show) -> None:
        self.model.set_show(show)  # first: the combo's handler then has nothing to do
        self.show_combo.setCurrentIndex(self.show_combo.findData(show))

    def set_order(self, order: Order) -> None:
        self.model.set_order(order)
        self.order_combo.setCurrentIndex(self.order_combo.findData(order))

    def shown_records(self) -> list[PictureRecord]:
        """The pictures listed, in the order shown (what Export CSV writes)."""
        return self.model.shown_records()

    def neighbour(self, record: PictureRecord, delta: int) -> PictureRecord | None:
        """The picture ``delta`` tiles after ``record`` in the list (None past either
        end, or when it is no longer listed), made the current tile."""
        row = self.model.row_of(record.path)
        if row < 0 or not 0 <= row + delta < self.model.rowCount():
            return None
        index = self.model.index(row + delta)
        self.view.setCurrentIndex(index)
        self.view.scrollTo(index)
        return self.model.record(row + delta)

    def selected_records(self) -> list[PictureRecord]:
        """The tiles the user selected, in the order shown."""
        rows = sorted(index.row() for index in self.view.selectionModel().selectedIndexes())
        return [self.model.record(row) for row in rows]

    def selection_text(self) -> str:
        selection, name = self.model.selection, self.model.class_name
        if selection.true is not None and selection.predicted is not None:
            what = f"True {name(selection.true)} → predicted {name(selection.predicted)}"
        elif selection.true is not None:
            what = f"True {name(selection.true)}"
        elif selection.predicted is not None:
            what = f"Predicted {name(selection.predicted)}"
        else:
            what = "All classes"
        return f"{what} ({self.model.rowCount()})"

    @Slot()
    def _on_model_reset(self) -> None:
        self.caption.setText(f"<b>{self.selection_text()}</b>")
        self.all_button.setEnabled(self.model.selection != Selection())
        self._update_show_combo()
        self.export_button.setEnabled(self.model.rowCount() > 0)
        self.hint.setText(self._hint_text())
        self.pages.setCurrentWidget(self.view if self.model.rowCount() else self.hint)

    def _hint_text(self) -> str:
        if not self.model.has_records:
            return self._empty_hint
        if not self.model.selected_count():
            return "No validation pictures here."
        return (
            f"None of these {self.model.selected_count()} pictures is listed under "
            f"“{self.model.show.value}”: choose “{Show.ALL.value}” to see them."
        )

    def _update_show_combo(self) -> None:
        """Each choice with how many pictures it would list; suspects only once known."""
        items = self.show_combo.model()
        for row in range(self.show_combo.count()):
            show = self.show_combo.itemData(row)
            label = show.value
            if show is not Show.SUSPECTS or self.model.has_suspects:
                label = f"{label} ({self.model.count(show)})"
            self.show_combo.setItemText(row, label)
        assert isinstance(items, QStandardItemModel)  # a QComboBox's own model
        suspects = items.item(self.show_combo.findData(Show.SUSPECTS))
        suspects.setEnabled(self.model.has_suspects)
        tip = "" if self.model.has_suspects else SUSPECTS_HINT
        suspects.setToolTip(tip)
        if not self.model.has_suspects and self.show_combo.currentData() is Show.SUSPECTS:
            self.show_combo.setCurrentIndex(self.show_combo.findData(Show.ALL))

    @Slot(int)
    def _on_show_combo_changed(self, row: int) -> None:
        show = self.show_combo.itemData(row)
        if isinstance(show, Show) and show is not self.model.show:
            self.model.set_show(show)

    @Slot(int)
    def _on_order_combo_changed(self, row: int) -> None:
        order = self.order_combo.itemData(row)
        if isinstance(order, Order) and order is not self.model.order:
            self.model.set_order(order)

    @Slot(QModelIndex)
    def _on_view_activated(self, index: QModelIndex) -> None:
        self.record_opened.emit(self.model.record(index.row()))

    @Slot(list)
    def _on_thumbnails_arrived(self, _: list[str]) -> None:
        self.view.viewport().update()

    # --- export ---------------------------------------------------------------------------
    @Slot()
    def choose_export_file(self) -> None:
        path = self.ask_export_path(self._suggested_file_name())
        if path:
            self.export_csv(path)

    def ask_export_path(self, suggested: str) -> str:
        """The file to write, or "" (tests replace this). Qt's dialog asks before it
        lets the user pick an existing file, and adds ``.csv`` before it asks."""
        dialog = QFileDialog(self, "Export the listed pictures as CSV", suggested)
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setNameFilter("CSV files (*.csv)")
        dialog.setDefaultSuffix("csv")
        if dialog.exec() != QFileDialog.DialogCode.Accepted or not dialog.selectedFiles():
            return ""
        return dialog.selectedFiles()[0]

    def export_csv(self, path: str | Path) -> None:
        """Write the listed pictures, in order, to ``path`` (replacing it: the user has
        confirmed that in the file dialog), each row saying its source."""
        from ...engine.atomic import write_file_atomically

        text = listed_records_csv(self.shown_records(), self.model.class_names)

        def write(temporary: Path) -> None:
            temporary.write_text(text, encoding="utf-8", newline="")

        try:
            write_file_atomically(Path(path), write)
        except OSError as error:
            self.export_failed.emit(f"Could not write {path}: {error.strerror or error}")
            return
        self.exported.emit(str(path))

    def _suggested_file_name(self) -> str:
        text = self.selection_text().rsplit(" (", 1)[0]
        words = [*text.replace("→", "as").split(), self.model.show.name.lower()]
        return "-".join(word.lower() for word in words if word) + ".csv"
