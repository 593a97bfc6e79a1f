"""UI layer: step 1, choose a dataset folder and see what is in it."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import (
    QAbstractItemModel,
    QSettings,
    QSize,
    QStandardPaths,
    Qt,
    QUrl,
    Signal,
    Slot,
)
from PySide6.QtGui import QDesktopServices, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..models.dataset_models import ClassesModel, SkippedFilesModel
from ..workers.tasks import ProgressFn, Task, TaskRunner
from ..workers.thumbnails import ThumbnailLoader
from .banner import Banner
from .drop_zone import DropZone
from .progress_value import set_bar_range
from .task_progress import show_latest_progress

if TYPE_CHECKING:
    from ...engine.inspection import DatasetReport
    from ...engine.recipe import Recipe

RECENT_KEY = "dataset/recent"
# Banner sources (see banner.py): each message is cleared when its cause is gone.
FOLDER_SOURCE = "folder"  # the folder checked (or dropped) last: cleared by the next check
ENGINE_SOURCE = "engine"  # the engine failed to load: stands for the session
PROJECT_SOURCE = "project"  # opening or saving a project failed: cleared by the next success
MAX_RECENT = 8
THUMBNAIL_SIZE = 48
THUMBNAIL_CACHE_BYTES = 4 * 1024 * 1024  # about 450 class thumbnails of 48 x 48


@dataclass(frozen=True)
class CheckedFolder:
    """A check's outcome: the report; per class, its training and validation counts
    and the picture shown for it (its first training picture; None for a class
    without one). Counted in the worker: at 50,000 pictures, counting walks 50,000
    samples, which is not the GUI thread's work."""

    report: DatasetReport
    counts: tuple[tuple[int, int], ...]
    samples: tuple[str | None, ...]


class FolderCheck:
    """A task's function: inspect the folder and pick each class's picture. The
    thumbnails themselves are decoded later, for the rows on screen (see
    ``models/dataset_models.py``): a folder of a thousand classes does not wait for
    a thousand decodes."""

    def __init__(self, folder: str, val_fraction: float | None, seed: int) -> None:
        self.folder, self.val_fraction, self.seed = folder, val_fraction, seed

    def __call__(self, progress: ProgressFn, cancel: threading.Event) -> CheckedFolder:
        from ...engine.inspection import DEFAULT_VAL_FRACTION, inspect_dataset

        val_fraction = DEFAULT_VAL_FRACTION if self.val_fraction is None else self.val_fraction
        report = inspect_dataset(self.folder, val_fraction, self.seed, progress, cancel)
        samples: list[str | None] = [None] * len(report.classes)
        for sample in reversed(report.train):  # one pass; the first of each class wins
            samples[sample.label] = sample.path
        counts = tuple(zip(report.train_counts, report.val_counts))
        return CheckedFolder(report, counts, tuple(samples))


class SampleDrawing:
    """A task's function: draw the practice dataset into ``folder`` (once)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, progress: ProgressFn, cancel: threading.Event) -> str:
        from ...engine.sample_data import generate_sample_dataset

        return str(generate_sample_dataset(self.folder, progress=progress))


def sample_folder() -> Path:
    """Where "Try a sample dataset" draws. Qt's app data folder ends in the organisation
    and the application name, both "Finetune Studio" here: the repeat is dropped, so the
    pictures land in ``~/.local/share/Finetune Studio/sample-shapes``."""
    base = Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation))
    if base.name == base.parent.name:
        base = base.parent
    return base / "sample-shapes"


def icon_from_rgb(data: bytes, width: int, height: int) -> QIcon:
    image = QImage(data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return QIcon(QPixmap.fromImage(image.copy()))


class DatasetPanel(QWidget):
    """Owns the recipe's dataset folder; checks folders with the recipe's split."""

    dataset_loaded = Signal(object)  # DatasetReport
    loading_changed = Signal(bool)

    def __init__(
        self, runner: TaskRunner, settings: QSettings, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.runner = runner
        self.settings = settings
        self.report: DatasetReport | None = None
        self.folder = ""  # the folder of ``report``, as the user or the recipe named it
        self.val_fraction: float | None = None  # the split of the recipe shown (None:
        self.seed = 0  # the engine's default, until a recipe is shown)
        self.task: Task | None = None
        self._task_folder = ""

        self.drop_zone = DropZone()
        self.banner = Banner()
        self.progress = QProgressBar()
        self.progress.setFormat("Checking pictures… %v of %m")
        self.cancel_button = QPushButton("Cancel")
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, stretch=1)
        progress_row.addWidget(self.cancel_button)
        self._show_progress(False)
        self.summary = QLabel("No dataset yet.")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.thumbnails = ThumbnailLoader(THUMBNAIL_SIZE, THUMBNAIL_CACHE_BYTES, parent=self)
        self.classes_model = ClassesModel(self.thumbnails, self)
        self.classes_view = self._table(self.classes_model)
        self.skipped_model = SkippedFilesModel(self)
        self.skipped_view = self._table(self.skipped_model)
        self.skipped_view.setToolTip("Double-click a file to open it")
        self.skipped_view.doubleClicked.connect(self._on_skipped_view_double_clicked)
        self.skipped_label = QLabel("Skipped files")

        lists = QSplitter(Qt.Orientation.Horizontal)
        classes_box = QWidget()
        classes_layout = QVBoxLayout(classes_box)
        classes_layout.setContentsMargins(0, 0, 0, 0)
        classes_layout.addWidget(QLabel("Classes"))
        classes_layout.addWidget(self.classes_view)
        skipped_box = QWidget()
        skipped_layout = QVBoxLayout(skipped_box)
        skipped_layout.setContentsMargins(0, 0, 0, 0)
        skipped_layout.addWidget(self.skipped_label)
        skipped_layout.addWidget(self.skipped_view)
        lists.addWidget(classes_box)
        lists.addWidget(skipped_box)
        lists.setSizes([400, 400])

        layout = QVBoxLayout(self)
        layout.addWidget(self.drop_zone)
        layout.addLayout(progress_row)
        layout.addWidget(self.banner)
        layout.addWidget(self.summary)
        layout.addWidget(lists, stretch=1)

        self.drop_zone.open_button.clicked.connect(self.choose_folder)
        self.drop_zone.sample_button.clicked.connect(self.load_sample)
        self.drop_zone.recent.activated.connect(self._on_recent_activated)
        self.cancel_button.clicked.connect(self._on_cancel_button_clicked)
        self._refresh_recent()

    @staticmethod
    def _table(model: QAbstractItemModel) -> QTableView:
        view = QTableView()
        view.setModel(model)
        view.verticalHeader().hide()
        header = view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # Sized to the rows on screen: Qt's default measures 1,000 rows, which took
        # ~50 ms of the GUI thread each time a long list was laid out.
        header.setResizeContentsPrecision(0)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        view.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        view.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        view.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        return view

    # --- loading -------------------------------------------------------------------------
    @property
    def loading(self) -> bool:
        return self.task is not None

    def _show_progress(self, visible: bool) -> None:
        self.progress.setVisible(visible)
        self.cancel_button.setVisible(visible)

    def _start(self, task: Task, message: str, folder: str = "") -> None:
        """Replace the task in progress (a newer folder wins: the older check stops)."""
        if self.task is not None:
            self.task.discard()
        self.task, self._task_folder = task, folder
        task.progressed.connect(self._on_task_progressed)
        task.failed.connect(self._on_task_failed)
        task.cancelled.connect(self._on_task_cancelled)
        self.banner.clear(FOLDER_SOURCE)  # the new check re-evaluates the folder
        self.progress.setFormat(message)
        set_bar_range(self.progress, 0, 0)
        self._show_progress(True)
        self.cancel_button.setEnabled(True)
        self.loading_changed.emit(True)

    def load_folder(self, folder: str | Path) -> None:
        """Check a folder in the background; the result arrives as ``dataset_loaded``."""
        named = str(folder)
        expanded = str(Path(named).expanduser())
        task = self.runner.run_function(
            FolderCheck(expanded, self.val_fraction, self.seed), "check folder"
        )
        task.succeeded.connect(self._on_check_task_succeeded)
        self._start(task, "Checking pictures… %v of %m", named)
        self.summary.setText(f"Reading {expanded}…")

    @Slot()
    def load_sample(self) -> None:
        """Draw the practice dataset into the user's data folder (once), then load it."""
        task = self.runner.run_function(SampleDrawing(sample_folder()), "draw")
        task.succeeded.connect(self._on_sample_task_succeeded)
        self._start(task, "Drawing sample pictures… %v of %m")

    @Slot(object)
    def _on_sample_task_succeeded(self, folder: str) -> None:
        drawing, self.task = self.task, None
        if drawing is not None and drawing.cancel_requested:
            self._on_task_cancelled()  # drawing cannot stop halfway; the check can wait
        else:
            self.load_folder(folder)

    @Slot(list)
    def _on_task_progressed(self, events: list[object]) -> None:
        show_latest_progress(self.progress, events)

    @Slot(object)
    def _on_check_task_succeeded(self, outcome: CheckedFolder) -> None:
        self.task = None
        self._show_progress(False)
        report = outcome.report
        self.folder = self._task_folder
        self.show_report(outcome)
        self._remember(report.root)
        self.loading_changed.emit(False)
        if not report.errors:
            self.dataset_loaded.emit(report)

    @Slot(str, str)
    def _on_task_failed(self, message: str, details: str) -> None:
        self.task = None
        self._show_progress(False)
        self._show_summary()  # the folder loaded before, if any, is still the one in use
        self.banner.show_error(message, details, source=FOLDER_SOURCE)
        self.loading_changed.emit(False)

    @Slot()
    def _on_task_cancelled(self) -> None:
        self.task = None
        self._show_progress(False)
        self._show_summary()
        self.banner.show_info("Stopped checking the folder.", source=FOLDER_SOURCE)
        self.loading_changed.emit(False)

    @Slot()
    def _on_cancel_button_clicked(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.cancel_button.setEnabled(False)

    # --- recipes ---------------------------------------------------------------------------
    def update_recipe(self, recipe: Recipe) -> Recipe:
        """The recipe naming the folder loaded here, every other field kept."""
        return recipe.replace(dataset=self.folder) if self.report is not None else recipe

    def show_recipe(self, recipe: Recipe) -> None:
        """Check the recipe's folder with the recipe's split, so the pictures shown are
        the ones its run trains and validates on. The folder shown before is let go at
        once: if the recipe's folder cannot be used, nothing trains on the old one."""
        self.val_fraction, self.seed = recipe.val_fraction, recipe.seed
        self.report, self.folder = None, ""
        self.classes_model.clear()
        self.skipped_model.clear()
        self.skipped_label.setText("Skipped files (0)")
        self._show_summary()
        self.load_folder(recipe.dataset)

    def _show_summary(self) -> None:
        from ...engine.inspection import DEFAULT_VAL_FRACTION

        report = self.report
        if report is None:
            self.summary.setText("No dataset loaded.")
            return
        total = len(report.train) + len(report.val)
        fraction = DEFAULT_VAL_FRACTION if self.val_fraction is None else self.val_fraction
        held_out = round(100 * fraction)
        split = (
            "the train/ and val/ folders"
            if report.split_source == "folders"
            else f"a random {100 - held_out}/{held_out} split per class"
        )
        self.summary.setText(
            f"<b>{report.root}</b><br>{len(report.classes)} classes, {total:,} pictures: "
            f"{len(report.train):,} for training and {len(report.val):,} for validation "
            f"({split})."
        )

    def show_report(self, checked: CheckedFolder) -> None:
        report = self.report = checked.report
        self._show_summary()
        self.thumbnails.forget()  # a repaired folder may hold other pictures at a path
        self.classes_model.set_classes(report.classes, checked.counts, checked.samples)
        self.skipped_model.set_files(report.skipped, report.root)
        self.skipped_label.setText(f"Skipped files ({len(report.skipped)})")
        if report.errors:
            self.banner.show_error(" ".join(report.errors), source=FOLDER_SOURCE)
        elif report.warnings:
            self.banner.show_warning(" ".join(report.warnings), source=FOLDER_SOURCE)
        else:
            self.banner.clear(FOLDER_SOURCE)

    # --- recent folders ----------------------------------------------------------------------
    def recent_folders(self) -> list[str]:
        value = self.settings.value(RECENT_KEY, [])
        if isinstance(value, str):
            return [value]
        return [str(f) for f in value] if isinstance(value, (list, tuple)) else []

    def _remember(self, folder: str) -> None:
        folders = [folder, *(f for f in self.recent_folders() if f != folder)][:MAX_RECENT]
        self.settings.setValue(RECENT_KEY, folders)
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.drop_zone.recent.clear()
        self.drop_zone.recent.addItems(self.recent_folders())
        self.drop_zone.recent.setCurrentIndex(-1)

    @Slot(int)
    def _on_recent_activated(self, index: int) -> None:
        folder = self.drop_zone.recent.itemText(index)
        if folder:
            self.load_folder(folder)

    @Slot()
    def choose_folder(self) -> None:
        start = self.recent_folders()[0] if self.recent_folders() else str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open a dataset folder", start)
        if folder:
            self.load_folder(folder)

    @Slot()
    def _on_skipped_view_double_clicked(self) -> None:
        row = self.skipped_view.currentIndex().row()
        if self.report is not None and 0 <= row < len(self.report.skipped):
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.report.skipped[row].path))
