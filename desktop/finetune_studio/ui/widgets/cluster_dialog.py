"""UI layer: File > "Run on a cluster…": write a cluster bundle for the window's recipe.

The dialog shows the recipe it was given, asks where to write the bundle, how many
nodes and GPUs per node, and where the data will be on the cluster, then runs the
engine's ``ClusterBundle`` (``engine/cluster/bundle.py``) as a task with progress
and Cancel: hashing a large dataset takes minutes. At the end it lists what was
written and the commands that copy the data and start each launch file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..workers.event_job import EventsJob
from ..workers.tasks import TaskRunner
from .task_progress import show_stages, show_starting

if TYPE_CHECKING:
    from ...engine.cluster.bundle import BundleResult
    from ...engine.recipe import Recipe
    from ..workers.tasks import Task

EXPLANATION = (
    "Writes a folder to copy to a cluster: this recipe, a manifest of the dataset "
    "(every picture's path, size and hash, so the copy there can be checked) and "
    "launch files for torchrun on one machine, SLURM and SkyPilot. The batch size is "
    "the global batch, split over nodes × GPUs per node."
)
STOPPED = "Stopped; nothing was written."


class ClusterDialog(QDialog):
    """Writes a bundle for one recipe; ``written`` carries the ``BundleResult``."""

    written = Signal(object)

    def __init__(
        self, recipe: Recipe, parent: QWidget | None = None, runner: TaskRunner | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Run on a cluster")
        self.recipe = recipe
        self.runner = runner if runner is not None else TaskRunner(self)
        self.task: Task | None = None
        self.bundle_result: BundleResult | None = None

        self.destination = QLineEdit(str(_free_folder(recipe)))
        self.browse_button = QPushButton("Browse…")
        self.nodes = _spin_box(1, 1024, 1)
        self.gpus_per_node = _spin_box(1, 64, 1)
        self.data_path = QLineEdit("data")
        self.data_path.setToolTip(
            "Where the copy of the dataset will be on the cluster. A relative path is "
            "relative to the bundle folder: data means a data/ folder beside recipe.json."
        )
        self.accelerator = QLineEdit("A100")
        self.accelerator.setToolTip("The GPU SkyPilot asks for (A100, H100, L4, …)")
        self.overwrite = QCheckBox("Replace an earlier bundle there (its data/ and output/ stay)")
        self.processes = QLabel()
        self.progress = QProgressBar()
        self.cancel_button = QPushButton("Cancel")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.report = QPlainTextEdit()
        self.report.setReadOnly(True)
        self.report.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.report.hide()
        self.write_button = QPushButton("Write bundle")
        self.write_button.setDefault(True)
        self.copy_button = QPushButton("Copy commands")
        self.copy_button.hide()
        self.close_button = QPushButton("Close")
        self._lay_out()

        self.browse_button.clicked.connect(self._on_browse_button_clicked)
        self.nodes.valueChanged.connect(self._on_counts_changed)
        self.gpus_per_node.valueChanged.connect(self._on_counts_changed)
        self.write_button.clicked.connect(self._on_write_button_clicked)
        self.cancel_button.clicked.connect(self._on_cancel_button_clicked)
        self.copy_button.clicked.connect(self._on_copy_button_clicked)
        self.close_button.clicked.connect(self.close)
        self._on_counts_changed()
        self._show_running(False)
        self.resize(680, 620)

    def _lay_out(self) -> None:
        explanation = QLabel(EXPLANATION)
        explanation.setWordWrap(True)
        summary = QLabel(_recipe_summary(self.recipe))
        summary.setWordWrap(True)
        summary.setObjectName("clusterRecipe")
        destination_row = QHBoxLayout()
        destination_row.addWidget(self.destination, stretch=1)
        destination_row.addWidget(self.browse_button)
        form = QFormLayout()
        form.addRow("Recipe:", summary)
        form.addRow("Write to:", destination_row)
        form.addRow("", self.overwrite)
        form.addRow("Nodes:", self.nodes)
        form.addRow("GPUs per node:", self.gpus_per_node)
        form.addRow("", self.processes)
        form.addRow("Data on the cluster:", self.data_path)
        form.addRow("SkyPilot GPU:", self.accelerator)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, stretch=1)
        progress_row.addWidget(self.cancel_button)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for button in (self.copy_button, self.write_button, self.close_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(explanation)
        layout.addLayout(form)
        layout.addLayout(progress_row)
        layout.addWidget(self.status)
        layout.addWidget(self.report, stretch=1)
        layout.addLayout(buttons)

    @property
    def running(self) -> bool:
        return self.task is not None and self.task.running

    # --- writing -------------------------------------------------------------------------------
    def write(self) -> None:
        """Write the bundle as the fields say (what "Write bundle" does)."""
        from ...engine.cluster.bundle import BundleOptions, ClusterBundle

        if self.running:
            return
        folder = self.destination.text().strip()
        if not folder:
            self.status.setText("Choose a folder to write the bundle to.")
            return
        options = BundleOptions(
            nodes=self.nodes.value(),
            gpus_per_node=self.gpus_per_node.value(),
            data_path=self.data_path.text().strip(),
            accelerator=self.accelerator.text().strip(),
            overwrite=self.overwrite.isChecked(),
        )
        bundle = ClusterBundle(self.recipe, folder, options)
        self.bundle_result = None
        self.report.hide()
        self.copy_button.hide()
        self.status.setText("")
        self.task = task = self.runner.start(
            EventsJob(bundle.events, bundle.cancel), "cluster bundle"
        )
        task.progressed.connect(self._on_task_progressed)
        task.succeeded.connect(self._on_task_succeeded)
        task.failed.connect(self._on_task_failed)
        task.cancelled.connect(self._on_task_cancelled)
        self._show_running(True)
        show_starting(self.progress)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def done(self, result: int) -> None:
        """Closed (Close, Esc, the title bar): a bundle still being written is not wanted."""
        self.cancel()
        super().done(result)

    def _show_running(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        self.write_button.setEnabled(not running)

    def show_result(self, result: BundleResult) -> None:
        self.bundle_result = result
        self.status.setText(f"Wrote the bundle to {result.folder}.")
        self.report.setPlainText(_report_text(result))
        self.report.show()
        self.copy_button.show()

    # --- slots ---------------------------------------------------------------------------------
    @Slot()
    def _on_counts_changed(self) -> None:
        processes = self.nodes.value() * self.gpus_per_node.value()
        batch = self.recipe.batch_size
        if batch % processes:
            self.processes.setText(
                f"{processes} processes: the batch size {batch} does not divide by "
                f"{processes}. Choose other counts, or change the batch size first."
            )
        else:
            self.processes.setText(
                f"{processes} processes, {batch // processes} pictures each per batch of {batch}."
            )

    @Slot()
    def _on_browse_button_clicked(self) -> None:
        start = self.destination.text() or str(Path.home())
        chosen = QFileDialog.getExistingDirectory(self, "Where to write the bundle", start)
        if chosen:
            self.destination.setText(str(_inside_if_taken(Path(chosen), self.recipe)))

    @Slot()
    def _on_write_button_clicked(self) -> None:
        self.write()

    @Slot()
    def _on_cancel_button_clicked(self) -> None:
        self.cancel()
        self.progress.setFormat("Stopping…")

    @Slot()
    def _on_copy_button_clicked(self) -> None:
        result = self.bundle_result
        if result is not None:
            commands = [result.copy_command, *(c.command for c in result.commands)]
            QGuiApplication.clipboard().setText("\n".join(commands))
            self.status.setText("The commands are on the clipboard.")

    @Slot(list)
    def _on_task_progressed(self, events: list[object]) -> None:
        show_stages(self.progress, self.status, events)

    @Slot(object)
    def _on_task_succeeded(self, result: BundleResult | None) -> None:
        self.task = None
        self._show_running(False)
        if result is None:
            self.status.setText(STOPPED)
            return
        self.show_result(result)
        self.written.emit(result)

    @Slot(str, str)
    def _on_task_failed(self, message: str, details: str) -> None:
        self.task = None
        self._show_running(False)
        self.status.setText(f"Could not write the bundle: {message}")
        self.status.setToolTip(details)

    @Slot()
    def _on_task_cancelled(self) -> None:
        self.task = None
        self._show_running(False)
        self.status.setText(STOPPED)


def _spin_box(low: int, high: int, value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    return box


def _recipe_summary(recipe: Recipe) -> str:
    return (
        f"{recipe.dataset}\n{recipe.backbone}, freeze {recipe.freeze.preset}, "
        f"{recipe.epochs} epochs, batch {recipe.batch_size}, learning rate {recipe.lr:g}"
    )


def _free_folder(recipe: Recipe) -> Path:
    """Beside the dataset, ``<name>-cluster`` (``-2``, ``-3``, … when taken)."""
    dataset = Path(recipe.dataset).expanduser().absolute()
    return _free_name(dataset.parent, f"{dataset.name}-cluster")


def _inside_if_taken(chosen: Path, recipe: Recipe) -> Path:
    """An empty folder is used as it is; in any other, a new ``<name>-cluster`` one."""
    if chosen.is_dir() and not any(chosen.iterdir()):
        return chosen
    return _free_name(chosen, f"{Path(recipe.dataset).name}-cluster")


def _free_name(parent: Path, name: str) -> Path:
    candidate, number = parent / name, 1
    while candidate.exists():
        number += 1
        candidate = parent / f"{name}-{number}"
    return candidate


def _report_text(result: BundleResult) -> str:
    lines = [f"Wrote {result.folder}:"]
    lines += [f"  {name}" for name in result.files]
    lines += [f"({result.pictures:,} pictures in the manifest)", ""]
    lines += [f"Note: {note}" for note in result.notes]
    lines += [
        "1. Copy the dataset to the bundle's data path: on the cluster for torchrun and",
        "   SLURM (CLUSTER and BUNDLE: yours), into this folder for SkyPilot:",
        f"   {result.copy_command}",
        "2. Launch one of them:",
    ]
    for command in result.commands:
        lines += [f"   {command.label}, {command.where}:", f"     {command.command}"]
    lines += ["", "The bundle's README.md says more about each file."]
    return "\n".join(lines)
