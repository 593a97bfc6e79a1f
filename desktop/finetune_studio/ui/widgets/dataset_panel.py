"""UI layer: step 1, choose a dataset folder and see what is in it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, QSize, QStandardPaths, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFrame,
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

from ..models.table_models import RowsModel
from ..resources import action_icon
from ..workers.tasks import TaskRunner
from .banner import Banner

RECENT_KEY = "dataset/recent"
MAX_RECENT = 8
THUMBNAIL_SIZE = 48


def inspect_with_thumbnails(
    folder: str, progress: Any, cancel: threading.Event
) -> tuple[Any, dict[str, tuple[bytes, int, int]]]:
    """Runs in a worker thread: inspect the folder, then one small RGB picture per class."""
    from ...engine.inspection import inspect_dataset
    from ...engine.images import ImageProblem, load_rgb

    report = inspect_dataset(folder, progress=progress)
    thumbnails: dict[str, tuple[bytes, int, int]] = {}
    for label, name in enumerate(report.classes):
        sample = next((s for s in report.train if s.label == label), None)
        if sample is None or cancel.is_set():
            continue
        try:
            image = load_rgb(sample.path, THUMBNAIL_SIZE)
        except ImageProblem:
            continue
        image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        thumbnails[name] = (image.tobytes(), image.width, image.height)
    return report, thumbnails


def icon_from_rgb(data: bytes, width: int, height: int) -> QIcon:
    image = QImage(data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return QIcon(QPixmap.fromImage(image.copy()))


class DropZone(QFrame):
    """The big "drop a folder here" target; the whole window accepts drops too."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("dropZone")
        self.setStyleSheet("#dropZone { border: 2px dashed palette(mid); border-radius: 10px; }")
        self.setMinimumHeight(120)
        layout = QVBoxLayout(self)
        title = QLabel("Drop a folder of class subfolders here")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.4)
        title.setFont(font)
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint = QLabel("for example birds/robin/*.jpg, birds/wren/*.jpg, ...")
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint.setEnabled(False)
        self.open_button = QPushButton("Open folder…")
        self.sample_button = QPushButton("Try a sample dataset")
        self.sample_button.setToolTip(
            "Draw 360 pictures of shapes and textures in 6 classes and load them"
        )
        self.recent = QComboBox()
        self.recent.setMinimumWidth(260)
        self.recent.setPlaceholderText("Recent folders")
        self.open_button.setIcon(action_icon("open-folder"))
        self.sample_button.setIcon(action_icon("sample"))
        buttons = QHBoxLayout()
        buttons.addStretch()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.sample_button)
        buttons.addWidget(self.recent)
        buttons.addStretch()
        layout.addStretch()
        layout.addWidget(title)
        layout.addWidget(hint)
        layout.addLayout(buttons)
        layout.addStretch()


class DatasetPanel(QWidget):
    dataset_loaded = Signal(object)  # DatasetReport
    loading_changed = Signal(bool)

    def __init__(
        self, runner: TaskRunner, settings: QSettings, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.runner = runner
        self.settings = settings
        self.report: Any = None
        self._task: int | None = None

        self.drop_zone = DropZone()
        self.banner = Banner()
        self.progress = QProgressBar()
        self.progress.setFormat("Checking pictures… %v of %m")
        self.progress.hide()
        self.summary = QLabel("No dataset yet.")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.classes_model = RowsModel(["Class", "Training", "Validation"], self)
        self.classes_view = self._table(self.classes_model)
        self.skipped_model = RowsModel(["Skipped file", "Reason"], self)
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
        layout.addWidget(self.progress)
        layout.addWidget(self.banner)
        layout.addWidget(self.summary)
        layout.addWidget(lists, stretch=1)

        self.drop_zone.open_button.clicked.connect(self.choose_folder)
        self.drop_zone.sample_button.clicked.connect(self.load_sample)
        self.drop_zone.recent.activated.connect(self._on_recent_activated)
        self._refresh_recent()

    @staticmethod
    def _table(model: RowsModel) -> QTableView:
        view = QTableView()
        view.setModel(model)
        view.verticalHeader().hide()
        header = view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        view.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        view.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        view.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        return view

    # --- loading -------------------------------------------------------------------------
    @property
    def loading(self) -> bool:
        return self._task is not None

    def load_folder(self, folder: str | Path) -> None:
        """Scan and check a folder in the background; the result arrives as a signal."""
        folder = str(Path(folder).expanduser())
        if self._task is not None:
            self.runner.cancel(self._task)
        self.banner.clear()
        self.progress.setRange(0, 0)
        self.progress.show()
        self.summary.setText(f"Reading {folder}…")
        self.loading_changed.emit(True)
        self._task = self.runner.start(
            lambda progress, cancel: inspect_with_thumbnails(folder, progress, cancel),
            on_success=self._scan_succeeded,
            on_failure=self._scan_failed,
            on_progress=self._scan_progressed,
        )

    @Slot()
    def load_sample(self) -> None:
        """Draw the practice dataset into the user's data folder (once), then load it."""
        base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
        folder = Path(base) / "sample-shapes"
        self.banner.clear()
        self.progress.setFormat("Drawing sample pictures… %v of %m")
        self.progress.setRange(0, 0)
        self.progress.show()
        self.loading_changed.emit(True)

        def draw(progress: Any, cancel: threading.Event) -> str:
            from ...engine.sample_data import generate_sample_dataset

            return str(generate_sample_dataset(folder, progress=progress))

        self._task = self.runner.start(
            draw, self._sample_drawn, self._scan_failed, self._scan_progressed
        )

    def _sample_drawn(self, folder: str) -> None:
        self._task = None
        self.progress.setFormat("Checking pictures… %v of %m")
        self.load_folder(folder)

    def _scan_progressed(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _scan_succeeded(self, outcome: tuple[Any, dict[str, tuple[bytes, int, int]]]) -> None:
        self._task = None
        self.progress.hide()
        report, thumbnails = outcome
        self.show_report(report, thumbnails)
        self._remember(report.root)
        self.loading_changed.emit(False)
        if not report.errors:
            self.dataset_loaded.emit(report)

    def _scan_failed(self, message: str, details: str) -> None:
        self._task = None
        self.progress.hide()
        self.summary.setText("No dataset loaded.")
        self.banner.show_error(message, details)
        self.loading_changed.emit(False)

    def show_report(self, report: Any, thumbnails: dict[str, tuple[bytes, int, int]]) -> None:
        self.report = report
        total = len(report.train) + len(report.val)
        split = (
            "the train/ and val/ folders"
            if report.split_source == "folders"
            else "a random 80/20 split per class"
        )
        self.summary.setText(
            f"<b>{report.root}</b><br>{len(report.classes)} classes, {total:,} pictures: "
            f"{len(report.train):,} for training and {len(report.val):,} for validation "
            f"({split})."
        )
        icons = [
            icon_from_rgb(*thumbnails[name]) if name in thumbnails else None
            for name in report.classes
        ]
        self.classes_model.set_rows(
            list(zip(report.classes, report.train_counts, report.val_counts)), icons
        )
        self.skipped_model.set_rows(
            [(s.path, s.reason) for s in report.skipped], tooltips=[s.path for s in report.skipped]
        )
        self.skipped_label.setText(f"Skipped files ({len(report.skipped)})")
        if report.errors:
            self.banner.show_error(" ".join(report.errors))
        elif report.warnings:
            self.banner.show_warning(" ".join(report.warnings))

    # --- recent folders ----------------------------------------------------------------------
    def recent_folders(self) -> list[str]:
        value = self.settings.value(RECENT_KEY, [])
        folders = [value] if isinstance(value, str) else list(value or [])
        return [str(f) for f in folders]

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
        if 0 <= row < len(self.skipped_model.rows):
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.skipped_model.rows[row][0]))
